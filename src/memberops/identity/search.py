"""Finding a member by what an operator or a point of sale knows: a phone, an e-mail, a member card
number, a member id, or a name.

The query is read the way identifiers are stored: a phone becomes E.164 with the workspace's default
region (:data:`~memberops.identity.normalise.DEFAULT_REGION` until workspaces carry a region of their
own), an e-mail is trimmed and lower-cased. Identifiers are looked up exactly, in the state store
(records resolved live) and in the lake's identity records (every record ever imported, through the
identity map); names match the golden records, case-insensitively, anywhere in the full name, the given
name, the family name or both together. Every hit is followed to its surviving member.

The query is PII: it is never logged, and it never reaches an error message.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ibis
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from memberops.errors import Invalid
from memberops.identity.models import Identifier, Member
from memberops.identity.normalise import DEFAULT_REGION, normalise_email, normalise_phone
from memberops.identity.service import survivors

if TYPE_CHECKING:
    from memberops.lake.engine import Warehouse

MAX_QUERY_LENGTH = 200
DEFAULT_LIMIT = 20
_MEMBER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PHONE_LIKE = re.compile(r"^\+?[\d\s\-().]{5,}$")
_CARD_LIKE = re.compile(r"^[A-Za-z0-9\-_]{3,64}$")


class InvalidSearch(Invalid):
    code = "invalid_search"

    def __init__(self, reason: str) -> None:
        super().__init__(reason, field="q")


@dataclass(frozen=True)
class SearchTerms:
    """What a query can mean; each term is ``None`` when the query cannot be one."""

    phone: str | None
    email: str | None
    card: str | None
    member_id: str | None
    name: str | None

    @property
    def identifiers(self) -> list[tuple[str, str]]:
        """``(type, value)`` pairs to look up exactly."""
        pairs = [("phone", self.phone), ("email", self.email)]
        if self.card:
            pairs += [("member_card_no", self.card), ("member_card_no", self.card.upper())]
        return sorted({(t, v) for t, v in pairs if v})


def search_terms(query: str, region: str = DEFAULT_REGION) -> SearchTerms:
    """How ``query`` is read (pure). Digits may be a phone and a card number at once; anything that is
    not an e-mail or a phone is also tried as a name."""
    text = " ".join(query.split())
    if not text:
        raise InvalidSearch("type a phone number, an e-mail, a member number or a name")
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidSearch(f"a search is at most {MAX_QUERY_LENGTH} characters")
    email = normalise_email(text) if "@" in text else None
    phone = normalise_phone(text, region) if _PHONE_LIKE.match(text) else None
    card = text if _CARD_LIKE.match(text) and email is None else None
    member_id = text.lower() if _MEMBER_ID.match(text.lower()) else None
    name = None if email or phone or member_id else text.lower()
    return SearchTerms(phone, email, card, member_id, name)


@dataclass(frozen=True)
class MemberMatch:
    """A member found, how, and what the golden record calls them (``None`` before the first resolution)."""

    member_id: str
    matched_on: str  # phone | email | member_card_no | member_id | name
    full_name: str | None
    phone: str | None
    email: str | None
    city: str | None
    is_enrolled: bool


def display_name(full_name: str | None, first_name: str | None, last_name: str | None) -> str | None:
    """A golden record's name as people write it: the full name, else family then given name run together
    for Chinese, Japanese and Korean names (王 + 芳 → 王芳), else given then family name (Bo Chen)."""
    if full_name:
        return full_name
    parts = [p for p in (first_name, last_name) if p]
    if not parts:
        return None
    if any(unicodedata.east_asian_width(char) in ("W", "F") for part in parts for char in part):
        return "".join(p for p in (last_name, first_name) if p)
    return " ".join(parts)


def search_members(
    session: Session, warehouse: Warehouse, workspace_id: str, query: str, *,
    region: str = DEFAULT_REGION, limit: int = DEFAULT_LIMIT,
) -> list[MemberMatch]:
    """Members matching ``query`` (see the module docstring): exact identifier matches first, then names
    that start with the query, then names that contain it; at most ``limit``, each member once."""
    terms = search_terms(query, region)
    found: dict[str, str] = {}  # member id (as found) -> what matched, in rank order

    def add(member_ids: Sequence[str], how: str) -> None:
        for member_id in member_ids:
            found.setdefault(member_id, how)

    if terms.member_id:
        add(session.scalars(select(Member.id).where(
            Member.workspace_id == workspace_id, Member.id == terms.member_id)).all(), "member_id")
    pairs = terms.identifiers
    if pairs:
        rows = session.execute(select(Identifier.member_id, Identifier.type).where(
            Identifier.workspace_id == workspace_id, tuple_(Identifier.type, Identifier.value).in_(pairs))).all()
        for member_id, type_ in rows:
            add([member_id], type_)
        for member_id, type_ in _lake_identifier_matches(warehouse, workspace_id, pairs, limit):
            add([member_id], type_)
    if terms.name:
        add(_name_matches(warehouse, workspace_id, terms.name, limit), "name")

    current = survivors(session, workspace_id, list(found))
    ranked: dict[str, str] = {}
    for member_id, how in found.items():
        survivor = current.get(member_id)
        if survivor is not None:
            ranked.setdefault(survivor, how)
    chosen = list(ranked.items())[:limit]
    return _described(session, warehouse, workspace_id, chosen)


def _lake_identifier_matches(
    warehouse: Warehouse, workspace_id: str, pairs: Sequence[tuple[str, str]], limit: int
) -> list[tuple[str, str]]:
    """``(member_id, identifier type)`` of every identity record in the lake carrying one of ``pairs``."""
    records = warehouse.table("identity_records")
    conditions = [records[type_] == value for type_, value in pairs]
    matched_type = ibis.cases(*[(records[type_] == value, type_) for type_, value in pairs], else_=None)
    hits = records.filter(records.workspace_id == workspace_id, ibis.or_(*conditions)).select(
        "channel", "source_id", matched=matched_type).distinct()
    identity_map = warehouse.table("identity_map")
    members = hits.join(identity_map.filter(identity_map.workspace_id == workspace_id).select(
        "channel", "source_id", "member_id"), ["channel", "source_id"])
    rows = warehouse.to_pyarrow(members.select("member_id", "matched").distinct().limit(limit * 5)).to_pylist()
    return [(row["member_id"], row["matched"]) for row in rows]


def _name_matches(warehouse: Warehouse, workspace_id: str, needle: str, limit: int) -> list[str]:
    """Member ids whose golden name contains ``needle`` (lower-cased): prefix matches first, then by name."""
    golden = warehouse.table("golden_records")
    full = golden.full_name.lower()
    given = golden.first_name.lower()
    family = golden.last_name.lower()
    together = family.concat(given)  # 王 + 芳: how a Chinese name is written
    spaced = given.concat(" ", family)  # Ana + Li: how a Western one is
    names = [full, given, family, together, spaced]
    contains = ibis.or_(*[n.contains(needle).fill_null(False) for n in names])
    starts = ibis.or_(*[n.startswith(needle).fill_null(False) for n in names])
    hits = golden.filter(golden.workspace_id == workspace_id, contains).select(
        "member_id", rank=ibis.ifelse(starts, 0, 1), name=golden.full_name.fill_null(family.concat(given)))
    rows = warehouse.to_pyarrow(hits.order_by(["rank", "name", "member_id"]).limit(limit)).to_pylist()
    return [row["member_id"] for row in rows]


def _described(
    session: Session, warehouse: Warehouse, workspace_id: str, chosen: list[tuple[str, str]]
) -> list[MemberMatch]:
    if not chosen:
        return []
    ids = [member_id for member_id, _ in chosen]
    enrolled = dict(session.execute(select(Member.id, Member.is_enrolled).where(Member.id.in_(ids))).all())
    golden = warehouse.table("golden_records")
    rows = warehouse.to_pyarrow(golden.filter(golden.workspace_id == workspace_id, golden.member_id.isin(ids)).select(
        "member_id", "full_name", "first_name", "last_name", "phone", "email", "city")).to_pylist()
    by_id: dict[str, dict[str, Any]] = {row["member_id"]: row for row in rows}
    matches = []
    for member_id, how in chosen:
        row = by_id.get(member_id, {})
        name = display_name(row.get("full_name"), row.get("first_name"), row.get("last_name"))
        matches.append(MemberMatch(member_id, how, name, row.get("phone"), row.get("email"), row.get("city"),
                                   bool(enrolled.get(member_id, False))))
    return matches
