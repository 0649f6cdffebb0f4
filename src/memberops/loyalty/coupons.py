"""Coupons: issue, redeem (and quote), void, expire and refund-restore; templates are in
``coupon_templates``, the live order hooks in ``coupon_live``.

Every write is idempotent: an issue on its idempotency key, a redeem on its order (``order:<channel>:
<order_id>``) or idempotency key; a replay answers with the original outcome and changes nothing.
Every status change is a conditional ``UPDATE … WHERE status = <from>`` (``coupon_rules.TRANSITIONS``):
of two terminals redeeming one coupon at once exactly one moves it; the other, once the winner commits,
finds it redeemed (PostgreSQL re-checks the condition after waiting for the row; SQLite's write
transactions are serialised by ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.db.dialect import insert_many, locked
from memberops.errors import DomainError
from memberops.identity.models import Member
from memberops.identity.service import get_member
from memberops.ids import new_id
from memberops.loyalty import coupon_rules as rules
from memberops.loyalty.coupon_errors import (
    CouponIssueLimitReached,
    CouponNotFound,
    CouponNotRedeemable,
    CouponNotVoidable,
    CouponSoldOut,
    CouponTemplateUnavailable,
    IdempotencyKeyReused,
)
from memberops.loyalty.coupon_models import Coupon, CouponRedemption, CouponTemplate
from memberops.loyalty.coupon_schemas import (
    CouponOut,
    CouponTerms,
    QuotedCoupon,
)
from memberops.loyalty.coupon_templates import get_template, lock_template, terms_of

CODE_ATTEMPTS = 5  # a generated code colliding once is ~1e-12 likely at a billion codes; five is plenty

def rows_changed(result: Result[Any]) -> int:
    """The rows an ``UPDATE`` changed: how a conditional update tells the request that won from the rest."""
    return int(cast(CursorResult[Any], result).rowcount)


# --- issue ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    coupon: Coupon
    is_replay: bool


def issue_coupon(
    session: Session, workspace_id: str, template_ref: str, member_id: str, idempotency_key: str,
    *, actor: Actor | None = None, now: datetime | None = None,
) -> Issued:
    """Issue a coupon of the template to the member; a replay of ``idempotency_key`` returns the same coupon.

    Raises :class:`CouponTemplateUnavailable` (archived, window closed), :class:`CouponSoldOut` (stock),
    :class:`CouponIssueLimitReached` (per-member limit) or :class:`IdempotencyKeyReused` (the key issued
    something else).
    """
    now = now or utcnow()
    template = get_template(session, workspace_id, template_ref)
    member = get_member(session, workspace_id, member_id)
    replay = _replayed_issue(session, workspace_id, idempotency_key, template.id, member.id)
    if replay is not None:
        return Issued(replay, True)
    template = lock_template(session, template)
    replay = _replayed_issue(session, workspace_id, idempotency_key, template.id, member.id)
    if replay is not None:  # the same key issued by a request that committed while we waited for the lock
        return Issued(replay, True)
    valid_from, valid_until = _issuing_window(session, template, now)
    if template.stock is not None and template.issued_count >= template.stock:
        raise CouponSoldOut(template.code, template.stock)
    if template.per_member_limit is not None and _held(session, template.id, member.id) >= template.per_member_limit:
        raise CouponIssueLimitReached(template.code, member.id, template.per_member_limit)
    coupon = _insert_coupon(session, workspace_id, template, member.id, idempotency_key, now, valid_from, valid_until)
    template.issued_count += 1
    session.flush()
    if actor is not None:
        record(session, actor, "coupon.issue", workspace_id=workspace_id, target_type="coupon", target_id=coupon.id,
               detail={"template": template.code, "member_id": member.id})
    return Issued(coupon, False)


def _issuing_window(session: Session, template: CouponTemplate, now: datetime) -> tuple[datetime, datetime]:
    """The validity of a coupon issued from ``template`` at ``now``; refused when the template is archived
    or its validity window has closed."""
    if template.status != "active":
        raise CouponTemplateUnavailable(template.code, "archived")
    try:
        return rules.coupon_validity(terms_of(session, template.id, template.version), now)
    except rules.Ended:
        raise CouponTemplateUnavailable(template.code, "its validity window has closed") from None


def issue_coupons(
    session: Session, workspace_id: str, template_ref: str, issues: Sequence[tuple[str, str]],
    *, actor: Actor | None = None, now: datetime | None = None,
) -> list[Issued]:
    """:func:`issue_coupon` for each ``(member_id, idempotency_key)`` of ``issues`` in turn, with the same
    resulting rows and answers, in a few statements: the replays, the members' coupons held and the codes
    taken read at once, the new coupons written in one bulk insert. An issue that :func:`issue_coupon`
    would refuse raises the same error, after the issues before it are written (as the loop would)."""
    now = now or utcnow()
    if not issues:
        return []
    template = get_template(session, workspace_id, template_ref)
    wanted = sorted({member_id for member_id, _ in issues})
    members = {member.id: member for member in session.scalars(select(Member).where(Member.id.in_(wanted)))}
    current = {member_id: get_member(session, workspace_id, member_id).id  # absorbed: their survivor
               if member_id not in members or members[member_id].merged_into_id is not None
               or members[member_id].workspace_id != workspace_id else member_id for member_id in wanted}
    template = lock_template(session, template)
    stored = {coupon.issue_key: coupon for coupon in session.scalars(select(Coupon).where(
        Coupon.workspace_id == workspace_id, Coupon.issue_key.in_([key for _, key in issues]))
        .execution_options(populate_existing=True))}
    held: dict[str, int] = {member_id: count for member_id, count in session.execute(
        select(Coupon.member_id, func.count()).where(
            Coupon.template_id == template.id, Coupon.member_id.in_(sorted(set(current.values()))))
        .group_by(Coupon.member_id))}
    made: dict[str, dict[str, Any]] = {}  # issue key → the new coupon's row
    answers: list[tuple[str, bool]] = []  # (issue key, is replay)
    failure: DomainError | None = None
    for member_id, key in issues:
        member = current[member_id]
        earlier = stored.get(key)
        if earlier is not None or key in made:
            same = (earlier.template_id, earlier.member_id) == (template.id, member) if earlier is not None \
                else made[key]["member_id"] == member
            if not same:
                failure = IdempotencyKeyReused(key)
                break
            answers.append((key, True))
            continue
        try:
            if not made:  # checked once, as the first new issue would
                valid_from, valid_until = _issuing_window(session, template, now)
            if template.stock is not None and template.issued_count + len(made) >= template.stock:
                raise CouponSoldOut(template.code, template.stock)
            if template.per_member_limit is not None and held.get(member, 0) >= template.per_member_limit:
                raise CouponIssueLimitReached(template.code, member, template.per_member_limit)
        except DomainError as exc:
            failure = exc
            break
        held[member] = held.get(member, 0) + 1
        made[key] = {"id": new_id(), "member_id": member, "issue_key": key, "valid_from": valid_from,
                     "valid_until": valid_until}
        answers.append((key, False))
    if made:
        rows = list(made.values())
        codes = _unused_codes(session, workspace_id, template, len(rows))
        insert_many(session, insert(Coupon), {
            "id": [row["id"] for row in rows], "member_id": [row["member_id"] for row in rows],
            "issue_key": [row["issue_key"] for row in rows], "code": codes,
            "unique_code": [None if template.shared_code else code for code in codes],
            "valid_from": [row["valid_from"] for row in rows], "valid_until": [row["valid_until"] for row in rows],
        }, {"workspace_id": workspace_id, "template_id": template.id, "template_version": template.version,
            "status": "issued", "issued_at": now, "redeemed_at": None, "restored_count": 0})
        template.issued_count += len(rows)
        session.flush()
        stored.update({coupon.issue_key: coupon for coupon in session.scalars(select(Coupon).where(
            Coupon.id.in_([row["id"] for row in rows])))})
        if actor is not None:
            for row in rows:
                record(session, actor, "coupon.issue", workspace_id=workspace_id, target_type="coupon",
                       target_id=row["id"], detail={"template": template.code, "member_id": row["member_id"]})
    if failure is not None:
        raise failure
    return [Issued(stored[key], is_replay) for key, is_replay in answers]


def _unused_codes(session: Session, workspace_id: str, template: CouponTemplate, count: int) -> list[str]:
    """``count`` codes for new coupons of ``template``: its shared code, or generated codes no coupon of the
    workspace holds (nor another of these)."""
    if template.shared_code:
        return [template.shared_code] * count
    codes = [rules.generate_code() for _ in range(count)]
    for _ in range(CODE_ATTEMPTS):
        taken = set(session.scalars(select(Coupon.unique_code).where(Coupon.workspace_id == workspace_id,
                                                                     Coupon.unique_code.in_(codes))))
        seen: set[str] = set()
        clashes = 0
        for index, code in enumerate(codes):
            if code in taken or code in seen:
                codes[index] = rules.generate_code()
                clashes += 1
            seen.add(codes[index])
        if not clashes:
            return codes
    raise RuntimeError("could not draw unused coupon codes")


def _replayed_issue(session: Session, workspace_id: str, key: str, template_id: str, member_id: str) -> Coupon | None:
    coupon = session.scalar(select(Coupon).where(Coupon.workspace_id == workspace_id, Coupon.issue_key == key)
                            .execution_options(populate_existing=True))
    if coupon is None:
        return None
    if coupon.template_id != template_id or coupon.member_id != member_id:
        raise IdempotencyKeyReused(key)
    return coupon


def _held(session: Session, template_id: str, member_id: str) -> int:
    """Coupons of the template the member was ever issued (used ones count: a limit is on issues)."""
    return int(session.scalar(select(func.count()).select_from(Coupon).where(
        Coupon.template_id == template_id, Coupon.member_id == member_id)) or 0)


def _insert_coupon(
    session: Session, workspace_id: str, template: CouponTemplate, member_id: str, key: str, now: datetime,
    valid_from: datetime, valid_until: datetime,
) -> Coupon:
    for _ in range(CODE_ATTEMPTS):
        code = template.shared_code or rules.generate_code()
        coupon = Coupon(
            workspace_id=workspace_id, template_id=template.id, template_version=template.version, code=code,
            unique_code=None if template.shared_code else code, member_id=member_id, status="issued", issue_key=key,
            issued_at=now, valid_from=valid_from, valid_until=valid_until,
        )
        try:
            with session.begin_nested():
                session.add(coupon)
        except IntegrityError:  # a code collision (retry) or the key taken by another template's issue
            if session.scalar(select(Coupon.id).where(Coupon.workspace_id == workspace_id,
                                                      Coupon.issue_key == key)) is not None:
                raise IdempotencyKeyReused(key) from None
            continue
        return coupon
    raise RuntimeError("could not draw an unused coupon code")


# --- reading --------------------------------------------------------------------------------------------


def find_coupon(session: Session, workspace_id: str, code: str, *, member_id: str | None = None) -> Coupon:
    """The coupon with unique ``code``; for a shared code, ``member_id``'s latest coupon of it."""
    canonical = rules.normalise_code(code)
    coupon = session.scalar(select(Coupon).where(Coupon.workspace_id == workspace_id, Coupon.unique_code == canonical))
    if coupon is not None:
        return coupon
    if member_id is not None:
        member = get_member(session, workspace_id, member_id)
        coupon = session.scalar(
            select(Coupon).where(Coupon.workspace_id == workspace_id, Coupon.code == canonical,
                                 Coupon.member_id == member.id).order_by(Coupon.issued_at.desc(), Coupon.id.desc())
        )
        if coupon is not None:
            return coupon
    raise CouponNotFound(code)


