"""The `memberops` command line, run as a user runs it: a real process, MEMBEROPS_DATA_DIR set."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from memberops.api.app import create_app
from memberops.config import Settings
from memberops.runtime import Context

COMMANDS = [
    [], ["init"], ["serve"], ["worker"], ["status"], ["demo"], ["demo", "generate"], ["demo", "import"], ["bench"],
    ["users"], ["users", "create"],
    ["keys"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"], ["outbox"], ["outbox", "export"],
    ["import"], ["presets"], ["quarantine"], ["quarantine", "list"], ["quarantine", "show"],
    ["quarantine", "export"], ["quarantine", "retry"], ["quarantine", "discard"],
    ["identity"], ["identity", "resolve"], ["identity", "export"], ["identity", "review"],
    ["identity", "config"], ["identity", "config", "show"], ["identity", "config", "set"],
    ["loyalty"], ["loyalty", "programme"], ["loyalty", "programme", "export"], ["loyalty", "programme", "import"],
    ["loyalty", "expire"], ["loyalty", "evaluate-tiers"], ["loyalty", "liability"],
    ["loyalty", "referrals"], ["loyalty", "referrals", "import"],
    ["lake"], ["lake", "compact"],
    ["clv"], ["clv", "fit"], ["insight"], ["insight", "compute"],
    ["insight", "config"], ["insight", "config", "show"], ["insight", "config", "set"],
    ["tags"], ["tags", "list"], ["tags", "apply"], ["tags", "delete"], ["coupons"], ["coupons", "templates"], ["coupons", "issue"], ["coupons", "show"],
    ["coupons", "void"], ["coupons", "expire"], ["coupons", "member"],
]


def run(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBEROPS_")}
    env.update({"MEMBEROPS_DATA_DIR": str(data_dir), "COLUMNS": "200"})
    return subprocess.run([sys.executable, "-m", "memberops.cli", *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=120, cwd=data_dir.parent)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    done = run(tmp_path / "d", *command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout


class TestWorkflow:
    def test_init_key_status(self, tmp_path: Path) -> None:
        data = tmp_path / "d"
        assert run(data, "init", "--name", "Acme").returncode == 0
        assert (data / "memberops.db").exists()
        created = run(data, "keys", "create", "--scope", "ingest", "--scope", "read", "--name", "pos")
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1].split()[-1]
        context = Context.from_settings(Settings(data_dir=data))
        with TestClient(create_app(context)) as client:
            me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
        context.close()
        assert me.json()["scopes"] == ["ingest", "read"]
        status = run(data, "status")
        assert status.returncode == 0
        assert "members" in status.stdout and "Acme" in status.stdout and str(data) in status.stdout

    def test_users_create_and_domain_errors_exit_non_zero(self, tmp_path: Path) -> None:
        data = tmp_path / "d"
        ok = run(data, "users", "create", "--email", "ops@example.com", "--password", "long enough pw",
                 "--role", "analyst")
        assert ok.returncode == 0, ok.stderr
        again = run(data, "users", "create", "--email", "ops@example.com", "--password", "long enough pw")
        assert again.returncode == 4 and "user_exists" in again.stderr
        weak = run(data, "users", "create", "--email", "x@example.com", "--password", "short")
        assert weak.returncode == 2 and "weak_password" in weak.stderr
        no_tty = run(data, "users", "create", "--email", "y@example.com", stdin="")
        assert no_tty.returncode == 2

    def test_bad_scope(self, tmp_path: Path) -> None:
        done = run(tmp_path / "d", "keys", "create", "--scope", "root")
        assert done.returncode == 2 and "invalid_scope" in done.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_health(base: str, attempts: int = 150) -> None:
    for _ in range(attempts):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail("server did not come up")


def test_serve_answers_health_and_rejects_bad_keys(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBEROPS_")}
    env["MEMBEROPS_DATA_DIR"] = str(tmp_path / "d")
    server = subprocess.Popen([sys.executable, "-m", "memberops.cli", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_health(base)
        assert httpx.get(f"{base}/api/v1/me").status_code == 401
        assert httpx.get(f"{base}/api/v1/me", headers={"Authorization": "Bearer mo_x_y"}).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_workers_run_several_processes_on_postgresql_only(tmp_path: Path, database_url: str) -> None:
    """``serve --workers 2``: refused on SQLite (one writer at a time), two processes on PostgreSQL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBEROPS_")}
    env.update(MEMBEROPS_DATA_DIR=str(tmp_path / "d"), MEMBEROPS_DATABASE_URL=database_url)
    command = [sys.executable, "-m", "memberops.cli", "serve", "--no-jobs", "--workers", "2", "--port", str(port)]
    if database_url.startswith("sqlite"):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "workers_need_postgresql" in done.stderr
        return
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        server = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_health(base, attempts=600)  # two processes import everything: slow on a loaded machine
        assert httpx.get(f"{base}/api/v1/me").status_code == 401
        deadline = time.monotonic() + 120
        while log.read_text().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=60)
    output = log.read_text()
    assert "Started parent process" in output
    assert output.count("Application startup complete") == 2, output


