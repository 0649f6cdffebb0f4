"""Coupons over HTTP: templates (``/coupon-templates``), issue, redeem, read and void (``/coupons``), a
member's coupons; and benefits (``/benefit-definitions``, ``/members/{member_id}/benefits``)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from memberops.accounts import service as accounts
from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.api.deps import Caller, SessionDep, require_scope
from memberops.api.errors import problem_responses
from memberops.identity.errors import MemberNotFound
from memberops.ids import new_id
from memberops.loyalty import benefits, coupon_templates, coupons
from memberops.loyalty.benefit_models import BenefitGrant
from memberops.loyalty.benefit_schemas import (
    BenefitDefinitionIn,
    BenefitDefinitionOut,
    BulkGrantIn,
    BulkGrantOut,
    ConsumeIn,
    ConsumeOut,
    GrantIn,
    GrantOut,
    MemberBenefitOut,
    MemberBenefits,
)
from memberops.loyalty.coupon_errors import (
    BenefitExists,
    BenefitNotFound,
    CouponIssueLimitReached,
    CouponNotFound,
    CouponNotRedeemable,
    CouponNotVoidable,
    CouponSoldOut,
    CouponTemplateExists,
    CouponTemplateNotFound,
    CouponTemplateUnavailable,
    IdempotencyKeyReused,
    InsufficientBenefitQuota,
    InvalidCouponTemplate,
)
from memberops.loyalty.coupon_rules import CENT, BasketItem, display_code
from memberops.loyalty.coupon_schemas import (
    CouponOut,
    CouponPage,
    CouponStatus,
    CouponTemplateIn,
    CouponTemplateOut,
    CouponTemplateUpdate,
    IssueIn,
    OrderContextIn,
    QuoteIn,
    QuoteOut,
    RedemptionOut,
    VoidIn,
)

router = APIRouter(tags=["coupons"])
AUTH_ERRORS = (AuthenticationFailed, MissingScope)


def require_any_scope(*scopes: str) -> Callable[..., Caller]:
    """A dependency admitting API keys granted any of ``scopes`` (or ``admin``): reads a POS (``loyalty``)
    and a reporting tool (``read``) both need."""
    authenticated = require_scope(None)

    # A default, not ``Annotated``: postponed annotations cannot see the local ``authenticated``.
    def dependency(caller: Caller = Depends(authenticated)) -> Caller:  # noqa: B008
        if not any(accounts.has_scope(caller.api_key, scope) for scope in scopes):
            raise MissingScope(" or ".join(scopes), list(caller.api_key.scopes))
        return caller

    return dependency


LoyaltyCaller = Annotated[Caller, Depends(require_scope("loyalty"))]
AdminCaller = Annotated[Caller, Depends(require_scope("admin"))]
ReaderCaller = Annotated[Caller, Depends(require_any_scope("loyalty", "read"))]


# --- templates ------------------------------------------------------------------------------------------


@router.get("/coupon-templates", response_model=list[CouponTemplateOut], responses=problem_responses(*AUTH_ERRORS))
def list_coupon_templates(session: SessionDep, caller: ReaderCaller) -> list[CouponTemplateOut]:
    return [coupon_templates.template_view(session, t) for t in coupon_templates.list_templates(session, caller.workspace.id)]


@router.post("/coupon-templates", response_model=CouponTemplateOut, status_code=201,
             responses=problem_responses(*AUTH_ERRORS, CouponTemplateExists))
def create_coupon_template(body: CouponTemplateIn, session: SessionDep, caller: AdminCaller) -> CouponTemplateOut:
    """A new coupon template (version 1)."""
    template = coupon_templates.create_template(session, caller.workspace.id, body, actor=caller.actor)
    return coupon_templates.template_view(session, template)


@router.get("/coupon-templates/{template}", response_model=CouponTemplateOut,
            responses=problem_responses(*AUTH_ERRORS, CouponTemplateNotFound))
def get_coupon_template(template: str, session: SessionDep, caller: ReaderCaller) -> CouponTemplateOut:
    """A template by id or code, with its current terms."""
    return coupon_templates.template_view(session, coupon_templates.get_template(session, caller.workspace.id, template))


@router.patch("/coupon-templates/{template}", response_model=CouponTemplateOut,
              responses=problem_responses(*AUTH_ERRORS, CouponTemplateNotFound, InvalidCouponTemplate))
def update_coupon_template(
    template: str, body: CouponTemplateUpdate, session: SessionDep, caller: AdminCaller
) -> CouponTemplateOut:
    """Change a template; new ``terms`` make a new version (coupons already issued keep their terms);
    ``status: archived`` stops issuing."""
    updated = coupon_templates.update_template(session, caller.workspace.id, template, body, actor=caller.actor)
    return coupon_templates.template_view(session, updated)


# --- coupons --------------------------------------------------------------------------------------------


@router.post("/coupons/issue", response_model=CouponOut, status_code=201,
             responses={200: {"description": "a replay of the idempotency key: the coupon issued then"},
                        **problem_responses(*AUTH_ERRORS, CouponTemplateNotFound, MemberNotFound,
                                            CouponTemplateUnavailable, CouponSoldOut, CouponIssueLimitReached,
                                            IdempotencyKeyReused)})
def issue_coupon(body: IssueIn, session: SessionDep, caller: LoyaltyCaller, response: Response) -> CouponOut:
    """Issue a coupon of a template to a member; a replay of the idempotency key returns the same coupon."""
    issued = coupons.issue_coupon(session, caller.workspace.id, body.template, body.member_id, body.idempotency_key,
                                  actor=caller.actor)
    if issued.is_replay:
        response.status_code = 200
    return coupons.coupon_views(session, [issued.coupon])[0]


@router.post("/coupons/{code}/redeem", response_model=RedemptionOut,
             responses=problem_responses(*AUTH_ERRORS, CouponNotFound, MemberNotFound, CouponNotRedeemable,
                                         CouponSoldOut, CouponIssueLimitReached))
def redeem_coupon(code: str, body: OrderContextIn, session: SessionDep, caller: LoyaltyCaller) -> RedemptionOut:
    """Redeem a coupon on an order: 200 with the discount, or 409 ``coupon_not_redeemable`` whose
    ``facts.reason`` says why (already_redeemed, expired, not_yet_valid, wrong_channel, wrong_store,
    below_minimum_spend, not_owner, voided, not_stackable). The same redeem replayed (same ``order_id``,
    or same ``idempotency_key``) answers with the original redemption."""
    order = coupons.OrderContext(
        member_id=body.member_id, channel=body.channel, store_id=body.store_id, amount=body.amount,
        shipping_amount=body.shipping_amount,
        order_key=coupons.OrderContext.key_for(body.channel, body.order_id, body.idempotency_key),
    )
    outcome = coupons.redeem_coupon(session, caller.workspace.id, code, order)
    assert outcome.coupon is not None and outcome.redemption is not None
    r = outcome.redemption
    return RedemptionOut(coupon_code=display_code(outcome.coupon.code), member_id=r.member_id, order_key=r.order_key,
                         channel=r.channel, store_id=r.store_id, amount=r.amount.quantize(CENT),
                         discount=r.discount.quantize(CENT),
                         gift_sku=r.gift_sku, redeemed_at=r.redeemed_at, is_replay=outcome.is_replay)


@router.post("/coupons/quote", response_model=QuoteOut, responses=problem_responses(*AUTH_ERRORS, MemberNotFound))
def quote_coupons(body: QuoteIn, session: SessionDep, caller: LoyaltyCaller) -> QuoteOut:
    """Price a basket with the codes presented, redeeming nothing: each code's discount (and gift) or the
    reason it does not apply, with stacking checked across them. Exactly what a redeem would do now."""
    order = coupons.OrderContext(
        member_id=body.member_id, channel=body.channel, store_id=body.store_id, amount=body.amount,
        shipping_amount=min(body.shipping_amount, body.amount),
        items=tuple(BasketItem(i.sku, i.quantity, i.amount) for i in body.items),
        order_key=coupons.OrderContext.key_for(body.channel, body.order_id, f"quote:{new_id()}"),
    )
    quoted = coupons.quote_coupons(session, caller.workspace.id, body.coupon_codes, order)
    return QuoteOut(total_discount=sum((q.discount for q in quoted), Decimal("0.00")), coupons=quoted)


@router.get("/coupons/{code}", response_model=CouponOut, responses=problem_responses(*AUTH_ERRORS, CouponNotFound))
def get_coupon(code: str, session: SessionDep, caller: ReaderCaller,
               member_id: Annotated[str | None, Query(description="for a shared code: whose coupon")] = None,
               ) -> CouponOut:
    """A coupon by its code (any formatting: ``abcd-2345-efgh`` finds ``ABCD2345EFGH``)."""
    return coupons.coupon_views(session, [coupons.find_coupon(session, caller.workspace.id, code,
                                                              member_id=member_id)])[0]


@router.post("/coupons/{code}/void", response_model=CouponOut,
             responses=problem_responses(*AUTH_ERRORS, CouponNotFound, CouponNotVoidable))
def void_coupon(code: str, body: VoidIn, session: SessionDep, caller: AdminCaller,
                member_id: Annotated[str | None, Query(description="for a shared code: whose coupon")] = None,
                ) -> CouponOut:
    """Withdraw an unused coupon."""
    coupon = coupons.void_coupon(session, caller.workspace.id, code, body.reason, actor=caller.actor,
                                 member_id=member_id)
    return coupons.coupon_views(session, [coupon])[0]


@router.get("/members/{member_id}/coupons", response_model=CouponPage,
            responses=problem_responses(*AUTH_ERRORS, MemberNotFound))
def member_coupons(member_id: str, session: SessionDep, caller: ReaderCaller,
                   status: CouponStatus | None = None) -> CouponPage:
    """A member's coupons, newest first."""
    held = coupons.member_coupons(session, caller.workspace.id, member_id, status=status)
    return CouponPage(items=coupons.coupon_views(session, held))