def member_coupons(session: Session, workspace_id: str, member_id: str, *, status: str | None = None) -> Sequence[Coupon]:
    """A member's coupons, newest first."""
    member = get_member(session, workspace_id, member_id)
    query = select(Coupon).where(Coupon.workspace_id == workspace_id, Coupon.member_id == member.id)
    if status is not None:
        query = query.where(Coupon.status == status)
    return session.scalars(query.order_by(Coupon.issued_at.desc(), Coupon.id.desc())).all()


def coupon_views(session: Session, coupons: Sequence[Coupon]) -> list[CouponOut]:
    """Coupons with their template's code and the terms they were issued under."""
    keys = {(c.template_id, c.template_version) for c in coupons}
    codes = dict(session.execute(select(CouponTemplate.id, CouponTemplate.code)
                                 .where(CouponTemplate.id.in_({k[0] for k in keys}))).all()) if keys else {}
    terms = {key: terms_of(session, *key) for key in keys}
    return [
        CouponOut(
            id=c.id, code=rules.display_code(c.code), template_code=codes[c.template_id],
            template_version=c.template_version, member_id=c.member_id, status=c.status,  # type: ignore[arg-type]
            kind=terms[(c.template_id, c.template_version)].kind, issued_at=c.issued_at, valid_from=c.valid_from,
            valid_until=c.valid_until, redeemed_at=c.redeemed_at, restored_count=c.restored_count,
            terms=terms[(c.template_id, c.template_version)],
        )
        for c in coupons
    ]


