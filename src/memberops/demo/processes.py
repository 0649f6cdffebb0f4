"""The buying processes behind the demo brand: BG/NBD for when people buy, Gamma–Gamma for how much.

Pure functions over numpy arrays, no Python loop per person or per purchase.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way", Marketing Science 24(2)):
while alive a buyer makes repeat purchases as a Poisson process of rate ``lambda ~ Gamma(r, alpha)``
(shape ``r``, rate ``alpha``); after each repeat purchase they drop out with probability
``p ~ Beta(a, b)``. The trial (first) purchase starts their clock. Gamma–Gamma (Fader, Hardie & Lee
2005, "RFM and CLV", Journal of Marketing Research 42(4); parameterised as in ``lifetimes``): each
purchase's value is ``Gamma(p, nu)`` with a per-person ``nu ~ Gamma(q, v)`` (both shape, rate), so the
mean spend per purchase is ``p * v / (q - 1)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BuyingParameters:
    """The population's true parameters; time in operational weeks, money in CNY."""

    r: float = 0.45
    alpha: float = 3.0
    a: float = 1.6
    b: float = 5.0
    p: float = 6.0
    q: float = 4.0
    v: float = 50.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def mean_spend(self) -> float:
        return self.p * self.v / (self.q - 1)


@dataclass(frozen=True)
class BuyerHistories:
    """Every buyer's latent traits and every purchase (transaction) they made in the window.

    Per buyer (length ``n``): ``purchase_rate``, ``dropout``, ``spend_rate``, ``first_purchase`` and
    ``observed`` (operational weeks from the first purchase to the window's end), ``repeat_count``,
    ``is_alive`` (not yet dropped out at the window's end). Per transaction, ordered by buyer then time,
    the first one being the trial: ``owner`` (buyer index), ``weeks`` (operational time) and ``spend``.
    """

    purchase_rate: np.ndarray
    dropout: np.ndarray
    spend_rate: np.ndarray
    first_purchase: np.ndarray
    observed: np.ndarray
    repeat_count: np.ndarray
    is_alive: np.ndarray
    owner: np.ndarray
    weeks: np.ndarray
    spend: np.ndarray


def sample_buyers(rng: np.random.Generator, n: int, params: BuyingParameters, horizon_weeks: float) -> BuyerHistories:
    """Draw ``n`` buyers, their first purchase uniform over the window, and their purchases until its end.

    Repeat purchases in ``(0, T]`` are ``min(N, J)``: ``N ~ Poisson(lambda T)`` arrivals while alive and
    ``J ~ Geometric(p)`` the repeat purchase after which the buyer drops out. Their times are the first
    ``min(N, J)`` order statistics of ``N`` uniforms on ``(0, T]``, drawn as normalised partial sums of
    exponentials (the remaining ``N + 1 - x`` summands folded into one Gamma draw), so the work is
    proportional to the purchases actually made.
    """
    purchase_rate = rng.gamma(params.r, 1.0 / params.alpha, n)
    dropout = rng.beta(params.a, params.b, n)
    spend_rate = rng.gamma(params.q, 1.0 / params.v, n)
    first_purchase = rng.uniform(0.0, horizon_weeks, n)
    observed = horizon_weeks - first_purchase
    arrivals = rng.poisson(purchase_rate * observed)
    last_repeat = rng.geometric(dropout)
    repeats = np.minimum(arrivals, last_repeat)

    repeat_owner = np.repeat(np.arange(n), repeats)
    partial = np.cumsum(rng.standard_exponential(int(repeats.sum())))
    ends = np.cumsum(repeats)
    before = np.concatenate([[0.0], partial])[ends - repeats]  # partial sum before each buyer's segment
    within = partial - before[repeat_owner]
    segment_total = np.concatenate([[0.0], partial])[ends] - before
    remainder = rng.standard_gamma(arrivals - repeats + 1.0)
    fraction = within / (segment_total + remainder)[repeat_owner]
    repeat_weeks = first_purchase[repeat_owner] + observed[repeat_owner] * fraction

    counts = repeats + 1
    owner = np.repeat(np.arange(n), counts)
    is_first = np.zeros(len(owner), dtype=bool)
    is_first[np.cumsum(counts) - counts] = True
    weeks = np.empty(len(owner))
    weeks[is_first] = first_purchase
    weeks[~is_first] = repeat_weeks
    spend = rng.gamma(params.p, 1.0 / spend_rate[owner])
    return BuyerHistories(
        purchase_rate=purchase_rate, dropout=dropout, spend_rate=spend_rate, first_purchase=first_purchase,
        observed=observed, repeat_count=repeats, is_alive=arrivals < last_repeat, owner=owner, weeks=weeks,
        spend=spend,
    )


def hypergeometric_2f1(a: float, b: float, c: float, z: np.ndarray, *, tolerance: float = 1e-13) -> np.ndarray:
    """Gauss's hypergeometric function for ``0 <= z < 1`` by its power series, vectorised over ``z``."""
    z = np.asarray(z, dtype=np.float64)
    term = np.ones_like(z)
    total = np.ones_like(z)
    k = 0
    while True:
        term = term * (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total = total + term
        k += 1
        if np.all(np.abs(term) <= tolerance * np.abs(total)) or k > 200_000:
            return total


def expected_repeat_purchases(t: np.ndarray, params: BuyingParameters) -> np.ndarray:
    """E[X(t)], the expected repeat purchases of a new buyer over ``t`` weeks (Fader et al. 2005, eq. 9)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t = np.asarray(t, dtype=np.float64)
    z = t / (alpha + t)
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hypergeometric_2f1(r, b, a + b - 1, z))


def probability_no_repeat(t: np.ndarray, params: BuyingParameters) -> np.ndarray:
    """P(X(t) = 0): no repeat purchase in ``t`` weeks, ``(alpha / (alpha + t)) ** r`` (dropout only follows a purchase)."""
    t = np.asarray(t, dtype=np.float64)
    return (params.alpha / (params.alpha + t)) ** params.r
