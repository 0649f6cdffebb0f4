"""The demo brand's ground truth: people, what they bought where and when, and how channels know them.

``build_world`` draws everything from one seed, each stage from its own random stream (so a change to
one stage leaves the others' draws alone), with numpy over whole columns: no loop per person or order.
Rendering it in the channels' own file formats is ``exports``' job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from memberops.demo.catalogue import (
    CATEGORIES,
    CATEGORY_WEIGHTS,
    Baskets,
    Catalogue,
    build_catalogue,
    fill_baskets,
)
from memberops.demo.clock import (
    SECONDS_PER_DAY,
    DemoWindow,
    SeasonalClock,
    local_midnight_of,
    store_hours_seconds,
    time_of_day_seconds,
)
from memberops.demo.people import People, make_people
from memberops.demo.processes import BuyerHistories, BuyingParameters, sample_buyers
from memberops.demo.records import (
    ASSOCIATES_PER_STORE,
    CHANNELS,
    JD,
    POS,
    TMALL,
    Records,
    Stores,
    anytime,
    around,
    assign_referrers,
    before,
    home_stores,
    make_stores,
    source_ids,
)
from memberops.demo.text import concat, digits, scramble, tokens

PARAMETERS = BuyingParameters(r=0.45, alpha=3.0, a=1.6, b=5.0, p=6.0, q=4.0, v=140.0)
PROSPECT_SHARE = 0.3
REFUND_SHARE = 0.05
STATUSES = ("created", "paid", "shipped", "completed", "cancelled", "refunded")
PAID, SHIPPED, COMPLETED, CANCELLED, REFUNDED = 1, 2, 3, 4, 5
WELCOME_COUPON, STORE_COUPON = 1, 2
COUPON_CODES = ("", "WELCOME20", "SAVE10")  # by Orders.coupon


class Streams:
    """Independent random streams per stage, all from one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, stage: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stage])


@dataclass(frozen=True)
class Refunds:
    order: np.ndarray
    seconds: np.ndarray
    amount: np.ndarray  # cents, never above the order's paid amount
    product: np.ndarray  # catalogue index, -1 when the refund is not for one product
    quantity: np.ndarray  # 0 when not for one product
    is_full: np.ndarray


@dataclass(frozen=True)
class Orders:
    """Every order in every selling channel, sorted by channel then time; money in cents."""

    person: np.ndarray
    channel: np.ndarray  # TMALL, JD or POS
    record: np.ndarray  # index into the channel's Records (the buyer's primary record)
    seconds: np.ndarray
    store: np.ndarray  # POS orders' store, -1 elsewhere
    status: np.ndarray  # index into STATUSES
    gross: np.ndarray
    discount: np.ndarray
    shipping: np.ndarray
    paid: np.ndarray
    discount_rate: np.ndarray  # the promotion the order was placed under
    festival: np.ndarray  # index into clock.festivals, -1 on an ordinary day
    is_first: np.ndarray  # the buyer's first order in this channel
    coupon: np.ndarray  # 0 none, WELCOME_COUPON (first order), STORE_COUPON (an ordinary-day coupon)
    is_transaction: np.ndarray  # a purchase of the BG/NBD process (paid); False for unpaid cancelled orders
    baskets: Baskets
    refunds: Refunds

    def __len__(self) -> int:
        return len(self.person)


@dataclass(frozen=True)
class World:
    seed: int
    parameters: BuyingParameters
    clock: SeasonalClock
    catalogue: Catalogue
    stores: Stores
    people: People
    is_prospect: np.ndarray
    buyers: np.ndarray  # person index of each buyer in ``history``
    history: BuyerHistories
    main_category: np.ndarray  # per person
    home_store: np.ndarray  # per person
    associate: np.ndarray  # per person, 0..ASSOCIATES_PER_STORE-1 at the home store
    member_card: pa.Array  # per person: the brand's membership card number
    wechat_unionid: pa.Array  # per person: the same across the brand's WeChat mini-programme and app login
    records: dict[str, Records]
    orders: Orders


