"""summary_from_transactions: the per-customer (frequency, recency, T, monetary value) the CLV models fit.

Reference: the CDNOW calibration summary Fader & Hardie distribute with the 1/10 sample (brucehardie.com;
Fader, Hardie & Lee 2005, Marketing Science 24(2)): x, t_x and T in weeks to two decimals, z̄ to cents,
computed from the same transactions with purchases on one day counted once. The week/period rules follow
lifetimes 0.11.3's summary_data_from_transaction_data (pandas "W" periods: Monday–Sunday).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memberops.insight.clv import summary_from_transactions
from memberops.insight.clv_data import TimeUnit, TransactionsInvalid
from tests.insight.clv_data import CALIBRATION_END, cdnow_summary, cdnow_transactions


class TestCDNOW:
    def test_reproduces_the_published_summary(self) -> None:
        t, published = cdnow_transactions(), cdnow_summary()
        summary = summary_from_transactions(t.ids, t.dates, t.amounts, calibration_end=CALIBRATION_END)
        np.testing.assert_array_equal(summary.customer_ids, published.ids)
        np.testing.assert_array_equal(summary.frequency, published.x)
        np.testing.assert_array_equal(np.round(summary.recency / 7, 2), published.t_x)
        np.testing.assert_array_equal(np.round(summary.T / 7, 2), published.T)
        assert summary.monetary_value is not None
        np.testing.assert_allclose(summary.monetary_value, published.zbar, atol=0.005 + 1e-9)
        assert int((summary.frequency > 0).sum()) == 946

    def test_holdout_period(self) -> None:
        """Weeks 40–78 (to 1998-06-30): every calibration customer, 273 days of holdout."""
        t = cdnow_transactions()
        summary = summary_from_transactions(t.ids, t.dates, t.amounts, calibration_end=CALIBRATION_END,
                                            observation_end="1998-06-30")
        assert summary.duration_holdout == 273.0
        after = t.dates > np.datetime64(CALIBRATION_END)
        distinct_days = len({(i, d) for i, d in zip(t.ids[after], t.dates[after], strict=True)})
        assert summary.frequency_holdout is not None and summary.frequency_holdout.sum() == distinct_days
        assert summary.monetary_value_holdout is not None
        assert summary.monetary_value_holdout[summary.frequency_holdout == 0].max() == 0


def day(text: str) -> np.datetime64:
    return np.datetime64(text, "D")


class TestPeriods:
    # Monday 2024-01-01 … Sunday 2024-01-07 is one week; Monday 2024-01-08 starts the next
    dates = np.array(["2024-01-01", "2024-01-01", "2024-01-07", "2024-01-08", "2024-01-03"], dtype="datetime64[D]")
    ids = np.array(["ann", "ann", "ann", "ann", "bob"])
    amounts = np.array([10.0, 5.0, 20.0, 30.0, 7.0])

    def test_days(self) -> None:
        s = summary_from_transactions(self.ids, self.dates, self.amounts, time_unit="D")
        assert list(s.customer_ids) == ["ann", "bob"]
        assert list(s.frequency) == [2, 0] and list(s.recency) == [7, 0] and list(s.T) == [7, 5]
        assert s.monetary_value is not None and list(s.monetary_value) == [25.0, 0.0]  # (20 + 30) / 2

    def test_weeks_collapse_monday_to_sunday(self) -> None:
        s = summary_from_transactions(self.ids, self.dates, self.amounts, time_unit="W")
        assert list(s.frequency) == [1, 0] and list(s.recency) == [1, 0] and list(s.T) == [1, 1]
        assert s.monetary_value is not None and list(s.monetary_value) == [30.0, 0.0]

    def test_calibration_end_drops_later_purchases_and_customers(self) -> None:
        s = summary_from_transactions(self.ids, self.dates, self.amounts, calibration_end="2024-01-02")
        assert list(s.customer_ids) == ["ann"]  # bob's first purchase is later
        assert list(s.frequency) == [0] and list(s.T) == [1]

    def test_datetimes_count_by_their_date(self) -> None:
        times = np.array(["2024-01-01T08:00", "2024-01-01T23:59", "2024-01-02T00:01"], dtype="datetime64[m]")
        s = summary_from_transactions(np.array([1, 1, 1]), times)
        assert list(s.frequency) == [1] and list(s.recency) == [1]

    def test_zone_aware_datetimes_count_by_their_utc_date(self) -> None:
        shanghai = dt.timezone(dt.timedelta(hours=8))
        times = [dt.datetime(2024, 1, 2, 7, tzinfo=shanghai), dt.datetime(2024, 1, 5, tzinfo=dt.UTC)]
        s = summary_from_transactions([1, 1], times)  # 2024-01-01 23:00 UTC
        assert list(s.recency) == [4]

    def test_python_dates(self) -> None:
        s = summary_from_transactions([1, 1], [dt.date(2024, 1, 1), dt.date(2024, 2, 1)], calibration_end="2024-03-01")
        assert list(s.recency) == [31] and list(s.T) == [60]


class TestBadInput:
    def test_missing_date(self) -> None:
        with pytest.raises(TransactionsInvalid, match="have no date"):
            summary_from_transactions([1, 2], np.array(["2024-01-01", "NaT"], dtype="datetime64[D]"))

    def test_lengths(self) -> None:
        with pytest.raises(TransactionsInvalid, match="same length"):
            summary_from_transactions([1], np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]"))

    def test_holdout_before_calibration(self) -> None:
        with pytest.raises(TransactionsInvalid, match="before calibration_end"):
            summary_from_transactions([1], [day("2024-01-01")], calibration_end="2024-02-01",
                                      observation_end="2024-01-15")

    def test_nothing_in_calibration(self) -> None:
        with pytest.raises(TransactionsInvalid, match="no transaction up to"):
            summary_from_transactions([1], [day("2024-05-01")], calibration_end="2024-02-01")

    def test_amounts_must_be_finite(self) -> None:
        with pytest.raises(TransactionsInvalid, match="finite"):
            summary_from_transactions([1], [day("2024-01-01")], [np.nan])


def _naive(ids: list[int], days: list[int], amounts: list[float], end: int, unit: str) -> dict[int, tuple]:
    """One customer at a time, in plain Python: the definition the vectorised code must equal."""
    def period(d: int) -> int:
        return d if unit == "D" else (d + 3) // 7

    result = {}
    for customer in set(ids):
        spend: dict[int, float] = {}
        for i, d, a in zip(ids, days, amounts, strict=True):
            if i == customer and period(d) <= period(end):
                spend[period(d)] = spend.get(period(d), 0.0) + a
        if not spend:
            continue
        periods = sorted(spend)
        repeat = [spend[p] for p in periods[1:]]
        result[customer] = (len(periods) - 1, periods[-1] - periods[0], period(end) - periods[0],
                            sum(repeat) / len(repeat) if repeat else 0.0)
    return result


class TestAgainstTheDefinition:
    @given(rows=st.lists(st.tuples(st.integers(0, 6), st.integers(19_000, 19_120), st.floats(0.5, 500.0)),
                         min_size=1, max_size=60),
           end=st.integers(19_000, 19_130), unit=st.sampled_from(["D", "W"]))
    @settings(max_examples=150, deadline=None)
    def test_equals_a_per_customer_loop(self, rows: list[tuple[int, int, float]], end: int, unit: TimeUnit) -> None:
        ids, days, amounts = (list(c) for c in zip(*rows, strict=True))
        expected = _naive(ids, days, amounts, end, unit)
        dates = np.array(days, dtype="datetime64[D]")
        if not expected:
            with pytest.raises(TransactionsInvalid):
                summary_from_transactions(ids, dates, amounts, calibration_end=np.datetime64(end, "D"), time_unit=unit)
            return
        s = summary_from_transactions(ids, dates, amounts, calibration_end=np.datetime64(end, "D"), time_unit=unit)
        assert s.monetary_value is not None
        got = {int(c): (f, r, t, m) for c, f, r, t, m in
               zip(s.customer_ids, s.frequency, s.recency, s.T, s.monetary_value, strict=True)}
        assert got.keys() == expected.keys()
        for customer, (f, r, t, m) in expected.items():
            assert got[customer][:3] == (f, r, t)
            assert got[customer][3] == pytest.approx(m, rel=1e-12)
