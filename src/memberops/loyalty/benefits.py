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
from typing import cast

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.orm import Session

from memberops.audit.service import Actor, record
from memberops.db.base import utcnow
from memberops.db.dialect import insert_ignoring_conflicts, insert_many, locked
from memberops.identity.models import Member
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

_GRANTS = cast(Table, BenefitGrant.__table__)


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
class GrantRequest:
    """One grant of a bulk :func:`grant_benefits`: ``quantity`` uses for ``member_id``, keyed like
    :func:`grant_benefit`'s ``idempotency_key``, valid until ``valid_until`` (default: the benefit's
    ``valid_days`` from now, else no end)."""

    member_id: str
    quantity: int
    idempotency_key: str
    valid_until: datetime | None = None


@dataclass(frozen=True)
class GrantedInBulk:
    made: int  # grants written by this call
    replayed: int  # requests whose key was granted before (or earlier in the same call)


KEYS_PER_QUERY = 500


def grant_benefits(
    session: Session, workspace_id: str, benefit: str | BenefitDefinition, requests: Sequence[GrantRequest],
    source: str, *, actor: Actor | None = None, now: datetime | None = None,
) -> GrantedInBulk:
    """:func:`grant_benefit` for every request — a tier's benefits for all members of the tier, a benefit
    for a whole segment — in a few statements: the members and the keys granted before read at once, the
    new grants written in one bulk insert. The same rows and the same rules: a member merged into another
    gives the survivor the grant, an unknown member is :class:`~memberops.identity.errors.MemberNotFound`,
    a replayed key gives nothing more, a key used for another member or benefit raises
    :class:`IdempotencyKeyReused` (and nothing of the call is written). With an ``actor``, one audit
    entry names the benefit and how many grants were made.

    Examples:
        >>> grant_benefits(session, workspace.id, "lounge",  # doctest: +SKIP
        ...                [GrantRequest(m, 2, f"tier:{m}:gold:2026:lounge") for m in gold_members], "tier:gold")
    """
    if any(request.quantity < 1 for request in requests):
        raise ValueError("a grant gives at least one use")
    if not requests:
        return GrantedInBulk(0, 0)
    now = now or utcnow()
    definition = benefit if isinstance(benefit, BenefitDefinition) else get_benefit(session, workspace_id, benefit)
    named = sorted({request.member_id for request in requests})
    current: dict[str, str] = {}
    for start in range(0, len(named), KEYS_PER_QUERY):
        current.update((member_id, member_id) for member_id in session.scalars(select(Member.id).where(
            Member.id.in_(named[start:start + KEYS_PER_QUERY]), Member.workspace_id == workspace_id,
            Member.merged_into_id.is_(None))))
    for member_id in named:
        if member_id not in current:  # absorbed (their survivor) or unknown (MemberNotFound)
            current[member_id] = get_member(session, workspace_id, member_id).id
    keys = sorted({request.idempotency_key for request in requests})
    granted: dict[str, tuple[str, str]] = {}  # key → (member, benefit) of the grants made before
    for start in range(0, len(keys), KEYS_PER_QUERY):
        granted.update((key, (member_id, benefit_id)) for key, member_id, benefit_id in session.execute(
            select(BenefitGrant.grant_key, BenefitGrant.member_id, BenefitGrant.benefit_id).where(
                BenefitGrant.workspace_id == workspace_id,
                BenefitGrant.grant_key.in_(keys[start:start + KEYS_PER_QUERY]))))
    default_end = now + timedelta(days=definition.valid_days) if definition.valid_days is not None else None
    rows: list[tuple[str, int, str, datetime | None]] = []
    replayed = 0
    for request in requests:
        member_id = current[request.member_id]
        earlier = granted.get(request.idempotency_key)
        if earlier is not None:
            if earlier != (member_id, definition.id):
                raise IdempotencyKeyReused(request.idempotency_key)
            replayed += 1
            continue
        granted[request.idempotency_key] = (member_id, definition.id)
        rows.append((member_id, request.quantity, request.idempotency_key, request.valid_until or default_end))
    insert_many(session, insert_ignoring_conflicts(session, _GRANTS, ["workspace_id", "grant_key"]), {
        "member_id": [row[0] for row in rows], "quantity": [row[1] for row in rows],
        "grant_key": [row[2] for row in rows], "valid_until": [row[3] for row in rows],
    }, {"workspace_id": workspace_id, "benefit_id": definition.id, "consumed": 0, "source": source,
        "valid_from": now, "granted_at": now})
    if actor is not None and rows:
        record(session, actor, "benefit.grant", workspace_id=workspace_id, target_type="benefit",
               target_id=definition.id, detail={"benefit": definition.code, "members": len({row[0] for row in rows}),
                                                "grants": len(rows), "source": source})
    return GrantedInBulk(len(rows), replayed)


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
