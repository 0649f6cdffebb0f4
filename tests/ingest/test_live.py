"""The live ingest service: validation of values, idempotency, member resolution, refunds, the hook seam,
crash safety and the way to the lake — on every state store."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.db.outbox import OutboxRow
from memberops.identity.models import Member
from memberops.identity.service import resolve_customer
from memberops.ingest import live
from memberops.ingest.batch import import_file
from memberops.ingest.errors import OrderNotFound, RefundExceedsOrder
from memberops.ingest.lake_facts import lake_orders
from memberops.ingest.live import LiveHooks
from memberops.ingest.models import LiveOrder, LiveRefund, ReceivedKey
from memberops.ingest.schemas import (
    CustomerIn,
    EventIn,
    OrderIn,
    RefundIn,
    normalise_gender,
    parse_body,
    parse_money,
)
from memberops.lake.export import export_outbox
from memberops.runtime import Context

WHEN = "2026-03-01T10:15:00+08:00"


def event(event_id: str = "e1", **fields: Any) -> EventIn:
    return EventIn(**{"channel": "app", "event_id": event_id, "type": "page_view", "anonymous_id": "a1",
                      "occurred_at": WHEN, **fields})


def order(order_id: str = "o1", **fields: Any) -> OrderIn:
    return OrderIn(**{"channel": "pos", "order_id": order_id, "customer_key": "c1", "ordered_at": WHEN,
                      "paid_amount": "100.00", **fields})


def refund(refund_id: str = "r1", **fields: Any) -> RefundIn:
    return RefundIn(**{"channel": "pos", "refund_id": refund_id, "order_id": "o1", "refunded_at": WHEN,
                       "amount": "40.00", **fields})


def counts(context: Context) -> dict[str, int]:
    with context.store.read() as session:
        return {model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
                for model in (LiveOrder, LiveRefund, ReceivedKey, OutboxRow, Member)}


def statuses(outcomes: list[live.Outcome]) -> list[str]:
    return [o.status for o in outcomes]


class TestMoney:
    """``parse_money``: exact decimals with two places, never through a float's rounding."""

    amounts = st.decimals(min_value=0, max_value=Decimal("9999999999999999.99"), places=2,
                          allow_nan=False, allow_infinity=False)

    @given(amounts)
    def test_text_is_read_exactly(self, amount: Decimal) -> None:
        assert parse_money(str(amount)) == amount
        assert parse_money(f"{amount:f}") == amount

    @given(st.decimals(min_value=0, max_value=Decimal("9999999999999.99"), places=2,
                       allow_nan=False, allow_infinity=False))
    def test_json_numbers_up_to_15_digits_are_read_exactly(self, amount: Decimal) -> None:
        document = json.loads(f'{{"amount": {amount:f}}}')  # a JSON number, parsed to a float as clients do
        assert parse_money(document["amount"]) == amount

    @given(st.integers(min_value=0, max_value=10**15))
    def test_integers(self, whole: int) -> None:
        assert parse_money(whole) == Decimal(whole)

    @given(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False)
           .filter(lambda d: d != d.quantize(Decimal("0.01"))))
    def test_more_than_two_places_is_refused(self, amount: Decimal) -> None:
        with pytest.raises(PydanticCustomError) as error:
            parse_money(str(amount))
        assert error.value.type == "money_places"

    @given(st.decimals(max_value=Decimal("-0.01"), places=2, allow_nan=False, allow_infinity=False))
    def test_negative_is_refused(self, amount: Decimal) -> None:
        with pytest.raises(PydanticCustomError) as error:
            parse_money(str(amount))
        assert error.value.type == "money_negative"

    @given(st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=1e13))
    def test_a_float_is_exact_or_refused(self, value: float) -> None:
        try:
            parsed = parse_money(value)
        except PydanticCustomError as error:
            assert error.type in ("money_places", "money_precision")
        else:  # accepted only when the float's shortest form is the decimal itself, with at most 2 places
            assert parsed == Decimal(repr(value)) and float(parsed) == value

    @pytest.mark.parametrize("value", ["", "abc", "1e3", "1_000", "NaN", "Infinity", "12,50", True, None, [1]])
    def test_nonsense_is_refused(self, value: object) -> None:
        with pytest.raises(PydanticCustomError):
            parse_money(value)

    def test_beyond_the_column_is_refused(self) -> None:
        with pytest.raises(PydanticCustomError):
            parse_money("10000000000000000.00")

    def test_trailing_zeros_are_fine(self) -> None:
        assert parse_money("19.990") == Decimal("19.99")
        assert str(parse_money(7)) == "7.00"