# --- redeem ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderContext:
    """The order coupons are redeemed on. ``amount`` is before coupons, shipping included."""

    member_id: str
    channel: str
    amount: Decimal
    order_key: str
    store_id: str | None = None
    shipping_amount: Decimal = Decimal("0")
    items: tuple[rules.BasketItem, ...] = ()

    @staticmethod
    def key_for(channel: str, order_id: str | None, idempotency_key: str | None) -> str:
        """The key a redeem is recognised by: its order when known, else the caller's idempotency key."""
        return f"order:{channel}:{order_id}" if order_id else f"key:{idempotency_key}"


@dataclass
class Redeemed:
    """The outcome for one code: a redemption, or the reason (``reason``) or error (``problem``) why not."""

    code: str
    coupon: Coupon | None = None
    redemption: CouponRedemption | None = None
    reason: rules.Reason | None = None
    problem: DomainError | None = None
    is_replay: bool = False
    terms: CouponTerms | None = field(default=None, repr=False)

    @property
    def coupon_id(self) -> str:
        """The coupon's id; only for outcomes that found their coupon."""
        assert self.coupon is not None
        return self.coupon.id


def redeem_coupon(session: Session, workspace_id: str, code: str, order: OrderContext,
                  *, now: datetime | None = None) -> Redeemed:
    """Redeem one coupon on ``order``; raises :class:`CouponNotRedeemable` (with the reason),
    :class:`CouponNotFound`, or an issue error for a shared code the member cannot be issued."""
    (outcome,) = redeem_coupons(session, workspace_id, [code], order, now=now)
    if outcome.problem is not None:
        raise outcome.problem
    if outcome.reason is not None:
        raise CouponNotRedeemable(outcome.code, outcome.reason.value)
    return outcome


