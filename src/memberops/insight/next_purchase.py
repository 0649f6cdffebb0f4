"""When a buyer is expected to buy again: a date window for repurchase reminders.

Method (all in UTC days; gaps are days between consecutive purchase days):

- **repeat buyers** (two purchase days or more): expected = last purchase + the member's median gap;
  the window is expected ± h, where h is half the interquartile range of *all* gaps in the brand
  (how much a typical rhythm wobbles), never starting before the day after the last purchase;
- **one-time buyers**: the brand's distribution of first→second purchase gaps (among members who came
  back): expected = first purchase + its median, window = first purchase + [its 25th, 75th percentile].

Brand quantiles are exact "nearest rank" quantiles (the smallest gap with at least q·n gaps at or below
it) computed from a histogram of integer gaps, so every engine gives the same window. With no repeat
buyer in the brand at all there is no window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ibis
from ibis.expr.types import Table

from memberops.lake.engine import Warehouse

MEMBER = "member_id"


@dataclass(frozen=True)
class GapQuartiles:
    q25: int
    q50: int
    q75: int

    @classmethod
    def from_histogram(cls, histogram: list[tuple[int, int]]) -> GapQuartiles | None:
        """Nearest-rank quartiles of a histogram ``[(gap, count), …]``; None when it is empty."""
        ordered = sorted((int(g), int(c)) for g, c in histogram if c)
        total = sum(c for _, c in ordered)
        if not total:
            return None

        def quantile(q: float) -> int:
            need = max(1, math.ceil(q * total))
            seen = 0
            for gap, count in ordered:
                seen += count
                if seen >= need:
                    return gap
            return ordered[-1][0]

        return cls(quantile(0.25), quantile(0.5), quantile(0.75))


@dataclass(frozen=True)
class BrandRhythm:
    all_gaps: GapQuartiles | None
    first_gaps: GapQuartiles | None


def brand_rhythm(warehouse: Warehouse, gaps: Table) -> BrandRhythm:
    flagged = gaps.mutate(is_first=gaps.gap_number == 1)
    rows = warehouse.to_pyarrow(flagged.group_by(["gap", "is_first"]).aggregate(n=flagged.count())).to_pylist()
    all_gaps = GapQuartiles.from_histogram([(r["gap"], r["n"]) for r in rows])
    first = GapQuartiles.from_histogram([(r["gap"], r["n"]) for r in rows if r["is_first"]])
    return BrandRhythm(all_gaps, first)


def next_purchase_days(t: Table, rhythm: BrandRhythm) -> dict[str, ibis.Value]:
    """``next_purchase_from_day``, ``next_purchase_day``, ``next_purchase_to_day`` (UTC day numbers) for
    each row of ``t`` (columns ``purchase_days``, ``first_purchase_day``, ``last_purchase_day``,
    ``median_interpurchase_days``)."""
    null = ibis.null().cast("int64")
    if rhythm.all_gaps is None or rhythm.first_gaps is None:
        return {"next_purchase_from_day": null, "next_purchase_day": null, "next_purchase_to_day": null}
    half_iqr = (rhythm.all_gaps.q75 - rhythm.all_gaps.q25) / 2
    median = t.median_interpurchase_days
    repeat = t.purchase_days >= 2
    once = t.purchase_days == 1
    expected_repeat = (t.last_purchase_day + median.round().cast("int64"))
    from_repeat = ibis.greatest(t.last_purchase_day + 1, (t.last_purchase_day + (median - half_iqr).round()).cast("int64"))
    to_repeat = ibis.greatest(expected_repeat, (t.last_purchase_day + (median + half_iqr).round()).cast("int64"))
    first = rhythm.first_gaps

    def pick(repeat_value: ibis.Value, once_offset: int) -> ibis.Value:
        return ibis.cases((repeat, repeat_value), (once, t.first_purchase_day + once_offset), else_=null).cast("int64")

    return {
        "next_purchase_from_day": pick(from_repeat, first.q25),
        "next_purchase_day": pick(expected_repeat, first.q50),
        "next_purchase_to_day": pick(to_repeat, first.q75),
    }
