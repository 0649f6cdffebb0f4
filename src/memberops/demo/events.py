"""The app's behavioural events, as its SDK writes them: one JSON object per line.

Sessions arrive through the seasonal clock between a user's registration and the window's end; buyers
come more often than prospects. Purchases leave traces in the app whichever channel they happened in:
product views and add-to-carts before an order, bottle-code scans (points for the can's inner code)
after a formula order. Before registering, a device browses anonymously; the SDK then sends both ids.

A few engaged users also check in daily for a stretch of days (sign-in streaks, :func:`_streaks`), drawn
from a random stream of their own, so the rest of the brand is the same with or without them.

Lines are built as Arrow strings, so writing them is a copy of one buffer, never a loop per event.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memberops.demo.catalogue import CATEGORIES
from memberops.demo.clock import SECONDS_PER_DAY, time_of_day_seconds
from memberops.demo.text import blank_where, concat, digits, pick, timestamps, uuids
from memberops.demo.world import COUPON_CODES, World

EVENT_TYPES = (
    "page_view", "product_view", "add_to_cart", "coupon_claim", "bottle_code_scan", "share", "content_view", "sign_in",
)
PAGE_VIEW, PRODUCT_VIEW, ADD_TO_CART, COUPON_CLAIM, BOTTLE_CODE_SCAN, SHARE, CONTENT_VIEW, SIGN_IN = range(8)
IN_SESSION_WEIGHTS = np.array([0.14, 0.38, 0.12, 0.07, 0.0, 0.08, 0.21, 0.0])
PAGES = ("home", "category/formula", "category/diapers", "member_center", "points_mall", "store_locator", "parenting_tips")
TOPICS = ("feeding", "sleep", "growth", "recipes", "skin_care", "pregnancy")
SESSIONS_PER_WEEK = {"buyer": 0.08, "prospect": 0.04}
# Daily check-ins: a few engaged app users (buyers) sign in day after day for a while, one to three times
# in the window, so the programme's sign-in streak (7 days in a row) pays some of them.
STREAK_SHARE = 0.05
STREAK_RUNS = (1, 4)  # runs per engaged user: at least 1, fewer than 4
STREAK_LENGTHS = np.array([2, 3, 4, 5, 6, 7, 8, 10, 14, 15, 21, 30])
CHUNK = 500_000


@dataclass(frozen=True)
class Events:
    """Every app event, sorted by time; ``record`` indexes the app's Records (-1: anonymous visitor)."""

    seconds: np.ndarray
    type: np.ndarray
    record: np.ndarray
    device: np.ndarray  # index into the device table, -1 when the event carries no device id
    sku: np.ndarray  # catalogue index, -1 when none
    quantity: np.ndarray
    detail: np.ndarray  # type-specific small integer (page, topic, coupon, method…)

    def __len__(self) -> int:
        return len(self.seconds)


@dataclass(frozen=True)
class Devices:
    device_id: pa.Array
    person: np.ndarray  # -1 for visitors the brand never identified