def redeem_coupons(
    session: Session, workspace_id: str, codes: Sequence[str], order: OrderContext, *, now: datetime | None = None,
) -> list[Redeemed]:
    """Redeem ``codes`` together on ``order``; one outcome per code, in order, never raising for a code
    that does not apply (its ``reason`` or ``problem`` says why).

    A code already redeemed on this same order (``order.order_key``) is a replay and answers with that
    redemption. The coupons redeemed on the order before count for stacking and for what is left to
    discount. A shared code is redeemed from the member's unused coupon of it, issued on the spot when
    the member has none and the template allows one more.
    """
    now = now or utcnow()
    member = get_member(session, workspace_id, order.member_id)
    order = OrderContext(member.id, order.channel, order.amount, order.order_key, order.store_id,
                         order.shipping_amount, order.items)
    on_order = session.execute(_ON_ORDER, {"workspace_id": workspace_id, "order_key": order.order_key}).all()
    # Restored redemptions count as replays too: a POS retrying a redeem after the order's refund gave the
    # coupon back must not spend it again on the refunded order.
    earlier = {coupon.id: redemption for redemption, coupon in on_order}
    outcomes: list[Redeemed] = []
    for code in codes:
        outcome = _resolve(session, workspace_id, rules.normalise_code(code), order, earlier, now)
        outcomes.append(outcome)
    presented_ids = {o.coupon.id for o in outcomes if o.coupon is not None}
    already = [(terms_of(session, c.template_id, c.template_version), r.discount)
               for r, c in on_order if c.id not in presented_ids and r.restored_at is None]
    pending = [o for o in outcomes if o.coupon is not None and not o.is_replay and o.reason is None]
    basket = rules.Basket(member.id, order.amount, order.channel, order.store_id, order.shipping_amount, order.items)
    presented = []
    for outcome in pending:
        assert outcome.coupon is not None
        outcome.terms = terms_of(session, outcome.coupon.template_id, outcome.coupon.template_version)
        owner = outcome.coupon.member_id
        if owner != member.id and _survivor(session, workspace_id, owner) == member.id:
            owner = member.id  # held by a person since merged into this member: theirs now
        presented.append(rules.PresentedCoupon(outcome.coupon.id, outcome.terms, owner, outcome.coupon.status,
                                               outcome.coupon.valid_from, outcome.coupon.valid_until))
    results = rules.apply_coupons(basket, presented, now, already_applied=already)
    # Coupons are moved in id order, whatever order they were presented in: two requests sharing coupons
    # then lock them in one order and never deadlock.
    for outcome, result in sorted(zip(pending, results, strict=True), key=lambda pair: pair[0].coupon_id):
        if result.reason is not None:
            replay = _redemption_on(session, outcome.coupon_id, order.order_key) \
                if result.reason is rules.Reason.already_redeemed else None
            if replay is not None:  # the same redeem, committed by a request racing this one (PostgreSQL)
                outcome.redemption, outcome.is_replay = replay, True
            else:
                outcome.reason = result.reason
            continue
        _apply(session, workspace_id, outcome, result, order, now)
    return outcomes


