"""Member pages: search (phone, e-mail, member number, name) and the 360° profile with its timeline.

Every role may search and open a profile: marketers and analysts to understand a member, associates to
serve the customer in front of them, admins for everything. Contact details (phone, e-mail, birthday,
address) are shown in full to the roles that contact or serve members — admin, marketer, associate —
and masked for analysts, who work on behaviour, not on reaching people.

The search box sends the query in the URL (``/members?q=…``); the access log drops query strings and the
pages never log one, so the phone or e-mail typed stays out of every log.

The profile carries the member's points panel (balance, lots by expiry, tier progress, a page of the
ledger, coupons and benefits) and, for admins, an "adjust points" form. The form holds an idempotency
key minted when the page was rendered, so sending it twice (a double click, a reload) applies it once.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request, Response
from pydantic import ValidationError

from memberops.accounts.service import Role
from memberops.api.deps import ContextDep
from memberops.api.errors import status_for
from memberops.errors import DomainError
from memberops.identity import search
from memberops.identity.errors import MemberNotFound
from memberops.insight.profile import member_profile
from memberops.lake.engine import WarehouseError
from memberops.loyalty import points
from memberops.loyalty.errors import IdempotencyKeyReused
from memberops.loyalty.profile import points_panel
from memberops.loyalty.schemas import AdjustIn
from memberops.runtime import Context
from memberops.web.rendering import ConsoleRoute, error_page, render
from memberops.web.session import ConsoleSession, Operator, require_form, require_role, see_other

log = logging.getLogger(__name__)

LAKE_UNREADABLE = "The lake could not be read just now, so this cannot be shown. Try again in a moment."

router = APIRouter(prefix="/members", route_class=ConsoleRoute, include_in_schema=False)

CONTACT_ROLES = (Role.admin, Role.marketer, Role.associate)
CONTACT_FIELDS = ("phone", "email", "birthday", "address_line", "street_number", "postcode")
TRAIT_LABELS = {
    "orders": "Orders", "units": "Units", "net_spend": "Net spend", "gross_spend": "Gross spend",
    "refunded": "Refunded", "aov": "Order value", "items_per_order": "Items per order",
    "first_purchase_at": "First purchase", "last_purchase_at": "Last purchase",
    "days_since_last_purchase": "Days since last purchase", "median_interpurchase_days": "Days between purchases",
    "discount_share": "Discount share", "refund_rate": "Refund rate", "online_share": "Online share",
    "preferred_channel": "Preferred channel", "preferred_category": "Preferred category",
    "preferred_store": "Preferred store", "aipl_stage": "AIPL stage", "koc_score": "Influence (KOC)",
    "referrals": "Referrals",
}
CLV_LABELS = {
    "clv": "CLV", "expected_spend": "Expected spend per order", "expected_purchases_90d": "Expected purchases, 90 days",
    "expected_purchases_365d": "Expected purchases, 1 year", "p_alive": "P(alive)", "churn_risk": "Churn risk",
}
NEXT_PURCHASE = ("next_purchase_from", "next_purchase_expected", "next_purchase_to")
GOLDEN_FIELDS = ("full_name", "first_name", "last_name", "gender", "birthday", "phone", "email", "country",
                 "province", "city", "address_line", "street_number", "postcode")


def sees_contact_details(operator: Operator) -> bool:
    return operator.user.role in CONTACT_ROLES


def mask(field: str, value: Any) -> str:
    """A contact detail with most of it hidden: ``+86138****8001``, ``a***@x.com``, ``19**-**-**``."""
    text = str(value)
    if field == "email" and "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}***@{domain}"
    if field == "phone" and len(text) > 7:
        return f"{text[:-8]}****{text[-4:]}"
    if field == "birthday":
        return f"{text[:2]}**-**-**"
    return "•••"


def shown(operator: Operator, field: str, value: Any) -> Any:
    """``value`` as this operator may see it."""
    if value is None or field not in CONTACT_FIELDS or sees_contact_details(operator):
        return value
    return mask(field, value)


def trait_moment(value: Any) -> datetime | None:
    """A trait's ISO 8601 time (``as_of``, ``computed_at``) as a time a page formats in the workspace's zone."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def trait_value(value: Any) -> str:
    """A trait as a page shows it: ``—`` for none, two decimals for fractions, dates without their time."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}"
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        return value[:10]
    return str(value)


@router.get("")
def search_page(
    request: Request, context: ContextDep, session: ConsoleSession,
    operator: Annotated[Operator, Depends(require_role())], q: str = "",
) -> Response:
    """A search box; with ``q``, the members it finds, each linking to its profile."""
    matches: list[search.MemberMatch] = []
    error = ""
    status_code = 200
    if q.strip():
        try:
            matches = search.search_members(session, context.warehouse(), operator.workspace.id, q)
        except WarehouseError:  # its SQL holds the query: neither shown nor logged
            log.error("member search: the warehouse query failed")
            error, status_code = LAKE_UNREADABLE, 503
        except DomainError as problem:  # its message never repeats the query
            error, status_code = problem.message, status_for(problem)
    return render(request, "members/search.html", status_code=status_code, operator=operator, active="members",
                  q=q, searched=bool(q.strip()), matches=matches, error=error, shown=shown)


@dataclass
class AdjustForm:
    """The "adjust points" form as sent (or fresh), with a message per bad field."""

    points: str = ""
    reason: str = ""
    idempotency_key: str = field(default_factory=lambda: f"console:{secrets.token_urlsafe(18)}")
    errors: dict[str, str] = field(default_factory=dict)


ADJUST_MESSAGES = {
    "points": "A whole number of points other than 0: 50 adds, -50 takes away.",
    "reason": "Say why, in at most 500 characters: the reason is kept in the ledger and the audit log.",
    "idempotency_key": "The form is incomplete. Reload the page and try again.",
}


def _profile_response(
    request: Request, context: Context, session: ConsoleSession, operator: Operator, member_id: str, *,
    merged_from: str = "", ledger_before: int | None = None, adjusted: int | None = None,
    adjust: AdjustForm | None = None, status_code: int = 200,
) -> Response:
    try:
        profile = member_profile(session, context.warehouse(), operator.workspace.id, member_id)
    except MemberNotFound:
        return error_page(request, 404, "No such member",
                          "No member has this id in this workspace. Search for the member instead.",
                          operator=operator)
    except WarehouseError:  # its SQL holds the member's channel keys: not logged
        log.error("member profile: the warehouse query failed")
        return error_page(request, 503, "The profile cannot be shown", LAKE_UNREADABLE, operator=operator)
    if profile.merged_from is not None:
        return see_other(f"/members/{profile.member.id}?merged_from={profile.merged_from}")
    panel = points_panel(session, operator.workspace, profile.member.id, before=ledger_before)
    golden = profile.golden or {}
    traits = profile.traits or {}
    name = search.display_name(golden.get("full_name"), golden.get("first_name"), golden.get("last_name"))
    return render(request, "members/profile.html", status_code=status_code, operator=operator, active="members",
                  profile=profile, name=name or "Unnamed member", golden=golden, golden_fields=GOLDEN_FIELDS,
                  timeline=profile.timeline(), merged_from=merged_from, shown=shown,
                  sees_contact=sees_contact_details(operator), traits=traits,
                  traits_as_of=trait_moment(traits.get("as_of")), traits_computed_at=trait_moment(traits.get("computed_at")),
                  trait_labels=TRAIT_LABELS, clv_labels=CLV_LABELS, next_purchase=NEXT_PURCHASE, value=trait_value,
                  panel=panel, ledger_before=ledger_before, adjusted=adjusted, adjust=adjust or AdjustForm())


@router.get("/{member_id}")
def profile_page(
    request: Request, context: ContextDep, session: ConsoleSession, member_id: str,
    operator: Annotated[Operator, Depends(require_role())], merged_from: str = "",
    ledger_before: int | None = None, adjusted: int | None = None,
) -> Response:
    """The 360° profile with the points panel (``ledger_before`` pages the ledger back). An id a merge
    absorbed redirects to its survivor's page, which says so."""
    return _profile_response(request, context, session, operator, member_id, merged_from=merged_from,
                             ledger_before=ledger_before, adjusted=adjusted)


