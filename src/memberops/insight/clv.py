"""Customer lifetime value: BG/NBD and Pareto/NBD purchase counts, Gamma–Gamma spend. Pure numpy/scipy.

The models work on each customer's repeat-purchase summary: ``frequency`` x (repeat purchases, i.e.
purchase periods after the first), ``recency`` t_x (time of the last purchase since the first) and ``T``
(time since the first purchase to the end of the observation period), all in one time unit.

Fits are maximum likelihood on sufficient statistics: identical (x, t_x, T) rows are collapsed into one
row with a count, and terms that depend on one column only (ln Γ(r+x), ln(α+T)…) are computed once per
distinct value. The optimiser works on the logarithms of the parameters (all must be positive): BFGS
with the analytical gradient for BG/NBD and Gamma–Gamma, L-BFGS-B with a finite-difference gradient for
Pareto/NBD.

References:
- BG/NBD: Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the
  Pareto/NBD Model", Marketing Science 24(2), 275–284; Fader, Hardie & Lee (2008), "Computing P(alive)
  Using the BG/NBD Model" (brucehardie.com note 021).
- Pareto/NBD: Schmittlein, Morrison & Colombo (1987), "Counting Your Customers: Who Are They and What
  Will They Do Next?", Management Science 33(1); likelihood as in Fader & Hardie (2005), "A Note on
  Deriving the Pareto/NBD Model and Related Expressions" (brucehardie.com note 009).
- Gamma–Gamma: Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
  Analysis", Journal of Marketing Research 42(4); Fader & Hardie (2013), "The Gamma-Gamma Model of
  Monetary Value" (brucehardie.com note 025).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betainc, betaln, digamma, gammaln, hyp2f1, logsumexp

from memberops.errors import Invalid
from memberops.insight.clv_data import TransactionSummary, summary_from_transactions

__all__ = [
    "BGNBDFit", "BGNBDParams", "ClvFitError", "ClvInputError", "GammaGammaFit", "GammaGammaParams", "ParetoNBDFit",
    "ParetoNBDParams", "TransactionSummary", "bgnbd_expected_purchases", "bgnbd_expected_purchases_new",
    "bgnbd_p_alive", "bgnbd_probability_of_purchases", "clv", "fit_bgnbd", "fit_gamma_gamma",
    "fit_pareto_nbd", "gamma_gamma_expected_spend", "pareto_nbd_expected_purchases", "pareto_nbd_p_alive",
    "summary_from_transactions",
]

FloatArray = NDArray[np.float64]
# Above four times this many distinct (x, t_x, T) rows, BG/NBD is first fitted on a sample of this size.
_WARM_START_PATTERNS = 20_000
# Rows are grouped by their columns' codes packed into one int64 while the product of the numbers of
# distinct values stays below this.
_PACKED_KEY_LIMIT = 2.0**62
TimeUnit = Literal["D", "W"]
# Periods per month, as lifetimes' customer_lifetime_value counts them.
PERIODS_PER_MONTH: dict[str, float] = {"D": 30.0, "W": 4.345}


class ClvInputError(Invalid):
    """The purchase summary cannot be fitted: a column is negative, non-finite, or recency exceeds T."""

    code = "clv_invalid_input"


class ClvFitError(Invalid):
    """The optimiser did not reach a maximum of the likelihood (too little or degenerate data)."""

    code = "clv_fit_failed"


@dataclass(frozen=True)
class BGNBDParams:
    """BG/NBD: purchase rate ~ Gamma(r, alpha); drop-out probability after a purchase ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class ParetoNBDParams:
    """Pareto/NBD: purchase rate ~ Gamma(r, alpha); drop-out rate ~ Gamma(s, beta)."""

    r: float
    alpha: float
    s: float
    beta: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma–Gamma: spend per transaction ~ Gamma(p, nu), nu ~ Gamma(q, v) across customers."""

    p: float
    q: float
    v: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class BGNBDFit:
    params: BGNBDParams
    log_likelihood: float
    n: int  # customers (the sum of the weights)


@dataclass(frozen=True)
class ParetoNBDFit:
    params: ParetoNBDParams
    log_likelihood: float
    n: int


@dataclass(frozen=True)
class GammaGammaFit:
    params: GammaGammaParams
    log_likelihood: float
    n: int  # customers with at least one repeat purchase


# --- input checks and sufficient statistics -------------------------------------------------------------

def _column(name: str, values: ArrayLike) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ClvInputError(f"{name} must be numeric", column=name) from exc
    if array.ndim != 1:
        array = array.reshape(-1)
    if not np.isfinite(array).all():
        raise ClvInputError(f"{name} has missing or non-finite values", column=name)
    if (array < 0).any():
        raise ClvInputError(f"{name} has negative values ({int((array < 0).sum())} rows)", column=name)
    return array


def _rft(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    x, t_x, age = _column("frequency", frequency), _column("recency", recency), _column("T", T)
    if not (len(x) == len(t_x) == len(age)):
        raise ClvInputError("frequency, recency and T must have the same length")
    if (t_x > age).any():
        raise ClvInputError(f"recency exceeds T in {int((t_x > age).sum())} rows", column="recency")
    if ((x == 0) & (t_x > 0)).any():
        raise ClvInputError("recency must be 0 where frequency is 0", column="recency")
    return x, t_x, age


def _weights(weights: ArrayLike | None, size: int) -> FloatArray:
    if weights is None:
        return np.ones(size)
    w = _column("weights", weights)
    if len(w) != size:
        raise ClvInputError("weights must have one value per row", column="weights")
    return w


@dataclass(frozen=True)
class _Patterns:
    """The sufficient statistics: each distinct row once, with the total weight of the rows like it.

    Columns are stored as their distinct values plus, per pattern, an index into them, so a term that
    depends on one column only (ln(α+T), ln Γ(r+x)…) is computed once per distinct value.
    """

    values: tuple[FloatArray, ...]
    codes: tuple[NDArray[np.intp], ...]
    weights: FloatArray

    def column(self, i: int) -> FloatArray:
        return self.values[i][self.codes[i]]

    def subset(self, chosen: NDArray[np.bool_]) -> _Patterns:
        return _Patterns(self.values, tuple(c[chosen] for c in self.codes), self.weights[chosen])

    def rescaled(self, i: int, factor: float) -> _Patterns:
        values = tuple(v * factor if j == i else v for j, v in enumerate(self.values))
        return _Patterns(values, self.codes, self.weights)


def _codes(column: FloatArray) -> tuple[FloatArray, NDArray[np.intp]]:
    """The column's distinct values (sorted) and each row's index into them.

    Whole numbers in a short range (days, weeks, counts: the usual case) are coded by a lookup table,
    in one pass; anything else by a sort and a binary search.
    """
    if len(column) == 0:
        return column, np.zeros(0, dtype=np.intp)
    low, high = float(column.min()), float(column.max())
    if high - low <= 4 * len(column) + 1024 and bool((column == np.floor(column)).all()):
        offsets = (column - low).astype(np.intp)
        present = np.zeros(int(high - low) + 1, dtype=bool)
        present[offsets] = True
        lookup = np.cumsum(present) - 1
        return (np.flatnonzero(present) + low).astype(np.float64), lookup[offsets].astype(np.intp)
    ordered = np.sort(column)
    values = ordered[np.r_[True, ordered[1:] != ordered[:-1]]]
    return values, np.searchsorted(values, column)


def _patterns(columns: tuple[FloatArray, ...], weights: FloatArray) -> _Patterns:
    """Collapse identical rows: their columns' codes packed into one integer, then one sort of those.

    Terms of one column only are then computed once per distinct value of that column.
    """
    values, inverse = (list(v) for v in zip(*(_codes(c) for c in columns), strict=True))
    sizes = [len(v) for v in values]
    if float(np.prod(np.array(sizes, dtype=np.float64))) < _PACKED_KEY_LIMIT:
        key = np.zeros(len(weights), dtype=np.int64)
        for size, codes_of_column in zip(sizes, inverse, strict=True):
            key = key * size + codes_of_column
        order = np.argsort(key)
        ordered = key[order]
    else:  # too many distinct values to pack into one integer: sort on the codes themselves
        stacked = np.stack(inverse, axis=1)
        order = np.lexsort(stacked.T[::-1])
        ordered = stacked[order]
    if len(ordered):
        rows = ordered.reshape(len(ordered), -1)
        starts = np.flatnonzero(np.r_[True, np.any(rows[1:] != rows[:-1], axis=1)])
    else:
        starts = np.zeros(0, dtype=np.intp)
    first_rows = order[starts]
    totals = np.add.reduceat(weights[order], starts) if len(starts) else np.zeros(0)
    keep = totals > 0
    codes = tuple(c[first_rows][keep].astype(np.intp) for c in inverse)
    return _Patterns(tuple(values), codes, totals[keep])


def _distinct_pairs(first: FloatArray, second: FloatArray) -> tuple[tuple[FloatArray, FloatArray], NDArray[np.intp]]:
    """The distinct (first, second) pairs of two columns of equal length and each row's index into them."""
    (v1, c1), (v2, c2) = _codes(first), _codes(second)
    if float(len(v1)) * float(len(v2)) < _PACKED_KEY_LIMIT:
        keys, inverse = np.unique(c1.astype(np.int64) * len(v2) + c2, return_inverse=True)
        return (v1[keys // len(v2)], v2[keys % len(v2)]), inverse.reshape(-1).astype(np.intp)
    rows, inverse = np.unique(np.stack([c1, c2], axis=1), axis=0, return_inverse=True)
    return (v1[rows[:, 0]], v2[rows[:, 1]]), inverse.reshape(-1).astype(np.intp)


class _Optimum(NamedTuple):
    """Where a minimisation ended: the log-parameters and BFGS's inverse-Hessian estimate there."""

    x: FloatArray
    hess_inv: FloatArray | None


def _flat(gradient: FloatArray, value: float) -> bool:
    """Whether the optimiser's stopping point is the maximum though it reports no success, from the
    gradient of the per-customer log-likelihood ``value`` in log-parameters.

    It stops so when no step improves the value any more in floating point ("precision loss"): at the
    edge of the parameter space the likelihood keeps rising towards a limit ever more slowly, and the
    log-gamma differences of huge shapes carry rounding errors. A gradient below 1e-3 of the value (or of
    1 when the value is smaller) means that multiplying a parameter by e changes a customer's
    log-likelihood by less than that, far below what any prediction could show: converged.
    """
    gradient = np.asarray(gradient, dtype=np.float64)
    if not (np.all(np.isfinite(gradient)) and np.isfinite(value)):
        return False
    return bool(np.abs(gradient).max() < 1e-3 * max(1.0, abs(value)))


def _projected(gradient: FloatArray, z: FloatArray, edge: float) -> FloatArray:
    """``gradient`` without the components that push past the box ``[-edge, edge]`` at a bound."""
    gradient = np.asarray(gradient, dtype=np.float64)
    blocked = ((z >= edge - 1e-9) & (gradient < 0)) | ((z <= -edge + 1e-9) & (gradient > 0))
    return np.where(blocked, 0.0, gradient)


def _maximise(objective: Callable[[FloatArray], tuple[float, FloatArray | None]], start: FloatArray,
              *, analytic: bool, hess_inv: FloatArray | None = None, gtol: float = 1e-8) -> _Optimum:
    """Minimise the per-customer negative log-likelihood over log-parameters.

    With the analytical gradient: BFGS, whose 4×4 updates are plain numpy (L-BFGS-B's compiled core
    calls the threaded BLAS, which costs more than the whole likelihood on a busy machine), optionally
    started from an inverse-Hessian estimate. Steps that leave the region where the likelihood is
    finite are refused with an infinite value, so the line search backs off.
    """
    if analytic:
        def guarded(z: FloatArray) -> tuple[float, FloatArray]:
            if np.abs(z).max() > 15.0:  # e^±15: far beyond any sensible rate or shape
                return np.inf, np.zeros_like(z)
            value, grad = objective(z)
            if grad is None or not np.isfinite(value):
                return np.inf, np.zeros_like(z)
            return value, grad

        options: dict[str, object] = {"gtol": gtol, "maxiter": 2000}
        if hess_inv is not None:
            symmetric = (hess_inv + hess_inv.T) / 2
            if np.all(np.isfinite(symmetric)) and np.linalg.eigvalsh(symmetric).min() > 0:
                options["hess_inv0"] = symmetric
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = minimize(guarded, start, jac=True, method="BFGS", options=options)
            # "precision loss" at a point where the gradient is flat is a maximum all the same (often one
            # at the edge: homogeneous rates send r and alpha to infinity with their ratio fixed)
            converged = result.success or _flat(result.jac, result.fun)
            found_hess_inv: FloatArray | None = np.asarray(result.hess_inv, dtype=np.float64)
            if not converged and "hess_inv0" in options:
                # a curvature estimate from a sample can point out of the finite region at once: restart
                # from the same point with BFGS's own
                result = minimize(guarded, result.x, jac=True, method="BFGS", options={"gtol": gtol, "maxiter": 2000})
                converged = result.success or _flat(result.jac, result.fun)
                found_hess_inv = np.asarray(result.hess_inv, dtype=np.float64)
            if not converged:
                # the optimum lies at the edge of the box (e^±15), where BFGS's line search keeps hitting
                # the wall: L-BFGS-B walks along it; a flat gradient inside the box (the bounds' own
                # components aside) is the constrained maximum
                bounds = [(-15.0, 15.0)] * len(start)
                result = minimize(objective, np.clip(result.x, -15.0, 15.0), jac=True, method="L-BFGS-B",
                                  bounds=bounds, options={"ftol": 1e-15, "gtol": gtol, "maxiter": 2000})
                converged = result.success or _flat(_projected(result.jac, result.x, 15.0), result.fun)
                found_hess_inv = None
    else:
        bounds = [(-15.0, 15.0)] * len(start)
        result = minimize(lambda z: objective(z)[0], start, method="L-BFGS-B", bounds=bounds,
                          options={"ftol": 1e-13, "gtol": 1e-8, "maxiter": 2000, "eps": 1e-7})
        converged = result.success or "ABNORMAL" in str(result.message)
        found_hess_inv = None
    if not np.isfinite(result.fun) or not converged:
        raise ClvFitError(f"the likelihood maximisation did not converge: {result.message}")
    return _Optimum(np.asarray(result.x, dtype=np.float64), found_hess_inv)


def _customers_with_repeats(patterns: _Patterns) -> float:
    """The number of customers, once it is clear that the drop-out process can be estimated at all."""
    n = float(patterns.weights.sum())
    if n <= 0:
        raise ClvInputError("no customers to fit")
    if not (patterns.weights * (patterns.column(0) > 0)).sum() > 0:
        raise ClvInputError("no customer made a repeat purchase: drop-out cannot be estimated")
    return n


# --- BG/NBD ---------------------------------------------------------------------------------------------

def _bgnbd_loglik(log_params: FloatArray, patterns: _Patterns) -> tuple[float, FloatArray]:
    """Σ w·ln L over the patterns (x, t_x, T) and its gradient in log-parameters ([FHL05] eq. 6).

    ln L = ln Γ(r+x) − ln Γ(r) + r ln α − ln B(a,b)
           + ln[ B(a, b+x) (α+T)^−(r+x) + 1{x>0} B(a+1, b+x−1) (α+t_x)^−(r+x) ]
    With u1, u2 the logs of the two terms in brackets and w1, w2 their shares of the sum, the gradient
    of the bracket is w1 ∂u1 + w2 ∂u2.
    """
    r, alpha, a, b = np.exp(log_params)
    (xv, sv, tv), (xi, si, ti), w = patterns.values, patterns.codes, patterns.weights
    n = w.sum()
    # terms of x alone, once per distinct x
    has_repeat = xv > 0
    x_safe = np.where(has_repeat, xv, 1.0)
    c1 = betaln(a, b + xv)
    c2 = np.where(has_repeat, betaln(a + 1, b + x_safe - 1), -np.inf)
    base = gammaln(r + xv) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    d_r = digamma(r + xv) - digamma(r) + np.log(alpha)
    dig_abx = digamma(a + b + xv)
    d_a1, d_a2 = digamma(a) - dig_abx, digamma(a + 1) - dig_abx
    d_b1 = digamma(b + xv) - dig_abx
    d_b2 = np.where(has_repeat, digamma(b + x_safe - 1) - dig_abx, 0.0)
    # terms of T alone and of t_x alone, once per distinct value
    log_aT, log_as = np.log(alpha + tv)[ti], np.log(alpha + sv)[si]
    inv_aT, inv_as = (1.0 / (alpha + tv))[ti], (1.0 / (alpha + sv))[si]

    rx = (r + xv)[xi]
    u1 = c1[xi] - rx * log_aT
    u2 = c2[xi] - rx * log_as
    d = u2 - u1  # −inf without a repeat purchase
    e = np.exp(-np.abs(d))
    share_top = 1.0 / (1.0 + e)
    w2 = np.where(d > 0, share_top, e * share_top)  # share of the second term
    lse = np.maximum(u1, u2) + np.log1p(e)

    per_x = np.bincount(xi, weights=w, minlength=len(xv))
    ww2 = w * w2
    ww1 = w - ww2
    per_x2 = np.bincount(xi, weights=ww2, minlength=len(xv))
    per_x1 = per_x - per_x2
    # (u * v).sum() rather than u @ v: no call into the threaded BLAS for a dot product
    ll = float((per_x * base).sum() + (w * lse).sum())
    g_r = (per_x * d_r).sum() - (ww1 * log_aT).sum() - (ww2 * log_as).sum()
    g_alpha = r / alpha * n - (rx * (ww1 * inv_aT + ww2 * inv_as)).sum()
    g_a = (per_x1 * d_a1).sum() + (per_x2 * d_a2).sum() - (digamma(a) - digamma(a + b)) * n
    g_b = (per_x1 * d_b1).sum() + (per_x2 * d_b2).sum() - (digamma(b) - digamma(a + b)) * n
    return ll, np.array([g_r * r, g_alpha * alpha, g_a * a, g_b * b])


def fit_bgnbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, *,
              weights: ArrayLike | None = None) -> BGNBDFit:
    """Fit BG/NBD by maximum likelihood; ``weights`` counts the customers each row stands for.

    Examples:
        >>> fit = fit_bgnbd(summary.frequency, summary.recency, summary.T)
        >>> fit.params.r, fit.params.alpha, fit.params.a, fit.params.b
    """
    x, t_x, age = _rft(frequency, recency, T)
    patterns = _patterns((x, t_x, age), _weights(weights, len(x)))
    n = _customers_with_repeats(patterns)
    # Time rescaled so the largest T is 10: the optimiser then starts near any data set's optimum.
    scale = 10.0 / max(float(patterns.values[2].max()), 1e-12)
    scaled = patterns.rescaled(1, scale).rescaled(2, scale)

    def objective_on(data: _Patterns) -> Callable[[FloatArray], tuple[float, FloatArray]]:
        total = float(data.weights.sum())

        def objective(z: FloatArray) -> tuple[float, FloatArray]:
            ll, grad = _bgnbd_loglik(z, data)
            return -ll / total, -grad / total

        return objective

    start = _Optimum(np.zeros(4), None)
    if len(scaled.weights) > 4 * _WARM_START_PATTERNS:
        # A random share of the patterns gives an unbiased estimate of the per-customer likelihood:
        # most iterations run there, the full data only polish from its optimum and curvature.
        chosen = np.random.default_rng(0).random(len(scaled.weights)) < _WARM_START_PATTERNS / len(scaled.weights)
        start = _maximise(objective_on(scaled.subset(chosen)), start.x, analytic=True, gtol=1e-6)
    optimum = _maximise(objective_on(scaled), start.x, analytic=True, hess_inv=start.hess_inv)
    r, alpha, a, b = np.exp(optimum.x)
    alpha /= scale
    ll, _ = _bgnbd_loglik(np.log([r, alpha, a, b]), patterns)
    return BGNBDFit(BGNBDParams(float(r), float(alpha), float(a), float(b)), ll, int(round(n)))


def bgnbd_p_alive(params: BGNBDParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(the customer is still active | x, t_x, T) (Fader, Hardie & Lee 2008, note 021, eq. 2).

    1 / (1 + 1{x>0} · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)).
    """
    x, t_x, age = _rft(frequency, recency, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    has_repeat = x > 0
    log_odds = np.log(a) - np.log(b + np.where(has_repeat, x, 1.0) - 1) + (r + x) * (
        np.log(alpha + age) - np.log(alpha + t_x))
    return np.where(has_repeat, 1.0 / (1.0 + np.exp(log_odds)), 1.0)


def _bgnbd_alive_purchases(r: float, alpha: float, a: float, b: float, horizon: FloatArray, x: FloatArray,
                           age: FloatArray) -> FloatArray:
    """E[purchases in ``horizon`` | alive at ``age`` after x purchases]: eq. 10 of [FHL05] without P(alive).

    (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x−1; t/(α+T+t))]
    At a = 1, and at a+b+x = 1, the expression is 0/0 (or 0·∞) but its limit is finite and smooth:
    there it is evaluated as the mean of two points on either side, ±1e-4 away (error ~1e-8).
    """
    def formula(a_: float | FloatArray, b_: float | FloatArray) -> FloatArray:
        z = horizon / (alpha + age + horizon)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            hyp = hyp2f1(r + x, b_ + x, a_ + b_ + x - 1, z)
            bracket = 1.0 - np.exp((r + x) * (np.log(alpha + age) - np.log(alpha + age + horizon))) * hyp
            return np.asarray((a_ + b_ + x - 1) / (a_ - 1) * bracket, dtype=np.float64)

    value = formula(a, b)
    unstable = ~np.isfinite(value) & np.broadcast_to(horizon < alpha + age, np.shape(value))
    if np.any(unstable):
        value = np.where(unstable, _bgnbd_alive_purchases_series(r, alpha, a, b, horizon, x, age), value)
    step = 1e-4
    near_a = abs(a - 1.0) < 1e-6
    near_c = np.abs(a + b + x - 1.0) < 1e-6
    singular = near_c | near_a
    if np.any(singular):
        shift_b = np.where(near_c, step, 0.0)
        shift_a = step if near_a else 0.0
        around = (formula(a + shift_a, b + shift_b) + formula(a - shift_a, b - shift_b)) / 2
        value = np.where(singular, around, value)
    return value


def _bgnbd_alive_purchases_series(r: float, alpha: float, a: float, b: float, horizon: FloatArray,
                                  x: FloatArray, age: FloatArray, terms: int = 400) -> FloatArray:
    """Eq. 10 without P(alive) as a power series, for where SciPy's 2F1 fails (huge r, α, b: the MLE of
    data with homogeneous rates runs off to infinity with r/α fixed).

    Euler's transformation turns the bracket into 1 − 2F1(r+x, a−1; c; w), w = −t/(α+T), c = a+b+x−1;
    expanding it, the factors c and a−1 cancel and
    E = (r+x) (−w) Σ_{m≥0} (r+x+1)_m (a)_m / (c+1)_m · w^m / (m+1)!,   converging for |w| < 1.
    """
    w = -horizon / (alpha + age)
    q, c = r + x, a + b + x - 1
    term = np.ones(np.broadcast_shapes(np.shape(w), np.shape(q)))
    total = term.copy()
    for m in range(1, terms):
        term = term * (q + m) * (a + m - 1) / (c + m) * w / (m + 1)
        total = total + term
    return np.asarray(q * -w * total, dtype=np.float64)


def bgnbd_expected_purchases(params: BGNBDParams, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike,
                             T: ArrayLike) -> FloatArray:
    """E[purchases in the next ``t`` periods | x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10)."""
    x, t_x, age = _rft(frequency, recency, T)
    horizon = np.asarray(t, dtype=np.float64)
    # the hypergeometric part depends on (x, T) only: computed once per distinct pair (a brand's buyers
    # share a few thousand), the same values as per customer
    (x_pairs, age_pairs), pair_of = _distinct_pairs(x, age)
    alive = _bgnbd_alive_purchases(params.r, params.alpha, params.a, params.b, horizon,
                                   x_pairs, age_pairs)[..., pair_of]
    return np.asarray(alive * bgnbd_p_alive(params, x, t_x, age), dtype=np.float64)


def bgnbd_expected_purchases_new(params: BGNBDParams, t: ArrayLike) -> FloatArray:
    """E[X(t)]: expected purchases in ``t`` periods by a new, randomly chosen customer (2005, eq. 9)."""
    horizon = np.asarray(t, dtype=np.float64)
    zero = np.zeros(np.shape(horizon))
    return _bgnbd_alive_purchases(params.r, params.alpha, params.a, params.b, horizon, zero, zero)


def bgnbd_probability_of_purchases(params: BGNBDParams, t: float, n: ArrayLike) -> FloatArray:
    """P(X(t) = n): probability that a new customer makes exactly ``n`` purchases in ``t`` (2005, eq. 8)."""
    counts = np.asarray(n, dtype=np.float64)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    log_p0 = r * (np.log(alpha) - np.log(alpha + t))
    log_q = np.log(t) - np.log(alpha + t)
    lbab = betaln(a, b)
    first = np.exp(betaln(a, b + counts) - lbab + gammaln(r + counts) - gammaln(r) - gammaln(counts + 1)
                   + log_p0 + counts * log_q)
    # 1 − Σ_{j<n} NBD(j), the NBD's upper tail, is the regularised incomplete beta I_{t/(α+t)}(n, r):
    # exact in the tail, where 1 − a cumulative sum would cancel to noise.
    tail = betainc(np.maximum(counts, 1), r, t / (alpha + t))
    second = np.exp(betaln(a + 1, b + np.maximum(counts, 1) - 1) - lbab) * tail
    return np.asarray(first + np.where(counts > 0, second, 0.0), dtype=np.float64)


# --- Pareto/NBD -----------------------------------------------------------------------------------------

def _pareto_log_a0(params: ParetoNBDParams, x: FloatArray, t_x: FloatArray, age: FloatArray) -> FloatArray:
    """ln A0 of Fader & Hardie's note 009 (eq. 19/20).

    A0 = [2F1(r+s+x, c; r+s+x+1; z(t_x)) / (m+t_x)^(r+s+x) − 2F1(…; z(T)) / (m+T)^(r+s+x)]
    with m = max(α, β), z(u) = |α−β| / (m+u) and c = s+1 when α ≥ β, r+x when α < β: ordering the
    terms this way keeps |z| < 1 where the series converges. The difference is taken in log space.
    """
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    if alpha >= beta:
        high, low, c = alpha, beta, s + 1 + 0 * x
    else:
        high, low, c = beta, alpha, r + x
    rsx = r + s + x
    q1, q2 = high + t_x, high + age
    p1 = hyp2f1(rsx, c, rsx + 1, (high - low) / q1)
    p2 = hyp2f1(rsx, c, rsx + 1, (high - low) / q2)
    # p1/q1^rsx − p2/q2^rsx = (p1 q2^rsx − p2 q1^rsx) / (q1 q2)^rsx
    terms = np.stack([np.log(p1) + rsx * np.log(q2), np.log(p2) + rsx * np.log(q1)])
    signs = np.stack([np.ones_like(x), -np.ones_like(x)])
    with np.errstate(divide="ignore"):
        diff = logsumexp(terms, axis=0, b=signs)
    return np.asarray(diff - rsx * (np.log(q1) + np.log(q2)), dtype=np.float64)


def _pareto_loglik_rows(params: ParetoNBDParams, x: FloatArray, t_x: FloatArray, age: FloatArray) -> FloatArray:
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive = -(r + x) * np.log(alpha + age) - s * np.log(beta + age)
    died = np.log(s) - np.log(r + s + x) + _pareto_log_a0(params, x, t_x, age)
    return np.asarray(head + np.logaddexp(alive, died), dtype=np.float64)


def fit_pareto_nbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, *,
                   weights: ArrayLike | None = None) -> ParetoNBDFit:
    """Fit Pareto/NBD by maximum likelihood on sufficient statistics.

    The likelihood's Gauss hypergeometric terms have no closed-form derivative in their parameters, so
    the gradient is by finite differences (four parameters: five likelihood evaluations per step).
    """
    x, t_x, age = _rft(frequency, recency, T)
    patterns = _patterns((x, t_x, age), _weights(weights, len(x)))
    n = _customers_with_repeats(patterns)
    x, t_x, age, w = patterns.column(0), patterns.column(1), patterns.column(2), patterns.weights
    scale = 10.0 / max(float(age.max()), 1e-12)
    ts, as_ = t_x * scale, age * scale

    def objective(z: FloatArray) -> tuple[float, None]:
        params = ParetoNBDParams(*(float(v) for v in np.exp(z)))
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # far steps: refused below
            value = -float((w * _pareto_loglik_rows(params, x, ts, as_)).sum()) / n
        return (value if np.isfinite(value) else 1e300), None

    z = np.exp(_maximise(objective, np.zeros(4), analytic=False).x)
    params = ParetoNBDParams(float(z[0]), float(z[1] / scale), float(z[2]), float(z[3] / scale))
    ll = float((w * _pareto_loglik_rows(params, x, t_x, age)).sum())
    return ParetoNBDFit(params, ll, int(round(n)))


def pareto_nbd_p_alive(params: ParetoNBDParams, frequency: ArrayLike, recency: ArrayLike,
                       T: ArrayLike) -> FloatArray:
    """P(alive | x, t_x, T) = 1 / (1 + s/(r+s+x) · (α+T)^(r+x) (β+T)^s · A0) (note 009, eq. 21)."""
    x, t_x, age = _rft(frequency, recency, T)
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    log_odds = (np.log(s) - np.log(r + s + x) + (r + x) * np.log(alpha + age) + s * np.log(beta + age)
                + _pareto_log_a0(params, x, t_x, age))
    return np.asarray(1.0 / (1.0 + np.exp(log_odds)), dtype=np.float64)


def pareto_nbd_expected_purchases(params: ParetoNBDParams, t: ArrayLike, frequency: ArrayLike,
                                  recency: ArrayLike, T: ArrayLike) -> FloatArray:
    """E[purchases in the next ``t`` | x, t_x, T] (note 009, eq. 22; Schmittlein et al. 1987).

    (r+x)(β+T) / ((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)] · P(alive); the s → 1 limit is
    (r+x)(β+T)/(α+T) · ln((β+T+t)/(β+T)) · P(alive).
    """
    x, t_x, age = _rft(frequency, recency, T)
    horizon = np.asarray(t, dtype=np.float64)
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    log_ratio = np.log(beta + age + horizon) - np.log(beta + age)
    factor = log_ratio if abs(s - 1.0) < 1e-10 else -np.expm1(-(s - 1) * log_ratio) / (s - 1)
    p_alive = pareto_nbd_p_alive(params, x, t_x, age)
    return np.asarray((r + x) * (beta + age) / (alpha + age) * factor * p_alive, dtype=np.float64)


# --- Gamma–Gamma ----------------------------------------------------------------------------------------

class _SpendTerms(NamedTuple):
    """Gamma–Gamma's data as the likelihood needs it: per pattern (x, m̄, weight), with the terms that do
    not change during the fit computed once — ln m̄, ln x — and x's distinct values with each pattern's
    index into them, so the Γ and ψ functions of px run once per distinct x, not once per pattern."""

    x: FloatArray
    m: FloatArray
    w: FloatArray
    log_m: FloatArray
    log_x: FloatArray
    x_values: FloatArray
    x_codes: NDArray[np.intp]


def _spend_terms(patterns: _Patterns, m_scale: float = 1.0) -> _SpendTerms:
    x, m = patterns.column(0), patterns.column(1) * m_scale
    return _SpendTerms(x, m, patterns.weights, np.log(m), np.log(x), patterns.values[0], patterns.codes[0])


def _gamma_gamma_loglik(log_params: FloatArray, data: _SpendTerms) -> tuple[float, FloatArray]:
    """Σ w · ln f(m̄ | p, q, v, x) and its gradient in log-parameters (note 025, eq. 5).

    f(m̄) = Γ(px+q) / (Γ(px) Γ(q)) · v^q x^(px) m̄^(px−1) / (v + x m̄)^(px+q)
    """
    p, q, v = np.exp(log_params)
    x, m, w, log_m, log_x, codes = data.x, data.m, data.w, data.log_m, data.log_x, data.x_codes
    px_values = p * data.x_values
    px = px_values[codes]
    log_vxm = np.log(v + x * m)
    ll = float((w * (gammaln(px_values + q)[codes] - gammaln(px_values)[codes] - gammaln(q) + q * np.log(v)
                     + (px - 1) * log_m + px * log_x - (px + q) * log_vxm)).sum())
    dig_pxq = digamma(px_values + q)[codes]
    g_p = (w * x * (dig_pxq - digamma(px_values)[codes] + log_m + log_x - log_vxm)).sum()
    g_q = (w * (dig_pxq - digamma(q) + np.log(v) - log_vxm)).sum()
    g_v = (w * (q / v - (px + q) / (v + x * m))).sum()
    return ll, np.array([g_p * p, g_q * q, g_v * v])


def fit_gamma_gamma(frequency: ArrayLike, monetary_value: ArrayLike, *,
                    weights: ArrayLike | None = None) -> GammaGammaFit:
    """Fit Gamma–Gamma spend on the customers with at least one repeat purchase.

    ``monetary_value`` is each customer's mean spend over the repeat purchases (0 where there are none;
    those customers are left out, as the model describes repeat spend only).
    """
    x, m = _column("frequency", frequency), _column("monetary_value", monetary_value)
    if len(x) != len(m):
        raise ClvInputError("frequency and monetary_value must have the same length")
    w = _weights(weights, len(x))
    keep = x > 0
    if ((m <= 0) & keep).any():
        raise ClvInputError("monetary_value must be positive for customers with repeat purchases",
                            column="monetary_value")
    patterns = _patterns((x[keep], m[keep]), w[keep])
    x, m, w = patterns.column(0), patterns.column(1), patterns.weights
    n = float(w.sum())
    if n <= 0:
        raise ClvInputError("no customer with a repeat purchase: nothing to fit spend on")
    scale = 1.0 / float(np.average(m, weights=w))  # spend in units of its mean: v starts near its optimum

    scaled = _spend_terms(patterns, scale)

    def objective(z: FloatArray) -> tuple[float, FloatArray]:
        ll, grad = _gamma_gamma_loglik(z, scaled)
        return -ll / n, -grad / n

    z = np.exp(_maximise(objective, np.zeros(3), analytic=True).x)
    p, q, v = float(z[0]), float(z[1]), float(z[2] / scale)
    ll, _ = _gamma_gamma_loglik(np.log([p, q, v]), _spend_terms(patterns))
    return GammaGammaFit(GammaGammaParams(p, q, v), ll, int(round(n)))


def gamma_gamma_expected_spend(params: GammaGammaParams, frequency: ArrayLike,
                               monetary_value: ArrayLike) -> FloatArray:
    """E[spend per transaction | x, m̄] = p(v + x m̄) / (px + q − 1) (note 025, eq. 6).

    A weighted mean of the population mean p v/(q−1) and the customer's own mean m̄; for a customer
    with no repeat purchase (x = 0) it is the population mean. Requires q > 1.
    """
    x, m = _column("frequency", frequency), _column("monetary_value", monetary_value)
    p, q, v = params.p, params.q, params.v
    if q <= 1:
        raise ClvInputError(f"the expected spend is infinite for q ≤ 1 (q = {q:.4g})")
    return np.asarray(p * (v + x * m) / (p * x + q - 1), dtype=np.float64)


# --- CLV ------------------------------------------------------------------------------------------------

def clv(params: BGNBDParams | ParetoNBDParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike,
        expected_spend: ArrayLike, *, months: int = 12, monthly_discount_rate: float = 0.01,
        time_unit: TimeUnit = "D") -> FloatArray:
    """Discounted value of each customer's expected purchases over ``months`` months.

    Σ over months k = 1..months of spend · (E[purchases by k months] − E[purchases by k−1 months]) /
    (1 + rate)^k, as lifetimes' ``customer_lifetime_value`` (a month is 30 days or 4.345 weeks), but
    vectorised over customers. ``expected_spend`` is per transaction, usually
    :func:`gamma_gamma_expected_spend`.
    """
    x, t_x, age = _rft(frequency, recency, T)
    spend = _column("expected_spend", expected_spend)
    if months < 0 or monthly_discount_rate <= -1:
        raise ClvInputError("months must be ≥ 0 and the discount rate > −1")
    if time_unit not in PERIODS_PER_MONTH:
        raise ClvInputError(f"time_unit must be one of {sorted(PERIODS_PER_MONTH)}", column="time_unit")
    per_month = PERIODS_PER_MONTH[time_unit]
    horizons = np.arange(months + 1, dtype=np.float64)[:, None] * per_month
    if isinstance(params, BGNBDParams):
        cumulative = bgnbd_expected_purchases(params, horizons, x, t_x, age)
    else:
        cumulative = pareto_nbd_expected_purchases(params, horizons, x, t_x, age)
    per_period = np.diff(cumulative, axis=0)
    discount = (1.0 + monthly_discount_rate) ** -np.arange(1, months + 1, dtype=np.float64)
    return np.asarray(spend * (discount[:, None] * per_period).sum(axis=0), dtype=np.float64)