# Built once: constructing a statement costs about what running it costs for one coupon.
_ON_ORDER = (select(CouponRedemption, Coupon).join(Coupon, Coupon.id == CouponRedemption.coupon_id)
             .where(CouponRedemption.workspace_id == bindparam("workspace_id"),
                    CouponRedemption.order_key == bindparam("order_key")))
_BY_UNIQUE_CODE = select(Coupon).where(Coupon.workspace_id == bindparam("workspace_id"),
                                       Coupon.unique_code == bindparam("code"))
_REDEEM = (update(Coupon).where(Coupon.id == bindparam("coupon_id"), Coupon.status == "issued")
           .values(status="redeemed", redeemed_at=bindparam("now")).execution_options(synchronize_session=False))


def quote_coupons(
    session: Session, workspace_id: str, codes: Sequence[str], order: OrderContext, *, now: datetime | None = None,
) -> list[QuotedCoupon]:
    """What :func:`redeem_coupons` would do with ``codes`` on ``order``, without doing it: the redeem runs
    in a savepoint that is rolled back, so a quote can never disagree with the redeem that follows it."""
    quoted: list[QuotedCoupon] = []
    savepoint = session.begin_nested()
    try:
        for outcome in redeem_coupons(session, workspace_id, codes, order, now=now):
            if outcome.redemption is not None:
                quoted.append(QuotedCoupon(code=rules.display_code(outcome.coupon.code if outcome.coupon else outcome.code),
                                           applies=True, discount=outcome.redemption.discount.quantize(rules.CENT),
                                           gift_sku=outcome.redemption.gift_sku))
            else:
                reason = outcome.reason.value if outcome.reason else outcome.problem.code if outcome.problem else None
                quoted.append(QuotedCoupon(code=outcome.code, applies=False, discount=rules.ZERO.quantize(rules.CENT),
                                           reason=reason))
    finally:
        savepoint.rollback()
    return quoted


def known_codes(session: Session, workspace_id: str, codes: Sequence[str]) -> set[str]:
    """Which of ``codes`` (normalised) name a coupon or a template's shared code: one statement, so an
    order carrying only codes nobody issued costs no more."""
    wanted = sorted({rules.normalise_code(code) for code in codes})
    return set(session.scalars(_KNOWN_CODES, {"workspace_id": workspace_id, "codes": wanted}))


