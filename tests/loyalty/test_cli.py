"""``memberops loyalty …`` run as a user runs it: a real process over a real data dir."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memberops.accounts.models import Workspace
from memberops.config import Settings
from memberops.loyalty import expiry
from memberops.runtime import Context
from tests.loyalty.factories import enrol, post_order, set_programme
from tests.test_cli import run


def test_programme_round_trip_expiry_and_liability(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert run(data, "init").returncode == 0
    exported = tmp_path / "programme.yaml"
    done = run(data, "loyalty", "programme", "export", "--out", str(exported))
    assert done.returncode == 0, done.stderr
    text = exported.read_text()
    assert text.startswith("# programme version 1") and "policy: rolling_months" in text

    exported.write_text(text.replace("point_value: '0.01'", "point_value: '0.1'"))
    done = run(data, "loyalty", "programme", "import", str(exported))
    assert done.returncode == 0, done.stderr
    assert "version 2" in done.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("earn: {rounding: sideways}\n")
    refused = run(data, "loyalty", "programme", "import", str(bad))
    assert refused.returncode == 2 and "earn.rounding" in refused.stderr

    context = Context.from_settings(Settings(data_dir=data))
    try:
        with context.store.transaction() as session:
            from memberops.accounts.service import get_workspace

            workspace = get_workspace(session, "default")
            enrol(session, workspace)
            post_order(session, workspace)  # 100 points, lapsing 2027-03-01
        liability = run(data, "loyalty", "liability")
        assert liability.returncode == 0, liability.stderr
        assert "2027-03" in liability.stdout and "10.00" in liability.stdout

        done = run(data, "loyalty", "expire", "--as-of", "2027-03-02")
        assert done.returncode == 0, done.stderr
        assert "points expired" in done.stdout and "100" in done.stdout
        with context.store.read() as session:
            assert expiry.points_liability(session, workspace).points == 0
        assert run(data, "loyalty", "expire", "--as-of", "yesterday").returncode == 2
    finally:
        context.close()


@contextmanager
def _initialised(tmp_path: Path) -> Iterator[tuple[Path, Context, Workspace]]:
    """A data dir ``memberops init`` made, its store (closed after) and its default workspace."""
    from memberops.accounts.service import get_workspace

    data = tmp_path / "d"
    assert run(data, "init").returncode == 0
    context = Context.from_settings(Settings(data_dir=data))
    try:
        with context.store.read() as session:
            workspace = get_workspace(session, "default")
        yield data, context, workspace
    finally:
        context.close()


def test_referrals_bind_show_and_report(tmp_path: Path) -> None:
    with _initialised(tmp_path) as (data, context, workspace):
        with context.store.transaction() as session:
            from memberops.loyalty.referrals import referral_code_of

            set_programme(session, workspace, referrals={"enabled": True, "referrer_points": 50})
            alice, bob = enrol(session, workspace, "alice"), enrol(session, workspace, "bob")
            code = referral_code_of(session, workspace.id, alice)
        assert code is not None
        done = run(data, "loyalty", "referrals", "bind", bob, code)
        assert done.returncode == 0, done.stderr
        assert f"bound to {alice}: awaiting purchase" in done.stdout
        assert run(data, "loyalty", "referrals", "bind", alice, code).returncode == 4  # self-referral: a conflict
        shown = run(data, "loyalty", "referrals", "show", alice)
        assert shown.returncode == 0, shown.stderr
        assert f"referral code: {code}" in shown.stdout and bob in shown.stdout
        report = run(data, "loyalty", "referrals", "report")
        assert report.returncode == 0 and alice in report.stdout


def test_backfill_prints_every_figure_of_its_summary(tmp_path: Path) -> None:
    """The tier and growth figures too: an operator sees what the run recorded for the tiers."""
    from dataclasses import fields

    from memberops.loyalty.backfill import BackfillSummary
    from memberops.loyalty.cli import BACKFILL_LABELS
    from tests.loyalty.test_backfill import JOINED, _lake_brand

    assert set(BACKFILL_LABELS) == {field.name for field in fields(BackfillSummary)} - {"seconds"}
    with _initialised(tmp_path) as (data, context, workspace):
        with context.store.transaction() as session:
            set_programme(session, workspace, tiers=[{"code": "silver", "name": "Silver", "threshold": "500"}],
                          tier_rules={"metric": "growth", "growth_per_unit": "1"})
            member = enrol(session, workspace, "c1", now=JOINED)
        _lake_brand(workspace, "c1", member, "").write(context.settings.lake_path)
    done = run(data, "loyalty", "backfill")
    assert done.returncode == 0, done.stderr
    lines = {line.strip("│ ").rsplit("│", 1)[0].strip(): line.rsplit("│", 2)[-2].strip()
             for line in done.stdout.splitlines() if line.count("│") == 3}
    # the lake's five orders are recorded for the tiers; four from enrolment on earn growth, and the
    # birthday order's two refunds take some back: 4 + 2 growth movements
    assert lines["orders recorded for tiers"] == "5" and lines["growth value movements"] == "6"
    assert lines["orders earning"] == "4" and lines["refunds reversing"] == "2"
