"""The serving traits (``member_trait``) on every state store: written in bulk, they replace the workspace's
set as a whole — a reader sees the old set or the new one, a failure leaves the old one, two writers queue."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from memberops.accounts import service as accounts
from memberops.accounts.models import Workspace
from memberops.insight import service
from memberops.insight.documents import json_value
from memberops.insight.models import MemberTrait
from memberops.lake.registry import table_spec
from memberops.runtime import Context

AT = datetime(2026, 6, 30, 12, tzinfo=UTC)


def traits_of(members: dict[str, dict[str, Any]]) -> pa.Table:
    """A trait table with the lake's schema: the given traits per member, the others null."""
    fields = [f for f in table_spec("member_traits").fields if f.name in (*service.SERVING_TRAITS, "member_id", "tags")]
    return pa.table({f.name: pa.array([m if f.name == "member_id" else values.get(f.name)
                                       for m, values in members.items()], f.type) for f in fields})


def served(context: Context, workspace: Workspace) -> dict[str, tuple[str, list[str]]]:
    """member → (lifecycle stage, tags) as the profile reads them."""
    with context.store.read() as session:
        members = session.scalars(select(MemberTrait.member_id).where(MemberTrait.workspace_id == workspace.id)).all()
        return {m: (service.get_traits(session, workspace.id, m)["lifecycle_stage"],  # type: ignore[index]
                    service.get_tags(session, workspace.id, m)) for m in members}


def save(context: Context, workspace: Workspace, members: dict[str, dict[str, Any]], at: datetime = AT) -> int:
    with context.store.transaction() as session:
        return service.save_serving_traits(session, workspace.id, traits_of(members), at)


class TestSaveServingTraits:
    def test_values_read_back_as_before(self, context: Context, workspace: Workspace) -> None:
        values = {
            "as_of": AT, "orders": 3, "gross_spend": Decimal("1845.14"), "refunded": Decimal("0.00"),
            "items_per_order": 22 / 3, "mean_interpurchase_days": 89.0, "discount_share": 1e-05,
            "refund_rate": float("nan"), "first_purchase_at": AT - timedelta(days=200, microseconds=7),
            "preferred_category": '婴儿 "wipes"\t\\', "rfm_r": 3, "rfm_score": "345", "rfm_segment": "Can't Lose Them",
            "next_purchase_expected": datetime(2026, 10, 8).date(), "koc_score": 55.2, "clv": Decimal("-1.50"),
            "tags": ["high_value", "new_mom"],
        }
        assert save(context, workspace, {"m1": values, "m2": {}}) == 2
        with context.store.read() as session:
            read = service.get_traits(session, workspace.id, "m1")
            assert read == {**{name: json_value(values.get(name)) for name in service.SERVING_TRAITS},
                            "computed_at": AT.isoformat()}
            assert isinstance(read["mean_interpurchase_days"], float) and read["items_per_order"] == 7.333333
            assert service.get_tags(session, workspace.id, "m1") == ["high_value", "new_mom"]
            assert service.get_tags(session, workspace.id, "m2") == []  # null tags: none

    def test_replaces_the_workspaces_set_only(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            other = accounts.ensure_workspace(session, name="Other brand", slug="other")
        save(context, other, {"m1": {"lifecycle_stage": "new"}})
        save(context, workspace, {"m1": {"lifecycle_stage": "new"}, "m2": {"lifecycle_stage": "new"}})
        # m2 was absorbed by a merge: its row goes; the same computation time again is no obstacle
        save(context, workspace, {"m1": {"lifecycle_stage": "active", "tags": ["vip"]}, "m3": {}})
        assert served(context, workspace) == {"m1": ("active", ["vip"]), "m3": (None, [])}
        assert served(context, other) == {"m1": ("new", [])}
        save(context, workspace, {})
        assert served(context, workspace) == {}

    def test_a_failed_write_leaves_the_previous_set(self, context: Context, workspace: Workspace) -> None:
        save(context, workspace, {"m1": {"lifecycle_stage": "new"}, "m2": {"lifecycle_stage": "new"}})
        broken = pa.concat_tables([traits_of({"m1": {"lifecycle_stage": "active"}})] * 2)  # m1 twice
        with pytest.raises(IntegrityError), context.store.transaction() as session:
            service.save_serving_traits(session, workspace.id, broken, AT + timedelta(days=1))
        assert served(context, workspace) == {"m1": ("new", []), "m2": ("new", [])}

    def test_a_reader_sees_the_previous_set_until_the_write_commits(self, context: Context,
                                                                     workspace: Workspace) -> None:
        save(context, workspace, {f"m{i}": {"lifecycle_stage": "new"} for i in range(3)})
        with context.store.transaction() as session:
            service.save_serving_traits(session, workspace.id, traits_of({"m9": {"lifecycle_stage": "loyal"}}),
                                        AT + timedelta(days=1))
            assert served(context, workspace) == {f"m{i}": ("new", []) for i in range(3)}
        assert served(context, workspace) == {"m9": ("loyal", [])}

    def test_two_writers_of_a_workspace_queue(self, context: Context, workspace: Workspace) -> None:
        save(context, workspace, {"m0": {}})
        second_done = threading.Event()
        failures: list[BaseException] = []

        def second() -> None:
            try:
                save(context, workspace, {"m2": {"lifecycle_stage": "active"}, "m3": {}}, AT + timedelta(days=2))
            except BaseException as exc:  # reported below, in the test's thread
                failures.append(exc)
            finally:
                second_done.set()

        with context.store.transaction() as session:
            service.save_serving_traits(session, workspace.id, traits_of({"m1": {}, "m2": {"lifecycle_stage": "new"}}),
                                        AT + timedelta(days=1))
            writer = threading.Thread(target=second)
            writer.start()
            assert not second_done.wait(1.0)  # waits for the first writer
        writer.join(30)
        assert not failures
        assert served(context, workspace) == {"m2": ("active", []), "m3": (None, [])}
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(MemberTrait)) == 2
