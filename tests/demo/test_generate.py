"""The demo brand: reproducible files that match their presets, a complete ground truth, and buying that
follows the processes it claims.

Reference values: BG/NBD expectations E[X(t)] and P(X(t) = 0) from Fader, Hardie & Lee (2005), "Counting
your customers the easy way", Marketing Science 24(2), eq. 9 and the Poisson–gamma mixture; the Gamma–Gamma
mean spend ``p v / (q - 1)`` from Fader, Hardie & Lee (2005), "RFM and CLV", JMR 42(4).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from memberops.demo.clock import REFERENCE_END, UnknownSpringFestival
from memberops.demo.generate import BrandSummary, generate_brand
from memberops.demo.processes import BuyingParameters, expected_repeat_purchases, probability_no_repeat
from memberops.ingest.canonical import KINDS
from memberops.ingest.mapping import Mapping, load_mapping, preset_path

IMPORT_ORDER = ("customers", "orders", "order-items", "refunds", "events")
UNKNOWN_GENDER = {"未知", "保密", "0"}  # read as "not given" by the importer, on purpose left out of value maps


def read_rows(root: Path, entry: dict) -> list[dict[str, str]]:
    """A generated file's rows as text, whatever its format; a missing value is empty text, as in a CSV file."""
    path = root / entry["path"]
    if entry["format"] == "csv":
        text = path.read_bytes().decode(entry["encoding"])
        return list(csv.DictReader(io.StringIO(text)))
    if entry["format"] == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    table = pq.read_table(path)
    return [{k: ("" if v is None else str(v)) for k, v in row.items()} for row in table.to_pylist()]


def columns_of(root: Path, entry: dict) -> set[str]:
    path = root / entry["path"]
    if entry["format"] == "csv":
        with path.open(encoding=entry["encoding"], newline="") as handle:
            return set(next(csv.reader(handle)))
    if entry["format"] == "parquet":
        return set(pq.read_schema(path).names)
    keys: set[str] = set()
    for row in read_rows(root, entry)[:200]:
        keys |= set(row)
    return keys


def preset_of(entry: dict) -> Mapping:
    channel, kind = entry["preset"].split("/")
    return load_mapping(preset_path(channel, kind), kind)


def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text(encoding="utf-8"))


def money(text: str | None) -> Decimal:
    return Decimal(text) if text else Decimal(0)


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BrandSummary]:
    root = tmp_path_factory.mktemp("small")
    return root, generate_brand(root, members=500, seed=11, end=REFERENCE_END)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough buyers for the statistical checks (about 4,200 of 6,000 people)."""
    root = tmp_path_factory.mktemp("sample")
    generate_brand(root, members=6_000, seed=5, end=REFERENCE_END)
    return root


@pytest.fixture(scope="module")
def sample_orders(sample: Path) -> dict[str, list[dict[str, str]]]:
    """Per selling channel, the canonical view of its orders: order_id, customer_key, paid, shipping, time."""
    result = {}
    for entry in manifest(sample)["files"]:
        if entry["kind"] != "orders":
            continue
        mapping = preset_of(entry)
        c = mapping.columns
        result[entry["channel"]] = [
            {"order_id": row[c["order_id"]], "customer_key": row[c["customer_key"]], "paid": row[c["paid_amount"]],
             "shipping": row.get(c.get("shipping_amount", ""), "0.00") or "0.00", "ordered_at": row[c["ordered_at"]]}
            for row in read_rows(sample, entry)
        ]
    return result


@pytest.fixture(scope="module")
def person_of(sample: Path) -> dict[tuple[str, str], str]:
    table = pq.read_table(sample / "ground_truth" / "persons.parquet").to_pylist()
    return {(r["channel"], r["source_id"]): r["person_id"] for r in table}


@pytest.fixture(scope="module")
def params(sample: Path) -> dict[str, dict]:
    return {r["person_id"]: r for r in pq.read_table(sample / "ground_truth" / "person_params.parquet").to_pylist()}


class TestDeterminism:
    def test_same_seed_same_bytes(self, small: tuple[Path, BrandSummary], tmp_path: Path) -> None:
        root, _ = small
        generate_brand(tmp_path, members=500, seed=11, end=REFERENCE_END)
        assert files_of(tmp_path) == files_of(root)

    def test_other_seed_other_brand(self, small: tuple[Path, BrandSummary], tmp_path: Path) -> None:
        root, _ = small
        generate_brand(tmp_path, members=500, seed=12, end=REFERENCE_END)
        first, second = files_of(root), files_of(tmp_path)
        assert first.keys() == second.keys()
        people_files = [name for name in first if name.endswith((".csv", ".jsonl")) and name != "catalogue.csv"]
        assert all(first[name] != second[name] for name in people_files)


def order_days(root: Path) -> list[str]:
    """The local day (YYYY-MM-DD) of every order in every selling channel's export."""
    days = []
    for entry in manifest(root)["files"]:
        if entry["kind"] == "orders":
            column = preset_of(entry).columns["ordered_at"]
            days += [row[column].replace("/", "-")[:10] for row in read_rows(root, entry)]
    return days