@router.post("/{member_id}/points/adjust")
def adjust_points(
    request: Request, context: ContextDep, session: ConsoleSession, member_id: str,
    operator: Annotated[Operator, Depends(require_form(Role.admin))],
    points_change: Annotated[str, Form(alias="points")] = "", reason: Annotated[str, Form()] = "",
    idempotency_key: Annotated[str, Form()] = "",
) -> Response:
    """An admin's correction of the member's points (audited with its reason). The form's idempotency key
    makes a second sending of the same form a replay: it moves nothing and shows the same result."""
    form = AdjustForm(points=points_change.strip(), reason=reason, idempotency_key=idempotency_key)
    try:
        change = AdjustIn.model_validate({"points": form.points, "reason": reason, "idempotency_key": idempotency_key})
    except ValidationError as invalid:
        for error in invalid.errors():
            name = str(error["loc"][0]) if error["loc"] else "points"
            form.errors.setdefault(name, ADJUST_MESSAGES.get(name, str(error["msg"])))
        return _profile_response(request, context, session, operator, member_id, adjust=form, status_code=422)
    try:
        result = points.adjust(session, operator.workspace, member_id, points=change.points, reason=change.reason,
                               idempotency_key=change.idempotency_key, actor=operator.actor)
    except DomainError as problem:  # an unknown member shows as the profile's 404 page
        if isinstance(problem, IdempotencyKeyReused):  # this form was already used for another change
            form = AdjustForm(points=form.points, reason=form.reason)  # a fresh key for the next try
        form.errors["form"] = problem.message
        return _profile_response(request, context, session, operator, member_id, adjust=form,
                                 status_code=status_for(problem))
    moved = result.movement.available_delta - result.movement.debt_delta
    return see_other(f"/members/{quote(member_id, safe='')}?adjusted={moved}#points")