# --- benefits -------------------------------------------------------------------------------------------


@router.get("/benefit-definitions", response_model=list[BenefitDefinitionOut], tags=["benefits"],
            responses=problem_responses(*AUTH_ERRORS))
def list_benefit_definitions(session: SessionDep, caller: ReaderCaller) -> list[BenefitDefinitionOut]:
    return [BenefitDefinitionOut.model_validate(b) for b in benefits.list_benefits(session, caller.workspace.id)]


@router.post("/benefit-definitions", response_model=BenefitDefinitionOut, status_code=201, tags=["benefits"],
             responses=problem_responses(*AUTH_ERRORS, BenefitExists))
def define_benefit(body: BenefitDefinitionIn, session: SessionDep, caller: AdminCaller) -> BenefitDefinitionOut:
    """A new benefit (priority purchase, queue-skip pass, free alteration, exclusive event…)."""
    return BenefitDefinitionOut.model_validate(benefits.define_benefit(session, caller.workspace.id, body,
                                                                       actor=caller.actor))


def _grant_out(grant: BenefitGrant, code: str, is_replay: bool = False) -> GrantOut:
    return GrantOut(id=grant.id, benefit_code=code, member_id=grant.member_id, quantity=grant.quantity,
                    remaining=grant.quantity - grant.consumed, source=grant.source, valid_from=grant.valid_from,
                    valid_until=grant.valid_until, is_replay=is_replay)


