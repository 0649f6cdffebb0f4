"""Tags: operator-defined rules over traits and behaviour, and their compiler to Ibis.

A tag is pydantic data (YAML or JSON), engine-free until :func:`compile_tags` turns a set of them into
boolean columns over the traits table. The rule language::

    all: [RULE, …]            every rule holds            any: [RULE, …]   at least one holds
    not: RULE                 the rule does not hold
    {trait: NAME, op: OP, value: V}
        OP: eq ne gt gte lt lte (a value), in not_in (a list), is_null not_null (no value),
            top_percent (V in (0, 100]: the member's value is in the top V % of members with a value:
            fewer than V % of them have a strictly greater one)
    {bought: {category: C, sku: S, channel: CH, within_days: N, min_orders: K}}
        at least K (default 1) counted orders with a line matching every given field, ordered in the
        last N days (any time when N is not given)
    {event: {type: T, within_days: N, min_count: K}}
        at least K (default 1) events of type T in the last N days

A comparison on a missing (null) trait is false, so ``not`` of it is true: every rule is two-valued.
Money traits are compared as decimals (``value: 0.1`` means 0.10 exactly).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

import ibis
from ibis.expr.types import BooleanValue, Table
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from memberops.insight.facts import MemberFacts

MEMBER = "member_id"
TAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

# The traits a rule may compare, and their kind (``money`` compares as Decimal).
RULE_TRAITS: dict[str, str] = {
    "orders": "number", "units": "number", "gross_spend": "money", "refunded": "money", "net_spend": "money",
    "aov": "money", "items_per_order": "number", "days_since_last_purchase": "number",
    "mean_interpurchase_days": "number", "median_interpurchase_days": "number", "discount_share": "number",
    "refund_rate": "number", "online_share": "number", "preferred_channel": "string",
    "preferred_category": "string", "preferred_store": "string", "associate_id": "string",
    "frequency": "number", "rfm_r": "number", "rfm_f": "number", "rfm_m": "number", "rfm_score": "string",
    "rfm_segment": "string", "lifecycle_stage": "string", "aipl_stage": "string",
    "expected_purchases_90d": "number", "expected_purchases_365d": "number", "p_alive": "number",
    "churn_risk": "number", "expected_spend": "money", "clv": "money", "referrals": "number",
    "referrals_converted": "number", "referred_value": "money", "shares": "number", "koc_score": "number",
}
Scalar = str | int | float | bool
Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "is_null", "not_null", "top_percent"]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TraitCondition(_Rule):
    trait: str
    op: Op
    value: Scalar | list[Scalar] | None = None

    @field_validator("trait")
    @classmethod
    def _known_trait(cls, trait: str) -> str:
        if trait not in RULE_TRAITS:
            raise ValueError(f"unknown trait {trait!r}; rules can use: {', '.join(sorted(RULE_TRAITS))}")
        return trait

    @model_validator(mode="after")
    def _value_fits_op(self) -> TraitCondition:
        if self.op in ("is_null", "not_null"):
            if self.value is not None:
                raise ValueError(f"op {self.op} takes no value")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"op {self.op} needs a non-empty list of values")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"op {self.op} needs one value")
        if self.op == "top_percent" and (RULE_TRAITS[self.trait] == "string" or isinstance(self.value, bool | str)
                                         or not 0 < float(self.value) <= 100):  # type: ignore[arg-type]
            raise ValueError("top_percent needs a number in (0, 100] and a numeric trait")
        return self

    def typed(self, value: Scalar) -> Any:
        """``value`` as the trait compares it: money traits as exact decimals."""
        if RULE_TRAITS[self.trait] == "money" and not isinstance(value, bool | str):
            return Decimal(str(value))
        return value


class BoughtSpec(_Rule):
    category: str | None = None
    sku: str | None = None
    channel: str | None = None
    within_days: int | None = Field(default=None, ge=1)
    min_orders: int = Field(default=1, ge=1)


class Bought(_Rule):
    bought: BoughtSpec


class EventSpec(_Rule):
    type: str = Field(min_length=1)
    within_days: int | None = Field(default=None, ge=1)
    min_count: int = Field(default=1, ge=1)


class EventCount(_Rule):
    event: EventSpec


class AllOf(_Rule):
    all: list[Rule] = Field(min_length=1)


class AnyOf(_Rule):
    any: list[Rule] = Field(min_length=1)


class Not(_Rule):
    not_: Rule = Field(alias="not")


RULE_KEYS = ("all", "any", "not", "trait", "bought", "event")


def _rule_kind(value: Any) -> str | None:
    """Which kind of rule ``value`` is, by its key, so an error speaks of that kind only."""
    if isinstance(value, dict):
        return next((key for key in RULE_KEYS if key in value), None)
    kinds: dict[type, str] = {AllOf: "all", AnyOf: "any", Not: "not", TraitCondition: "trait", Bought: "bought", EventCount: "event"}
    return kinds.get(type(value))


Rule = Annotated[
    Annotated[AllOf, Tag("all")] | Annotated[AnyOf, Tag("any")] | Annotated[Not, Tag("not")]
    | Annotated[TraitCondition, Tag("trait")] | Annotated[Bought, Tag("bought")] | Annotated[EventCount, Tag("event")],
    Discriminator(_rule_kind, custom_error_type="invalid_rule",
                  custom_error_message=f"a rule has one of the keys {', '.join(RULE_KEYS)}"),
]


class TagDefinition(BaseModel):
    """A named rule. ``name`` is a slug (``price_sensitive``); stored versioned in the state store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    rule: Rule

    @field_validator("name")
    @classmethod
    def _slug(cls, name: str) -> str:
        if not TAG_NAME.match(name):
            raise ValueError("a tag name is lower case letters, digits and _, starting with a letter (≤ 64)")
        return name


