"""``memberops coupons …`` run as a user runs it: a real process, MEMBEROPS_DATA_DIR set."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from memberops.config import Settings
from memberops.db.base import utcnow
from memberops.jobs.queue import expire_coupons
from memberops.loyalty import coupons
from memberops.runtime import Context
from tests.loyalty.coupon_factories import make_member
from tests.test_cli import run

TEMPLATE = """\
code: WINTER-50
name: Winter spend 300 get 50
stock: 100
terms:
  kind: threshold
  threshold: 300
  amount_off: 50
  valid_days: 14
  channels: [pos, app]
"""


def test_template_issue_show_void_expire(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert run(data, "init").returncode == 0
    (tmp_path / "winter.yaml").write_text(TEMPLATE)
    created = run(data, "coupons", "templates", "create", str(tmp_path / "winter.yaml"))
    assert created.returncode == 0, created.stderr
    (tmp_path / "bad.yaml").write_text("code: X\nname: x\nterms: {kind: percent_off, valid_days: 3}\n")
    bad = run(data, "coupons", "templates", "create", str(tmp_path / "bad.yaml"))
    assert bad.returncode == 2 and "needs percent_off" in bad.stderr
    exported = run(data, "coupons", "templates", "export", "WINTER-50")
    assert "kind: threshold" in exported.stdout and "threshold: '300'" in exported.stdout
    context = Context.from_settings(Settings(data_dir=data))
    with context.store.transaction() as session:
        from memberops.accounts import service as accounts

        workspace_id = accounts.get_workspace(session, "default").id
        member = make_member(session, workspace_id)
    issued = run(data, "coupons", "issue", "--template", "WINTER-50", "--member", member, "--key", "k1")
    assert issued.returncode == 0, issued.stderr
    code = issued.stdout.strip().splitlines()[-1].split()[-1]
    again = run(data, "coupons", "issue", "--template", "WINTER-50", "--member", member, "--key", "k1")
    assert again.stdout.strip().splitlines()[-1].split()[-1] == code and "already issued" in again.stdout
    listed = run(data, "coupons", "templates", "list")
    assert "WINTER-50" in listed.stdout and "threshold" in listed.stdout
    shown = run(data, "coupons", "show", code)
    assert "issued" in shown.stdout and "WINTER-50 v1" in shown.stdout
    assert run(data, "coupons", "void", code, "--reason", "test").returncode == 0
    twice = run(data, "coupons", "void", code, "--reason", "test")
    assert twice.returncode == 4 and "coupon_not_voidable" in twice.stderr
    run(data, "coupons", "issue", "--template", "WINTER-50", "--member", member, "--key", "k2")
    assert "expired 0 coupons" in run(data, "coupons", "expire").stdout
    with context.store.transaction() as session:
        assert coupons.expire_coupons(session, now=utcnow() + timedelta(days=15)) == 1
    assert expire_coupons(context) == 0  # the hourly job: nothing left to expire
    context.close()
    held = run(data, "coupons", "member", member).stdout
    assert "voided" in held and "expired" in held
