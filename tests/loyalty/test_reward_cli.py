"""``memberops rewards …`` through Typer's CliRunner over a real data dir (SQLite): create from YAML,
list, redeem (and its replay and refusal exit codes), the member's redemptions, fulfil, cancel."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from memberops.audit.service import Actor
from memberops.cli import app
from memberops.config import Settings
from memberops.loyalty import points
from memberops.runtime import Context
from tests.loyalty.factories import enrol

runner = CliRunner()

TOTE = """\
code: TOTE
name: Canvas tote
kind: item
points: 300
cash_amount: 19.90
stock: 5
period_limit: {count: 2, period: month}
"""


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "d"
    monkeypatch.setenv("MEMBEROPS_DATA_DIR", str(data))
    monkeypatch.delenv("MEMBEROPS_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    assert runner.invoke(app, ["init"]).exit_code == 0
    return data


def cli(*args: str) -> tuple[int, str]:
    done = runner.invoke(app, list(args))
    return done.exit_code, done.output


def test_every_rewards_command_has_help() -> None:
    for command in ([], ["list"], ["create"], ["update"], ["redeem"], ["cancel"], ["fulfil"], ["member"]):
        code, output = cli("rewards", *command, "--help")
        assert code == 0 and "Usage" in output, command


def test_create_redeem_fulfil_cancel(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "tote.yaml").write_text(TOTE)
    assert cli("rewards", "create", str(tmp_path / "tote.yaml")) == (0, "created reward TOTE (version 1)\n")
    (tmp_path / "bad.yaml").write_text("code: X\nname: x\nkind: coupon\npoints: 10\n")
    code, output = cli("rewards", "create", str(tmp_path / "bad.yaml"))
    assert code == 2 and "coupon_template" in output
    context = Context.from_settings(Settings(data_dir=data_dir))
    with context.store.transaction() as session:
        from memberops.accounts import service as accounts

        workspace = accounts.get_workspace(session, "default")
        member = enrol(session, workspace, "c1")
        points.adjust(session, workspace, member, points=700, reason="t", idempotency_key="fund", actor=Actor.cli())
    context.close()
    code, output = cli("rewards", "redeem", "--reward", "TOTE", "--member", member, "--key", "k1")
    assert code == 0, output
    assert "19.90 CNY to collect" in output and "400 points left" in output
    redemption = output.strip().splitlines()[-1].split()[-1]
    code, output = cli("rewards", "redeem", "--reward", "TOTE", "--member", member, "--key", "k1")
    assert code == 0 and "already redeemed" in output and output.strip().endswith(redemption)
    code, output = cli("rewards", "redeem", "--reward", "TOTE", "--member", member, "--key", "k2", "--quantity", "2")
    assert code == 4 and "reward_limit_reached" in output
    code, output = cli("rewards", "list")
    assert "4 / 5" in output and "2/month" in output
    assert "pending" in cli("rewards", "member", member)[1]
    assert cli("rewards", "fulfil", redemption, "--status", "collected") == (0, "fulfilment: collected\n")
    code, output = cli("rewards", "cancel", redemption, "--reason", "test")
    assert code == 4 and "reward_redemption_not_cancellable" in output