class TestWindow:
    """The history ends yesterday unless pinned: a brand generated today is alive as of today."""

    def test_by_default_the_history_ends_yesterday(self, tmp_path: Path) -> None:
        today_before = (datetime.now(UTC) + timedelta(hours=8)).date()
        summary = generate_brand(tmp_path, members=200, seed=3)
        today_after = (datetime.now(UTC) + timedelta(hours=8)).date()
        assert summary.window.end in {today_before - timedelta(days=1), today_after - timedelta(days=1)}
        assert manifest(tmp_path)["window"] == {"start": summary.window.start_iso, "end": summary.window.end_iso}
        days = order_days(tmp_path)
        assert summary.window.start.isoformat() <= min(days) and max(days) <= summary.window.end.isoformat()
        # buying goes on to the end: the last fortnight has orders, as a live shop's would
        assert max(days) >= (summary.window.end - timedelta(days=14)).isoformat()

    def test_another_end_is_the_same_brand_shifted(self, small: tuple[Path, BrandSummary], tmp_path: Path) -> None:
        root, first = small
        later = generate_brand(tmp_path, members=500, seed=11, end=date(2031, 6, 30))
        assert later.window.days == first.window.days == 730
        assert later.window.start - first.window.start == later.window.end - first.window.end
        assert (later.members, later.buyers, later.identity_records, later.orders) == \
            (first.members, first.buyers, first.identity_records, first.orders)
        persons = pq.read_table(root / "ground_truth" / "persons.parquet").column("person_id")
        assert pq.read_table(tmp_path / "ground_truth" / "persons.parquet").column("person_id") == persons
        for brand, window in ((root, first.window), (tmp_path, later.window)):
            days = order_days(brand)
            assert window.start.isoformat() <= min(days) <= (window.start + timedelta(days=31)).isoformat()
            assert (window.end - timedelta(days=31)).isoformat() <= max(days) <= window.end.isoformat()
            events = read_rows(brand, next(e for e in manifest(brand)["files"] if e["kind"] == "events"))
            moments = [datetime.fromisoformat(e["ts"]) for e in events]
            assert window.start_seconds <= min(m.timestamp() for m in moments)
            assert max(m.timestamp() for m in moments) <= window.end_seconds

    def test_the_same_end_gives_the_same_bytes_on_any_day(self, small: tuple[Path, BrandSummary], tmp_path: Path) -> None:
        root, _ = small
        generate_brand(tmp_path, members=500, seed=11, end=date(2026, 10, 31))
        assert files_of(tmp_path) == files_of(root)
        assert manifest(root)["window"] == {"start": "2024-11-01T00:00:00+08:00", "end": "2026-10-31T23:59:59+08:00"}

    def test_festivals_follow_the_window(self, tmp_path: Path) -> None:
        summary = generate_brand(tmp_path, members=200, seed=3, end=date(2031, 6, 30))
        parameters = json.loads((tmp_path / "ground_truth" / "parameters.json").read_text(encoding="utf-8"))
        assert parameters["window"] == {"start": "2029-07-01", "end": "2031-06-30", "end_at": "2031-06-30T23:59:59+08:00"}
        festivals = {(f["name"], f["first_day"]) for f in parameters["festivals"]}
        assert {("double11", "2029-11-11"), ("double11", "2030-11-11"), ("618", "2031-06-18"),
                ("spring_festival", "2030-01-31"), ("spring_festival", "2031-01-20")} <= festivals
        assert all(summary.window.start.isoformat() <= f["last_day"] and f["first_day"] <= "2031-06-30"
                   for f in parameters["festivals"])
        assert len(parameters["daily_intensity"]) == 730

    def test_an_end_beyond_the_calendar_fails_before_anything_is_written(self, small: tuple[Path, BrandSummary],
                                                                         tmp_path: Path) -> None:
        root, _ = small
        brand = tmp_path / "brand"
        brand.mkdir()
        (brand / "manifest.json").write_bytes((root / "manifest.json").read_bytes())
        with pytest.raises(UnknownSpringFestival, match="not of 2043"):  # the first year it lacks
            generate_brand(brand, members=500, seed=11, end=date(2045, 1, 1))
        assert (brand / "manifest.json").read_bytes() == (root / "manifest.json").read_bytes()
        assert [p.name for p in brand.iterdir()] == ["manifest.json"]


