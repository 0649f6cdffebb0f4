"""Benefits: non-discount privileges with quotas (priority purchase, queue-skip pass, free alteration,
exclusive event). A member holds grants (a quantity for a window, from a source: the API now, tiers
later through :func:`grant_benefit`); consuming takes from the valid grants nearest to expiry first.

Consumption never takes a grant below zero, even with two terminals at once: the member's grants of the
benefit are locked (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises writers) before the
remaining quota is read, and each grant's ``consumed`` moves only by ``UPDATE … WHERE consumed + n <=
quantity``. Grants and consumptions are idempotent on their keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.db.dialect import locked
from memberops.identity.service import get_member
from memberops.loyalty.benefit_models import BenefitConsumption, BenefitDefinition, BenefitGrant
from memberops.loyalty.benefit_schemas import BenefitDefinitionIn
from memberops.loyalty.coupon_errors import (
    BenefitExists,
    BenefitNotFound,
    IdempotencyKeyReused,
    InsufficientBenefitQuota,
)
from memberops.loyalty.coupons import rows_changed


def define_benefit(session: Session, workspace_id: str, spec: BenefitDefinitionIn, *, actor: Actor) -> BenefitDefinition:
    """A new benefit definition (audited)."""
    if _benefit_by_code(session, workspace_id, spec.code) is not None:
        raise BenefitExists(spec.code)
    benefit = BenefitDefinition(workspace_id=workspace_id, **spec.model_dump())
    session.add(benefit)
    session.flush()
    record(session, actor, "benefit.define", workspace_id=workspace_id, target_type="benefit", target_id=benefit.id,
           detail={"code": benefit.code, "category": benefit.category})
    return benefit


def list_benefits(session: Session, workspace_id: str) -> Sequence[BenefitDefinition]:
    return session.scalars(select(BenefitDefinition).where(BenefitDefinition.workspace_id == workspace_id)
                           .order_by(BenefitDefinition.code)).all()


def get_benefit(session: Session, workspace_id: str, code: str) -> BenefitDefinition:
    benefit = _benefit_by_code(session, workspace_id, code)
    if benefit is None:
        raise BenefitNotFound(code)
    return benefit


def _benefit_by_code(session: Session, workspace_id: str, code: str) -> BenefitDefinition | None:
    return session.scalar(select(BenefitDefinition).where(BenefitDefinition.workspace_id == workspace_id,
                                                          BenefitDefinition.code == code))


@dataclass(frozen=True)
class Granted:
    grant: BenefitGrant
    benefit: BenefitDefinition
    is_replay: bool


def grant_benefit(
    session: Session, workspace_id: str, member_id: str, benefit: str | BenefitDefinition, quantity: int,
    source: str, idempotency_key: str, *, valid_until: datetime | None = None, actor: Actor | None = None,
    now: datetime | None = None,
) -> Granted:
    """Give ``member_id`` ``quantity`` uses of ``benefit`` (its code or definition), valid from now until
    ``valid_until`` (default: the benefit's ``valid_days``, else no end). ``source`` says why (``api``,
    ``tier:gold``…). A replay of ``idempotency_key`` returns the same grant and gives nothing more; the
    same key for a different member or benefit raises :class:`IdempotencyKeyReused`.

    This is the function tiers call to grant their benefits.
    """
    if quantity < 1:
        raise ValueError("a grant gives at least one use")
    now = now or utcnow()
    definition = benefit if isinstance(benefit, BenefitDefinition) else get_benefit(session, workspace_id, benefit)
    member = get_member(session, workspace_id, member_id)
    existing = session.scalar(select(BenefitGrant).where(BenefitGrant.workspace_id == workspace_id,
                                                         BenefitGrant.grant_key == idempotency_key))
    if existing is not None:
        if existing.member_id != member.id or existing.benefit_id != definition.id:
            raise IdempotencyKeyReused(idempotency_key)
        return Granted(existing, definition, True)
    if valid_until is None and definition.valid_days is not None:
        valid_until = now + timedelta(days=definition.valid_days)
    grant = BenefitGrant(workspace_id=workspace_id, member_id=member.id, benefit_id=definition.id, quantity=quantity,
                         consumed=0, source=source, grant_key=idempotency_key, valid_from=now, valid_until=valid_until,
                         granted_at=now)
    session.add(grant)
    session.flush()
    if actor is not None:
        record(session, actor, "benefit.grant", workspace_id=workspace_id, target_type="member", target_id=member.id,
               detail={"benefit": definition.code, "quantity": quantity, "source": source})
    return Granted(grant, definition, False)


@dataclass(frozen=True)
class Consumed:
    benefit: BenefitDefinition
    member_id: str
    quantity: int
    remaining: int
    is_replay: bool


def consume_benefit(
    session: Session, workspace_id: str, member_id: str, benefit_code: str, quantity: int, idempotency_key: str,
    *, reason: str = "", now: datetime | None = None,
) -> Consumed:
    """Use ``quantity`` of the member's ``benefit_code``, taken from the valid grants nearest to expiry
    first. Raises :class:`InsufficientBenefitQuota` when fewer remain; a replay of ``idempotency_key``
    consumes nothing more and answers as the first time did."""
    now = now or utcnow()
    definition = get_benefit(session, workspace_id, benefit_code)
    member = get_member(session, workspace_id, member_id)
    replay = _consumed_by_key(session, workspace_id, idempotency_key, member.id, definition.id)
    if replay is not None:
        return Consumed(definition, member.id, replay, remaining_quota(session, member.id, definition.id, now), True)
    grants = session.scalars(locked(
        _valid_grants(member.id, definition.id, now).order_by(BenefitGrant.id)  # one lock order for everyone
    ).execution_options(populate_existing=True)).all()
    # A concurrent consume with the same key that committed while we waited for the locks.
    replay = _consumed_by_key(session, workspace_id, idempotency_key, member.id, definition.id)
    if replay is not None:
        return Consumed(definition, member.id, replay, remaining_quota(session, member.id, definition.id, now), True)
    available = sum(g.quantity - g.consumed for g in grants)
    if available < quantity:
        raise InsufficientBenefitQuota(member.id, definition.code, quantity, available)
    wanted = quantity
    for grant in sorted(grants, key=_nearest_expiry_first):
        take = min(wanted, grant.quantity - grant.consumed)
        if take <= 0:
            continue
        moved = rows_changed(session.execute(
            update(BenefitGrant).where(BenefitGrant.id == grant.id, BenefitGrant.consumed + take <= BenefitGrant.quantity)
            .values(consumed=BenefitGrant.consumed + take).execution_options(synchronize_session=False)
        ))
        if moved != 1:  # cannot happen while the rows are locked; refuse rather than overdraw
            raise InsufficientBenefitQuota(member.id, definition.code, quantity, available)
        session.add(BenefitConsumption(workspace_id=workspace_id, grant_id=grant.id, member_id=member.id,
                                       benefit_id=definition.id, quantity=take, consume_key=idempotency_key,
                                       reason=reason, consumed_at=now))
        wanted -= take
        if wanted == 0:
            break
    session.flush()
    for grant in grants:
        session.refresh(grant)
    return Consumed(definition, member.id, quantity, available - quantity, False)


def _nearest_expiry_first(grant: BenefitGrant) -> tuple[bool, datetime, int]:
    return (grant.valid_until is None, grant.valid_until or grant.valid_from, grant.id)


def _valid_grants(member_id: str, benefit_id: str, now: datetime):  # type: ignore[no-untyped-def]
    return select(BenefitGrant).where(
        BenefitGrant.member_id == member_id, BenefitGrant.benefit_id == benefit_id, BenefitGrant.valid_from <= now,
        or_(BenefitGrant.valid_until.is_(None), BenefitGrant.valid_until > now),
    )


def _consumed_by_key(session: Session, workspace_id: str, key: str, member_id: str, benefit_id: str) -> int | None:
    rows = session.execute(select(BenefitConsumption.member_id, BenefitConsumption.benefit_id,
                                  BenefitConsumption.quantity)
                           .where(BenefitConsumption.workspace_id == workspace_id,
                                  BenefitConsumption.consume_key == key)).all()
    if not rows:
        return None
    if any(r.member_id != member_id or r.benefit_id != benefit_id for r in rows):
        raise IdempotencyKeyReused(key)
    return sum(r.quantity for r in rows)


def remaining_quota(session: Session, member_id: str, benefit_id: str, now: datetime | None = None) -> int:
    """What the member can still use of the benefit now (valid grants only)."""
    now = now or utcnow()
    grants = session.scalars(_valid_grants(member_id, benefit_id, now)).all()
    return sum(g.quantity - g.consumed for g in grants)


@dataclass(frozen=True)
class MemberBenefit:
    benefit: BenefitDefinition
    grants: list[BenefitGrant]
    remaining: int
    next_expiry: datetime | None


def member_benefits(session: Session, workspace_id: str, member_id: str, *, now: datetime | None = None) -> list[MemberBenefit]:
    """The member's benefits with their valid grants and the quota remaining, by benefit code."""
    now = now or utcnow()
    member = get_member(session, workspace_id, member_id)
    rows = session.execute(
        select(BenefitGrant, BenefitDefinition).join(BenefitDefinition, BenefitDefinition.id == BenefitGrant.benefit_id)
        .where(BenefitGrant.workspace_id == workspace_id, BenefitGrant.member_id == member.id,
               BenefitGrant.valid_from <= now,
               or_(BenefitGrant.valid_until.is_(None), BenefitGrant.valid_until > now))
        .order_by(BenefitDefinition.code, BenefitGrant.id)
    ).all()
    by_benefit: dict[str, MemberBenefit] = {}
    for grant, definition in rows:
        entry = by_benefit.setdefault(definition.id, MemberBenefit(definition, [], 0, None))
        entry.grants.append(grant)
    result = []
    for entry in by_benefit.values():
        ends = [g.valid_until for g in entry.grants if g.valid_until is not None and g.quantity > g.consumed]
        result.append(MemberBenefit(entry.benefit, entry.grants, sum(g.quantity - g.consumed for g in entry.grants),
                                    min(ends) if ends else None))
    return result


def consumed_total(session: Session, grant_id: int) -> int:
    """The uses recorded against a grant: what its ``consumed`` must equal."""
    return int(session.scalar(select(func.coalesce(func.sum(BenefitConsumption.quantity), 0))
                              .where(BenefitConsumption.grant_id == grant_id)) or 0)
