"""What the browser tests share: where Chromium is, how it is started, and a console served in a thread.

The server runs in this process over the test's context; uvicorn is handed a socket already bound to port
0, so no free port is found by luck.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from memberops.api.app import create_app
from memberops.runtime import Context

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
STARTUP_SECONDS = 90  # a limit, not a wait: polled every 0.1 s; a loaded machine or xdist worker needs more than 30 s


def wait_for_health(base_url: str, is_running: Callable[[], bool]) -> None:
    """Poll ``/health`` until it answers 200, for at most ``STARTUP_SECONDS``."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if not is_running():
            raise RuntimeError("the console server stopped while starting")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the console server did not answer /health within {STARTUP_SECONDS} s")


@contextmanager
def serving(context: Context, name: str) -> Iterator[str]:
    """The console and API of ``context`` on 127.0.0.1 in a thread; yields the base URL, closes the context."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(context), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        wait_for_health(base_url, thread.is_alive)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        context.close()
