"""Loyalty pages: the coupon templates, and a member's coupons and benefits. Every role may read them."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response

from memberops.api.errors import status_for
from memberops.errors import DomainError
from memberops.loyalty import benefits, coupon_templates, coupons
from memberops.web.rendering import ConsoleRoute, error_page, render
from memberops.web.session import ConsoleSession, Operator, require_role, see_other

router = APIRouter(prefix="/loyalty", route_class=ConsoleRoute, include_in_schema=False)

ConsolePage = Annotated[Operator, Depends(require_role())]


@router.get("/coupons")
def coupons_page(request: Request, session: ConsoleSession, operator: ConsolePage, member_id: str = "") -> Response:
    """Every coupon template with its terms and stock, coupons by status, and a member look-up."""
    if member_id.strip():
        return see_other(f"/loyalty/members/{quote(member_id.strip(), safe='')}")
    views = [coupon_templates.template_view(session, t) for t in coupon_templates.list_templates(session, operator.workspace.id)]
    return render(request, "loyalty/coupons.html", operator=operator, active="coupons", templates=views,
                  counts=coupons.coupon_counts(session, operator.workspace.id))


@router.get("/members/{member_id}")
def member_page(request: Request, session: ConsoleSession, operator: ConsolePage, member_id: str) -> Response:
    """A member's coupons (newest first) and benefits with the quota remaining."""
    try:
        held = coupons.coupon_views(session, coupons.member_coupons(session, operator.workspace.id, member_id))
        granted = benefits.member_benefits(session, operator.workspace.id, member_id)
    except DomainError as error:
        return error_page(request, status_for(error), "Member not found", error.message, operator=operator)
    return render(request, "loyalty/member.html", operator=operator, active="coupons", member_id=member_id,
                  coupons=held, benefits=granted)
