"""CLV and churn risk per member: BG/NBD and Gamma–Gamma (``memberops.insight.clv``) fitted once per workspace.

The per-member summary comes from the warehouse (``traits.purchase_statistics``): ``frequency`` = repeat
purchase days, ``recency`` = days from the first to the last purchase day, ``T`` = days from the first
purchase day to ``as_of``, ``monetary_value`` = mean net spend of the repeat purchase days. The models
are fitted on the buyers' arrays and applied to them in one vectorised pass (no loop over members):

- ``expected_purchases_90d`` / ``_365d``: E[purchases in the next 90 / 365 days];
- ``p_alive`` and ``churn_risk = 1 − p_alive``;
- ``expected_spend``: Gamma–Gamma's expected net spend per purchase;
- ``clv``: the discounted expected spend over ``horizon_months`` (30-day months, ``monthly_discount_rate``).

A brand with fewer than ``min_buyers`` buyers, no repeat buyer, or data the models cannot fit gets no
CLV (null columns) and the reason in the run's summary; the other traits are unaffected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from memberops.errors import DomainError
from memberops.insight import clv as models
from memberops.insight.config import ValueConfig

log = logging.getLogger(__name__)

VALUE_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("expected_purchases_90d", pa.float64()), ("expected_purchases_365d", pa.float64()),
    ("p_alive", pa.float64()), ("churn_risk", pa.float64()), ("expected_spend", pa.float64()),
    ("clv", pa.float64()),
)


@dataclass
class ValueFit:
    """What was fitted for the workspace (or why nothing was)."""

    purchases: dict[str, float] = field(default_factory=dict)  # r, alpha, a, b
    spend: dict[str, float] = field(default_factory=dict)  # p, q, v
    log_likelihood: float | None = None
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"bgnbd": self.purchases, "gamma_gamma": self.spend, "log_likelihood": self.log_likelihood,
                "skipped": self.skipped}


def _empty(member_ids: pa.Array) -> pa.Table:
    n = len(member_ids)
    return pa.table({"member_id": member_ids, **{name: pa.nulls(n, type_) for name, type_ in VALUE_COLUMNS}})


def member_value(summary: pa.Table, config: ValueConfig) -> tuple[pa.Table, ValueFit]:
    """``member_id`` and the value columns for each buyer of ``summary`` (columns ``member_id, frequency,
    recency, tenure_days, repeat_value``); see the module docstring."""
    member_ids = (summary["member_id"].combine_chunks() if summary.num_rows
                  else pa.array([], summary.schema.field("member_id").type))
    fit = ValueFit()
    x = summary["frequency"].to_numpy(zero_copy_only=False).astype(np.float64)
    t_x = summary["recency"].to_numpy(zero_copy_only=False).astype(np.float64)
    age = summary["tenure_days"].to_numpy(zero_copy_only=False).astype(np.float64)
    m = np.nan_to_num(summary["repeat_value"].to_numpy(zero_copy_only=False).astype(np.float64), nan=0.0)
    if len(x) < config.min_buyers:
        fit.skipped = f"{len(x)} buyers, fewer than the {config.min_buyers} needed to fit CLV"
        return _empty(member_ids), fit
    if not (x > 0).any():
        fit.skipped = "no repeat buyer: nothing to fit CLV on"
        return _empty(member_ids), fit
    spendable = (x > 0) & (m > 0)  # a repeat buyer who had everything refunded says nothing about spend
    try:
        purchases = models.fit_bgnbd(x, t_x, age)
        spend = models.fit_gamma_gamma(np.where(spendable, x, 0.0), np.where(spendable, m, 0.0))
        expected_spend = models.gamma_gamma_expected_spend(spend.params, np.where(spendable, x, 0.0),
                                                           np.where(spendable, m, 0.0))
    except DomainError as exc:  # ClvInputError / ClvFitError: the brand's data do not fit the models
        fit.skipped = exc.message
        log.warning("CLV not fitted: %s", exc.message)
        return _empty(member_ids), fit
    fit.purchases = purchases.params.as_dict()
    fit.spend = spend.params.as_dict()
    fit.log_likelihood = float(purchases.log_likelihood)
    p_alive = models.bgnbd_p_alive(purchases.params, x, t_x, age)
    value = models.clv(purchases.params, x, t_x, age, expected_spend, months=config.horizon_months,
                       monthly_discount_rate=config.monthly_discount_rate)
    columns = {
        "member_id": member_ids,
        "expected_purchases_90d": pa.array(models.bgnbd_expected_purchases(purchases.params, 90.0, x, t_x, age)),
        "expected_purchases_365d": pa.array(models.bgnbd_expected_purchases(purchases.params, 365.0, x, t_x, age)),
        "p_alive": pa.array(p_alive),
        "churn_risk": pa.array(1.0 - p_alive),
        "expected_spend": pa.array(expected_spend),  # money: rounded to the cent in the warehouse
        "clv": pa.array(value),
    }
    return pa.table(columns), fit
