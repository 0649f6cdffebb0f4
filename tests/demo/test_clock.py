"""The demo brand's calendar: a two-year window that ends yesterday unless pinned, and the festivals of every
year it touches.

Reference: the Spring Festival (正月初一) dates of 2020–2040 as published by the Purple Mountain Observatory
and computed by ``lunardate`` 0.3.0 (``LunarDate(year, 1, 1).to_solar_date()``); a lunar year has 12 or 13
months of 29 or 30 days, so two Spring Festivals are 353–355 or 383–385 days apart.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pytest

from memberops.demo.clock import (
    REFERENCE_END,
    SPRING_FESTIVALS,
    WINDOW_DAYS,
    DemoWindow,
    SeasonalClock,
    UnknownSpringFestival,
    festivals,
    local_midnight_seconds,
    spring_festival,
    supported_ends,
)


class TestDemoWindow:
    def test_the_reference_window_is_the_one_the_figures_were_measured_on(self) -> None:
        window = DemoWindow(REFERENCE_END)
        assert (window.start, window.end, window.days) == (date(2024, 11, 1), date(2026, 10, 31), 730)
        assert window.start_iso == "2024-11-01T00:00:00+08:00" and window.end_iso == "2026-10-31T23:59:59+08:00"
        assert window.start_seconds == int(datetime(2024, 10, 31, 16, tzinfo=UTC).timestamp())
        assert window.end_seconds == int(datetime(2026, 10, 31, 15, 59, 59, tzinfo=UTC).timestamp())

    def test_by_default_it_ends_yesterday_in_shanghai(self) -> None:
        # 00:30 in Shanghai on 3 December is still 2 December in UTC: yesterday is the 2nd.
        just_after_midnight = datetime(2026, 12, 2, 16, 30, tzinfo=UTC)
        assert DemoWindow.ending_yesterday(just_after_midnight).end == date(2026, 12, 2)
        just_before_midnight = datetime(2026, 12, 2, 23, 59, tzinfo=timezone(timedelta(hours=8)))
        assert DemoWindow.ending_yesterday(just_before_midnight).end == date(2026, 12, 1)
        today_before = (datetime.now(UTC) + timedelta(hours=8)).date()
        window = DemoWindow.ending_yesterday()  # the clock's now
        today_after = (datetime.now(UTC) + timedelta(hours=8)).date()
        assert window.end in {today_before - timedelta(days=1), today_after - timedelta(days=1)}

    def test_a_time_without_its_zone_is_refused(self) -> None:
        with pytest.raises(ValueError, match="time zone"):
            DemoWindow.ending_yesterday(datetime(2026, 12, 3, 12, 0))

    def test_two_ends_give_windows_of_the_same_length_shifted(self) -> None:
        first, later = DemoWindow(REFERENCE_END), DemoWindow(date(2030, 3, 1))  # 2028 is a leap year
        assert first.days == later.days == WINDOW_DAYS
        assert (later.end - later.start).days == (first.end - first.start).days == WINDOW_DAYS - 1
        assert later.start - first.start == later.end - first.end
        assert later.end_seconds - later.start_seconds == first.end_seconds - first.start_seconds
        assert SeasonalClock(later).horizon_weeks == pytest.approx(SeasonalClock(first).horizon_weeks)

    def test_an_end_is_a_date(self) -> None:
        with pytest.raises(TypeError):
            DemoWindow(datetime(2026, 10, 31, tzinfo=UTC))


class TestSpringFestivals:
    def test_the_table_covers_2020_to_2040_with_published_dates(self) -> None:
        assert set(SPRING_FESTIVALS) >= set(range(2020, 2041))
        assert SPRING_FESTIVALS[2020] == date(2020, 1, 25) and SPRING_FESTIVALS[2025] == date(2025, 1, 29)
        assert SPRING_FESTIVALS[2026] == date(2026, 2, 17) and SPRING_FESTIVALS[2031] == date(2031, 1, 23)
        assert SPRING_FESTIVALS[2040] == date(2040, 2, 12)
        for year, day in SPRING_FESTIVALS.items():
            assert day.year == year and date(year, 1, 21) <= day <= date(year, 2, 20)
        years = sorted(SPRING_FESTIVALS)
        gaps = {(SPRING_FESTIVALS[b] - SPRING_FESTIVALS[a]).days for a, b in zip(years, years[1:], strict=False)}
        assert gaps <= {353, 354, 355, 383, 384, 385}

    def test_a_year_outside_the_table_fails_clearly(self) -> None:
        for year in (2019, 2041):
            with pytest.raises(UnknownSpringFestival, match=f"Spring Festival of 2020–2040 only, not of {year}") as caught:
                spring_festival(year)
            assert caught.value.year == year
        with pytest.raises(UnknownSpringFestival, match="may end from 2021-02-25 to 2040-12-27"):
            DemoWindow(date(2041, 6, 30))

    def test_every_end_between_the_supported_ones_has_its_festivals(self) -> None:
        earliest, latest = supported_ends()
        assert (earliest, latest) == (date(2021, 2, 25), date(2040, 12, 27))
        for end in (earliest, latest):
            assert DemoWindow(end).end == end
        for end in (earliest - timedelta(days=1), latest + timedelta(days=1)):
            with pytest.raises(UnknownSpringFestival):
                DemoWindow(end)


class TestFestivals:
    def test_a_window_ending_in_2031_has_that_years_festivals(self) -> None:
        window = DemoWindow(date(2031, 6, 30))
        found = {(f.name, f.days[0]) for f in festivals(window)}
        assert {("double11", date(2029, 11, 11)), ("double11", date(2030, 11, 11)), ("618", date(2030, 6, 18)),
                ("618", date(2031, 6, 18)), ("double12", date(2030, 12, 12)), ("womens_day", date(2031, 3, 6))} <= found
        holidays = sorted(f.days for f in festivals(window) if f.name == "spring_festival")
        assert [date(2030, 2, 3), date(2031, 1, 23)] == [days[3] for days in holidays]  # the holiday starts three days before

        clock = SeasonalClock(window)
        names = [f.name for f in clock.festivals]

        def on(day: date) -> str:
            k = clock.festival_index[(day - window.start).days]
            return names[k] if k >= 0 else ""

        assert on(date(2030, 11, 11)) == "double11" and on(date(2031, 6, 18)) == "618"
        assert on(date(2031, 1, 23)) == on(date(2030, 2, 3)) == "spring_festival"
        assert on(date(2030, 12, 31)) == "new_year_shopping" and on(date(2030, 12, 29)) == ""  # 2031 年货节 from 30 Dec
        assert clock.intensity[(date(2030, 11, 11) - window.start).days] == clock.intensity.max()
        at_noon = np.array([local_midnight_seconds(date(2030, 11, 11)) + 12 * 3600])
        assert clock.day_of(at_noon)[0] == (date(2030, 11, 11) - window.start).days

    def test_next_years_new_year_shopping_starts_before_the_window_ends(self) -> None:
        window = DemoWindow(date(2030, 12, 31))  # 2031-01-23 less 24 days: 30 December 2030
        shopping = [f for f in festivals(window) if f.name == "new_year_shopping" and f.days[-1].year == 2031]
        assert shopping and shopping[0].days[0] == date(2030, 12, 30)