class TestImportCommands:
    """`memberops import` and `memberops quarantine` as an operator runs them."""

    CSV = ("order_id,customer_key,ordered_at,paid_amount\n"
           "o1,c1,2026-01-02 10:00:00,10.00\no2,c2,yesterday,5.00\no3,c3,2026-01-02 11:00:00,-1\n")

    def test_import_reports_and_quarantine_round_trip(self, tmp_path: Path) -> None:
        data = tmp_path / "d"
        source = tmp_path / "orders.csv"
        source.write_text(self.CSV)
        done = run(data, "import", "orders", str(source), "--channel", "shop")
        assert done.returncode == 0, done.stderr
        assert "quarantined 1 × invalid ordered_at" in done.stdout
        assert "quarantined 1 × negative paid_amount" in done.stdout
        again = run(data, "import", "orders", str(source), "--channel", "shop")
        assert "already imported" in again.stdout
        listed = run(data, "quarantine", "list")
        import_id = next(w for w in listed.stdout.split() if w.count("-") == 4)
        fixed = tmp_path / "fix.csv"
        assert run(data, "quarantine", "export", import_id, "--out", str(fixed)).returncode == 0
        fixed.write_text(fixed.read_text().replace("yesterday", "2026-01-01 09:00:00"))
        retried = run(data, "quarantine", "retry", import_id, "--file", str(fixed))
        assert retried.returncode == 0, retried.stderr
        status = run(data, "status")
        assert "orders" in status.stdout

    def test_unknown_kind_and_missing_file(self, tmp_path: Path) -> None:
        assert run(tmp_path / "d", "import", "shoes", "x.csv", "--channel", "pos").returncode == 2
        assert run(tmp_path / "d", "import", "orders", str(tmp_path / "none.csv"), "--channel", "pos").returncode == 2

    def test_a_file_without_a_required_column_is_refused_whole(self, tmp_path: Path) -> None:
        source = tmp_path / "orders.csv"
        source.write_text("order_id,paid_amount\no1,10\n")
        done = run(tmp_path / "d", "import", "orders", str(source), "--channel", "shop")
        assert done.returncode == 2
        assert "missing_columns" in done.stderr and "customer_key" in done.stderr


def test_demo_sets_up_generates_and_imports_without_serving(tmp_path: Path) -> None:
    data = tmp_path / "d"
    done = run(data, "demo", "--no-serve", "--members", "400", "--end", "2026-10-31")
    assert done.returncode == 0, done.stderr
    assert "demo@memberops.local" in done.stdout and "http://127.0.0.1:8000/" in done.stdout
    assert "history: 2024-11-01 to 2026-10-31 (Asia/Shanghai)" in done.stdout
    assert (data / "demo-login.txt").exists()
    status = run(data, "status")
    orders = next(line for line in status.stdout.splitlines() if "orders" in line)
    assert int(orders.split("│")[-2].strip().replace(",", "")) > 100
    # run again, without --end: the data folder keeps its brand (and says it has aged)
    again = run(data, "demo", "--no-serve", "--members", "400")
    assert again.returncode == 0 and again.stdout.count("(already imported)") == 15
    assert "history: 2024-11-01 to 2026-10-31 (Asia/Shanghai), ended" in again.stdout
    # another history over this one would mix two of the same brand: refused, nothing imported
    other = run(data, "demo", "--no-serve", "--members", "400", "--end", "2026-11-30")
    assert other.returncode == 2 and "use an empty data folder" in other.stderr
    assert "2024-11-01 to 2026-10-31" in other.stderr and "imported" not in other.stdout
    assert run(data, "status").stdout == status.stdout


class TestDemoGenerate:
    def test_the_history_ends_yesterday_or_on_the_day_given(self, tmp_path: Path) -> None:
        brand = tmp_path / "brand"
        pinned = run(tmp_path / "d", "demo", "generate", "--out", str(brand), "--members", "50", "--end", "2031-06-30")
        assert pinned.returncode == 0, pinned.stderr
        assert "history: 2029-07-01 to 2031-06-30" in pinned.stdout
        assert '"end": "2031-06-30T23:59:59+08:00"' in (brand / "manifest.json").read_text(encoding="utf-8")
        default = run(tmp_path / "d", "demo", "generate", "--out", str(brand), "--members", "50")
        assert default.returncode == 0, default.stderr
        yesterday = (datetime.now(UTC) + timedelta(hours=8)).date() - timedelta(days=1)
        assert f"to {yesterday.isoformat()}" in default.stdout or f"to {yesterday - timedelta(days=1)}" in default.stdout

    def test_a_bad_end_is_refused_and_writes_nothing(self, tmp_path: Path) -> None:
        brand = tmp_path / "brand"
        beyond = run(tmp_path / "d", "demo", "generate", "--out", str(brand), "--members", "50", "--end", "2045-01-01")
        assert beyond.returncode == 2
        assert "Spring Festival of 2020–2040 only" in beyond.stderr and "2040-12-27" in beyond.stderr
        garbled = run(tmp_path / "d", "demo", "generate", "--out", str(brand), "--members", "50", "--end", "31/10/2026")
        assert garbled.returncode == 2 and "is not a date (YYYY-MM-DD)" in garbled.stderr
        assert not brand.exists()
