"""``memberops coupons …``: coupon templates from YAML/JSON files, issue, show, void, expire, a member's
coupons. Thin, like ``memberops.cli``: parse, open one transaction, call ``loyalty.coupons``, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

coupons_app = typer.Typer(help="Coupons: templates, issue, show, void, expire.", no_args_is_help=True)
templates_app = typer.Typer(help="Coupon templates (declarative YAML/JSON files).", no_args_is_help=True)
coupons_app.add_typer(templates_app, name="templates")

WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="workspace slug")]
FileArg = Annotated[Path, typer.Argument(help="a YAML or JSON file", exists=True, dir_okay=False)]


def _read(path: Path) -> Any:
    import yaml

    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)


def _parsed(model: Any, path: Path) -> Any:
    """The file as ``model``; a bad file exits 2 naming each bad field."""
    from pydantic import ValidationError

    from memberops.cli import err

    try:
        return model.model_validate(_read(path))
    except ValidationError as exc:
        for error in exc.errors():
            err.print(f"[red]error[/red] {'.'.join(str(p) for p in error['loc']) or 'file'}: {error['msg']}")
        raise typer.Exit(2) from None


@templates_app.command("list")
def templates_list(workspace: WorkspaceOpt = "default") -> None:
    """Every template with its version, stock and coupons issued."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty import coupon_templates

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        table = Table("code", "name", "kind", "version", "issued", "stock", "shared code", "status")
        for template in coupon_templates.list_templates(session, ws.id):
            view = coupon_templates.template_view(session, template)
            table.add_row(view.code, view.name, view.terms.kind, str(view.version), f"{view.issued_count:,}",
                          f"{view.stock:,}" if view.stock else "-", view.shared_code or "-", view.status)
        out.print(table)


@templates_app.command("create")
def templates_create(file: FileArg, workspace: WorkspaceOpt = "default") -> None:
    """Create a template from a file (code, name, terms: kind, amount_off/percent_off…, validity…)."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.cli import _context, out
    from memberops.loyalty import coupon_templates
    from memberops.loyalty.coupon_schemas import CouponTemplateIn

    spec = _parsed(CouponTemplateIn, file)
    with _context() as context, context.store.transaction() as session:
        ws = accounts.ensure_workspace(session, workspace)
        template = coupon_templates.create_template(session, ws.id, spec, actor=Actor.cli())
        out.print(f"created coupon template {template.code} (version {template.version})")


@templates_app.command("update")
def templates_update(template: Annotated[str, typer.Argument(help="the template's code or id")], file: FileArg,
                     workspace: WorkspaceOpt = "default") -> None:
    """Change a template from a file of the fields to change; new terms make a new version."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.cli import _context, out
    from memberops.loyalty import coupon_templates
    from memberops.loyalty.coupon_schemas import CouponTemplateUpdate

    change = _parsed(CouponTemplateUpdate, file)
    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        updated = coupon_templates.update_template(session, ws.id, template, change, actor=Actor.cli())
        out.print(f"coupon template {updated.code} is at version {updated.version} ({updated.status})")


@templates_app.command("export")
def templates_export(template: Annotated[str, typer.Argument(help="the template's code or id")],
                     workspace: WorkspaceOpt = "default") -> None:
    """Print a template as YAML that `templates create` accepts."""
    import yaml

    from memberops.accounts import service as accounts
    from memberops.cli import _context
    from memberops.loyalty import coupon_templates

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        view = coupon_templates.template_view(session, coupon_templates.get_template(session, ws.id, template))
    document = view.model_dump(mode="json", include={"code", "name", "description", "shared_code", "stock",
                                                     "per_member_limit", "terms"}, exclude_none=True)
    document["terms"] = view.terms.model_dump(mode="json", exclude_defaults=True) | {"kind": view.terms.kind}
    print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")


@coupons_app.command("issue")
def issue(
    template: Annotated[str, typer.Option(help="the template's code or id")],
    member: Annotated[str, typer.Option(help="the member's id")],
    key: Annotated[str, typer.Option(help="idempotency key: the same key issues nothing more")],
    workspace: WorkspaceOpt = "default",
) -> None:
    """Issue a coupon to a member; prints its code as the last word."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.cli import _context, out
    from memberops.loyalty import coupons
    from memberops.loyalty.coupon_rules import display_code

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        issued = coupons.issue_coupon(session, ws.id, template, member, key, actor=Actor.cli())
        note = " (already issued with this key)" if issued.is_replay else ""
        out.print(f"coupon valid until {issued.coupon.valid_until:%Y-%m-%d %H:%M} UTC{note}")
    print(f"code: {display_code(issued.coupon.code)}")


@coupons_app.command("show")
def show(code: Annotated[str, typer.Argument(help="the coupon's code")],
         member: Annotated[str | None, typer.Option(help="for a shared code: whose coupon")] = None,
         workspace: WorkspaceOpt = "default") -> None:
    """A coupon, its terms and its redemptions."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty import coupons

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        coupon = coupons.find_coupon(session, ws.id, code, member_id=member)
        (view,) = coupons.coupon_views(session, [coupon])
        table = Table(title=f"coupon {view.code}", show_header=False)
        for label, value in [("template", f"{view.template_code} v{view.template_version}"), ("kind", view.kind),
                             ("member", view.member_id), ("status", view.status),
                             ("valid", f"{view.valid_from:%Y-%m-%d %H:%M} – {view.valid_until:%Y-%m-%d %H:%M} UTC"),
                             ("restored", str(view.restored_count))]:
            table.add_row(label, value)
        for r in coupons.redemptions_of(session, coupon.id):
            table.add_row("redeemed", f"{r.order_key} {r.discount} off{' (restored)' if r.restored_at else ''}")
        out.print(table)


@coupons_app.command("void")
def void(code: Annotated[str, typer.Argument(help="the coupon's code")],
         reason: Annotated[str, typer.Option(help="why (kept in the audit log)")],
         member: Annotated[str | None, typer.Option(help="for a shared code: whose coupon")] = None,
         workspace: WorkspaceOpt = "default") -> None:
    """Withdraw an unused coupon."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.cli import _context, out
    from memberops.loyalty import coupons

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        coupons.void_coupon(session, ws.id, code, reason, actor=Actor.cli(), member_id=member)
        out.print("voided")


@coupons_app.command("expire")
def expire(workspace: WorkspaceOpt = "default") -> None:
    """Mark unused coupons past their validity expired now (the scheduler also does this hourly)."""
    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor, record
    from memberops.cli import _context, out
    from memberops.loyalty import coupons

    with _context() as context, context.store.transaction() as session:
        ws = accounts.get_workspace(session, workspace)
        count = coupons.expire_coupons(session, workspace_id=ws.id)
        record(session, Actor.cli(), "coupon.expire", workspace_id=ws.id, detail={"expired": count})
        out.print(f"expired {count:,} coupons")


@coupons_app.command("member")
def member_coupons(member: Annotated[str, typer.Argument(help="the member's id")],
                   workspace: WorkspaceOpt = "default") -> None:
    """A member's coupons, newest first."""
    from memberops.accounts import service as accounts
    from memberops.cli import _context, out
    from memberops.loyalty import coupons

    with _context() as context, context.store.read() as session:
        ws = accounts.get_workspace(session, workspace)
        table = Table("code", "template", "kind", "status", "valid until")
        for view in coupons.coupon_views(session, coupons.member_coupons(session, ws.id, member)):
            table.add_row(view.code, view.template_code, view.kind, view.status, f"{view.valid_until:%Y-%m-%d}")
        out.print(table)