def build_events(world: World) -> tuple[Events, Devices]:
    rng = np.random.default_rng([world.seed, 60])
    app = world.records["app"]
    clock, catalogue, people = world.clock, world.catalogue, world.people
    start_seconds, end_seconds = clock.window.start_seconds, clock.window.end_seconds
    n_records = len(app)
    is_buyer = ~world.is_prospect[app.person]
    start_weeks = clock.to_operational((np.maximum(app.joined, start_seconds) - start_seconds) / SECONDS_PER_DAY)
    active_weeks = clock.horizon_weeks - start_weeks
    rate = np.where(is_buyer, SESSIONS_PER_WEEK["buyer"], SESSIONS_PER_WEEK["prospect"]) * np.where(app.is_primary, 1.0, 0.2)
    sessions = rng.poisson(rate * active_weeks)
    session_record = np.repeat(np.arange(n_records), sessions)
    session_weeks = start_weeks[session_record] + rng.random(len(session_record)) * active_weeks[session_record]
    session_day = np.clip(np.floor(clock.to_calendar_days(session_weeks)).astype(np.int64), 0, clock.days - 1)
    session_start = start_seconds + session_day * SECONDS_PER_DAY + time_of_day_seconds(rng, session_day, clock)
    length = 1 + rng.poisson(1.5, len(session_record))
    event_session = np.repeat(np.arange(len(session_record)), length)
    position = np.arange(len(event_session)) - np.repeat(np.cumsum(length) - length, length)
    gaps = rng.integers(5, 180, len(event_session))
    seconds = session_start[event_session] + position * gaps
    kind = rng.choice(len(EVENT_TYPES), len(event_session), p=IN_SESSION_WEIGHTS / IN_SESSION_WEIGHTS.sum())
    opens_with_sign_in = rng.random(len(event_session)) < 0.3
    kind = np.where(position == 0, np.where(opens_with_sign_in, SIGN_IN, PAGE_VIEW), kind)
    record = session_record[event_session]

    # Traces of purchases (in any channel) left in the app of a buyer who uses it.
    orders, baskets = world.orders, world.orders.baskets
    app_record_of = app.primary_of(len(people))
    buyer_record = app_record_of[orders.person]
    main_line = np.searchsorted(baskets.order, np.arange(len(orders)), side="left")
    browsed = np.flatnonzero((buyer_record >= 0) & orders.is_transaction & (rng.random(len(orders)) < 0.3))
    before = orders.seconds[browsed] - rng.integers(600, 3 * 3600, len(browsed))
    is_formula = catalogue.category[baskets.product[main_line]] == CATEGORIES.index("formula")
    scanned = np.flatnonzero((buyer_record >= 0) & orders.is_transaction & is_formula & (rng.random(len(orders)) < 0.6))
    scan_at = orders.seconds[scanned] + rng.integers(2 * SECONDS_PER_DAY, 20 * SECONDS_PER_DAY, len(scanned))
    scanned, scan_at = scanned[scan_at <= end_seconds], scan_at[scan_at <= end_seconds]

    # Anonymous browsing before registration, on the device the user then signs in with.
    has_device = rng.random(n_records) < 0.6
    device_of_record = np.where(has_device, np.cumsum(has_device) - 1, -1)
    prior = np.where(has_device, rng.integers(1, 4, n_records), 0)
    prior_record = np.repeat(np.arange(n_records), prior)
    prior_seconds = app.joined[prior_record] - rng.integers(60, 7 * SECONDS_PER_DAY, len(prior_record))
    visitors = int(0.4 * n_records)
    visitor_events = rng.integers(1, 4, visitors)
    visitor_device = np.repeat(int(has_device.sum()) + np.arange(visitors), visitor_events)
    visitor_seconds = rng.integers(start_seconds, end_seconds, len(visitor_device))

    added_to_cart = before + rng.integers(20, 600, len(browsed))
    streak_record, streak_seconds = _streaks(world, is_buyer)
    all_seconds = np.concatenate([seconds, before, added_to_cart, scan_at, prior_seconds, visitor_seconds,
                                  streak_seconds])
    all_kind = np.concatenate([kind, np.full(len(browsed), PRODUCT_VIEW), np.full(len(browsed), ADD_TO_CART),
                               np.full(len(scanned), BOTTLE_CODE_SCAN),
                               np.where(rng.random(len(prior_record)) < 0.5, PAGE_VIEW, PRODUCT_VIEW),
                               np.where(rng.random(len(visitor_device)) < 0.6, PAGE_VIEW, PRODUCT_VIEW),
                               np.full(len(streak_record), SIGN_IN)])
    all_record = np.concatenate([record, buyer_record[browsed], buyer_record[browsed], buyer_record[scanned],
                                 np.full(len(prior_record), -1), np.full(len(visitor_device), -1), streak_record])
    all_device = np.concatenate([device_of_record[record], device_of_record[buyer_record[browsed]],
                                 device_of_record[buyer_record[browsed]], device_of_record[buyer_record[scanned]],
                                 device_of_record[prior_record], visitor_device, device_of_record[streak_record]])
    n = len(all_seconds)
    owner = np.where(all_record >= 0, app.person[np.maximum(all_record, 0)], -1)
    favourite = np.where(owner >= 0, world.main_category[np.maximum(owner, 0)], rng.integers(0, len(CATEGORIES), n))
    starts, ends = catalogue.category_bounds()
    browsed_sku = starts[favourite] + (rng.random(n) * (ends - starts)[favourite]).astype(np.int64)
    ordered_sku = baskets.product[main_line]
    sku = np.concatenate([browsed_sku[: len(seconds)], ordered_sku[browsed], ordered_sku[browsed], ordered_sku[scanned],
                          browsed_sku[len(seconds) + 2 * len(browsed) + len(scanned):]])
    quantity = np.concatenate([1 + rng.poisson(0.4, len(seconds)), baskets.quantity[main_line][browsed],
                               baskets.quantity[main_line][browsed], baskets.quantity[main_line][scanned],
                               np.ones(len(prior_record) + len(visitor_device) + len(streak_record), dtype=np.int64)])
    uses_sku = np.isin(all_kind, [PRODUCT_VIEW, ADD_TO_CART, BOTTLE_CODE_SCAN, SHARE])
    detail = rng.integers(0, 1 << 16, n)
    in_window = np.flatnonzero((all_seconds >= start_seconds) & (all_seconds <= end_seconds))
    order = in_window[np.argsort(all_seconds[in_window], kind="stable")]
    events = Events(
        seconds=all_seconds[order], type=all_kind[order], record=all_record[order], device=all_device[order],
        sku=np.where(uses_sku, sku, -1)[order], quantity=quantity[order], detail=detail[order],
    )
    device_count = int(has_device.sum()) + visitors
    device_person = np.concatenate([app.person[has_device], np.full(visitors, -1)])
    devices = Devices(device_id=uuids(rng, np.arange(device_count), salt=61, upper=True), person=device_person)
    return events, devices


