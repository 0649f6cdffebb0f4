"""``memberops rewards …``: the rewards catalogue from YAML/JSON files, redeeming, cancelling and fulfilling
redemptions, a member's redemptions. Thin, like ``memberops.cli``: parse, open one transaction, call
``loyalty.rewards``, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from memberops.loyalty.coupon_cli import _parsed

rewards_app = typer.Typer(help="Rewards catalogue (points mall): rewards, redeem, cancel, fulfil.",
                          no_args_is_help=True)

WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="workspace slug")]
FileArg = Annotated[Path, typer.Argument(help="a YAML or JSON file", exists=True, dir_okay=False)]


@rewards_app.command("list")
def list_rewards(workspace: WorkspaceOpt = "default") -> None:
    """Every reward with its price, stock left and version."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty import rewards

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        table = Table("code", "name", "kind", "price", "stock left", "redeemed", "limit", "version", "active")
        for reward in rewards.list_rewards(session, ws.id):
            view = rewards.reward_view(session, reward)
            price = f"{view.points:,} pts" + (f" + {view.cash_amount} {view.currency}" if view.cash_amount else "")
            left = "unlimited" if view.remaining_stock is None else f"{view.remaining_stock:,} / {view.stock:,}"
            limit = " ".join(filter(None, [f"{view.per_member_limit} per member" if view.per_member_limit else "",
                                           f"{view.period_limit.count}/{view.period_limit.period}"
                                           if view.period_limit else ""])) or "-"
            table.add_row(view.code, view.name, view.kind, price, left, f"{view.redeemed_count:,}", limit,
                          str(view.version), "yes" if view.is_active else "no")
        out.print(table)


@rewards_app.command("create")
def create(file: FileArg, workspace: WorkspaceOpt = "default") -> None:
    """Create a reward from a file (code, name, kind: item | coupon | benefit, points, cash_amount, stock,
    per_member_limit, period_limit, valid_from/valid_until, tiers, coupon_template or benefit_code)."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.cli import _context, out
    from memberops.loyalty import rewards
    from memberops.loyalty.reward_schemas import RewardIn

    spec = _parsed(RewardIn, file)
    with _context() as context, context.store.transaction() as session:
        ws = accounts.ensure_workspace(session, workspace)
        reward = rewards.create_reward(session, ws, spec, actor=Actor.cli())
        out.print(f"created reward {reward.code} (version {reward.version})")


@rewards_app.command("update")
def update(code: Annotated[str, typer.Argument(help="the reward's code")], file: FileArg,
           workspace: WorkspaceOpt = "default") -> None:
    """Replace a reward's definition with the file's; a change makes a new version."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.cli import _context, out
    from memberops.loyalty import rewards
    from memberops.loyalty.reward_schemas import RewardIn

    spec = _parsed(RewardIn, file)
    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        reward = rewards.update_reward(session, ws, code, spec, actor=Actor.cli())
        out.print(f"reward {reward.code} is at version {reward.version}")


@rewards_app.command("redeem")
def redeem(
    reward: Annotated[str, typer.Option(help="the reward's code")],
    member: Annotated[str, typer.Option(help="the member's id")],
    key: Annotated[str, typer.Option(help="idempotency key: the same key redeems nothing more")],
    quantity: Annotated[int, typer.Option(min=1, max=100)] = 1,
    workspace: WorkspaceOpt = "default",
) -> None:
    """Redeem a reward for a member; prints the redemption's id as the last word."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.cli import _context, out
    from memberops.loyalty import rewards

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        done = rewards.redeem_reward(session, ws, member, reward, quantity=quantity, idempotency_key=key,
                                     actor=Actor.cli())
        (view,) = rewards.redemption_views(session, [done.redemption])
    note = " (already redeemed with this key)" if done.is_replay else ""
    cash = f" + {view.cash_amount} {view.currency} to collect" if view.cash_amount else ""
    extra = f"; coupons {', '.join(view.coupon_codes)}" if view.coupon_codes else ""
    out.print(f"{view.quantity} × {view.reward_code} for {view.points:,} points{cash}{extra}; "
              f"{done.balance['available']:,} points left{note}")
    print(f"redemption: {view.id}")


@rewards_app.command("cancel")
def cancel(redemption: Annotated[str, typer.Argument(help="the redemption's id")],
           reason: Annotated[str, typer.Option(help="why (kept in the audit log)")],
           workspace: WorkspaceOpt = "default") -> None:
    """Cancel a redemption: points back, stock back, an unused coupon voided."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.cli import _context, out
    from memberops.loyalty import reward_fulfilment

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        done = reward_fulfilment.cancel_redemption(session, ws, redemption, reason=reason, actor=Actor.cli())
    out.print(("already cancelled; " if done.is_replay else "cancelled; ") + f"{done.points_returned:,} points returned")


@rewards_app.command("fulfil")
def fulfil(redemption: Annotated[str, typer.Argument(help="the redemption's id")],
           status: Annotated[str, typer.Option(help="shipped | collected")],
           note: Annotated[str, typer.Option(help="e.g. a tracking number")] = "",
           workspace: WorkspaceOpt = "default") -> None:
    """Record an item's fulfilment: shipped, then collected (or straight to collected)."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.cli import _context, err, out
    from memberops.loyalty import reward_fulfilment

    if status not in ("shipped", "collected"):
        err.print("[red]error[/red] --status: shipped or collected")
        raise typer.Exit(2)
    wanted: Literal["shipped", "collected"] = "shipped" if status == "shipped" else "collected"
    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        done = reward_fulfilment.set_fulfilment(session, ws.id, redemption, wanted, note=note, actor=Actor.cli())
        out.print(f"fulfilment: {done.fulfilment_status}")


@rewards_app.command("member")
def member_rewards(member: Annotated[str, typer.Argument(help="the member's id")],
                   workspace: WorkspaceOpt = "default") -> None:
    """A member's reward redemptions, newest first."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty import rewards

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        table = Table("id", "reward", "quantity", "points", "status", "fulfilment", "redeemed at")
        for view in rewards.redemption_views(session, rewards.member_redemptions(session, ws.id, member)):
            table.add_row(view.id, view.reward_code, str(view.quantity), f"{view.points:,}", view.status,
                          view.fulfilment_status or "-", f"{view.redeemed_at:%Y-%m-%d %H:%M}")
        out.print(table)
