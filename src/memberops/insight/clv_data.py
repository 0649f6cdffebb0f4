"""From a list of transactions to the per-customer summary the CLV models fit (frequency, recency, T)."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from memberops.errors import Invalid

TimeUnit = Literal["D", "W"]
# 1970-01-01, day 0 of numpy's calendar, was a Thursday: +3 puts Monday at the start of a week, the
# weeks pandas' "W" (W-SUN) periods make, which lifetimes groups by.
_EPOCH_TO_MONDAY = 3


class TransactionsInvalid(Invalid):
    """The transactions cannot be summarised: lengths differ, a date or an amount is missing or wrong."""

    code = "clv_transactions_invalid"


@dataclass(frozen=True)
class TransactionSummary:
    """One row per customer with a purchase in the calibration period, in ``time_unit`` periods.

    ``frequency``: purchase periods after the first; ``recency``: last minus first purchase period;
    ``T``: end of calibration minus first purchase period; ``monetary_value``: mean amount of the
    repeat purchase periods (0 without one). The holdout columns exist when both ends were given.
    """

    customer_ids: NDArray[np.generic]
    frequency: NDArray[np.float64]
    recency: NDArray[np.float64]
    T: NDArray[np.float64]
    monetary_value: NDArray[np.float64] | None = None
    frequency_holdout: NDArray[np.float64] | None = None
    monetary_value_holdout: NDArray[np.float64] | None = None
    duration_holdout: float | None = None


def _days(values: ArrayLike | Sequence[dt.date]) -> NDArray[np.int64]:
    """Days since 1970-01-01; zone-aware datetimes count by their UTC date (numpy converts them)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "no explicit representation of timezones", UserWarning)
            days = np.asarray(values).astype("datetime64[D]")
    except (TypeError, ValueError) as exc:
        raise TransactionsInvalid(f"dates must be dates or datetimes: {exc}") from exc
    if np.isnat(days).any():
        raise TransactionsInvalid(f"{int(np.isnat(days).sum())} transactions have no date")
    return days.astype(np.int64)


def _periods(days: NDArray[np.int64], time_unit: TimeUnit) -> NDArray[np.int64]:
    if time_unit == "D":
        return days
    if time_unit == "W":
        return np.floor_divide(days + _EPOCH_TO_MONDAY, 7)
    raise TransactionsInvalid(f"time_unit must be 'D' or 'W', not {time_unit!r}")


def _period_of(date: dt.date | str | np.datetime64, time_unit: TimeUnit) -> int:
    return int(_periods(_days(np.asarray([date])), time_unit)[0])


def summary_from_transactions(
    customer_ids: ArrayLike,
    dates: ArrayLike | Sequence[dt.date],
    amounts: ArrayLike | None = None,
    *,
    calibration_end: dt.date | str | np.datetime64 | None = None,
    observation_end: dt.date | str | np.datetime64 | None = None,
    time_unit: TimeUnit = "D",
) -> TransactionSummary:
    """Summarise transactions per customer, as lifetimes' ``summary_data_from_transaction_data``.

    Purchases in the same period (day or Monday–Sunday week) count as one, their amounts summed. The
    summary covers transactions up to ``calibration_end`` (or ``observation_end``, or the last date);
    customers whose first purchase is later are not in it. Given both ends, the holdout columns count
    each customer's purchase periods after ``calibration_end`` up to ``observation_end``.

    Examples:
        >>> s = summary_from_transactions(ids, dates, amounts, calibration_end="1997-09-30", time_unit="W")
        >>> fit_bgnbd(s.frequency, s.recency, s.T)
    """
    ids = np.asarray(customer_ids)
    periods = _periods(_days(dates), time_unit)
    if len(ids) != len(periods):
        raise TransactionsInvalid("customer_ids and dates must have the same length")
    values: NDArray[np.float64] | None = None
    if amounts is not None:
        try:
            values = np.asarray(amounts, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TransactionsInvalid("amounts must be numeric") from exc
        if len(values) != len(ids) or not np.isfinite(values).all():
            raise TransactionsInvalid("amounts must be one finite number per transaction")
    if len(ids) == 0:
        raise TransactionsInvalid("no transactions")

    end_date = calibration_end if calibration_end is not None else observation_end
    end = _period_of(end_date, time_unit) if end_date is not None else int(periods.max())
    holdout_end = (_period_of(observation_end, time_unit)
                   if calibration_end is not None and observation_end is not None else None)
    if holdout_end is not None and holdout_end < end:
        raise TransactionsInvalid("observation_end is before calibration_end")

    unique_ids, codes = np.unique(ids, return_inverse=True)
    codes = codes.astype(np.int64)
    # One row per (customer, period): sort by both, keep the first of each run, sum its amounts.
    low = int(periods.min())
    span = int(periods.max()) - low + 1
    keys = codes * span + (periods - low)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    cust, period = keys[starts] // span, keys[starts] % span + low
    amount = np.add.reduceat(values[order], starts) if values is not None else None

    in_calibration = period <= end
    if not in_calibration.any():
        raise TransactionsInvalid("no transaction up to the end of the calibration period")
    cal_cust, cal_period = cust[in_calibration], period[in_calibration]
    # cal rows are sorted by customer then period: the first row of a customer is its first purchase
    cust_starts = np.flatnonzero(np.r_[True, cal_cust[1:] != cal_cust[:-1]])
    cust_ends = np.r_[cust_starts[1:], len(cal_cust)] - 1
    first, last = cal_period[cust_starts], cal_period[cust_ends]
    frequency = (cust_ends - cust_starts).astype(np.float64)
    recency = (last - first).astype(np.float64)
    T = (end - first).astype(np.float64)
    members = cal_cust[cust_starts]

    monetary = None
    if amount is not None:
        cal_amount = amount[in_calibration]
        repeat_total = np.add.reduceat(cal_amount, cust_starts) - cal_amount[cust_starts]
        monetary = np.divide(repeat_total, frequency, out=np.zeros_like(frequency), where=frequency > 0)

    frequency_holdout = monetary_holdout = None
    duration = None
    if holdout_end is not None:
        position = np.full(len(unique_ids), -1, dtype=np.int64)
        position[members] = np.arange(len(members))
        in_holdout = (period > end) & (period <= holdout_end) & (position[cust] >= 0)
        slot = position[cust[in_holdout]]
        frequency_holdout = np.bincount(slot, minlength=len(members)).astype(np.float64)
        if amount is not None:
            totals = np.bincount(slot, weights=amount[in_holdout], minlength=len(members))
            monetary_holdout = np.divide(totals, frequency_holdout, out=np.zeros_like(totals),
                                         where=frequency_holdout > 0)
        duration = float(holdout_end - end)
    return TransactionSummary(unique_ids[members], frequency, recency, T, monetary, frequency_holdout,
                              monetary_holdout, duration)