class TestManifest:
    def test_files_are_listed_in_import_order(self, small: tuple[Path, BrandSummary]) -> None:
        root, summary = small
        kinds = [entry["kind"] for entry in manifest(root)["files"]]
        assert [IMPORT_ORDER.index(k) for k in kinds] == sorted(IMPORT_ORDER.index(k) for k in kinds)
        assert {e["channel"] for e in manifest(root)["files"]} == {"tmall", "jd", "wechat", "pos", "app"}
        assert [f.path for f in summary.files] == [e["path"] for e in manifest(root)["files"]]

    def test_every_file_exists_with_the_columns_its_preset_maps(self, small: tuple[Path, BrandSummary]) -> None:
        root, _ = small
        for entry in manifest(root)["files"]:
            mapping = preset_of(entry)
            assert (root / entry["path"]).is_file()
            assert mapping.kind == entry["kind"] and mapping.channel == entry["channel"]
            assert mapping.format == entry["format"]
            assert mapping.encoding in ("auto", entry["encoding"])
            missing = set(mapping.columns.values()) - columns_of(root, entry)
            assert not missing, f"{entry['path']} lacks {missing}"
            assert len(read_rows(root, entry)) == entry["rows"] > 0

    def test_every_required_field_has_a_source(self, small: tuple[Path, BrandSummary]) -> None:
        root, _ = small
        for entry in manifest(root)["files"]:
            mapping, columns = preset_of(entry), columns_of(root, entry)
            for field in KINDS[entry["kind"]].required:
                assert field in mapping.columns or field in mapping.defaults or field in columns, (entry["path"], field)

    def test_value_maps_cover_every_value_in_the_files(self, small: tuple[Path, BrandSummary]) -> None:
        root, _ = small
        for entry in manifest(root)["files"]:
            mapping, rows = preset_of(entry), read_rows(root, entry)
            for field, value_map in mapping.values.items():
                seen = {row[mapping.columns[field]] for row in rows} - {None, ""}
                unmapped = seen - set(value_map) - (UNKNOWN_GENDER if field == "gender" else set())
                assert not unmapped, (entry["path"], field, unmapped)

    def test_dates_and_times_parse_with_the_preset_formats(self, small: tuple[Path, BrandSummary]) -> None:
        root, _ = small
        for entry in manifest(root)["files"]:
            mapping, rows = preset_of(entry), read_rows(root, entry)
            for field, fmt in mapping.formats.items():
                values = [row[mapping.columns[field]] for row in rows if row[mapping.columns[field]]]
                assert values, (entry["path"], field)
                for value in values:
                    datetime.strptime(value, fmt)  # raises on a mismatch

    def test_every_demo_preset_validates(self) -> None:
        for channel in ("tmall", "jd", "wechat", "pos", "app"):
            for path in sorted(preset_path(channel, "customers").parent.glob("*.yaml")):
                assert load_mapping(path, path.stem).channel == channel


