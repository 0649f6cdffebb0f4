"""Loyalty → Rewards: the rewards catalogue with its stock, and a form to add a reward. Every role may
read it; admins and marketers (who configure loyalty) may add rewards."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from pydantic import ValidationError

from memberops.accounts.service import Role
from memberops.api.errors import status_for
from memberops.errors import DomainError
from memberops.loyalty import coupon_templates, rewards
from memberops.loyalty.benefits import list_benefits
from memberops.loyalty.reward_schemas import RewardIn
from memberops.web.rendering import ConsoleRoute, render
from memberops.web.session import ConsoleSession, Operator, require_form, require_role, see_other

router = APIRouter(prefix="/loyalty", route_class=ConsoleRoute, include_in_schema=False)

ConsolePage = Annotated[Operator, Depends(require_role())]
EditorForm = Annotated[Operator, Depends(require_form(Role.admin, Role.marketer))]
EDITORS = (Role.admin, Role.marketer)


def _page(request: Request, session: ConsoleSession, operator: Operator, *, status_code: int = 200, error: str = "",
          form: dict[str, str] | None = None, created: str = "") -> Response:
    catalogue = [rewards.reward_view(session, r) for r in rewards.list_rewards(session, operator.workspace.id)]
    return render(request, "loyalty/rewards.html", status_code=status_code, operator=operator, active="rewards",
                  rewards=catalogue, can_edit=operator.user.role in EDITORS, error=error, form=form or {},
                  created=created,
                  templates=[t.code for t in coupon_templates.list_templates(session, operator.workspace.id,
                                                                            include_archived=False)],
                  benefits=[b.code for b in list_benefits(session, operator.workspace.id)])


@router.get("/rewards")
def rewards_page(request: Request, session: ConsoleSession, operator: ConsolePage, created: str = "") -> Response:
    """The catalogue: price, stock left, limits, window and status of every reward."""
    return _page(request, session, operator, created=created)


@router.post("/rewards")
def create_reward(
    request: Request, session: ConsoleSession, operator: EditorForm,
    code: Annotated[str, Form()] = "", name: Annotated[str, Form()] = "", kind: Annotated[str, Form()] = "item",
    points: Annotated[str, Form()] = "", cash_amount: Annotated[str, Form()] = "", stock: Annotated[str, Form()] = "",
    per_member_limit: Annotated[str, Form()] = "", coupon_template: Annotated[str, Form()] = "",
    benefit_code: Annotated[str, Form()] = "", description: Annotated[str, Form()] = "",
) -> Response:
    """Add a reward; a bad field (422) or a taken code (409) shows in the form with what was typed."""
    form = {"code": code, "name": name, "kind": kind, "points": points, "cash_amount": cash_amount, "stock": stock,
            "per_member_limit": per_member_limit, "coupon_template": coupon_template, "benefit_code": benefit_code,
            "description": description}
    given = {key: value.strip() for key, value in form.items() if value.strip()}
    if kind != "coupon":
        given.pop("coupon_template", None)
    if kind != "benefit":
        given.pop("benefit_code", None)
    try:
        spec = RewardIn.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "form"
        return _page(request, session, operator, status_code=422, error=f"{field}: {first['msg']}", form=form)
    try:
        reward = rewards.create_reward(session, operator.workspace, spec, actor=operator.actor)
    except DomainError as error:
        return _page(request, session, operator, status_code=status_for(error), error=error.message, form=form)
    return see_other(f"/loyalty/rewards?created={reward.code}")