def build_world(seed: int, members: int, window: DemoWindow) -> World:
    """The brand's ground truth for ``members`` people over ``window``: the same seed and window, the same world."""
    streams = Streams(seed)
    clock, catalogue, stores = SeasonalClock(window), build_catalogue(), make_stores()
    start_seconds, end_seconds = window.start_seconds, window.end_seconds
    people = make_people(streams(1), members, window)
    n = members
    rng = streams(2)
    is_prospect = rng.random(n) < PROSPECT_SHARE
    buyers = np.flatnonzero(~is_prospect)
    main_category = rng.choice(len(CATEGORIES), n, p=CATEGORY_WEIGHTS)
    home_store = home_stores(rng, stores, people.city)
    associate = rng.integers(0, ASSOCIATES_PER_STORE, n)
    history = sample_buyers(streams(3), len(buyers), PARAMETERS, clock.horizon_weeks)

    # Where each buyer buys: a main selling channel and, for some, a second one.
    rng = streams(4)
    primary = np.full(n, -1)
    secondary = np.full(n, -1)
    primary[buyers] = rng.choice(3, len(buyers), p=[0.5, 0.2, 0.3])
    has_second = rng.random(len(buyers)) < 0.3
    secondary[buyers] = np.where(has_second, (primary[buyers] + rng.integers(1, 3, len(buyers))) % 3, -1)

    rng = streams(5)
    tx_person = buyers[history.owner]
    day = np.clip(np.floor(clock.to_calendar_days(history.weeks)).astype(np.int64), 0, clock.days - 1)
    tx_seconds = start_seconds + day * SECONDS_PER_DAY + time_of_day_seconds(rng, day, clock)
    is_trial = np.zeros(len(tx_person), dtype=bool)
    is_trial[np.cumsum(history.repeat_count + 1) - history.repeat_count - 1] = True
    use_second = (secondary[tx_person] >= 0) & (rng.random(len(tx_person)) < 0.3) & ~is_trial
    tx_channel = np.where(use_second, secondary[tx_person], primary[tx_person])
    at_till = tx_channel == POS
    tx_seconds[at_till] = start_seconds + day[at_till] * SECONDS_PER_DAY + store_hours_seconds(rng, int(at_till.sum()))
    spend = np.maximum(np.rint(history.spend * 100).astype(np.int64), 1)

    # Unpaid orders that were cancelled, orders but not purchases: a JD order left unpaid some time after
    # a purchase, a POS receipt rung up by mistake and voided minutes after the sale.
    template = np.flatnonzero((tx_channel != TMALL) & (rng.random(len(tx_person)) < 0.03))
    later = np.where(tx_channel[template] == POS, rng.integers(60, 600, len(template)),
                     rng.integers(3600, 5 * SECONDS_PER_DAY, len(template)))
    cancel_seconds = np.minimum(tx_seconds[template] + later, end_seconds)

    records = _records(streams(6), clock, people, is_prospect, buyers, history, primary, secondary,
                       tx_person, tx_channel, tx_seconds)
    orders = _orders(
        streams(7), clock, catalogue, stores, people, records, main_category, home_store,
        person=np.concatenate([tx_person, tx_person[template]]),
        channel=np.concatenate([tx_channel, tx_channel[template]]),
        seconds=np.concatenate([tx_seconds, cancel_seconds]),
        spend=np.concatenate([spend, spend[template]]),
        is_transaction=np.concatenate([np.ones(len(tx_person), bool), np.zeros(len(template), bool)]),
    )
    return World(
        seed=seed, parameters=PARAMETERS, clock=clock, catalogue=catalogue, stores=stores, people=people,
        is_prospect=is_prospect, buyers=buyers, history=history, main_category=main_category,
        home_store=home_store, associate=associate, member_card=concat("LS", digits(scramble(np.arange(n), 10, salt=21), 10)),
        wechat_unionid=tokens(streams(8), np.arange(n), "o6_bm", 23, salt=15), records=records, orders=orders,
    )


