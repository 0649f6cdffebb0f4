"""``memberops loyalty …``: programme import/export, the expiry run, tier evaluation and the liability report.

A face like ``memberops.cli`` (registered there): parses, opens one transaction, calls a service, prints.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

loyalty_app = typer.Typer(help="Loyalty: the programme, points expiry, tier evaluation, the points liability.", no_args_is_help=True)
programme_app = typer.Typer(help="The loyalty programme's rules (YAML or JSON), versioned.", no_args_is_help=True)
loyalty_app.add_typer(programme_app, name="programme")
memberships_app = typer.Typer(help="Memberships: paid terms lapsing, enrolment flags, merged members' loyalty.",
                              no_args_is_help=True)
loyalty_app.add_typer(memberships_app, name="memberships")

WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="workspace slug")]


@programme_app.command("export")
def programme_export(
    out_file: Annotated[Path | None, typer.Option("--out", help="write here instead of the terminal")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """The programme in force, as YAML."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty.programme import programme_yaml
    from memberops.loyalty.programmes import active_programme

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        active = active_programme(session, ws.id)
    text = f"# programme version {active.version}\n{programme_yaml(active.programme)}"
    if out_file is None:
        out.print(text, end="", markup=False, highlight=False)
    else:
        out_file.write_text(text, encoding="utf-8")
        out.print(f"programme version {active.version} written to {out_file}")


@programme_app.command("import")
def programme_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a programme in YAML or JSON")],
    workspace: WorkspaceOpt = "default",
) -> None:
    """Validate a programme and make it the active one as a new version (audited)."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.cli import _context, out
    from memberops.loyalty.programme import parse_programme
    from memberops.loyalty.programmes import save_programme

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        active = save_programme(session, ws, parse_programme(file.read_text(encoding="utf-8")), actor=Actor.cli())
    out.print(f"programme version {active.version} is active")


def _as_of(day: str | None) -> datetime | None:
    if day is None:
        return None
    try:
        parsed = datetime.fromisoformat(day)
    except ValueError:
        raise typer.BadParameter("give a date (2027-01-31) or a time with its zone (2027-01-31T00:00:00+08:00)") from None
    if parsed.tzinfo is None:
        if len(day) > 10:
            raise typer.BadParameter("a time needs its zone, e.g. 2027-01-31T00:00:00+08:00")
        parsed = datetime.combine(parsed.date(), time(0), tzinfo=UTC)
    return parsed


@loyalty_app.command("expire")
def expire(
    as_of: Annotated[str | None, typer.Option("--as-of", help="run as of this date (UTC midnight) or time")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Release points past their return window, expire lapsed points, warn of points lapsing soon."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty.expiry import run_expiry

    when = _as_of(as_of)
    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        run = run_expiry(session, ws, as_of=when)
    table = Table(title=f"points run as of {run.as_of.isoformat()}", show_header=False)
    for label, value in [("members caught up", run.members), ("points released", run.released_points),
                         ("points expired", run.expired_points), ("members warned", run.warned_members)]:
        table.add_row(label, f"{value:,}")
    out.print(table)


@loyalty_app.command("evaluate-tiers")
def evaluate_tiers(
    as_of: Annotated[str | None, typer.Option("--as-of", help="evaluate as of this date (UTC midnight) or time")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Evaluate every member's tier: upgrade the qualified, keep or downgrade (keep-tier bar and grace
    applied), give the period's tier benefits. Running it again as of the same time changes nothing."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty.tiers import evaluate_tiers as evaluate

    when = _as_of(as_of)
    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        run = evaluate(session, ws, as_of=when)
    table = Table(title=f"tier evaluation as of {run.as_of.isoformat()}", show_header=False)
    for label, value in [("members evaluated", run.members), ("upgraded", run.upgraded),
                         ("downgraded", run.downgraded), ("kept by the lower bar", run.kept),
                         ("benefit grants", run.benefits_granted)]:
        table.add_row(label, f"{value:,}")
    for tier, count in sorted(run.by_tier.items()):
        table.add_row(f"members in {tier}", f"{count:,}")
    out.print(table)
    if run.missing_benefits:
        out.print(f"tier benefits not defined, not granted: {', '.join(sorted(run.missing_benefits))}")


@loyalty_app.command("liability")
def liability(workspace: WorkspaceOpt = "default") -> None:
    """Outstanding points × point value, by the month they lapse in."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty.expiry import points_liability

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        report = points_liability(session, ws)
    table = Table(title=f"points liability (programme version {report.programme_version}, "
                        f"1 point = {report.point_value} {report.currency})")
    table.add_column("lapses in")
    table.add_column("points", justify="right")
    table.add_column(f"value ({report.currency})", justify="right")
    for month in report.by_expiry_month:
        table.add_row(month.month or "never", f"{month.points:,}", f"{month.value:,}")
    table.add_row("total", f"{report.points:,}", f"{report.value:,}", style="bold")
    out.print(table)
    if report.debt_points:
        out.print(f"members owe {report.debt_points:,} points after refunds (not netted above)")


