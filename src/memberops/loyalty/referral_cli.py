"""``memberops loyalty referrals …``: the top referrers, a member's referrals, binding by hand, and binding
the referrals channels recorded (identity records' ``referrer_code``). A face: parses, calls a service, prints."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

referrals_app = typer.Typer(help="Referrals: codes, friends bound to referrers, rewards.", no_args_is_help=True)

WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="workspace slug")]


@referrals_app.command("report")
def report(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="how many referrers")] = 20,
    workspace: WorkspaceOpt = "default",
) -> None:
    """The referrers with the most friends bound, and what became of those bindings."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty.referral_reports import referrers_report

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        lines = referrers_report(session, ws.id, limit=limit)
    table = Table(title="top referrers")
    for column in ("member", "code", "friends", "rewarded", "over cap", "ineligible", "points"):
        table.add_column(column, justify="left" if column in ("member", "code") else "right")
    for line in lines:
        table.add_row(line.member_id, line.code or "", f"{line.bindings:,}", f"{line.rewarded:,}",
                      f"{line.over_cap:,}", f"{line.ineligible:,}", f"{line.points:,}")
    out.print(table if lines else "no referrals yet")


@referrals_app.command("show")
def show(member_id: Annotated[str, typer.Argument(help="the member id")], workspace: WorkspaceOpt = "default") -> None:
    """A member's referral code, who referred them, and the friends they referred."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.db.base import utcnow
    from memberops.loyalty.referral_reports import referral_summary, shown_status

    now = utcnow()
    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        summary = referral_summary(session, ws, member_id, now=now)
    out.print(f"referral code: {summary.code or '(none)'}")
    if summary.referred_by is not None:
        out.print(f"referred by {summary.referred_by.referrer_member_id} on {summary.referred_by.bound_at:%Y-%m-%d} "
                  f"({shown_status(summary.referred_by, now)})")
    out.print(", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in summary.counts.items())
              + f"; referral points earned: {summary.points_earned:,}")
    if summary.friends:
        table = Table(title="friends referred (newest first)")
        for column in ("friend", "bound", "status", "order rewarded", "points"):
            table.add_column(column)
        for binding in summary.friends:
            table.add_row(binding.friend_member_id, f"{binding.bound_at:%Y-%m-%d}", shown_status(binding, now),
                          binding.reward_order or "", str(binding.referrer_points))
        out.print(table)


@referrals_app.command("bind")
def bind(
    member_id: Annotated[str, typer.Argument(help="the friend's member id")],
    code: Annotated[str, typer.Argument(help="the referrer's code, member card number or ?ref= link")],
    workspace: WorkspaceOpt = "default",
) -> None:
    """Bind a member to a referrer by hand (first binding wins; audited)."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.cli import _context, out
    from memberops.loyalty.referrals import bind_referral

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        bound = bind_referral(session, ws, member_id, code, source="api", actor=Actor.cli())
        status, referrer = bound.binding.status, bound.binding.referrer_member_id
    out.print(f"{'already bound' if bound.is_replay else 'bound'} to {referrer}: {status.replace('_', ' ')}")


@referrals_app.command("import")
def import_recorded(workspace: WorkspaceOpt = "default") -> None:
    """Bind the referrals channels recorded (an identity record's ``referrer_code``: a referral code or the
    referrer's member card number), with the same guards as a live binding, and reward the friends' first
    qualifying purchases from the imported history. Running it again changes nothing."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty.referral_import import bind_recorded_referrals

    with _context() as context:
        with context.store.read() as session:
            ws = accounts.get_workspace(session, workspace)
        summary = bind_recorded_referrals(context, ws)
    table = Table(title="recorded referrals", show_header=False)
    for label, value in [("bindings made", summary.bound), ("of them over the cap", summary.over_cap),
                         ("of them ineligible (bought before)", summary.ineligible),
                         ("refused (self-referral, unknown code)", summary.refused),
                         ("already bound", summary.already_bound), ("rewarded", summary.rewarded),
                         ("referral points granted", summary.points)]:
        table.add_row(label, f"{value:,}")
    table.add_row("time", f"{summary.seconds:.1f} s")
    out.print(table)
