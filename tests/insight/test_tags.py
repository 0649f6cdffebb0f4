"""The tag rule compiler agrees with a plain-Python evaluator of the same rules on random data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memberops.insight.facts import MemberFacts, epoch_day
from memberops.insight.tags import (
    AllOf,
    AnyOf,
    Bought,
    EventCount,
    Not,
    TagDefinition,
    TraitCondition,
    compile_tags,
)
from memberops.lake.engine import DuckDBWarehouse

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
TODAY = epoch_day(AS_OF)
CHANNELS = ["tmall", "pos", "jd"]
CATEGORIES = ["newborn", "toys", "formula"]
EVENT_TYPES = ["share", "product_view"]
MONEY = [Decimal(v) for v in ("0.00", "10.00", "99.99", "100.00", "250.50")]
SHARES = [0.0, 0.25, 0.3, 0.5, 1.0]
# days on and next to the windows' edges, where an off-by-one would show
WINDOWS = [1, 30, 90]
DAYS_BEFORE = [0, 1, 2, 29, 30, 31, 89, 90, 91, 200]


@dataclass
class Data:
    traits: list[dict[str, Any]]
    items: list[dict[str, Any]]
    events: list[dict[str, Any]]


@st.composite
def data(draw: st.DrawFn) -> Data:
    n = draw(st.integers(1, 8))
    members = [f"m{i}" for i in range(n)]
    traits = [{
        "member_id": m,
        "orders": draw(st.integers(0, 4)),
        "net_spend": draw(st.sampled_from(MONEY)),
        "discount_share": draw(st.none() | st.sampled_from(SHARES)),
        "preferred_channel": draw(st.none() | st.sampled_from(CHANNELS)),
    } for m in members]
    items = [{
        "member_id": draw(st.sampled_from(members)), "channel": draw(st.sampled_from(CHANNELS)),
        "order_id": f"o{draw(st.integers(0, 5))}", "sku": draw(st.sampled_from(["s1", "s2"])),
        "category": draw(st.sampled_from(CATEGORIES)), "day": TODAY - draw(st.sampled_from(DAYS_BEFORE)),
    } for _ in range(draw(st.integers(0, 12)))]
    events = [{"member_id": draw(st.sampled_from(members)), "type": draw(st.sampled_from(EVENT_TYPES)),
               "day": TODAY - draw(st.sampled_from(DAYS_BEFORE))} for _ in range(draw(st.integers(0, 8)))]
    return Data(traits, items, events)


within = st.none() | st.sampled_from(WINDOWS)
leaves = st.one_of(
    st.builds(lambda op, v: {"trait": "orders", "op": op, "value": v},
              st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), st.integers(0, 4)),
    st.builds(lambda op, v: {"trait": "net_spend", "op": op, "value": v},
              st.sampled_from(["gt", "gte", "lt", "eq"]), st.sampled_from([0, 10, 99.99, 100, 0.1])),
    st.builds(lambda op, v: {"trait": "discount_share", "op": op, "value": v},
              st.sampled_from(["gte", "lt", "eq"]), st.sampled_from(SHARES)),
    st.builds(lambda op: {"trait": "discount_share", "op": op}, st.sampled_from(["is_null", "not_null"])),
    st.builds(lambda op, v: {"trait": "preferred_channel", "op": op, "value": v},
              st.sampled_from(["in", "not_in"]), st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=2)),
    st.builds(lambda t, p: {"trait": t, "op": "top_percent", "value": p},
              st.sampled_from(["net_spend", "orders", "discount_share"]), st.sampled_from([10, 25, 50, 100])),
    st.builds(lambda c, ch, w, k: {"bought": {k2: v for k2, v in
                                              {"category": c, "channel": ch, "within_days": w, "min_orders": k}.items()
                                              if v is not None}},
              st.none() | st.sampled_from(CATEGORIES), st.none() | st.sampled_from(CHANNELS), within, st.integers(1, 2)),
    st.builds(lambda t, w, k: {"event": {"type": t, "min_count": k, **({"within_days": w} if w else {})}},
              st.sampled_from(EVENT_TYPES), within, st.integers(1, 2)),
)
rules = st.recursive(leaves, lambda inner: st.one_of(
    st.builds(lambda rs: {"all": rs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda rs: {"any": rs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda r: {"not": r}, inner),
), max_leaves=6)


def evaluate(rule: Any, member: dict[str, Any], d: Data) -> bool:
    """The rule language, read literally (see memberops.insight.tags)."""
    if isinstance(rule, AllOf):
        return all(evaluate(r, member, d) for r in rule.all)
    if isinstance(rule, AnyOf):
        return any(evaluate(r, member, d) for r in rule.any)
    if isinstance(rule, Not):
        return not evaluate(rule.not_, member, d)
    if isinstance(rule, Bought):
        spec = rule.bought
        orders = {(i["channel"], i["order_id"]) for i in d.items if i["member_id"] == member["member_id"]
                  and all(getattr(spec, f) is None or i[f] == getattr(spec, f) for f in ("category", "sku", "channel"))
                  and (spec.within_days is None or i["day"] > TODAY - spec.within_days)}
        return len(orders) >= spec.min_orders
    if isinstance(rule, EventCount):
        count = sum(1 for e in d.events if e["member_id"] == member["member_id"] and e["type"] == rule.event.type
                    and (rule.event.within_days is None or e["day"] > TODAY - rule.event.within_days))
        return count >= rule.event.min_count
    assert isinstance(rule, TraitCondition)
    value = member[rule.trait]
    if rule.op == "is_null":
        return value is None
    if rule.op == "not_null":
        return value is not None
    if value is None:
        return False
    if rule.op in ("in", "not_in"):
        inside = value in [rule.typed(v) for v in rule.value]  # type: ignore[union-attr]
        return inside if rule.op == "in" else not inside
    if rule.op == "top_percent":
        present = [m[rule.trait] for m in d.traits if m[rule.trait] is not None]
        better = sum(1 for v in present if v > value)
        return better * 100 < float(rule.value) * len(present)  # type: ignore[arg-type]
    target = rule.typed(rule.value)  # type: ignore[arg-type]
    return {"eq": value == target, "ne": value != target, "gt": value > target, "gte": value >= target,
            "lt": value < target, "lte": value <= target}[rule.op]


@pytest.fixture(scope="module")
def duckdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBWarehouse]:
    warehouse = DuckDBWarehouse(Path(tmp_path_factory.mktemp("lake")))
    yield warehouse
    warehouse.close()


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> ibis.Table:
    return ibis.memtable(pa.Table.from_pylist(rows, schema=schema))


TRAITS = pa.schema([("member_id", pa.string()), ("orders", pa.int64()), ("net_spend", pa.decimal128(18, 2)),
                    ("discount_share", pa.float64()), ("preferred_channel", pa.string())])
ITEMS = pa.schema([("member_id", pa.string()), ("channel", pa.string()), ("order_id", pa.string()),
                   ("sku", pa.string()), ("category", pa.string()), ("day", pa.int64())])
EVENTS = pa.schema([("member_id", pa.string()), ("type", pa.string()), ("day", pa.int64())])


class TestCompilerAgreesWithEvaluator:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(d=data(), raw_rules=st.lists(rules, min_size=1, max_size=3))
    def test_random_rules_on_random_members(self, duckdb: DuckDBWarehouse, d: Data,
                                            raw_rules: list[dict[str, Any]]) -> None:
        tags = [TagDefinition.model_validate({"name": f"t{i}", "rule": r}) for i, r in enumerate(raw_rules)]
        traits = _table(d.traits, TRAITS)
        facts = MemberFacts(AS_OF, traits.select("member_id"), traits, _table(d.items, ITEMS),
                            _table(d.events, EVENTS), traits)
        compiled = duckdb.to_pyarrow(compile_tags(tags, traits, facts)).to_pylist()
        got = {row["member_id"]: [row[f"tag_{t.name}"] for t in tags] for row in compiled}
        expected = {m["member_id"]: [evaluate(t.rule, m, d) for t in tags] for m in d.traits}
        assert got == expected


class TestRuleValidation:
    @pytest.mark.parametrize("rule, message", [
        ({"trait": "shoe_size", "op": "gt", "value": 3}, "unknown trait"),
        ({"trait": "orders", "op": "gt"}, "needs one value"),
        ({"trait": "orders", "op": "in", "value": 3}, "non-empty list"),
        ({"trait": "orders", "op": "is_null", "value": 3}, "takes no value"),
        ({"trait": "preferred_channel", "op": "top_percent", "value": 10}, "numeric trait"),
        ({"trait": "orders", "op": "top_percent", "value": 0}, "(0, 100]"),
        ({"bought": {"category": "x", "within_days": 0}}, "greater than or equal to 1"),
        ({"colour": "red"}, "one of the keys"),
        ({"all": []}, "at least 1 item"),
    ])
    def test_bad_rules_say_what_is_wrong(self, rule: dict[str, Any], message: str) -> None:
        with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
            TagDefinition.model_validate({"name": "t", "rule": rule})

    def test_bad_name(self) -> None:
        with pytest.raises(ValidationError, match="lower case"):
            TagDefinition.model_validate({"name": "Big Spender", "rule": {"trait": "orders", "op": "gt", "value": 1}})