class TagFile(BaseModel):
    """A YAML file of tags: ``tags: [{name, description, rule}, …]``."""

    model_config = ConfigDict(extra="forbid")

    tags: list[TagDefinition]


def _leaves(rule: Any) -> list[Bought | EventCount]:
    if isinstance(rule, AllOf):
        return [leaf for r in rule.all for leaf in _leaves(r)]
    if isinstance(rule, AnyOf):
        return [leaf for r in rule.any for leaf in _leaves(r)]
    if isinstance(rule, Not):
        return _leaves(rule.not_)
    if isinstance(rule, Bought | EventCount):
        return [rule]
    return []


def _line_matches(items: Table, bought: dict[int, Bought], as_of_day: int) -> dict[int, BooleanValue]:
    """For each ``bought`` leaf, whether an order line of ``items`` matches it."""
    matches = {}
    for i, leaf in bought.items():
        spec = leaf.bought
        match: BooleanValue = ibis.literal(True)
        for column in ("category", "sku", "channel"):
            if getattr(spec, column) is not None:
                match = match & (items[column] == getattr(spec, column))
        if spec.within_days is not None:
            match = match & (items.day > as_of_day - spec.within_days)
        matches[i] = match
    return matches


def _event_matches(events: Table, counted: dict[int, EventCount], as_of_day: int) -> dict[int, BooleanValue]:
    """For each ``event`` leaf, whether an event of ``events`` counts for it."""
    matches = {}
    for i, counting in counted.items():
        match = events.type == counting.event.type
        if counting.event.within_days is not None:
            match = match & (events.day > as_of_day - counting.event.within_days)
        matches[i] = match
    return matches


def _matching(table: Table, matches: dict[int, BooleanValue]) -> Table:
    """The rows of ``table`` that match at least one leaf: a leaf is a narrow filter (a category, an event
    type, a window), so the per-member counts then aggregate a small share of the facts. A member without
    such a row has no count, which the rules read as 0."""
    anything = None
    for match in matches.values():
        anything = match if anything is None else anything | match
    return table.filter(anything)


