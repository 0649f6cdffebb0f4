"""The demo brand's calendar: a two-year window of history, its shopping festivals and promotions.

The window is a value (:class:`DemoWindow`): ``WINDOW_DAYS`` days that end on a given day, by default
yesterday in the brand's time zone (:meth:`DemoWindow.ending_yesterday`), so a brand generated today
looks alive to insight and loyalty, which run as of now. Pin ``end`` to get the same brand on any day.

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
UTC_OFFSET_HOURS = 8  # China keeps no daylight saving time: a fixed offset is the zone
SECONDS_PER_DAY = 86_400
EPOCH_DAY = date(1970, 1, 1)
WINDOW_DAYS = 730  # two years of history, the last day included
# The window the test suite's and the README's figures were measured on: pin it to reproduce them.
REFERENCE_END = date(2026, 10, 31)

# The first day of the lunar year (春节), as published by the Purple Mountain Observatory; the lunar
# calendar follows observation, so the dates are a table, not a formula.
SPRING_FESTIVALS: dict[int, date] = {
    2020: date(2020, 1, 25), 2021: date(2021, 2, 12), 2022: date(2022, 2, 1), 2023: date(2023, 1, 22),
    2024: date(2024, 2, 10), 2025: date(2025, 1, 29), 2026: date(2026, 2, 17), 2027: date(2027, 2, 6),
    2028: date(2028, 1, 26), 2029: date(2029, 2, 13), 2030: date(2030, 2, 3), 2031: date(2031, 1, 23),
    2032: date(2032, 2, 11), 2033: date(2033, 1, 31), 2034: date(2034, 2, 19), 2035: date(2035, 2, 8),
    2036: date(2036, 1, 28), 2037: date(2037, 2, 15), 2038: date(2038, 2, 4), 2039: date(2039, 1, 24),
    2040: date(2040, 2, 12),
}
# Its shopping season and holiday around it (see ``festivals``).
NEW_YEAR_SHOPPING_LEAD_DAYS = 24
SPRING_HOLIDAY_DAYS_AFTER = 6


class UnknownSpringFestival(ValueError):
    """A demo window touches a year whose Spring Festival date is not in ``SPRING_FESTIVALS``."""

    def __init__(self, year: int) -> None:
        self.year = year
        first, last = min(SPRING_FESTIVALS), max(SPRING_FESTIVALS)
        earliest, latest = supported_ends()
        super().__init__(
            f"the demo calendar knows the Spring Festival of {first}–{last} only, not of {year}: "
            f"a demo window may end from {earliest.isoformat()} to {latest.isoformat()}"
        )


def supported_ends() -> tuple[date, date]:
    """The first and last ``end`` of a window whose every Spring Festival is in ``SPRING_FESTIVALS``: its
    first day after the latest season of the year before the table, its last day before the earliest
    season of the year after it."""
    first, last = min(SPRING_FESTIVALS), max(SPRING_FESTIVALS)
    after_first = spring_season_bounds(first - 1)[1] + timedelta(days=1)
    return after_first + timedelta(days=WINDOW_DAYS - 1), spring_season_bounds(last + 1)[0] - timedelta(days=1)


def spring_season_bounds(year: int) -> tuple[date, date]:
    """The earliest first day and the latest last day that the Spring Festival season of ``year`` (its
    shopping days and holiday) can have, table or not: the festival falls from 21 January to 20 February."""
    return (date(year, 1, 21) - timedelta(days=NEW_YEAR_SHOPPING_LEAD_DAYS),
            date(year, 2, 20) + timedelta(days=SPRING_HOLIDAY_DAYS_AFTER))


def spring_festival(year: int) -> date:
    """The first day of the lunar new year that starts in ``year``; :class:`UnknownSpringFestival` outside
    the table."""
    try:
        return SPRING_FESTIVALS[year]
    except KeyError:
        raise UnknownSpringFestival(year) from None


def local_midnight_seconds(day: date) -> int:
    """Unix seconds of the day's local (UTC+8) midnight."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=UTC_OFFSET_HOURS)
    return int(midnight.timestamp())


def local_midnight_of(seconds: np.ndarray) -> np.ndarray:
    """The local (UTC+8) midnight that starts the day of each of ``seconds``."""
    seconds = np.asarray(seconds)
    return seconds - (seconds + UTC_OFFSET_HOURS * 3600) % SECONDS_PER_DAY


@dataclass(frozen=True)
class Festival:
    """A shopping moment: its days, how much busier they are, and the discount it brings."""

    name: str
    coupon_prefix: str
    days: tuple[date, ...]
    intensity: float
    discount: float