class TestGroundTruth:
    def test_covers_every_customer_record(self, small: tuple[Path, BrandSummary]) -> None:
        root, summary = small
        truth = pq.read_table(root / "ground_truth" / "persons.parquet").to_pylist()
        assert len(truth) == summary.identity_records
        for entry in manifest(root)["files"]:
            if entry["kind"] != "customers":
                continue
            column = preset_of(entry).columns["source_id"]
            source_ids = {row[column] for row in read_rows(root, entry)}
            assert source_ids == {r["source_id"] for r in truth if r["channel"] == entry["channel"]}
            assert len(source_ids) == entry["rows"]  # unique within the channel

    def test_people_appear_on_several_channels_under_different_ids(self, sample: Path) -> None:
        truth = pq.read_table(sample / "ground_truth" / "persons.parquet").to_pylist()
        ids_by_person: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for r in truth:
            ids_by_person[r["person_id"]][r["channel"]].add(r["source_id"])
        multi = [channels for channels in ids_by_person.values() if len(channels) >= 2]
        assert len(multi) / len(ids_by_person) > 0.3
        for channels in multi:
            all_ids = [i for ids in channels.values() for i in ids]
            assert len(all_ids) == len(set(all_ids))
        assert any(len(ids) == 2 for channels in ids_by_person.values() for ids in channels.values())

    def test_shared_identifiers_are_noisy_but_linkable(self, sample: Path) -> None:
        files = {(e["channel"], e["kind"]): e for e in manifest(sample)["files"]}
        pos = read_rows(sample, files[("pos", "customers")])
        phones = [row["Mobile"] for row in pos if row["Mobile"]]
        def shape(phone: str) -> str:
            if phone.startswith("+86"):
                return "+86 spaced" if " " in phone else "+86"
            return "dashed" if "-" in phone else "spaced" if " " in phone else "digits"

        assert {shape(p) for p in phones} == {"+86 spaced", "+86", "dashed", "spaced", "digits"}
        emails = [row["Email"] for row in pos if row["Email"]]
        assert any(e != e.strip() for e in emails) and any(e != e.lower() for e in emails)
        # The unionid ties an app user who logs in with WeChat to their WeChat membership.
        truth = pq.read_table(sample / "ground_truth" / "persons.parquet").to_pylist()
        person = {(r["channel"], r["source_id"]): r["person_id"] for r in truth}
        wechat = {person[("wechat", r["openid"])]: r["unionid"] for r in read_rows(sample, files[("wechat", "customers")])}
        app_users = read_rows(sample, files[("app", "customers")])
        app = [(person[("app", r["user_id"])], r["wx_unionid"]) for r in app_users if r["wx_unionid"]]
        assert app and all(wechat[p] == unionid for p, unionid in app)

    def test_referral_codes_are_cards_of_earlier_members(self, sample: Path) -> None:
        files = {(e["channel"], e["kind"]): e for e in manifest(sample)["files"]}
        wechat = read_rows(sample, files[("wechat", "customers")])
        pos = read_rows(sample, files[("pos", "customers")])
        card_since: dict[str, datetime] = {}
        joined = [(r["会员卡号"], datetime.strptime(r["注册时间"], "%Y-%m-%d %H:%M:%S"), r["推荐人会员码"]) for r in wechat]
        joined += [(r["Card No"], datetime.strptime(r["Registered"], "%Y-%m-%d %H:%M"), r["Referred By"]) for r in pos]
        for card, at, _ in joined:
            card_since[card] = min(at, card_since.get(card, at))
        referred = [(at, code) for _, at, code in joined if code]
        assert len(referred) > 100
        assert all(code in card_since and card_since[code] <= at for at, code in referred)
        assert all(r["注册来源"] == "好友推荐" for r in wechat if r["推荐人会员码"])
        referrers = Counter(code for _, code in referred)
        assert referrers.most_common(1)[0][1] >= 3  # a few advocates bring many


