"""Which channels know each person, under which ids, since when, and who referred them.

Channels: three that sell (``tmall``, ``jd``, ``pos``) and two that only know people (``wechat``
mini-programme members, ``app`` accounts). A person may hold two records in one channel (a second
POS card, a second Tmall nick); the *primary* record is the one their orders use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from memberops.demo.clock import SECONDS_PER_DAY, DemoWindow
from memberops.demo.people import CITIES, SURNAMES, People, given_pinyin
from memberops.demo.text import HEX_ALPHABET, choose, concat, digits, pick, scramble, tokens

SELLING_CHANNELS = ("tmall", "jd", "pos")
CHANNELS = (*SELLING_CHANNELS, "wechat", "app")
TMALL, JD, POS = 0, 1, 2

STORES = (  # store id, city index in CITIES, district, landline digits
    ("SH01", 0, "静安嘉里中心", "62881230"), ("SH02", 0, "浦东正大广场", "50471288"), ("SH03", 0, "徐汇港汇恒隆", "64073366"),
    ("SH04", 0, "闵行仲盛", "54178899"), ("BJ01", 1, "朝阳大悦城", "85523377"), ("BJ02", 1, "海淀华润五彩城", "82736655"),
    ("BJ03", 1, "西单大悦城", "66519988"), ("GZ01", 2, "天河正佳广场", "38801122"), ("GZ02", 2, "番禺万达", "34567788"),
    ("SZ01", 3, "南山海岸城", "86287711"), ("SZ02", 3, "福田COCO Park", "83567799"), ("HZ01", 4, "西湖银泰", "87063322"),
    ("HZ02", 4, "滨江龙湖天街", "86691155"), ("NJ01", 5, "新街口德基", "84786600"), ("SU01", 6, "园区苏州中心", "62955577"),
    ("CD01", 7, "春熙路IFS", "86651199"), ("CD02", 7, "高新银泰", "85336622"), ("WH01", 8, "武商广场", "85712233"),
    ("CQ01", 9, "解放碑时代广场", "63801144"), ("XA01", 11, "赛格国际", "87389955"), ("CS01", 12, "五一广场IFS", "84881177"),
    ("TJ01", 10, "大悦城", "27556688"),
)
ASSOCIATES_PER_STORE = 4


@dataclass(frozen=True)
class Stores:
    store_id: tuple[str, ...]
    name: tuple[str, ...]
    city: np.ndarray
    phone: tuple[str, ...]  # landline as the store writes it, e.g. 021-62881230

    def __len__(self) -> int:
        return len(self.store_id)


def make_stores() -> Stores:
    return Stores(
        store_id=tuple(s[0] for s in STORES),
        name=tuple(f"小芽母婴 {CITIES[s[1]][1]}{s[2]}店" for s in STORES),
        city=np.array([s[1] for s in STORES]),
        phone=tuple(f"{CITIES[s[1]][3]}-{s[3]}" for s in STORES),
    )


def home_stores(rng: np.random.Generator, stores: Stores, city: np.ndarray) -> np.ndarray:
    """A store in the person's city; failing that one in their province; failing that any store."""
    province_of_city = np.unique([c[0] for c in CITIES], return_inverse=True)[1]
    chosen = rng.integers(0, len(stores), len(city))
    u = rng.random(len(city))
    for area_of_store, area_of_person in ((province_of_city[stores.city], province_of_city[city]), (stores.city, city)):
        order = np.argsort(area_of_store, kind="stable")
        sorted_area = area_of_store[order]
        first = np.searchsorted(sorted_area, area_of_person, side="left")
        count = np.searchsorted(sorted_area, area_of_person, side="right") - first
        local = order[np.minimum(first + (u * np.maximum(count, 1)).astype(np.int64), len(order) - 1)]
        chosen = np.where(count > 0, local, chosen)
    return chosen


@dataclass(frozen=True)
class Records:
    """One channel's identity records: whose they are, their ids and when the person joined.

    ``joined`` is in Unix seconds, -1 where the channel does not know (a marketplace buyer who never
    joined the shop's membership). ``referrer`` is the referring person's index, or -1.
    """

    channel: str
    person: np.ndarray
    source_id: pa.Array
    joined: np.ndarray
    is_primary: np.ndarray
    referrer: np.ndarray

    def __len__(self) -> int:
        return len(self.person)

    def primary_of(self, population: int) -> np.ndarray:
        """Per person, the index of their primary record, or -1."""
        lookup = np.full(population, -1, dtype=np.int64)
        lookup[self.person[self.is_primary]] = np.flatnonzero(self.is_primary)
        return lookup


