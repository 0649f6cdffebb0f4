"""Tier arithmetic without a store: windows at their boundaries, the tier a metric reaches, and what an
evaluation decides (issue 6, "Tiers") — with property tests for the rules a member relies on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memberops.loyalty.errors import InvalidProgramme
from memberops.loyalty.programme import DEFAULT_PROGRAMME, programme_from_dict
from memberops.loyalty.tier_rules import (
    Window,
    assessed_window,
    benefit_period,
    evaluate,
    missing_for_next,
    tier_for,
    upgrade,
    window_containing,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
JOINED = date(2025, 5, 20)
THRESHOLDS = [Decimal(500), Decimal(2000), Decimal(5000)]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


class TestWindows:
    def test_the_calendar_year_turns_at_local_midnight(self) -> None:
        last = window_containing("calendar_year", at("2026-12-31T15:59:59+00:00"), SHANGHAI, anniversary=JOINED)
        first = window_containing("calendar_year", at("2026-12-31T16:00:00+00:00"), SHANGHAI, anniversary=JOINED)
        assert last.label == "2026" and first.label == "2027"
        assert last.end == first.start == at("2027-01-01T00:00:00+08:00")

    def test_the_rolling_window_is_the_twelve_months_up_to_and_including_now(self) -> None:
        now = at("2026-11-01T00:00:00+00:00")
        window = window_containing("rolling_12_months", now, UTC, anniversary=JOINED)
        assert window.start == at("2025-11-01T00:00:00+00:00")
        assert at("2025-11-01T00:00:00+00:00") in window and now in window
        assert at("2025-10-31T23:59:59+00:00") not in window and now + timedelta(seconds=1) not in window

    def test_the_membership_year_starts_on_the_anniversary(self) -> None:
        before = window_containing("anniversary", at("2026-05-19T12:00:00+00:00"), UTC, anniversary=JOINED)
        after = window_containing("anniversary", at("2026-05-20T00:00:00+00:00"), UTC, anniversary=JOINED)
        assert (before.start.date(), before.end.date()) == (date(2025, 5, 20), date(2026, 5, 20))
        assert (after.start.date(), after.end.date()) == (date(2026, 5, 20), date(2027, 5, 20))

    def test_a_leap_day_anniversary_falls_on_the_28th(self) -> None:
        window = window_containing("anniversary", at("2027-03-01T00:00:00+00:00"), UTC, anniversary=date(2024, 2, 29))
        assert window.start.date() == date(2027, 2, 28)

    def test_grace_delays_which_window_is_assessed(self) -> None:
        def assessed(when: str, grace: int) -> str:
            return assessed_window("calendar_year", at(when), UTC, anniversary=JOINED, grace_months=grace).label

        assert assessed("2027-01-01T00:00:00+00:00", 0) == "2026"
        assert assessed("2027-03-31T23:59:59+00:00", 3) == "2025"  # still in grace for 2026
        assert assessed("2027-04-01T00:00:00+00:00", 3) == "2026"
        rolling = assessed_window("rolling_12_months", at("2027-04-01T00:00:00+00:00"), UTC, anniversary=JOINED,
                                  grace_months=2)
        assert (rolling.start, rolling.end) == (at("2026-02-01T00:00:00+00:00"), at("2027-02-01T00:00:00+00:00"))

    def test_rolling_windows_give_benefits_per_calendar_year(self) -> None:
        assert benefit_period("rolling_12_months", at("2026-07-01T00:00:00+00:00"), UTC, anniversary=JOINED).label == "2026"
        assert benefit_period("anniversary", at("2026-07-01T00:00:00+00:00"), UTC, anniversary=JOINED).label == "2026-05-20"

    @given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
           st.sampled_from(["rolling_12_months", "calendar_year", "anniversary"]),
           st.dates(min_value=date(1990, 1, 1), max_value=date(2080, 1, 1)))
    def test_a_window_contains_its_instant_and_the_assessed_one_lies_before(
            self, when: datetime, rule: str, joined: date) -> None:
        window = window_containing(rule, when, SHANGHAI, anniversary=joined)  # type: ignore[arg-type]
        assert when in window
        for grace in (0, 3):
            assessed = assessed_window(rule, when, SHANGHAI, anniversary=joined, grace_months=grace)  # type: ignore[arg-type]
            assert assessed.start < assessed.end <= when


class TestQualification:
    @given(st.decimals(min_value=0, max_value=10_000, places=2), st.decimals(min_value=0, max_value=10_000, places=2))
    def test_the_tier_reached_is_monotone_in_the_metric(self, a: Decimal, b: Decimal) -> None:
        low, high = sorted((a, b))
        reached_low, reached_high = tier_for(THRESHOLDS, low), tier_for(THRESHOLDS, high)
        assert (reached_low if reached_low is not None else -1) <= (reached_high if reached_high is not None else -1)

    @given(st.decimals(min_value=0, max_value=10_000, places=2))
    def test_the_tier_reached_is_the_highest_threshold_met(self, metric: Decimal) -> None:
        reached = tier_for(THRESHOLDS, metric)
        if reached is None:
            assert metric < THRESHOLDS[0]
        else:
            assert THRESHOLDS[reached] <= metric
            assert reached == len(THRESHOLDS) - 1 or metric < THRESHOLDS[reached + 1]

    def test_what_the_next_tier_still_needs(self) -> None:
        assert missing_for_next(THRESHOLDS, None, Decimal(120)) == (0, Decimal(380))
        assert missing_for_next(THRESHOLDS, 0, Decimal(2500)) == (1, Decimal(0))  # reached, not yet upgraded
        assert missing_for_next(THRESHOLDS, 2, Decimal(9000)) is None

    @given(st.one_of(st.none(), st.integers(0, 2)), st.decimals(min_value=0, max_value=10_000, places=2))
    def test_the_live_path_never_lowers_a_tier(self, current: int | None, metric: Decimal) -> None:
        decision = upgrade(current, THRESHOLDS, metric)
        if current is not None:
            assert decision.tier is not None and decision.tier >= current
        assert (decision.reason == "upgrade") == (decision.tier != current)


ASSESSED = Window(at("2026-01-01T00:00:00+00:00"), at("2027-01-01T00:00:00+00:00"), "2026")
BEFORE = at("2025-06-01T00:00:00+00:00")


class TestEvaluation:
    def judge(self, current: int | None, assessed: str, *, now: str = "0", since: datetime | None = BEFORE,
              keep: str = "0.8") -> tuple[int | None, str | None]:
        decision = evaluate(current, since, thresholds=THRESHOLDS, keep_ratio=Decimal(keep),
                            current_metric=Decimal(now), assessed_metric=Decimal(assessed), assessed=ASSESSED)
        return decision.tier, decision.reason

    def test_the_lower_bar_keeps_the_tier(self) -> None:
        assert self.judge(1, "1600") == (1, "keep")  # 80% of 2000
        assert self.judge(1, "2100") == (1, None)  # met in full: nothing to record
        assert self.judge(1, "1599.99") == (0, "downgrade")
        assert self.judge(1, "10") == (None, "downgrade")

    def test_a_tier_won_after_the_assessed_window_is_not_judged_by_it(self) -> None:
        assert self.judge(1, "0", since=ASSESSED.end) == (1, None)

    def test_the_current_window_can_hold_a_tier_the_assessed_one_would_lose(self) -> None:
        assert self.judge(1, "0", now="2000") == (1, None)
        assert self.judge(0, "0", now="2000") == (1, "upgrade")

    @given(st.one_of(st.none(), st.integers(0, 2)), st.decimals(min_value=0, max_value=6000, places=2),
           st.decimals(min_value=0, max_value=6000, places=2), st.decimals(min_value="0.5", max_value=1, places=2))
    def test_evaluating_again_after_applying_changes_nothing(
            self, current: int | None, assessed: Decimal, now: Decimal, keep: Decimal) -> None:
        first = evaluate(current, BEFORE, thresholds=THRESHOLDS, keep_ratio=keep, current_metric=now,
                         assessed_metric=assessed, assessed=ASSESSED)
        since = ASSESSED.end if first.tier != current else BEFORE  # a change restarts `since` at the evaluation
        again = evaluate(first.tier, since, thresholds=THRESHOLDS, keep_ratio=keep, current_metric=now,
                         assessed_metric=assessed, assessed=ASSESSED)
        assert again.tier == first.tier and again.reason in (None, "keep")
        if first.reason == "downgrade":
            assert first.tier is None or (current is not None and first.tier < current)
            assert first.tier is None or assessed >= THRESHOLDS[first.tier] * keep \
                or now >= THRESHOLDS[first.tier]


class TestProgrammeTiers:
    def test_the_default_programme_has_no_tiers(self) -> None:
        assert DEFAULT_PROGRAMME.tiers == []

    def test_tiers_are_listed_lowest_first_with_unique_codes(self) -> None:
        tier = {"code": "gold", "name": "Gold", "threshold": "1000"}
        with pytest.raises(InvalidProgramme):
            programme_from_dict({"tiers": [tier, {**tier, "code": "silver", "threshold": "500"}]})
        with pytest.raises(InvalidProgramme):
            programme_from_dict({"tiers": [tier, {**tier, "threshold": "2000"}]})
        with pytest.raises(InvalidProgramme) as raised:
            programme_from_dict({"tier_rules": {"metric": "balance"}})
        assert raised.value.errors[0]["field"] == "tier_rules.metric"