class TestValues:
    def test_a_time_without_zone_is_refused(self) -> None:
        body = parse_body("events", json.dumps({"channel": "app", "event_id": "e", "type": "t", "anonymous_id": "a",
                                                "occurred_at": "2026-03-01T10:15:00"}).encode())
        (error,) = body.items[0].errors
        assert error.field == "occurred_at" and "time zone" in error.message

    def test_times_keep_their_instant(self) -> None:
        assert event().occurred_at == datetime(2026, 3, 1, 2, 15, tzinfo=UTC)

    @pytest.mark.parametrize(("raw", "expected"), [("女", "female"), ("F", "female"), (2, "female"), ("male", "male"),
                                                   ("1", "male"), ("0", None), ("保密", None), ("nonbinary", "other")])
    def test_gender(self, raw: object, expected: str | None) -> None:
        assert normalise_gender(raw) == expected

    def test_customer_identifiers_are_normalised(self) -> None:
        customer = CustomerIn(channel="wechat", source_id="u1", phone="138 0013 8000", email=" Li@Example.COM ")
        assert customer.identifiers()["phone"] == "+8613800138000"
        assert customer.identifiers()["email"] == "li@example.com"

    def test_a_bad_optional_customer_field_is_dropped_with_a_warning(self) -> None:
        body = parse_body("customers", json.dumps({"channel": "wechat", "source_id": "u1", "email": "not-an-email",
                                                   "birthday": "2023-02-30", "first_name": "Li"}).encode())
        (item,) = body.items
        assert item.value is not None and item.value.first_name == "Li" and item.value.email is None
        assert sorted(w.field for w in item.warnings) == ["birthday", "email"]

    def test_a_bad_customer_key_or_an_unknown_field_rejects_the_record(self) -> None:
        for document in ({"channel": "wechat", "source_id": " "}, {"channel": "wechat", "source_id": "u", "x": 1}):
            (item,) = parse_body("customers", json.dumps(document).encode()).items
            assert item.value is None and item.errors

    def test_an_event_needs_someone(self) -> None:
        (item,) = parse_body("events", json.dumps({"channel": "app", "event_id": "e", "type": "t",
                                                   "occurred_at": WHEN}).encode()).items
        assert [e.code for e in item.errors] == ["who_required"]

    def test_order_lines_need_their_own_numbers(self) -> None:
        line = {"line_no": 1, "sku": "s", "quantity": 1, "amount": "1.00"}
        with pytest.raises(ValueError, match="line_no"):
            order(items=[line, line])


