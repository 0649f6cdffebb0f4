"""CLV benchmark: the BG/NBD fit on a million customers, ours against lifetimes' BetaGeoFitter.

- ``clv_bgnbd_1m``: 1,000,000 customers (``--quick``: 100,000) simulated from a BG/NBD process with
  known parameters (r = 0.25, α = 30 days, a = 0.8, b = 2.5; Fader, Hardie & Lee 2005, section 3:
  Poisson purchases at a Gamma-distributed rate, after each purchase a Beta-distributed chance of
  dropping out), first purchases spread over a year, observed in whole days — frequency, recency and T
  as a brand's order history gives them. Ours: ``memberops.insight.clv.fit_bgnbd`` (maximum likelihood
  on sufficient statistics with the analytical gradient). Baseline: lifetimes 0.11.3
  ``BetaGeoFitter().fit(frequency, recency, T)``, as its quickstart calls it (default settings: autograd
  gradient, BFGS, then the Hessian for standard errors).
- ``clv_bgnbd_1m_counts``: the same customers, but lifetimes is handed them already collapsed into
  distinct (frequency, recency, T) rows with counts (its documented ``weights=`` argument; the collapse
  is done in setup, untimed) — the baseline at its best. Ours still starts from the million rows.

The check asserts that the two agree on every parameter to three significant digits (within half a
unit of the third). ``python bench/bench_clv.py [--quick]`` runs it and prints both sides' estimates,
the true values and the times. lifetimes is in the ``bench`` extra; without it the baseline fails with
an install hint.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any

import numpy as np

from memberops.benchmarks import Benchmark, run_one
from memberops.insight.clv import BGNBDParams, fit_bgnbd

TRUTH = BGNBDParams(r=0.25, alpha=30.0, a=0.8, b=2.5)
NAMES = ("r", "alpha", "a", "b")


def simulate_bgnbd(n: int, params: BGNBDParams, *, seed: int = 7) -> dict[str, np.ndarray]:
    """``n`` BG/NBD customers observed for 1–365 days since their first purchase, in whole days.

    Vectorised over customers: each round draws every still-active customer's next purchase time, keeps
    those before their T, then lets each buyer drop out with its probability p.
    """
    rng = np.random.default_rng(seed)
    age = rng.integers(1, 366, n).astype(np.float64)
    rate = rng.gamma(params.r, 1.0 / params.alpha, n)
    drop = rng.beta(params.a, params.b, n)
    frequency, last, clock = np.zeros(n), np.zeros(n), np.zeros(n)
    active = np.arange(n)
    while active.size:
        clock[active] += rng.exponential(1.0 / np.maximum(rate[active], 1e-300))
        active = active[clock[active] <= age[active]]
        frequency[active] += 1
        last[active] = clock[active]
        active = active[rng.random(active.size) >= drop[active]]
    return {"frequency": frequency, "recency": np.floor(last), "T": age}


def _setup(quick: bool) -> dict[str, np.ndarray]:
    return simulate_bgnbd(100_000 if quick else 1_000_000, TRUTH)


def _setup_counts(quick: bool) -> dict[str, np.ndarray]:
    data = _setup(quick)
    rows = np.stack([data["frequency"], data["recency"], data["T"]], axis=1)
    patterns, counts = np.unique(rows, axis=0, return_counts=True)
    return {**data, "patterns": patterns, "counts": counts}


def _ours(data: dict[str, np.ndarray]) -> tuple[float, ...]:
    params = fit_bgnbd(data["frequency"], data["recency"], data["T"]).params
    return tuple(getattr(params, name) for name in NAMES)


def _baseline(data: dict[str, np.ndarray]) -> tuple[float, ...]:
    try:
        from lifetimes import BetaGeoFitter
    except ImportError as exc:
        raise RuntimeError("lifetimes is not installed (pip install 'memberops[bench]')") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its pandas deprecation warnings
        fitter = BetaGeoFitter().fit(data["frequency"], data["recency"], data["T"])
    return tuple(float(fitter.params_[name]) for name in NAMES)


def _baseline_counts(data: dict[str, np.ndarray]) -> tuple[float, ...]:
    try:
        from lifetimes import BetaGeoFitter
    except ImportError as exc:
        raise RuntimeError("lifetimes is not installed (pip install 'memberops[bench]')") from exc
    patterns = data["patterns"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitter = BetaGeoFitter().fit(patterns[:, 0], patterns[:, 1], patterns[:, 2], weights=data["counts"])
    return tuple(float(fitter.params_[name]) for name in NAMES)


def _same_to_three_digits(ours: float, theirs: float) -> bool:
    """Within half a unit of the third significant digit of the baseline's value."""
    return abs(ours - theirs) <= 0.5 * 10 ** (math.floor(math.log10(abs(theirs))) - 2)


def _check(ours: tuple[float, ...], baseline: tuple[float, ...]) -> None:
    different = [f"{name}: {o:.6g} vs {b:.6g}" for name, o, b in zip(NAMES, ours, baseline, strict=True)
                 if not _same_to_three_digits(o, b)]
    assert not different, f"BG/NBD estimates differ beyond 3 significant digits: {'; '.join(different)}"


BENCHMARKS = [
    Benchmark(
        name="clv_bgnbd_1m", description="BG/NBD maximum-likelihood fit on 1M customers (--quick: 100k)",
        baseline_name="lifetimes BetaGeoFitter", setup=_setup, ours=_ours, baseline=_baseline, check=_check,
        repeats=3, unit_of_work="1M customers",
    ),
    Benchmark(
        name="clv_bgnbd_1m_counts", description="the same fit; lifetimes given the distinct rows with counts",
        baseline_name="lifetimes BetaGeoFitter(weights=counts)", setup=_setup_counts, ours=_ours,
        baseline=_baseline_counts, check=_check, repeats=5, unit_of_work="1M customers",
    ),
]


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    data = _setup_counts(quick)
    rows = len(data["T"])
    print(f"{rows:,} customers, {int((data['frequency'] > 0).sum()):,} with a repeat purchase")
    estimates: dict[str, Any] = {}
    for side, fit in (("ours", _ours), ("lifetimes", _baseline), ("lifetimes on counts", _baseline_counts)):
        started = time.perf_counter()
        estimates[side] = fit(data)
        print(f"{side:>19}: {time.perf_counter() - started:7.2f} s  "
              + "  ".join(f"{n}={v:.5g}" for n, v in zip(NAMES, estimates[side], strict=True)))
    print(f"{'truth':>19}:            " + "  ".join(f"{n}={getattr(TRUTH, n):.5g}" for n in NAMES))
    _check(estimates["ours"], estimates["lifetimes"])
    _check(estimates["ours"], estimates["lifetimes on counts"])
    for benchmark in BENCHMARKS:
        result = run_one(benchmark, quick=quick)
        print(f"{benchmark.name}: ours {result.ours_seconds:.2f} s, {benchmark.baseline_name} "
              f"{result.baseline_seconds:.2f} s, ratio {result.ratio:.1f}×  (samples {result.samples})")


if __name__ == "__main__":
    main(sys.argv[1:])