_KNOWN_CODES = (
    select(Coupon.unique_code).where(Coupon.workspace_id == bindparam("workspace_id"),
                                     Coupon.unique_code.in_(bindparam("codes", expanding=True)))
    .union(select(CouponTemplate.shared_code).where(CouponTemplate.workspace_id == bindparam("workspace_id"),
                                                    CouponTemplate.shared_code.in_(bindparam("codes", expanding=True))))
)


def _redemption_on(session: Session, coupon_id: str, order_key: str) -> CouponRedemption | None:
    """The coupon's redemption on the order, as committed now (a fresh read, not the session's memory)."""
    return session.scalar(select(CouponRedemption).where(CouponRedemption.coupon_id == coupon_id,
                                                         CouponRedemption.order_key == order_key)
                          .execution_options(populate_existing=True))


def _resolve(
    session: Session, workspace_id: str, code: str, order: OrderContext, earlier: dict[str, CouponRedemption],
    now: datetime,
) -> Redeemed:
    """Which coupon ``code`` means for this member and order (a replay if it was redeemed on the order)."""
    coupon = session.scalar(_BY_UNIQUE_CODE, {"workspace_id": workspace_id, "code": code})
    if coupon is None:
        template = session.scalar(select(CouponTemplate).where(CouponTemplate.workspace_id == workspace_id,
                                                               CouponTemplate.shared_code == code))
        if template is None:
            return Redeemed(code, problem=CouponNotFound(code))
        return _resolve_shared(session, workspace_id, code, template, order, earlier, now)
    if coupon.id in earlier:
        return Redeemed(code, coupon, earlier[coupon.id], is_replay=True)
    return Redeemed(code, coupon)


def _resolve_shared(
    session: Session, workspace_id: str, code: str, template: CouponTemplate, order: OrderContext,
    earlier: dict[str, CouponRedemption], now: datetime,
) -> Redeemed:
    held = session.scalars(select(Coupon).where(Coupon.template_id == template.id, Coupon.member_id == order.member_id)
                           .order_by(Coupon.valid_until, Coupon.id)).all()
    for coupon in held:
        if coupon.id in earlier:
            return Redeemed(code, coupon, earlier[coupon.id], is_replay=True)
    usable = [c for c in held if c.status == "issued" and c.valid_from <= now < c.valid_until]
    if usable:
        return Redeemed(code, usable[0])
    try:
        with session.begin_nested():
            issued = issue_coupon(session, workspace_id, template.id, order.member_id,
                                  f"shared:{template.id}:{order.order_key}", now=now)
    except CouponIssueLimitReached as exc:
        if held:  # the member had their share: say what became of their last one
            return Redeemed(code, held[-1])
        return Redeemed(code, problem=exc)
    except DomainError as exc:
        return Redeemed(code, problem=exc)
    return Redeemed(code, issued.coupon)


def _survivor(session: Session, workspace_id: str, member_id: str) -> str:
    return get_member(session, workspace_id, member_id).id


def _apply(
    session: Session, workspace_id: str, outcome: Redeemed, result: rules.CouponResult, order: OrderContext,
    now: datetime,
) -> None:
    """Move the coupon issued → redeemed and record the redemption, or learn why another request won."""
    coupon = outcome.coupon
    assert coupon is not None
    moved = rows_changed(session.execute(_REDEEM, {"coupon_id": coupon.id, "now": now}))
    if moved != 1:  # a concurrent request redeemed (or voided) it first; it has committed by now
        session.refresh(coupon)
        replay = _redemption_on(session, coupon.id, order.order_key)
        if replay is not None:
            outcome.redemption, outcome.is_replay = replay, True
        else:
            outcome.reason = {"voided": rules.Reason.voided, "expired": rules.Reason.expired}.get(
                coupon.status, rules.Reason.already_redeemed)
        return
    set_committed_value(coupon, "status", "redeemed")
    set_committed_value(coupon, "redeemed_at", now)
    redemption = CouponRedemption(
        workspace_id=workspace_id, coupon_id=coupon.id, member_id=order.member_id, order_key=order.order_key,
        channel=order.channel, store_id=order.store_id, amount=order.amount, discount=result.discount,
        gift_sku=result.gift_sku, redeemed_at=now,
    )
    session.add(redemption)
    session.flush()
    outcome.redemption = redemption