@dataclass(frozen=True)
class DemoWindow:
    """The demo brand's history: ``WINDOW_DAYS`` local days from ``start`` to ``end``, both included.

    Every window has the same length, so two ends give the same brand shifted in time (its buying,
    drawn in operational weeks, follows each year's festivals). Made only for ends whose festivals are
    known: a window that touches a year outside ``SPRING_FESTIVALS`` raises :class:`UnknownSpringFestival`.

    Examples:
        >>> DemoWindow(date(2026, 10, 31)).start
        datetime.date(2024, 11, 1)
        >>> DemoWindow(date(2026, 10, 31)).end_iso
        '2026-10-31T23:59:59+08:00'
    """

    end: date  # the last day of history, inclusive, in the brand's local time

    def __post_init__(self) -> None:
        if isinstance(self.end, datetime) or not isinstance(self.end, date):
            raise TypeError(f"a demo window ends on a date, not {self.end!r}")
        for year in self.spring_festival_years():
            spring_festival(year)

    @classmethod
    def ending_yesterday(cls, now: datetime | None = None) -> DemoWindow:
        """The window whose last day is yesterday in the brand's time zone (``now``: default the clock)."""
        now = datetime.now(UTC) if now is None else now
        if now.tzinfo is None:
            raise ValueError("now needs its time zone")
        today = (now.astimezone(UTC) + timedelta(hours=UTC_OFFSET_HOURS)).date()
        return cls(today - timedelta(days=1))

    @property
    def start(self) -> date:
        """The first day of history."""
        return self.end - timedelta(days=WINDOW_DAYS - 1)

    @property
    def days(self) -> int:
        return WINDOW_DAYS

    @property
    def start_seconds(self) -> int:
        """Unix seconds of the first day's local midnight."""
        return local_midnight_seconds(self.start)

    @property
    def end_seconds(self) -> int:
        """Unix seconds of 23:59:59 local on the last day."""
        return local_midnight_seconds(self.end + timedelta(days=1)) - 1

    @property
    def start_iso(self) -> str:
        return f"{self.start.isoformat()}T00:00:00+{UTC_OFFSET_HOURS:02d}:00"

    @property
    def end_iso(self) -> str:
        return f"{self.end.isoformat()}T23:59:59+{UTC_OFFSET_HOURS:02d}:00"

    def years(self) -> range:
        """The calendar years the window touches."""
        return range(self.start.year, self.end.year + 1)

    def spring_festival_years(self) -> list[int]:
        """The lunar new years whose shopping season or holiday may fall in the window (the next year's
        season may start in late December)."""
        return [year for year in range(self.start.year, self.end.year + 2)
                if spring_season_bounds(year)[0] <= self.end and spring_season_bounds(year)[1] >= self.start]


def _span(first: date, last: date) -> tuple[date, ...]:
    return tuple(first + timedelta(days=i) for i in range((last - first).days + 1))


def festivals(window: DemoWindow) -> tuple[Festival, ...]:
    """Every festival of the years the window touches; a later entry wins on a day two of them share."""
    found: list[Festival] = []
    for year in window.years():
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
    for year in window.spring_festival_years():
        new_year = spring_festival(year)
        shopping = _span(new_year - timedelta(days=NEW_YEAR_SHOPPING_LEAD_DAYS), new_year - timedelta(days=8))  # 年货节
        holiday = _span(new_year - timedelta(days=3), new_year + timedelta(days=SPRING_HOLIDAY_DAYS_AFTER))  # couriers rest, shops too
        found.append(Festival("new_year_shopping", "CNY", shopping, 1.3, 0.08))
        found.append(Festival("spring_festival", "CNY", holiday, 0.5, 0.0))
    return tuple(found)


class SeasonalClock:
    """Maps calendar days of the window to operational weeks and back (piecewise linear by day)."""

    def __init__(self, window: DemoWindow) -> None:
        self.window = window
        days = window.days
        self.days = days
        calendar = [window.start + timedelta(days=i) for i in range(days)]
        intensity = np.ones(days)
        intensity[[d.weekday() >= 5 for d in calendar]] = 1.1
        discount = np.zeros(days)
        festival_index = np.full(days, -1, dtype=np.int64)
        self.festivals = festivals(window)
        for k, festival in enumerate(self.festivals):
            for day in festival.days:
                i = (day - window.start).days
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
        return np.clip((np.asarray(seconds) - self.window.start_seconds) // SECONDS_PER_DAY, 0, self.days - 1)


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