def behaviour_features(facts: MemberFacts, leaves: list[Bought | EventCount]) -> Table | None:
    """``member_id`` and one count column ``_f<i>`` per ``bought`` / ``event`` leaf (members with any)."""
    bought = {i: leaf for i, leaf in enumerate(leaves) if isinstance(leaf, Bought)}
    counted = {i: leaf for i, leaf in enumerate(leaves) if isinstance(leaf, EventCount)}
    parts: list[Table] = []
    if bought:
        items = _matching(facts.items, _line_matches(facts.items, bought, facts.as_of_day))
        # an order is (channel, order_id); facts that number their orders give that as one integer
        order_key = items.order_key if "order_key" in items.columns else items.channel.concat("\x1f", items.order_id)
        parts.append(items.group_by(MEMBER).aggregate(**{
            f"_f{i}": order_key.nunique(where=match).cast("int64")
            for i, match in _line_matches(items, bought, facts.as_of_day).items()}))
    if counted:
        events = _matching(facts.events, _event_matches(facts.events, counted, facts.as_of_day))
        parts.append(events.group_by(MEMBER).aggregate(**{
            f"_f{i}": match.cast("int64").sum().cast("int64")
            for i, match in _event_matches(events, counted, facts.as_of_day).items()}))
    if not parts:
        return None
    table = parts[0]
    for part in parts[1:]:
        table = table.join(part, MEMBER, how="outer").mutate(
            member_id=ibis.coalesce(table[MEMBER], part[MEMBER])).drop(f"{MEMBER}_right")
    return table


def _compile(rule: Any, t: Table, feature_of: dict[int, str]) -> BooleanValue:
    if isinstance(rule, AllOf):
        parts = [_compile(r, t, feature_of) for r in rule.all]
        result = parts[0]
        for part in parts[1:]:
            result = result & part
        return result
    if isinstance(rule, AnyOf):
        parts = [_compile(r, t, feature_of) for r in rule.any]
        result = parts[0]
        for part in parts[1:]:
            result = result | part
        return result
    if isinstance(rule, Not):
        return ~_compile(rule.not_, t, feature_of)
    if isinstance(rule, Bought):
        return t[feature_of[id(rule)]].fill_null(0) >= rule.bought.min_orders
    if isinstance(rule, EventCount):
        return t[feature_of[id(rule)]].fill_null(0) >= rule.event.min_count
    return _compare(rule, t).fill_null(False)


def _compare(rule: TraitCondition, t: Table) -> BooleanValue:
    column = t[rule.trait]
    op = rule.op
    if op == "is_null":
        return column.isnull()
    if op == "not_null":
        return column.notnull()
    if op in ("in", "not_in"):
        values = [rule.typed(v) for v in rule.value]  # type: ignore[union-attr]
        inside = column.isin(values)
        return column.notnull() & (inside if op == "in" else ~inside)
    value = rule.typed(rule.value)  # type: ignore[arg-type]
    if op == "top_percent":
        better = ibis.rank().over(order_by=column.desc())  # rows strictly greater (nulls sort last)
        with_value = column.count().over()
        return column.notnull() & (better.cast("float64") * 100 < float(value) * with_value.cast("float64"))
    literal = ibis.literal(value) if not isinstance(value, Decimal) else ibis.literal(value, type="decimal(18, 2)")
    comparisons = {"eq": column == literal, "ne": column != literal, "gt": column > literal,
                   "gte": column >= literal, "lt": column < literal, "lte": column <= literal}
    return comparisons[op]


def compile_tags(tags: list[TagDefinition], traits: Table, facts: MemberFacts) -> Table:
    """``member_id`` and one boolean column ``tag_<name>`` per tag, for every row of ``traits``."""
    leaves = [leaf for tag in tags for leaf in _leaves(tag.rule)]
    feature_of = {id(leaf): f"_f{i}" for i, leaf in enumerate(leaves)}
    features = behaviour_features(facts, leaves)
    table = traits
    if features is not None:
        joined = traits.join(features, MEMBER, how="left")
        table = joined.drop(f"{MEMBER}_right") if f"{MEMBER}_right" in joined.columns else joined
    return table.select(MEMBER, **{f"tag_{tag.name}": _compile(tag.rule, table, feature_of) for tag in tags})


AllOf.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()
TagDefinition.model_rebuild()