class TestEvents:
    def test_new_events_are_accepted_and_queued_for_the_lake(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            outcomes = live.ingest_events(session, workspace, [event("e1"), event("e2")])
        assert statuses(outcomes) == ["accepted", "accepted"]
        assert counts(context)["received_key"] == 2 and counts(context)["outbox"] == 2

    def test_replay_changes_nothing(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            live.ingest_events(session, workspace, [event("e1"), event("e2")])
        before = counts(context)
        with context.store.transaction() as session:
            outcomes = live.ingest_events(session, workspace, [event("e1"), event("e2")])
        assert statuses(outcomes) == ["duplicate", "duplicate"]
        assert counts(context) == before

    def test_a_key_repeated_in_one_batch_counts_once(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            outcomes = live.ingest_events(session, workspace, [event("e1"), event("e1"), event("e1", channel="web")])
        assert statuses(outcomes) == ["accepted", "duplicate", "accepted"]  # the key is per channel
        assert counts(context)["outbox"] == 2


def _customer(session: Session, workspace: Workspace, source_id: str = "c1", channel: str = "pos") -> str:
    return resolve_customer(session, workspace, channel=channel, source_id=source_id, identifiers={}).member.id


class TestOrders:
    def test_the_buyer_is_resolved_through_the_identity_link(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            member_id = _customer(session, workspace, "c1")
            outcomes = live.ingest_orders(session, workspace, [order("o1"), order("o2", customer_key="stranger")])
        assert [o.member_id for o in outcomes] == [member_id, None]
        with context.store.read() as session:
            stored = {o.order_id: o.member_id for o in session.scalars(select(LiveOrder))}
        assert stored == {"o1": member_id, "o2": None}

    def test_a_merged_buyer_resolves_to_the_survivor(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            absorbed = _customer(session, workspace, "c1")
            survivor = _customer(session, workspace, "c2")
            session.get_one(Member, absorbed).merged_into_id = survivor
            session.flush()
            (outcome,) = live.ingest_orders(session, workspace, [order("o1", customer_key="c1")])
        assert outcome.member_id == survivor

    def test_order_and_lines_go_to_the_outbox_once(self, context: Context, workspace: Workspace) -> None:
        lines = [{"line_no": n, "sku": f"s{n}", "quantity": 1, "amount": "50.00"} for n in (1, 2)]
        with context.store.transaction() as session:
            first = live.ingest_orders(session, workspace, [order("o1", items=lines)])
        with context.store.transaction() as session:
            again = live.ingest_orders(session, workspace, [order("o1", items=lines)])
        assert statuses(first) == ["accepted"] and statuses(again) == ["duplicate"]
        with context.store.read() as session:
            topics = sorted(session.scalars(select(OutboxRow.topic)))
        assert topics == ["order_items", "order_items", "orders"]

    def test_hooks_run_for_accepted_orders_only(self, context: Context, workspace: Workspace) -> None:
        seen: list[str] = []
        hooks = LiveHooks(on_order_accepted=(lambda _session, o, _lines: seen.append(o.order_id),))
        with context.store.transaction() as session:
            live.ingest_orders(session, workspace, [order("o1"), order("o2")], hooks=hooks)
            live.ingest_orders(session, workspace, [order("o1"), order("o3")], hooks=hooks)
        assert seen == ["o1", "o2", "o3"]


class TestRefunds:
    def _order(self, context: Context, workspace: Workspace, paid: str = "100.00") -> None:
        with context.store.transaction() as session:
            live.ingest_orders(session, workspace, [order("o1", paid_amount=paid)])

    def test_refunds_add_up_to_the_paid_amount(self, context: Context, workspace: Workspace) -> None:
        self._order(context, workspace)
        with context.store.transaction() as session:
            outcomes = live.ingest_refunds(session, workspace, [refund("r1", amount="60.00"),
                                                                refund("r2", amount="40.00")])
        assert statuses(outcomes) == ["accepted", "accepted"]
        with context.store.read() as session:
            assert session.scalars(select(LiveOrder.refunded_amount)).one() == Decimal("100.00")

    def test_a_refund_exceeding_the_order_is_rejected(self, context: Context, workspace: Workspace) -> None:
        self._order(context, workspace)
        with context.store.transaction() as session:
            outcomes = live.ingest_refunds(session, workspace, [refund("r1", amount="60.00"),
                                                                refund("r2", amount="60.00")])
        assert statuses(outcomes) == ["accepted", "rejected"]
        problem = outcomes[1].problem
        assert isinstance(problem, RefundExceedsOrder) and problem.code == "refund_exceeds_order"
        assert problem.facts == {"order_id": "o1", "requested": "60.00", "refundable": "40.00"}
        with context.store.read() as session:
            assert session.scalars(select(LiveOrder.refunded_amount)).one() == Decimal("60.00")
            assert session.scalars(select(LiveRefund.refund_id)).all() == ["r1"]

    def test_a_refund_of_an_unknown_order_is_rejected(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            (outcome,) = live.ingest_refunds(session, workspace, [refund("r1", order_id="nope")])
        assert outcome.status == "rejected" and isinstance(outcome.problem, OrderNotFound)
        assert counts(context)["live_refund"] == 0 and counts(context)["outbox"] == 0

    def test_replay_changes_nothing(self, context: Context, workspace: Workspace) -> None:
        self._order(context, workspace)
        with context.store.transaction() as session:
            live.ingest_refunds(session, workspace, [refund("r1")])
        before = counts(context)
        with context.store.transaction() as session:
            outcomes = live.ingest_refunds(session, workspace, [refund("r1"), refund("r1")])
        assert statuses(outcomes) == ["duplicate", "duplicate"]
        assert counts(context) == before
        with context.store.read() as session:
            assert session.scalars(select(LiveOrder.refunded_amount)).one() == Decimal("40.00")

    def test_hooks_see_the_refund_and_its_order(self, context: Context, workspace: Workspace) -> None:
        self._order(context, workspace)
        seen: list[tuple[str, Decimal]] = []
        hooks = LiveHooks(on_refund_accepted=(lambda _s, r, o: seen.append((r.refund_id, o.refunded_amount)),))
        with context.store.transaction() as session:
            live.ingest_refunds(session, workspace, [refund("r1"), refund("r2", amount="99.00")], hooks=hooks)
        assert seen == [("r1", Decimal("40.00"))]


class TestCustomers:
    def test_the_identity_record_carries_attributes_and_consents(self, context: Context, workspace: Workspace) -> None:
        customer = CustomerIn(channel="wechat", source_id="u1", phone="13800138000", first_name="Li", gender="女",
                              birthday=date(1990, 5, 1), consent_sms=True, attributes={"baby_birth_date": "2025-01-01"})
        with context.store.transaction() as session:
            (outcome,) = live.ingest_customers(session, workspace, [customer])
        assert outcome.status == "accepted" and outcome.member_id
        with context.store.read() as session:
            (payload,) = session.scalars(select(OutboxRow.payload).where(OutboxRow.topic == "identity_records"))
        assert payload["phone"] == "+8613800138000" and payload["first_name"] == "Li"
        assert payload["gender"] == "female" and payload["birthday"] == "1990-05-01"
        assert payload["consents"] == {"sms": True} and payload["attributes"] == {"baby_birth_date": "2025-01-01"}

    def test_replay_changes_nothing(self, context: Context, workspace: Workspace) -> None:
        customer = CustomerIn(channel="wechat", source_id="u1", first_name="Li")
        with context.store.transaction() as session:
            (first,) = live.ingest_customers(session, workspace, [customer])
        before = counts(context)
        with context.store.transaction() as session:
            (again,) = live.ingest_customers(session, workspace, [customer])
        assert again.status == "duplicate" and again.member_id == first.member_id
        assert counts(context) == before


class TestCrashSafety:
    """A failure after some writes of a request leaves nothing of it behind."""

    def test_a_failing_hook_rolls_back_the_whole_request(self, context: Context, workspace: Workspace) -> None:
        def fail(_session: Session, _order: LiveOrder, _lines: object) -> None:
            raise RuntimeError("loyalty is down")

        before = counts(context)
        with pytest.raises(RuntimeError), context.store.transaction() as session:
            live.ingest_events(session, workspace, [event("e1")])
            live.ingest_orders(session, workspace, [order("o1", items=[
                {"line_no": 1, "sku": "s", "quantity": 1, "amount": "100.00"}])], hooks=LiveHooks(on_order_accepted=(fail,)))
        assert counts(context) == before
        with context.store.transaction() as session:  # and the same request succeeds when sent again
            assert statuses(live.ingest_orders(session, workspace, [order("o1")])) == ["accepted"]


class TestToTheLake:
    def test_every_accepted_item_reaches_the_lake_exactly_once(self, context: Context, workspace: Workspace) -> None:
        lines = [{"line_no": 1, "sku": "s", "quantity": 2, "unit_price": "25.00", "amount": "50.00"}]
        for _ in range(2):  # the second round is a replay
            with context.store.transaction() as session:
                live.ingest_events(session, workspace, [event(f"e{i}", properties={"i": i}) for i in range(5)])
                live.ingest_orders(session, workspace, [order("o1", items=lines, coupon_codes="A;B")])
                live.ingest_refunds(session, workspace, [refund("r1", amount="10.00")])
                live.ingest_customers(session, workspace, [CustomerIn(channel="pos", source_id="c9", city="Shanghai")])
            export_outbox(context.store, context.settings.lake_path)
        warehouse = context.warehouse()
        warehouse.refresh()
        found = {t: warehouse.count(t) for t in ("events", "orders", "order_items", "refunds", "identity_records")}
        assert found == {"events": 5, "orders": 1, "order_items": 1, "refunds": 1, "identity_records": 1}
        orders = warehouse.to_pyarrow(warehouse.table("orders")).to_pylist()
        assert orders[0]["paid_amount"] == Decimal("100.00") and orders[0]["coupon_codes"] == ["A", "B"]
        assert orders[0]["ordered_at"] == datetime(2026, 3, 1, 2, 15, tzinfo=UTC)
        people = warehouse.to_pyarrow(warehouse.table("identity_records")).to_pylist()
        assert people[0]["city"] == "Shanghai"


class TestOrdersImportedInBulk:
    """Facts that reached the lake through a batch import meet the live path."""

    ORDERS = ("order_id,customer_key,ordered_at,paid_amount,coupon_codes\n"
              "o1,c1,2026-03-01 10:15:00,100.00,\"A,B\"\no2,c2,2026-03-01 11:00:00,50.00,\n")
    REFUNDS = "refund_id,order_id,refunded_at,amount\nr-old,o1,2026-03-02 09:00:00,30.00\n"

    def _import(self, context: Context, workspace: Workspace, tmp_path: Any) -> None:
        for kind, text in (("orders", self.ORDERS), ("refunds", self.REFUNDS)):
            path = tmp_path / f"{kind}.csv"
            path.write_text(text)
            import_file(context, workspace, kind_name=kind, path=path, channel="pos")

    def _refund(self, context: Context, workspace: Workspace, *items: RefundIn) -> list[live.Outcome]:
        with context.store.transaction() as session:
            return live.ingest_refunds(session, workspace, list(items), lake_orders=lake_orders(context.warehouse))

    def test_a_refund_of_an_imported_order_is_accepted_within_what_is_left(
        self, context: Context, workspace: Workspace, tmp_path: Any
    ) -> None:
        self._import(context, workspace, tmp_path)
        outcomes = self._refund(context, workspace, refund("r1", amount="60.00"), refund("r2", amount="20.00"))
        assert statuses(outcomes) == ["accepted", "rejected"]  # 100 paid, 30 refunded in the import, 60 now
        assert isinstance(outcomes[1].problem, RefundExceedsOrder)
        assert outcomes[1].problem.facts["refundable"] == "10.00"
        with context.store.read() as session:
            adopted = session.scalars(select(LiveOrder)).one()
            assert (adopted.order_id, adopted.refunded_amount) == ("o1", Decimal("90.00"))
            assert adopted.coupon_codes == ["A", "B"]
            topics = session.scalars(select(OutboxRow.topic)).all()
        assert topics == ["refunds"]  # the order is in the lake already: never emitted again

    def test_a_refund_the_import_brought_is_a_duplicate(
        self, context: Context, workspace: Workspace, tmp_path: Any
    ) -> None:
        self._import(context, workspace, tmp_path)
        (outcome,) = self._refund(context, workspace, refund("r-old", amount="30.00"))
        assert outcome.status == "duplicate"
        assert counts(context)["live_refund"] == 0 and counts(context)["outbox"] == 0

    def test_an_order_found_nowhere_is_still_rejected(
        self, context: Context, workspace: Workspace, tmp_path: Any
    ) -> None:
        self._import(context, workspace, tmp_path)
        (outcome,) = self._refund(context, workspace, refund("r1", order_id="nope"))
        assert outcome.status == "rejected" and isinstance(outcome.problem, OrderNotFound)

    def test_an_imported_order_posted_live_again_reaches_the_lake_once(
        self, context: Context, workspace: Workspace, tmp_path: Any
    ) -> None:
        self._import(context, workspace, tmp_path)
        with context.store.transaction() as session:
            live.ingest_orders(session, workspace, [order("o2", ordered_at="2026-03-01T11:00:00+00:00"),
                                                    order("o3")])
        export_outbox(context.store, context.settings.lake_path)
        warehouse = context.warehouse()
        orders = warehouse.table("orders")
        ids = sorted(warehouse.to_pyarrow(orders.select("order_id")).column("order_id").to_pylist())
        assert ids == ["o1", "o2", "o3"]
