"""The golden record: one name, phone, e-mail, birthday and address per member, chosen by survivorship.

Each attribute has a rule (configurable):

- ``most_recent``: the value of the most recently received record;
- ``most_frequent``: the value most of the member's records agree on (ties: the most recent);
- ``most_trusted``: the value from the most trusted channel (ties: the most recent) — a store associate
  who checked an ID card beats a marketplace nickname.

Computed in the warehouse engine (Ibis) over the identity map and each record's newest version, as one
long-format ranking; written to the lake's derived ``golden_records`` table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import ibis
from ibis.expr.types import Table

Rule = Literal["most_recent", "most_frequent", "most_trusted"]

GOLDEN_ATTRIBUTES: tuple[str, ...] = (
    "full_name", "first_name", "last_name", "gender", "birthday", "phone", "email", "province", "city",
    "address_line", "street_number", "postcode", "country",
)


@dataclass(frozen=True)
class Survivorship:
    rules: dict[str, Rule] = field(default_factory=lambda: {
        "full_name": "most_trusted", "first_name": "most_trusted", "last_name": "most_trusted",
        "gender": "most_frequent", "birthday": "most_frequent", "phone": "most_frequent", "email": "most_recent",
        "province": "most_recent", "city": "most_recent", "address_line": "most_recent",
        "street_number": "most_recent", "postcode": "most_recent", "country": "most_frequent",
    })
    channel_trust: tuple[str, ...] = ("pos", "wechat", "app", "jd", "tmall", "douyin")  # most trusted first

    def rule(self, attribute: str) -> Rule:
        return self.rules.get(attribute, "most_recent")


def golden_records(records: Table, identity_map: Table, survivorship: Survivorship | None = None) -> Table:
    """``(member_id, <attribute>…)`` for every member of ``identity_map``.

    ``records`` are the newest versions of identity records (``channel``, ``source_id``, attributes,
    ``ingested_at``); ``identity_map`` is ``(channel, source_id, member_id)``.
    """
    survivorship = survivorship or Survivorship()
    if "member_id" in records.columns:  # a record's live-path member id may be stale: the map decides
        records = records.drop("member_id")
    joined = records.join(identity_map.select("channel", "source_id", "member_id"), ["channel", "source_id"])
    trust = {channel: rank for rank, channel in enumerate(survivorship.channel_trust)}
    channel_rank = joined.channel.cases(*trust.items(), else_=len(trust))
    long = ibis.union(*[
        joined.filter(joined[a].notnull()).select(
            member_id=joined.member_id, attribute=ibis.literal(a), value=joined[a].cast("string"),
            received=joined.ingested_at, channel_rank=channel_rank,
        )
        for a in GOLDEN_ATTRIBUTES
    ])
    counted = long.mutate(votes=ibis._.count().over(group_by=["member_id", "attribute", "value"]))
    primary = ibis.cases(
        *((counted.attribute == a, _primary(survivorship.rule(a), counted)) for a in GOLDEN_ATTRIBUTES),
        else_=ibis.literal(0),
    )
    ranked = counted.mutate(primary=primary).mutate(rank=ibis.row_number().over(
        group_by=["member_id", "attribute"], order_by=[ibis._.primary, ibis._.received.desc(), ibis._.value],
    ))
    best = ranked.filter(ranked["rank"] == 0)
    wide = best.group_by("member_id").aggregate(**{
        a: best.value.max(where=best.attribute == a) for a in GOLDEN_ATTRIBUTES
    })
    members = identity_map.select("member_id").distinct()
    result = members.join(wide, "member_id", how="left").select(
        "member_id", *[wide[a] for a in GOLDEN_ATTRIBUTES]
    )
    return result.mutate(birthday=result.birthday.cast("date"))


def _primary(rule: Rule, table: Table) -> ibis.Value:
    """Smaller sorts first."""
    if rule == "most_frequent":
        return -table.votes
    if rule == "most_trusted":
        return table.channel_rank
    return ibis.literal(0)