def _first_per_channel(n: int, person: np.ndarray, channel: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """(3, n): each person's first order time per selling channel, -1 where none."""
    first = np.full(3 * n, np.iinfo(np.int64).max)
    np.minimum.at(first, channel * n + person, seconds)
    first[first == np.iinfo(np.int64).max] = -1
    return first.reshape(3, n)


def _records(rng: np.random.Generator, clock: SeasonalClock, people: People, is_prospect: np.ndarray, buyers: np.ndarray,
             history: BuyerHistories, primary: np.ndarray, secondary: np.ndarray, tx_person: np.ndarray,
             tx_channel: np.ndarray, tx_seconds: np.ndarray) -> dict[str, Records]:
    n = len(people)
    window = clock.window
    first_order = _first_per_channel(n, tx_person, tx_channel, tx_seconds)
    first_any = np.full(n, -1)
    first_any[buyers] = tx_seconds[np.cumsum(history.repeat_count + 1) - history.repeat_count - 1]
    sells = [(primary == c) | (secondary == c) for c in range(3)]
    u = rng.random((5, n))
    has = {
        "tmall": sells[TMALL] | (is_prospect & (u[0] < 0.25)),
        "jd": sells[JD] | (is_prospect & (u[1] < 0.04)),
        "pos": sells[POS] | (is_prospect & (u[2] < 0.06)) | (~is_prospect & ~sells[POS] & (u[2] < 0.05)),
        "wechat": u[3] < np.where(is_prospect, 0.55, np.where(sells[POS], 0.65, 0.4)),
        "app": u[4] < np.where(is_prospect, 0.22, 0.28),
    }
    known = np.any(np.stack(list(has.values())), axis=0)
    has["wechat"] = has["wechat"] | ~known  # everybody the brand knows is known somewhere
    duplicate_share = {"tmall": 0.01, "jd": 0.0, "pos": 0.025, "wechat": 0.0, "app": 0.01}
    member_share = {"tmall": 0.6, "jd": 0.5}

    records: dict[str, Records] = {}
    for index, channel in enumerate(CHANNELS):
        person = np.flatnonzero(has[channel])
        duplicates = person[rng.random(len(person)) < duplicate_share[channel]]
        first = first_order[index][person] if index < 3 else np.full(len(person), -1)
        bought = first >= 0
        if channel in member_share:
            is_member = ~bought | (rng.random(len(person)) < member_share[channel])
            joined = np.where(bought, before(rng, window, first, 25), anytime(rng, window, len(person)))
            joined = np.where(is_member, joined, -1)
        elif channel == "pos":
            registered_at_till = first - rng.integers(60, 1800, len(person))
            joined = np.where(first_any[person] >= 0, around(rng, window, first_any[person], 60),
                              anytime(rng, window, len(person)))
            joined = _in_store_hours(rng, joined)  # a card is issued at the till, during opening hours
            joined = np.where(bought, registered_at_till, joined)
        else:
            spread = 120 if channel == "wechat" else 150
            joined = np.where(first_any[person] >= 0, around(rng, window, first_any[person], spread),
                              anytime(rng, window, len(person)))
            joined = _at_online_hours(rng, joined, clock)
        duplicate_joined = anytime(rng, window, len(duplicates), lead_days=0)
        if channel == "pos":
            duplicate_joined = _in_store_hours(rng, duplicate_joined)
        all_person = np.concatenate([person, duplicates])
        all_joined = np.concatenate([joined, duplicate_joined])
        order = np.lexsort((all_joined, all_person))  # grouped by person, in the order they registered
        all_person, all_joined = all_person[order], all_joined[order]
        is_primary = np.concatenate([np.ones(len(person), bool), np.zeros(len(duplicates), bool)])[order]
        records[channel] = Records(
            channel=channel, person=all_person, source_id=source_ids(rng, channel, people, all_person, all_joined),
            joined=all_joined, is_primary=is_primary, referrer=np.full(len(all_person), -1),
        )

    # Referrals run through the brand's membership card: WeChat "invite a friend" and in-store referrals.
    wechat, pos = records["wechat"], records["pos"]
    card_since = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(card_since, wechat.person, wechat.joined)
    np.minimum.at(card_since, pos.person[pos.is_primary], pos.joined[pos.is_primary])  # a second POS record has an old card
    pool = np.flatnonzero(card_since < np.iinfo(np.int64).max)
    advocacy = (rng.pareto(1.3, len(pool)) + 0.05) * np.where(is_prospect[pool], 1.0, 3.0)
    for channel, share in (("wechat", 0.08), ("pos", 0.04)):
        rec = records[channel]
        referred = np.flatnonzero((rng.random(len(rec)) < share) & rec.is_primary)
        referrer = rec.referrer.copy()
        referrer[referred] = assign_referrers(rng, rec.person[referred], rec.joined[referred], pool, card_since[pool],
                                              advocacy)
        records[channel] = Records(channel=channel, person=rec.person, source_id=rec.source_id, joined=rec.joined,
                                   is_primary=rec.is_primary, referrer=referrer)
    return records


def _at_online_hours(rng: np.random.Generator, seconds: np.ndarray, clock: SeasonalClock) -> np.ndarray:
    midnight = local_midnight_of(seconds)
    return np.minimum(midnight + time_of_day_seconds(rng, clock.day_of(midnight), clock), clock.window.end_seconds)


def _in_store_hours(rng: np.random.Generator, seconds: np.ndarray) -> np.ndarray:
    return local_midnight_of(seconds) + store_hours_seconds(rng, len(seconds))


def _orders(rng: np.random.Generator, clock: SeasonalClock, catalogue: Catalogue, stores: Stores, people: People,
            records: dict[str, Records], main_category: np.ndarray, home_store: np.ndarray, *, person: np.ndarray,
            channel: np.ndarray, seconds: np.ndarray, spend: np.ndarray, is_transaction: np.ndarray) -> Orders:
    order = np.lexsort((seconds, channel))
    person, channel, seconds, spend, is_transaction = (a[order] for a in (person, channel, seconds, spend, is_transaction))
    n = len(person)
    population = len(people)
    record = np.full(n, -1)
    for index, name in enumerate(CHANNELS[:3]):
        in_channel = channel == index
        record[in_channel] = records[name].primary_of(population)[person[in_channel]]

    day = clock.day_of(seconds)
    festival = clock.festival_index[day]
    first_key = np.unique(channel * population + person, return_index=True)[1]
    is_first = np.zeros(n, dtype=bool)
    is_first[first_key] = True
    welcome = is_first & (rng.random(n) < 0.5)
    store_coupon = ~welcome & (rng.random(n) < 0.2)
    coupon_rate = np.where(welcome, 0.08, np.where(store_coupon, rng.uniform(0.04, 0.1, n), 0.0))
    coupon = np.where(is_transaction, np.where(welcome, WELCOME_COUPON, np.where(store_coupon, STORE_COUPON, 0)), 0)
    discount_rate = np.where(is_transaction, np.maximum(clock.discount[day], coupon_rate), 0.0)
    with_gift = is_transaction & (festival >= 0) & (spend >= 29_900) & (rng.random(n) < 0.5)
    # Most orders follow the buyer's usual category; some are a different need of the week.
    category = np.where(rng.random(n) < 0.7, main_category[person], rng.choice(len(CATEGORIES), n, p=CATEGORY_WEIGHTS))
    baskets = fill_baskets(rng, catalogue, spend, discount_rate, category, with_gift)

    gross = baskets.gross
    shipping_fee = np.array([800, 600, 0])[channel]
    shipping = np.where(is_transaction & (spend < 9_900), shipping_fee, 0)
    discount = np.where(is_transaction, gross - spend, 0)
    paid = np.where(is_transaction, spend + shipping, 0)
    age = clock.window.end_seconds - seconds
    status = np.where(age < SECONDS_PER_DAY, PAID, np.where(age < 6 * SECONDS_PER_DAY, SHIPPED, COMPLETED))
    status = np.where(channel == POS, COMPLETED, status)
    status = np.where(is_transaction, status, CANCELLED)
    store = np.where(channel == POS, np.where(rng.random(n) < 0.9, home_store[person], rng.integers(0, len(stores), n)), -1)

    refunds = _refunds(rng, baskets, is_transaction, seconds, spend, paid, gross, clock.window.end_seconds)
    status[refunds.order[refunds.is_full]] = REFUNDED
    return Orders(
        person=person, channel=channel, record=record, seconds=seconds, store=store, status=status, gross=gross,
        discount=discount, shipping=shipping, paid=paid, discount_rate=discount_rate, festival=festival,
        is_first=is_first, coupon=coupon, is_transaction=is_transaction, baskets=baskets, refunds=refunds,
    )


def _refunds(rng: np.random.Generator, baskets: Baskets, is_transaction: np.ndarray, seconds: np.ndarray,
             spend: np.ndarray, paid: np.ndarray, gross: np.ndarray, end_seconds: int) -> Refunds:
    """About 5% of purchases are refunded: in full, for part of the main line, or as a price adjustment."""
    n = len(seconds)
    eligible = is_transaction & (seconds < end_seconds - 2 * SECONDS_PER_DAY)
    order = np.flatnonzero(eligible & (rng.random(n) < REFUND_SHARE))
    m = len(order)
    main_line = np.searchsorted(baskets.order, order, side="left")  # line 1 of each order
    main_quantity = baskets.quantity[main_line]
    is_full = rng.random(m) < 0.4
    by_item = ~is_full & (main_quantity >= 2)
    quantity = np.where(by_item, 1 + (rng.random(m) * np.maximum(main_quantity - 1, 1)).astype(np.int64), 0)
    # An item's refund is its share of what was paid for the goods, so it never exceeds the order's payment.
    item_amount = np.floor(quantity * baskets.unit_price[main_line] * spend[order] / gross[order]).astype(np.int64)
    adjustment = np.maximum(np.floor(paid[order] * rng.uniform(0.05, 0.3, m)).astype(np.int64), 1)
    amount = np.where(is_full, paid[order], np.where(by_item, np.maximum(item_amount, 1), adjustment))
    lag = rng.integers(SECONDS_PER_DAY // 2, 15 * SECONDS_PER_DAY, m)
    refunded_at = np.minimum(seconds[order] + lag, end_seconds)
    return Refunds(order=order, seconds=refunded_at, amount=np.minimum(amount, paid[order]),
                   product=np.where(by_item, baskets.product[main_line], -1), quantity=quantity, is_full=is_full)
