"""RFM: recency, frequency and monetary quintile scores per workspace, and the named segments.

Only buyers with a counted order in the last ``window_days`` before ``as_of`` are scored; the others
have null scores and no segment. For recency and monetary value a member's score is ``ceil(5 · k / n)``
where ``n`` is the number of scored members and ``k`` the number whose value is no better than the
member's, so equal values always share a score and the best fifth scores 5 (the quintile of the value's
rank; a recency is better when smaller, a monetary value when larger): the buyers of the most recent day
all score R = 5. Frequency is a small count where ties are the rule — in most brands the buyers who bought
once are half or more — so its ties share the *lowest* score of their group, ``ceil(5 · (j + 1) / n)`` with
``j`` the number strictly worse: every one-order buyer scores F = 1, the frequency the New, Promising and
Lost segments are made of, instead of the middle score their group reaches up to. The segment comes from the R score
and ``FM = round_half_up((F + M) / 2)`` through :data:`memberops.insight.config.DEFAULT_RFM_GRID`.
"""

from __future__ import annotations

import ibis
from ibis.expr.types import Table

from memberops.insight.config import RfmConfig

QUINTILES = 5


def quintile(value: ibis.Value, *, smaller_is_better: bool = False, ties: str = "highest") -> ibis.Value:
    """The 1–5 score of ``value`` among all rows of its table; equal values share the ``highest`` or the
    ``lowest`` score their group reaches."""
    n = value.count().over()
    if ties == "lowest":  # rank() from the worst value up counts the rows strictly worse
        strictly_worse = ibis.rank().over(order_by=value.desc() if smaller_is_better else value)
        return ((QUINTILES * (strictly_worse + 1) + n - 1) // n).cast("int32")
    # rank() over the opposite order counts the rows strictly better; the rest are no better
    strictly_better = ibis.rank().over(order_by=value if smaller_is_better else value.desc())
    no_better = n - strictly_better
    return ((QUINTILES * no_better + n - 1) // n).cast("int32")


def rfm_measures(orders: Table, as_of_day: int, config: RfmConfig) -> dict[str, ibis.Value]:
    """``rfm_recency_days, rfm_frequency, rfm_monetary`` as aggregates over a member's orders (columns
    ``day`` and ``net``), so they are computed in the purchase statistics' pass; null outside the window."""
    inside = orders.day > as_of_day - config.window_days
    return {
        "rfm_recency_days": (as_of_day - orders.day.max(where=inside)).cast("int64"),
        "rfm_frequency": orders.count(where=inside).nullif(0).cast("int64"),
        "rfm_monetary": orders.net.sum(where=inside).cast("decimal(18, 2)"),
    }


def rfm_scores(measures: Table, config: RfmConfig) -> Table:
    """``member_id, rfm_r, rfm_f, rfm_m, rfm_fm, rfm_score, rfm_segment`` for every buyer in the window
    (the rows of ``measures`` with an ``rfm_frequency``; columns of :func:`rfm_measures`)."""
    measures = measures.filter(measures.rfm_frequency > 0).select(
        "member_id", "rfm_recency_days", "rfm_frequency", "rfm_monetary")
    scored = measures.mutate(
        rfm_r=quintile(measures.rfm_recency_days, smaller_is_better=True),
        rfm_f=quintile(measures.rfm_frequency, ties="lowest"),
        rfm_m=quintile(measures.rfm_monetary),
    )
    fm = ((scored.rfm_f + scored.rfm_m + 1) // 2).cast("int32")
    cell = scored.rfm_r * 10 + fm
    mapping = {r * 10 + f: config.segment(r, f) for r in range(1, 6) for f in range(1, 6)}
    return scored.select(
        "member_id", "rfm_r", "rfm_f", "rfm_m",
        rfm_fm=fm,
        rfm_score=scored.rfm_r.cast("string").concat(scored.rfm_f.cast("string"), scored.rfm_m.cast("string")),
        rfm_segment=cell.cases(*mapping.items(), else_=ibis.null().cast("string")),
    )