BACKFILL_LABELS = {  # every count of BackfillSummary, in the order printed (tests hold it complete)
    "members": "enrolled members", "orders": "orders earning", "points_earned": "points earned",
    "refunds": "refunds reversing", "points_reversed": "points reversed", "events": "events earning",
    "points_for_events": "points for events", "skipped_before_enrolment": "orders before enrolment (no points)",
    "already_posted": "already posted (skipped)", "tier_orders": "orders recorded for tiers",
    "growth_movements": "growth value movements",
}


@loyalty_app.command("backfill")
def backfill(
    since: Annotated[str | None, typer.Option("--since", help="replay orders placed on or after this date or time")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Earn points for enrolled members' imported orders (and reverse their refunds), in time order.

    Uses the live path's idempotency keys: a rerun, or a later live post of the same order, earns nothing twice.
    An order earns with the tier its buyer held when it was placed (the tier history); an order from
    before the member's first tier earns base points. An order's refunds count once each, live or
    imported; --since limits the orders replayed, not the refunds: a refund that reached the lake late
    still takes back its share of an earlier order's points.
    """
    from memberops.accounts import service as accounts
    from memberops.cli import _context, _import_progress, out
    from memberops.loyalty.backfill import backfill_points

    start = _as_of(since)
    with _context() as context:
        with context.store.read() as session:
            ws = accounts.get_workspace(session, workspace)
        with _import_progress() as progress:
            task = progress.add_task("replaying members' history", total=None)
            summary = backfill_points(context, ws, since=start, progress=lambda done, total: progress.update(
                task, completed=done, total=total))
    table = Table(title="points backfill", show_header=False)
    for name, label in BACKFILL_LABELS.items():
        table.add_row(label, f"{getattr(summary, name):,}")
    table.add_row("time", f"{summary.seconds:.1f} s")
    out.print(table)


@memberships_app.command("expire")
def memberships_expire(
    as_of: Annotated[str | None, typer.Option("--as-of", help="run as of this date (UTC midnight) or time")] = None,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Expire paid memberships past their term and grace days, end those cancelled at term end, and ask
    for the renewal of auto-renewing ones (an event). Running it again as of the same time changes nothing."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty.memberships import expire_memberships

    when = _as_of(as_of)
    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        run = expire_memberships(session, ws, as_of=when)
    table = Table(title=f"memberships as of {run.as_of.isoformat()}", show_header=False)
    for label, value in [("expired", run.expired), ("cancelled at term end", run.cancelled),
                         ("renewals requested", run.renewals_requested)]:
        table.add_row(label, f"{value:,}")
    out.print(table)


@memberships_app.command("sync")
def memberships_sync(workspace: WorkspaceOpt = "default") -> None:
    """Make members' enrolled flags agree with their memberships (recording a membership for members a
    channel flagged enrolled) and move absorbed members' loyalty to their survivors. Idempotent."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty.enrolment import sync_enrolment
    from memberops.loyalty.merge import absorb_merged_members

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        moved = absorb_merged_members(session, ws)
        synced = sync_enrolment(session, ws)
    table = Table(title="memberships sync", show_header=False)
    for label, value in [("memberships recorded for flagged members", synced.memberships_recorded),
                         ("enrolled flags set", synced.flags_set), ("enrolled flags cleared", synced.flags_cleared),
                         ("members paid for a completed profile", synced.profiles_completed),
                         ("absorbed members moved", moved.members), ("points moved", moved.points)]:
        table.add_row(label, f"{value:,}")
    out.print(table)


from memberops.loyalty.referral_cli import referrals_app  # noqa: E402  (registered after the commands above)

loyalty_app.add_typer(referrals_app, name="referrals")