def _streaks(world: World, is_buyer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Daily sign-ins of engaged app users: ``(app record, seconds)`` of one sign-in a day through each run
    of consecutive days, at a daytime hour (09:00–21:00 in China), from the user's registration on.
    Deterministic for the world's seed, from a random stream of its own."""
    rng = np.random.default_rng([world.seed, 64])
    app = world.records["app"]
    engaged = np.flatnonzero(app.is_primary & is_buyer & (rng.random(len(app)) < STREAK_SHARE))
    start_seconds, end_seconds = world.clock.window.start_seconds, world.clock.window.end_seconds
    run_record = np.repeat(engaged, rng.integers(*STREAK_RUNS, len(engaged)))
    first_day = (np.maximum(app.joined[run_record], start_seconds) - start_seconds) // SECONDS_PER_DAY + 1
    last_day = (end_seconds - start_seconds) // SECONDS_PER_DAY
    start = first_day + (rng.random(len(run_record)) * np.maximum(last_day - first_day, 0)).astype(np.int64)
    length = rng.choice(STREAK_LENGTHS, len(run_record))
    day = np.repeat(start, length) + np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    seconds = start_seconds + day * SECONDS_PER_DAY + rng.integers(9 * 3600, 21 * 3600, len(day))
    return np.repeat(run_record, length), seconds


def _properties(world: World, events: Events, rows: slice) -> pa.Array:
    """The ``props`` object of each event in ``rows``, built type by type and put back in time order."""
    kind = events.type[rows]
    by_type = np.argsort(kind, kind="stable")
    bounds = np.searchsorted(kind[by_type], np.arange(len(EVENT_TYPES) + 1))
    parts = [_properties_of(world, events, t, rows.start + by_type[bounds[t]:bounds[t + 1]]) for t in range(len(EVENT_TYPES))]
    back = np.empty_like(by_type)
    back[by_type] = np.arange(len(by_type))
    return pa.concat_arrays([p.cast(pa.string()) for p in parts]).take(pa.array(back))


def _properties_of(world: World, events: Events, kind: int, index: np.ndarray) -> pa.Array:
    sku, quantity, detail, seconds = events.sku[index], events.quantity[index], events.detail[index], events.seconds[index]
    catalogue = world.catalogue
    if kind == PAGE_VIEW:
        referrer = pick(["direct", "push", "wechat", "search"], detail % 4)
        return concat('{"page":"', pick(PAGES, detail % len(PAGES)), '","referrer":"', referrer, '"}')
    if kind == CONTENT_VIEW:
        topic = pick(TOPICS, detail % len(TOPICS))
        return concat('{"content_id":"c', digits(detail % 500, 4), '","topic":"', topic, '","duration_s":', digits(5 + detail % 600), "}")
    if kind == SIGN_IN:
        return concat('{"method":"', pick(["phone", "wechat", "password"], detail % 3), '"}')
    if kind == COUPON_CLAIM:
        festivals = world.clock.festivals
        festival = world.clock.festival_index[world.clock.day_of(seconds)]
        slot = np.where(festival >= 0, festival, len(festivals))
        campaign = pick([f.name for f in festivals] + ["evergreen"], slot)
        code = concat(pick([f.coupon_prefix + "-" for f in festivals] + [""], slot),
                      pc.if_else(pa.array(festival >= 0), timestamps(seconds, "%Y"), pick(COUPON_CODES[1:], detail % 2)))
        return concat('{"coupon_code":"', code, '","campaign":"', campaign, '"}')
    sku_text = pick(list(catalogue.sku), np.maximum(sku, 0))
    if kind == PRODUCT_VIEW:
        category = pick(CATEGORIES, catalogue.category[np.maximum(sku, 0)])
        source = pick(["home", "search", "push", "share"], detail % 4)
        return concat('{"sku":"', sku_text, '","category":"', category, '","source":"', source, '"}')
    if kind == ADD_TO_CART:
        return concat('{"sku":"', sku_text, '","quantity":', digits(quantity), "}")
    if kind == BOTTLE_CODE_SCAN:
        code = digits(detail * 100_003 + seconds % 100_000, 12)  # the can's inner code, as scanned
        return concat('{"code":"', code, '","sku":"', sku_text, '","cans":', digits(quantity), ',"points":', digits(quantity * 10), "}")
    return concat('{"sku":"', sku_text, '","to":"', pick(["wechat_friend", "moments"], detail % 2), '"}')


def event_lines(world: World, events: Events, devices: Devices) -> Iterator[pa.Array]:
    """JSON lines, in chunks: ``{"event_id", "ts", "event", "platform", "user_id", "device_id", "props"}``."""
    rng = np.random.default_rng([world.seed, 62])
    app = world.records["app"]
    platforms = ("ios", "android")
    platform_of_device = rng.choice(2, max(len(devices.device_id), 1), p=[0.45, 0.55])
    # One small table for the (type, platform) pairs saves two columns of concatenation per line.
    type_and_platform = [f'","event":"{t}","platform":"{p}","user_id":' for t in EVENT_TYPES for p in platforms]
    for start in range(0, len(events), CHUNK):
        rows = slice(start, min(start + CHUNK, len(events)))
        record, device = events.record[rows], events.device[rows]
        user = concat('"', app.source_id.take(pa.array(np.maximum(record, 0))), '"')
        user = blank_where(user, record < 0).fill_null("null")
        device_text = concat('"', devices.device_id.take(pa.array(np.maximum(device, 0))), '"')
        device_text = blank_where(device_text, device < 0).fill_null("null")
        platform = np.where(device >= 0, platform_of_device[np.maximum(device, 0)], 0)
        yield concat(
            '{"event_id":"', uuids(rng, np.arange(rows.start, rows.stop), salt=63), '","ts":"',
            timestamps(events.seconds[rows], "%Y-%m-%dT%H:%M:%SZ", utc_offset_hours=0),
            pick(type_and_platform, events.type[rows] * 2 + platform), user, ',"device_id":', device_text,
            ',"props":', _properties(world, events, rows), "}\n",
        )