@router.post("/members/{member_id}/benefits/grant", response_model=GrantOut, status_code=201, tags=["benefits"],
             responses={200: {"description": "a replay of the idempotency key: the grant made then"},
                        **problem_responses(*AUTH_ERRORS, MemberNotFound, BenefitNotFound, IdempotencyKeyReused)})
def grant_benefit(member_id: str, body: GrantIn, session: SessionDep, caller: LoyaltyCaller,
                  response: Response) -> GrantOut:
    """Give a member a quota of a benefit; a replay of the idempotency key gives nothing more."""
    granted = benefits.grant_benefit(session, caller.workspace.id, member_id, body.benefit_code, body.quantity,
                                     body.source, body.idempotency_key, valid_until=body.valid_until,
                                     actor=caller.actor)
    if granted.is_replay:
        response.status_code = 200
    return _grant_out(granted.grant, granted.benefit.code, granted.is_replay)


@router.post("/benefit-definitions/{benefit_code}/grants", response_model=BulkGrantOut, tags=["benefits"],
             responses=problem_responses(*AUTH_ERRORS, MemberNotFound, BenefitNotFound, IdempotencyKeyReused))
def grant_benefit_in_bulk(benefit_code: str, body: BulkGrantIn, session: SessionDep,
                          caller: LoyaltyCaller) -> BulkGrantOut:
    """Give many members a quota of one benefit in one request (all or nothing): each grant as
    ``POST /members/{member_id}/benefits/grant`` would make it; replayed keys give nothing more."""
    done = benefits.grant_benefits(session, caller.workspace.id, benefit_code, [
        benefits.GrantRequest(item.member_id, item.quantity, item.idempotency_key, item.valid_until)
        for item in body.grants], body.source, actor=caller.actor)
    return BulkGrantOut(benefit_code=benefit_code, granted=done.made, replayed=done.replayed)


@router.post("/members/{member_id}/benefits/{benefit_code}/consume", response_model=ConsumeOut, tags=["benefits"],
             responses=problem_responses(*AUTH_ERRORS, MemberNotFound, BenefitNotFound, InsufficientBenefitQuota,
                                         IdempotencyKeyReused))
def consume_benefit(member_id: str, benefit_code: str, body: ConsumeIn, session: SessionDep,
                    caller: LoyaltyCaller) -> ConsumeOut:
    """Use a benefit: 200 with what remains, or 409 ``insufficient_benefit_quota``; replays consume nothing."""
    used = benefits.consume_benefit(session, caller.workspace.id, member_id, benefit_code, body.quantity,
                                    body.idempotency_key, reason=body.reason)
    return ConsumeOut(benefit_code=used.benefit.code, member_id=used.member_id, consumed=used.quantity,
                      remaining=used.remaining, is_replay=used.is_replay)


@router.get("/members/{member_id}/benefits", response_model=MemberBenefits, tags=["benefits"],
            responses=problem_responses(*AUTH_ERRORS, MemberNotFound))
def member_benefits(member_id: str, session: SessionDep, caller: ReaderCaller) -> MemberBenefits:
    """A member's valid benefits with the quota remaining."""
    held = benefits.member_benefits(session, caller.workspace.id, member_id)
    member = held[0].grants[0].member_id if held else member_id
    return MemberBenefits(member_id=member, benefits=[
        MemberBenefitOut(benefit_code=b.benefit.code, name=b.benefit.name, category=b.benefit.category,
                         remaining=b.remaining, next_expiry=b.next_expiry,
                         grants=[_grant_out(g, b.benefit.code) for g in b.grants])
        for b in held
    ])