# --- void, expire, restore ------------------------------------------------------------------------------


def void_coupon(session: Session, workspace_id: str, code: str, reason: str, *, actor: Actor,
                member_id: str | None = None) -> Coupon:
    """Withdraw an unused coupon (audited); a used, expired or voided one raises :class:`CouponNotVoidable`."""
    coupon = find_coupon(session, workspace_id, code, member_id=member_id)
    return void_coupon_by_id(session, workspace_id, coupon.id, reason, actor=actor)


def void_coupon_by_id(session: Session, workspace_id: str, coupon_id: str, reason: str, *, actor: Actor,
                      now: datetime | None = None) -> Coupon:
    """:func:`void_coupon` for a coupon known by its id (a reward redemption's coupon, whatever its code).
    The move issued → voided is conditional, so a coupon redeemed on an order meanwhile is never voided."""
    coupon = session.get(Coupon, coupon_id)
    if coupon is None or coupon.workspace_id != workspace_id:
        raise CouponNotFound(coupon_id)
    moved = rows_changed(session.execute(
        update(Coupon).where(Coupon.id == coupon.id, Coupon.status == "issued")
        .values(status="voided", voided_at=now or utcnow(), void_reason=reason)
        .execution_options(synchronize_session=False)
    ))
    session.refresh(coupon)
    if moved != 1:
        raise CouponNotVoidable(coupon.code, coupon.status)
    record(session, actor, "coupon.void", workspace_id=workspace_id, target_type="coupon", target_id=coupon.id,
           detail={"reason": reason})
    return coupon


def expire_coupons(session: Session, *, workspace_id: str | None = None, now: datetime | None = None) -> int:
    """Mark every unused coupon whose validity has ended ``expired``; returns how many. Redeem checks the
    window itself, so this keeps lists and reports honest rather than guarding anything."""
    now = now or utcnow()
    query = update(Coupon).where(Coupon.status == "issued", Coupon.valid_until <= now)
    if workspace_id is not None:
        query = query.where(Coupon.workspace_id == workspace_id)
    return rows_changed(session.execute(query.values(status="expired").execution_options(synchronize_session=False)))


@dataclass(frozen=True)
class Restored:
    coupon_id: str
    is_restored: bool  # False: the redemption was released but the coupon stays used (expired, or restored once)


def restore_order_coupons(session: Session, workspace_id: str, order_key: str, *, now: datetime | None = None) -> list[Restored]:
    """Give back the coupons used on a fully refunded order: each redemption is marked restored (so it is
    never restored twice) and its coupon becomes redeemable again if still valid and never restored before."""
    now = now or utcnow()
    redemptions = session.scalars(locked(
        select(CouponRedemption).where(CouponRedemption.workspace_id == workspace_id,
                                       CouponRedemption.order_key == order_key, CouponRedemption.restored_at.is_(None))
        .order_by(CouponRedemption.id)
    )).all()
    restored: list[Restored] = []
    for redemption in redemptions:
        redemption.restored_at = now
        moved = rows_changed(session.execute(
            update(Coupon).where(Coupon.id == redemption.coupon_id, Coupon.status == "redeemed",
                                 Coupon.restored_count == 0, Coupon.valid_until > now)
            .values(status="issued", redeemed_at=None, restored_count=Coupon.restored_count + 1)
            .execution_options(synchronize_session=False)
        ))
        restored.append(Restored(redemption.coupon_id, moved == 1))
    session.flush()
    for item in restored:
        coupon = session.get(Coupon, item.coupon_id)
        if coupon is not None:
            session.refresh(coupon)
    return restored


def redemptions_of(session: Session, coupon_id: str) -> Sequence[CouponRedemption]:
    return session.scalars(select(CouponRedemption).where(CouponRedemption.coupon_id == coupon_id)
                           .order_by(CouponRedemption.id)).all()


def coupon_counts(session: Session, workspace_id: str) -> dict[str, int]:
    """Coupons by status, for the console."""
    return {status: int(n) for status, n in session.execute(
        select(Coupon.status, func.count()).where(Coupon.workspace_id == workspace_id).group_by(Coupon.status))}
