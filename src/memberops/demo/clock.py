"""The demo brand's calendar: a fixed two-year window, its shopping festivals and promotions.

Buying is generated in *operational time*: weeks of an average shopping week. A day's intensity says
how many average days it is worth (Double 11 is worth several, the Spring Festival holiday less than
one), so a homogeneous purchase process in operational time becomes a seasonal one in calendar time
while keeping every BG/NBD property exact in operational time (``SeasonalClock.to_operational``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

TIMEZONE = "Asia/Shanghai"
UTC_OFFSET_HOURS = 8
WINDOW_START = date(2024, 11, 1)
WINDOW_END = date(2026, 10, 31)  # the last day of history, inclusive
SECONDS_PER_DAY = 86_400
EPOCH_DAY = date(1970, 1, 1)

SPRING_FESTIVALS = (date(2025, 1, 29), date(2026, 2, 17))


def local_midnight_seconds(day: date) -> int:
    """Unix seconds of the day's local (UTC+8) midnight."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=UTC_OFFSET_HOURS)
    return int(midnight.timestamp())


START_SECONDS = local_midnight_seconds(WINDOW_START)
END_SECONDS = local_midnight_seconds(WINDOW_END + timedelta(days=1)) - 1  # 23:59:59 local on the last day
END_ISO = "2026-10-31T23:59:59+08:00"


@dataclass(frozen=True)
class Festival:
    """A shopping moment: its days, how much busier they are, and the discount it brings."""

    name: str
    coupon_prefix: str
    days: tuple[date, ...]
    intensity: float
    discount: float


def _span(first: date, last: date) -> tuple[date, ...]:
    return tuple(first + timedelta(days=i) for i in range((last - first).days + 1))


def festivals() -> tuple[Festival, ...]:
    """Every festival in the window; a later entry wins on a day two of them share."""
    found: list[Festival] = []
    for year in (2024, 2025, 2026):
        found += [
            Festival("double11_presale", "D11", _span(date(year, 10, 21), date(year, 11, 10)), 1.6, 0.15),
            Festival("double11", "D11", (date(year, 11, 11),), 6.0, 0.25),
            Festival("double11_return", "D11", _span(date(year, 11, 12), date(year, 11, 13)), 1.5, 0.15),
            Festival("double12", "D12", (date(year, 12, 12),), 2.5, 0.12),
            Festival("womens_day", "QW38", _span(date(year, 3, 6), date(year, 3, 8)), 1.8, 0.10),
            Festival("618_presale", "618", _span(date(year, 6, 1), date(year, 6, 17)), 1.5, 0.12),
            Festival("618", "618", (date(year, 6, 18),), 4.0, 0.20),
            Festival("99_festival", "S99", (date(year, 9, 9),), 1.8, 0.10),
        ]
    for new_year in SPRING_FESTIVALS:
        shopping = _span(new_year - timedelta(days=24), new_year - timedelta(days=8))  # 年货节
        holiday = _span(new_year - timedelta(days=3), new_year + timedelta(days=6))  # couriers rest, shops too
        found.append(Festival("new_year_shopping", "CNY", shopping, 1.3, 0.08))
        found.append(Festival("spring_festival", "CNY", holiday, 0.5, 0.0))
    return tuple(found)


class SeasonalClock:
    """Maps calendar days of the window to operational weeks and back (piecewise linear by day)."""

    def __init__(self) -> None:
        days = (WINDOW_END - WINDOW_START).days + 1
        self.days = days
        calendar = [WINDOW_START + timedelta(days=i) for i in range(days)]
        intensity = np.ones(days)
        intensity[[d.weekday() >= 5 for d in calendar]] = 1.1
        discount = np.zeros(days)
        festival_index = np.full(days, -1, dtype=np.int64)
        self.festivals = festivals()
        for k, festival in enumerate(self.festivals):
            for day in festival.days:
                i = (day - WINDOW_START).days
                if 0 <= i < days:
                    intensity[i] = festival.intensity
                    discount[i] = festival.discount
                    festival_index[i] = k
        self.intensity = intensity / intensity.mean()
        self.discount = discount
        self.festival_index = festival_index
        # Operational weeks elapsed at the start of each calendar day (and at the window's end).
        self.cumulative_weeks = np.concatenate([[0.0], np.cumsum(self.intensity)]) / 7.0
        self.horizon_weeks = float(self.cumulative_weeks[-1])  # equals the window's length in weeks

    def to_calendar_days(self, operational_weeks: np.ndarray) -> np.ndarray:
        """Fractional days since the window's start for points in operational time."""
        return np.interp(operational_weeks, self.cumulative_weeks, np.arange(self.days + 1, dtype=np.float64))

    def to_operational(self, calendar_days: np.ndarray) -> np.ndarray:
        """Operational weeks for fractional days since the window's start."""
        return np.interp(calendar_days, np.arange(self.days + 1, dtype=np.float64), self.cumulative_weeks)

    def day_of(self, seconds: np.ndarray) -> np.ndarray:
        """The window day index (0-based, local calendar) of Unix seconds."""
        return np.clip((np.asarray(seconds) - START_SECONDS) // SECONDS_PER_DAY, 0, self.days - 1)


def time_of_day_seconds(rng: np.random.Generator, day_index: np.ndarray, clock: SeasonalClock) -> np.ndarray:
    """Seconds after local midnight for purchases: evening-heavy, with the Double 11 midnight rush."""
    n = len(day_index)
    # Hour weights of a mother-and-baby shop: quiet at night, lunch break, nap time and a late evening peak.
    hour_weights = np.array([2, 1, .5, .3, .2, .2, .4, 1, 2, 3, 4, 5, 5, 4, 4, 4, 4, 4, 5, 6, 8, 9, 8, 5], float)
    hours = rng.choice(24, size=n, p=hour_weights / hour_weights.sum())
    festival = clock.festival_index[day_index]
    names = np.array([f.name for f in clock.festivals] + [""])
    midnight_rush = (names[festival] == "double11") & (rng.random(n) < 0.35)
    hours = np.where(midnight_rush, 0, hours)
    return hours * 3600 + rng.integers(0, 3600, n)


def store_hours_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds after local midnight for till sales: 10:00 to 21:59, busiest after lunch and after work."""
    hour_weights = np.array([3, 4, 5, 5, 5, 4, 4, 5, 6, 6, 4, 2], dtype=np.float64)
    hours = 10 + rng.choice(12, size=n, p=hour_weights / hour_weights.sum())
    return hours * 3600 + rng.integers(0, 3600, n)
