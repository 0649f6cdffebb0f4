"""Generate the demo brand, Little Sprout (小芽), a mother-and-baby brand, as the files its channels export.

``generate_brand(out_dir)`` writes::

    manifest.json                    every file: channel, kind, format, encoding, preset, rows — import order
    catalogue.csv                    sku, name, category, brand, list price
    tmall/members.csv                tmall customers (buyer nicks, shop members)    + orders, order_items, refunds (GB18030)
    jd/members.csv                   jd customers (pins)                            + orders, order_items, refunds
    wechat/members.csv               WeChat mini-programme members (openid, unionid, brand card)
    pos/customers.csv                store customers                                + orders, order_items, refunds
    app/users.parquet                app accounts                                   + events.jsonl
    ground_truth/persons.parquet     (channel, kind, source_id) -> person_id for every customer record
    ground_truth/devices.parquet     app device id -> person_id (null: a visitor never identified)
    ground_truth/person_params.parquet   per person: lambda, p, nu, observation, repeats, prospect…
    ground_truth/parameters.json     the population's true BG/NBD and Gamma–Gamma parameters

Its history covers two years (``clock.DemoWindow``) that end yesterday in the brand's time zone, unless
``end`` pins the last day. Deterministic: the same ``seed``, ``members`` and ``end`` give the same bytes.
Vectorised end to end (see ``world``, ``customer_exports``, ``order_exports``, ``events``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from memberops.demo import customer_exports, order_exports
from memberops.demo.catalogue import BRAND, CATEGORIES
from memberops.demo.clock import TIMEZONE, DemoWindow, UnknownSpringFestival
from memberops.demo.events import Devices, build_events, event_lines
from memberops.demo.people import CITIES
from memberops.demo.records import CHANNELS
from memberops.demo.text import money
from memberops.demo.world import PROSPECT_SHARE, REFUND_SHARE, World, build_world


@dataclass(frozen=True)
class ManifestFile:
    """One generated file and how to import it: ``memberops import <kind> <path> --channel <channel>``."""

    path: str  # relative to the output directory, with forward slashes
    channel: str
    kind: str  # customers | orders | order-items | refunds | events
    format: str  # csv | jsonl | parquet
    encoding: str  # utf-8 | gb18030 (binary formats: utf-8)
    preset: str  # <channel>/<kind>: ingest/presets/<channel>/<kind>.yaml
    rows: int


@dataclass(frozen=True)
class BrandSummary:
    """What ``generate_brand`` wrote; ``files`` are in an order that imports cleanly."""

    out_dir: Path
    seed: int
    members: int
    prospects: int
    buyers: int
    identity_records: int
    orders: int
    order_items: int
    refunds: int
    events: int
    files: tuple[ManifestFile, ...]
    seconds: float
    window: DemoWindow  # the days of history it holds


def generate_brand(out_dir: Path, *, members: int = 20_000, seed: int = 7, end: date | None = None) -> BrandSummary:
    """Write the demo brand with ``members`` people (prospects included) into ``out_dir``, its history the
    two years up to ``end`` (default yesterday in the brand's time zone, so a brand made today is alive as
    of today). Raises ``clock.UnknownSpringFestival`` for an ``end`` beyond the calendar's table.

    Examples:
        >>> summary = generate_brand(Path("demo-data"), members=5_000, seed=7)  # doctest: +SKIP
        >>> [f.path for f in summary.files][:2]  # doctest: +SKIP
        ['tmall/members.csv', 'jd/members.csv']
        >>> generate_brand(Path("demo-data"), end=date(2026, 10, 31)).window.start  # doctest: +SKIP
        datetime.date(2024, 11, 1)
    """
    if members < 10:
        raise ValueError("the demo brand needs at least 10 members")
    window = DemoWindow.ending_yesterday() if end is None else DemoWindow(end)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    # The manifest is written last and says the brand is complete: an interrupted run must not leave one.
    (out_dir / "manifest.json").unlink(missing_ok=True)
    world = build_world(seed, members, window)

    # Once the world is drawn, every file is independent of the others and has its own random stream:
    # render and write them side by side (Arrow and numpy release the GIL), the bytes stay the same.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        events_job = pool.submit(_write_events, out_dir, world)
        customer_jobs = [
            pool.submit(_write_customers, out_dir, world, index, channel, path, render)
            for index, (channel, (path, render)) in enumerate(CUSTOMER_FILES.items())
        ]
        keys = order_exports.make_keys(world)
        fact_jobs = [
            pool.submit(_write_facts, out_dir, world, keys, channel, kind, name, render)
            for kind, name, render in FACT_FILES for channel in CHANNELS[:3]
        ]
        catalogue_rows = _write_catalogue(out_dir / "catalogue.csv", world)
        events_file, event_count, devices = events_job.result()
        truth_job = pool.submit(_write_ground_truth, out_dir / "ground_truth", world, devices)
        files = [job.result() for job in customer_jobs + fact_jobs] + [events_file]
        truth_job.result()
    manifest = {
        "brand": BRAND,
        "seed": seed,
        "members": members,
        "timezone": TIMEZONE,
        "currency": "CNY",
        "window": {"start": window.start_iso, "end": window.end_iso},
        "catalogue": {"path": "catalogue.csv", "rows": catalogue_rows},
        "ground_truth": {
            "persons": "ground_truth/persons.parquet",
            "devices": "ground_truth/devices.parquet",
            "person_params": "ground_truth/person_params.parquet",
            "parameters": "ground_truth/parameters.json",
        },
        "files": [asdict(f) for f in files],
    }
    _write_json(out_dir / "manifest.json", manifest)
    return BrandSummary(
        out_dir=out_dir, seed=seed, members=members, prospects=int(world.is_prospect.sum()),
        buyers=len(world.buyers), identity_records=sum(len(r) for r in world.records.values()),
        orders=len(world.orders), order_items=len(world.orders.baskets.order), refunds=len(world.orders.refunds.order),
        events=event_count, files=tuple(files), seconds=time.perf_counter() - started, window=window,
    )


CUSTOMER_FILES: dict[str, tuple[str, Callable[[np.random.Generator, World], pa.Table]]] = {
    "tmall": ("tmall/members.csv", customer_exports.tmall_members),
    "jd": ("jd/members.csv", customer_exports.jd_members),
    "pos": ("pos/customers.csv", customer_exports.pos_customers),
    "wechat": ("wechat/members.csv", customer_exports.wechat_members),
    "app": ("app/users.parquet", customer_exports.app_users),
}
FACT_FILES = (
    ("orders", "orders", order_exports.orders_table),
    ("order-items", "order_items", order_exports.items_table),
    ("refunds", "refunds", order_exports.refunds_table),
)
GB18030_CHANNELS = {"tmall"}  # 千牛 writes its order, item and refund exports in GB18030


def _write_customers(out_dir: Path, world: World, index: int, channel: str, path: str,
                     render: Callable[[np.random.Generator, World], pa.Table]) -> ManifestFile:
    table = render(np.random.default_rng([world.seed, 20 + index]), world)
    return _write(out_dir, path, channel, "customers", table)


def _write_facts(out_dir: Path, world: World, keys: order_exports.Keys, channel: str, kind: str, name: str,
                 render: Callable[[World, str, order_exports.Keys], pa.Table]) -> ManifestFile:
    encoding = "gb18030" if channel in GB18030_CHANNELS else "utf-8"
    return _write(out_dir, f"{channel}/{name}.csv", channel, kind, render(world, channel, keys), encoding)


def _write_events(out_dir: Path, world: World) -> tuple[ManifestFile, int, Devices]:
    events, devices = build_events(world)
    lines = event_lines(world, events, devices)
    return _write_lines(out_dir, "app/events.jsonl", "app", "events", lines), len(events), devices


def _write(out_dir: Path, relative: str, channel: str, kind: str, table: pa.Table, encoding: str = "utf-8") -> ManifestFile:
    path = out_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if relative.endswith(".parquet"):
        pq.write_table(table, path, compression="zstd")
        file_format = "parquet"
    else:
        _write_csv(path, table, encoding)
        file_format = "csv"
    return ManifestFile(relative, channel, kind, file_format, encoding, f"{channel}/{kind}", table.num_rows)


def _write_csv(path: Path, table: pa.Table, encoding: str = "utf-8") -> None:
    options = pa_csv.WriteOptions(quoting_style="needed")
    if encoding == "utf-8":
        pa_csv.write_csv(table, path, options)
        return
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, options)
    path.write_bytes(sink.getvalue().to_pybytes().decode("utf-8").encode(encoding))


def _write_lines(out_dir: Path, relative: str, channel: str, kind: str, chunks: Iterable[pa.Array]) -> ManifestFile:
    path = out_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with path.open("wb") as handle:
        for chunk in chunks:
            # The lines end in "\n" already: the string array's data buffer is the file's bytes.
            offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32, count=len(chunk) + 1, offset=chunk.offset * 4)
            handle.write(memoryview(chunk.buffers()[2])[offsets[0]:offsets[-1]])
            rows += len(chunk)
    return ManifestFile(relative, channel, kind, "jsonl", "utf-8", f"{channel}/{kind}", rows)


def _write_catalogue(path: Path, world: World) -> int:
    catalogue = world.catalogue
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "sku": pa.array(list(catalogue.sku)),
        "name": pa.array(list(catalogue.name)),
        "category": pa.array([CATEGORIES[c] for c in catalogue.category]),
        "brand": pa.array([BRAND] * len(catalogue)),
        "list_price": money(catalogue.price),
        "currency": pa.array(["CNY"] * len(catalogue)),
    })
    _write_csv(path, table)
    return table.num_rows


def _write_ground_truth(directory: Path, world: World, devices: Devices) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    person_id = world.people.person_id
    parts = [
        pa.table({
            "channel": pa.array([channel] * len(records)),
            "kind": pa.array(["customers"] * len(records)),
            "source_id": records.source_id,
            "person_id": person_id.take(pa.array(records.person)),
            "is_primary": pa.array(records.is_primary),
        })
        for channel, records in world.records.items()
    ]
    pq.write_table(pa.concat_tables(parts), directory / "persons.parquet", compression="zstd")
    pq.write_table(pa.table({
        "channel": pa.array(["app"] * len(devices.person)),
        "anonymous_id": devices.device_id,
        "person_id": _person_ids(world, devices.person),
    }), directory / "devices.parquet", compression="zstd")
    pq.write_table(_person_params(world), directory / "person_params.parquet", compression="zstd")
    _write_json(directory / "parameters.json", _parameters(world))


def _person_params(world: World) -> pa.Table:
    people, history, n = world.people, world.history, len(world.people)

    def per_person(values: np.ndarray) -> pa.Array:
        return pa.array(_scatter(n, world.buyers, values), mask=world.is_prospect)

    orders = world.orders
    first_purchase = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_purchase, orders.person[orders.is_transaction], orders.seconds[orders.is_transaction])
    first_purchase[world.is_prospect] = 0
    referrer = np.full(n, -1)
    for channel in ("pos", "wechat"):  # the WeChat referral wins when a person has both
        rec = world.records[channel]
        has = rec.referrer >= 0
        referrer[rec.person[has]] = rec.referrer[has]
    return pa.table({
        "person_id": people.person_id,
        "is_prospect": pa.array(world.is_prospect),
        "purchase_rate": per_person(history.purchase_rate),
        "dropout_probability": per_person(history.dropout),
        "spend_rate": per_person(history.spend_rate),
        "mean_spend": per_person(world.parameters.p / history.spend_rate),
        "first_purchase_at": pa.array(first_purchase.astype("datetime64[s]"), pa.timestamp("s", tz="UTC"),
                                      mask=world.is_prospect),
        "observed_weeks": per_person(history.observed),
        "repeat_purchases": per_person(history.repeat_count),
        "is_alive": per_person(history.is_alive),
        "main_category": pa.array([CATEGORIES[c] for c in range(len(CATEGORIES))]).take(pa.array(world.main_category)),
        "gender": pa.array(np.where(people.is_female, "female", "male")),
        "birthday": pa.array(people.birthday.astype("datetime64[D]"), pa.date32()),
        "baby_birthday": pa.array(people.baby_birthday.astype("datetime64[D]"), pa.date32()),
        "city": pa.array([c[1] for c in CITIES]).take(pa.array(people.city)),
        "phone": pa.array(people.phone),
        "email": people.email,
        "member_card_no": world.member_card,
        "wechat_unionid": world.wechat_unionid,
        "home_store": pa.array(list(world.stores.store_id)).take(pa.array(world.home_store)),
        "household_partner": _person_ids(world, people.household_partner),
        "referred_by": _person_ids(world, referrer),
    })


def _person_ids(world: World, person: np.ndarray) -> pa.Array:
    """Person ids of person indices; null where the index is -1."""
    ids = world.people.person_id.take(pa.array(np.maximum(person, 0)))
    return pc.if_else(pa.array(person >= 0), ids, pa.scalar(None, pa.string()))


def _scatter(n: int, where: np.ndarray, values: np.ndarray) -> np.ndarray:
    full: np.ndarray = np.zeros(n, dtype=values.dtype)
    full[where] = values
    return full


def _parameters(world: World) -> dict:
    params = world.parameters
    clock = world.clock
    window = clock.window
    return {
        "time_unit": "week",
        "operational_time": (
            "Purchases follow BG/NBD in operational weeks: calendar days weighted by daily_intensity (mean 1), "
            "so festivals hold more purchases. observed_weeks and the expectations are in operational weeks; "
            "a fit in calendar weeks recovers the parameters approximately."
        ),
        "bgnbd": {"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b},
        "gamma_gamma": {"p": params.p, "q": params.q, "v": params.v},
        "mean_spend": round(params.mean_spend, 6),
        "transactions": "orders with paid_amount > 0: all orders but the unpaid cancelled ones; the first is the trial",
        "spend": "paid_amount - shipping_amount of a transaction, CNY, exact to the cent",
        "prospect_share": PROSPECT_SHARE,
        "refund_share": REFUND_SHARE,
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat(), "end_at": window.end_iso},
        "horizon_weeks": round(clock.horizon_weeks, 9),
        "daily_intensity": [round(float(x), 6) for x in clock.intensity],
        "festivals": [
            {"name": f.name, "first_day": f.days[0].isoformat(), "last_day": f.days[-1].isoformat(),
             "intensity": f.intensity, "discount": f.discount}
            for f in clock.festivals if f.days[-1] >= window.start and f.days[0] <= window.end
        ],
    }


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """``python -m memberops.demo.generate --members N --seed S --out DIR [--end YYYY-MM-DD]`` (the CLI's face
    does the same)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--end", type=date.fromisoformat, default=None,
                        help="the last day of history, YYYY-MM-DD (default: yesterday in Asia/Shanghai)")
    args = parser.parse_args(argv)
    try:
        summary = generate_brand(args.out, members=args.members, seed=args.seed, end=args.end)
    except UnknownSpringFestival as exc:
        parser.error(f"--end {args.end}: {exc}")
    print(f"{summary.members} people, {summary.identity_records} customer records, {summary.orders} orders, "
          f"{summary.order_items} lines, {summary.refunds} refunds, {summary.events} events in {summary.seconds:.1f}s")


if __name__ == "__main__":
    main()
