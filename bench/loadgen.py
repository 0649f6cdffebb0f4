"""The HTTP benchmarks' shared pieces: starting servers, and the load generator that runs in its own process.

Not a benchmark module (its name does not start with ``bench_``): ``bench_http_ingest.py`` and
``bench_loyalty.py`` load it by path, as the harness loads them. The load generator is a separate process (threads, each
with its own keep-alive HTTP/1.1 connection over a plain socket, the requests prepared in advance) fed
one JSON command per line on its stdin and answering one JSON result per line on its stdout: see
:func:`serve_commands` (its side) and :class:`Generator` (the benchmark's side).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# --- servers ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def memberops(*args: str, env: dict[str, str], **kwargs: Any) -> Any:
    """``memberops *args`` as a child process, from the same environment as this Python."""
    executable = Path(sys.executable).with_name("memberops")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "memberops.cli"]
    return subprocess.Popen([*command, *args], env=env, **kwargs)


def create_key(env: dict[str, str], *scopes: str) -> str:
    """A new API key with ``scopes``, made by ``memberops keys create`` (which also sets up the store)."""
    scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
    created = memberops("keys", "create", *scope_args, "--name", "bench", env=env, stdout=subprocess.PIPE,
                        text=True)
    output, _ = created.communicate(timeout=120)
    if created.returncode != 0:
        raise RuntimeError(f"memberops keys create failed: {output}")
    return str(output.strip().splitlines()[-1].split()[-1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server at {url} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server at {url} did not become healthy in {timeout:.0f}s")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


class Generator:
    """The benchmark's handle on the load generator process (``python <script> load``)."""

    def __init__(self, script: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, str(script), "load"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)

    def run(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command, wait for its result; the generator's own error is raised here."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError("the load generator exited")
        result: dict[str, Any] = json.loads(answer)
        if "error" in result:
            raise RuntimeError(result["error"])
        return result

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


# --- the load generator (its own process) ----------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class Connection:
    """A minimal HTTP/1.1 keep-alive client over a socket: a Python HTTP client library costs more CPU per
    request than the servers under test, and would measure itself."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host = f"{host}:{port}"
        self.socket = socket.create_connection((host, int(port)))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def request(self, message: bytes) -> tuple[int, bytes]:
        """Send a prepared request (head and body), return the response's status and body."""
        self.socket.sendall(message)
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._receive()
        headers, _, rest = self.pending.partition(b"\r\n\r\n")
        length = 0
        for line in headers.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self._receive()
        self.pending = rest[length:]
        return int(headers[9:12]), rest[:length]

    def _receive(self) -> bytes:
        chunk = self.socket.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.socket.close()


def prepare(url: str, key: str, requests: list[tuple[str, bytes]]) -> list[bytes]:
    """Each ``(path, JSON body)`` as a complete ``POST`` with the bearer ``key``."""
    host = url.removeprefix("http://")
    return [(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
            for path, body in requests]


Inspect = Callable[[int, int, bytes], None]


def run(url: str, requests: list[bytes], concurrency: int, inspect: Inspect | None = None) -> dict[str, Any]:
    """Send ``requests`` over ``concurrency`` connections, each taking the next one when it has its
    answer; ``inspect(index, status, body)`` sees each response (in the sending thread).

    A request that fails on the socket counts as status 599 and its connection is replaced: a failure
    must show in the figures. Returns the wall time, the statuses and the latency percentiles."""
    connections = [Connection(url) for _ in range(concurrency)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = iter(range(len(requests)))
    lock = threading.Lock()

    def worker(connection: Connection) -> None:
        opened = connection
        mine: list[float] = []
        seen: dict[int, int] = {}
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            started = time.perf_counter()
            try:
                status, body = connection.request(requests[index])
            except OSError:
                status, body = 599, b""
                connection.close()
                connection = Connection(url)
            mine.append(time.perf_counter() - started)
            seen[status] = seen.get(status, 0) + 1
            if inspect is not None:
                inspect(index, status, body)
        if connection is not opened:
            connection.close()
        with lock:
            latencies.extend(mine)
            for status, count in seen.items():
                statuses[status] = statuses.get(status, 0) + count

    threads = [threading.Thread(target=worker, args=(c,)) for c in connections]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    for connection in connections:
        connection.close()
    latencies.sort()
    return {"requests": len(requests), "seconds": seconds, "statuses": {str(k): v for k, v in statuses.items()},
            "p50_ms": percentile(latencies, 0.50) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000}


def serve_commands(handle: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The generator process's loop: one JSON command per line of stdin, ``handle``'s result (or the
    error it raised) as one JSON line on stdout, until stdin closes."""
    for line in sys.stdin:
        try:
            result = handle(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - reported to the benchmark process, which raises it
            result = {"error": repr(exc)}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