def before(rng: np.random.Generator, window: DemoWindow, anchor: np.ndarray, mean_days: float) -> np.ndarray:
    """A moment an exponential time before ``anchor``, no earlier than a year before the window."""
    earliest = window.start_seconds - 365 * SECONDS_PER_DAY
    lag = rng.exponential(mean_days * SECONDS_PER_DAY, len(anchor)).astype(np.int64)
    return np.maximum(anchor - lag, earliest)


def anytime(rng: np.random.Generator, window: DemoWindow, n: int, lead_days: int = 180) -> np.ndarray:
    """Uniform over the window, starting ``lead_days`` before it (people known from before)."""
    return rng.integers(window.start_seconds - lead_days * SECONDS_PER_DAY, window.end_seconds, n)


def around(rng: np.random.Generator, window: DemoWindow, anchor: np.ndarray, spread_days: float) -> np.ndarray:
    """A moment normally spread around ``anchor``, from a year before the window to its end."""
    jitter = rng.normal(0, spread_days * SECONDS_PER_DAY, len(anchor)).astype(np.int64)
    return np.clip(anchor + jitter, window.start_seconds - 365 * SECONDS_PER_DAY, window.end_seconds)


def source_ids(rng: np.random.Generator, channel: str, people: People, person: np.ndarray, joined: np.ndarray) -> pa.Array:
    """Ids in each channel's own style; unique within the channel by construction."""
    n = len(person)
    k = np.arange(n)
    if channel == "tmall":  # buyer nicks: tb + digits, pinyin + digits, or a Chinese nick + digits
        style = rng.choice(3, n, p=[0.45, 0.35, 0.2])
        numbers = scramble(k, 8, salt=11)
        pinyin = concat(pick([p for _, p, _ in SURNAMES], people.surname[person]), given_pinyin(people.given[person]))
        nick = pick(["宝妈", "小芽粉", "辣妈", "芽芽", "萌宝妈咪"], rng.integers(0, 5, n))
        return choose(style, concat("tb", digits(scramble(k, 10, salt=12), 10)), concat(pinyin, digits(numbers, 8)),
                      concat(nick, digits(numbers, 8)))
    if channel == "jd":  # JD pins: jd_ and a hex token
        return tokens(rng, k, "jd_", 6, salt=13, alphabet=HEX_ALPHABET)
    if channel == "wechat":  # openid of the brand's mini-programme
        return tokens(rng, k, "oXsP5", 17, salt=14)
    if channel == "pos":  # the POS numbers customers in order of registration
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(joined, kind="stable")] = np.arange(n)
        return digits(rank + 200_001)
    if channel == "app":
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(joined, kind="stable")] = np.arange(n)
        return concat("u", digits(rank + 10_000_001))
    raise ValueError(channel)


def assign_referrers(rng: np.random.Generator, referee: np.ndarray, referee_joined: np.ndarray, pool: np.ndarray,
                     pool_joined: np.ndarray, pool_weight: np.ndarray) -> np.ndarray:
    """For each referee, a referrer from ``pool`` who joined earlier, drawn in proportion to ``pool_weight``
    (a heavy-tailed advocacy score, so a few people refer many). -1 where nobody joined earlier."""
    order = np.argsort(pool_joined, kind="stable")
    pool, pool_joined, cumulative = pool[order], pool_joined[order], np.cumsum(pool_weight[order])
    earlier = np.searchsorted(pool_joined, referee_joined, side="left")
    has_earlier = earlier > 0
    target = rng.random(len(referee)) * cumulative[np.maximum(earlier - 1, 0)]
    chosen = np.minimum(np.searchsorted(cumulative, target, side="right"), np.maximum(earlier - 1, 0))
    referrer = np.where(has_earlier, pool[chosen], -1)
    # Nobody refers themself: fall back to the previous person in the pool.
    self_referral = referrer == referee
    referrer = np.where(self_referral & (chosen > 0), pool[np.maximum(chosen - 1, 0)], referrer)
    return np.where(referrer == referee, -1, referrer)