class TestBuyingProcess:
    def test_repeat_purchases_follow_bgnbd(self, sample: Path, sample_orders: dict, person_of: dict, params: dict) -> None:
        truth = json.loads((sample / "ground_truth" / "parameters.json").read_text())
        bgnbd = BuyingParameters(**truth["bgnbd"], **truth["gamma_gamma"])
        purchases: Counter[str] = Counter()
        for channel, orders in sample_orders.items():
            for order in orders:
                if money(order["paid"]) > 0:
                    purchases[person_of[(channel, order["customer_key"])]] += 1
        buyers = [p for p in params.values() if not p["is_prospect"]]
        assert len(buyers) > 3_000
        repeats = np.array([purchases[p["person_id"]] - 1 for p in buyers], dtype=float)
        observed = np.array([p["observed_weeks"] for p in buyers])
        assert (repeats >= 0).all()
        expected = expected_repeat_purchases(observed, bgnbd)
        error = repeats - expected
        assert abs(error.mean()) < 4 * error.std() / np.sqrt(len(buyers))
        assert abs(error.mean()) < 0.1 * expected.mean()
        no_repeat = (repeats == 0).astype(float) - probability_no_repeat(observed, bgnbd)
        assert abs(no_repeat.mean()) < 4 * no_repeat.std() / np.sqrt(len(buyers))
        assert np.array_equal(repeats, [p["repeat_purchases"] for p in buyers])

    def test_spend_follows_gamma_gamma(self, sample: Path, sample_orders: dict, person_of: dict) -> None:
        truth = json.loads((sample / "ground_truth" / "parameters.json").read_text())
        spend: dict[str, list[float]] = defaultdict(list)
        for channel, orders in sample_orders.items():
            for order in orders:
                if money(order["paid"]) > 0:
                    value = money(order["paid"]) - money(order["shipping"])
                    spend[person_of[(channel, order["customer_key"])]].append(float(value))
        per_person = np.array([np.mean(values) for values in spend.values()])
        gg = truth["gamma_gamma"]
        assert truth["mean_spend"] == pytest.approx(gg["p"] * gg["v"] / (gg["q"] - 1))
        assert abs(per_person.mean() - truth["mean_spend"]) < 4 * per_person.std() / np.sqrt(len(per_person))

    def test_prospects_never_buy(self, sample_orders: dict, person_of: dict, params: dict) -> None:
        buyers = {person_of[(channel, o["customer_key"])] for channel, orders in sample_orders.items() for o in orders}
        prospects = {p for p, row in params.items() if row["is_prospect"]}
        assert prospects and not buyers & prospects

    def test_refunds_reference_orders_and_never_exceed_what_was_paid(self, sample: Path, sample_orders: dict) -> None:
        refunded = 0
        for entry in manifest(sample)["files"]:
            if entry["kind"] != "refunds":
                continue
            c = preset_of(entry).columns
            paid = {o["order_id"]: money(o["paid"]) for o in sample_orders[entry["channel"]]}
            total: defaultdict[str, Decimal] = defaultdict(Decimal)
            for row in read_rows(sample, entry):
                assert row[c["order_id"]] in paid
                assert money(row[c["amount"]]) > 0
                total[row[c["order_id"]]] += money(row[c["amount"]])
            assert all(amount <= paid[order] for order, amount in total.items())
            refunded += len(total)
        orders = sum(len(o) for o in sample_orders.values())
        assert 0.03 < refunded / orders < 0.07

    def test_order_amounts_add_up(self, sample: Path) -> None:
        files = manifest(sample)["files"]
        for entry in files:
            if entry["kind"] != "orders":
                continue
            c = preset_of(entry).columns
            orders = {row[c["order_id"]]: row for row in read_rows(sample, entry)}
            items = next(e for e in files if e["kind"] == "order-items" and e["channel"] == entry["channel"])
            ic = preset_of(items).columns
            lines: defaultdict[str, Decimal] = defaultdict(Decimal)
            for row in read_rows(sample, items):
                assert money(row[ic["amount"]]) == money(row[ic["unit_price"]]) * int(row[ic["quantity"]])
                lines[row[ic["order_id"]]] += money(row[ic["amount"]])
            for order_id, row in orders.items():
                gross = money(row[c["gross_amount"]])
                assert lines[order_id] == gross
                if money(row[c["paid_amount"]]) > 0:
                    shipping = money(row.get(c.get("shipping_amount", ""), "0"))
                    assert gross - money(row[c["discount_amount"]]) + shipping == money(row[c["paid_amount"]])

    def test_double_11_is_the_busiest_day(self, sample_orders: dict) -> None:
        days = Counter(o["ordered_at"].replace("/", "-")[:10] for orders in sample_orders.values() for o in orders)
        ordinary = np.median(list(days.values()))
        assert days["2025-11-11"] > 3 * ordinary
        assert days.most_common(1)[0][0] in ("2025-11-11", "2024-11-11")
