"""The Fellegi–Sunter model over comparison-vector patterns: m/u, weights, EM, the prior. Pure numpy.

The warehouse reduces millions of record pairs to a few hundred *patterns* — one row per distinct
comparison vector (and blocking-rule mask) with its ``count(*)`` — so everything statistical here runs
on small arrays, with no engine and no I/O.

Notation (Fellegi & Sunter 1969, "A Theory for Record Linkage", JASA 64(328); Splink's docs, "The
Fellegi-Sunter model"): for comparison ``f`` and level ``l``, ``m[f][l] = P(level l | match)`` and
``u[f][l] = P(level l | non-match)``; the match weight of a level is ``log2(m / u)``; a pair's match
weight is ``log2(λ / (1 - λ))`` plus the weights of its levels (null levels add nothing), and its
match probability is ``2^w / (1 + 2^w)``, where ``λ`` is the probability that two random records match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

NULL = -1
M_FLOOR = 1e-6  # no level is impossible for a match: a zero m would veto pairs for ever
U_PSEUDO_COUNT = 0.5  # a level never seen among random pairs is rare, not impossible


@dataclass(frozen=True)
class PatternCounts:
    """Distinct comparison vectors and how many pairs have each.

    ``gammas[p, f]`` is comparison ``f``'s level in pattern ``p`` (``-1`` null); ``masks[p]`` has bit ``r``
    set when the pattern's pairs satisfy blocking rule ``r`` (0 for random pairs).
    """

    gammas: np.ndarray  # (patterns, comparisons) int
    counts: np.ndarray  # (patterns,) float
    masks: np.ndarray  # (patterns,) int64

    def __post_init__(self) -> None:
        if self.gammas.ndim != 2 or len(self.gammas) != len(self.counts) or len(self.counts) != len(self.masks):
            raise ValueError("gammas (P, F), counts (P,) and masks (P,) must agree")

    @property
    def pairs(self) -> float:
        return float(self.counts.sum())

    def select(self, keep: np.ndarray) -> PatternCounts:
        return PatternCounts(self.gammas[keep], self.counts[keep], self.masks[keep])

    def level_counts(self, comparison: int, levels: int) -> np.ndarray:
        """Pairs per level of one comparison (null pairs left out)."""
        gamma = self.gammas[:, comparison]
        present = gamma != NULL
        return np.bincount(gamma[present], weights=self.counts[present], minlength=levels).astype(float)


def u_from_counts(counts: np.ndarray, exact_top: float | None = None) -> np.ndarray:
    """u per level from the level counts among random pairs, with a pseudo-count so no u is zero.

    ``exact_top``, when known, is the top level's u computed exactly (``Σ f_v²`` over every record's
    value frequencies): it replaces the sampled one, and the other levels share the rest in the
    sampled proportions.
    """
    smoothed = np.asarray(counts, dtype=float) + U_PSEUDO_COUNT
    if exact_top is None:
        return smoothed / smoothed.sum()
    top = min(max(exact_top, 1e-12), 1 - 1e-9)
    rest = smoothed[:-1]
    return np.concatenate([rest / rest.sum() * (1.0 - top), [top]])


def non_match_u(agreement: np.ndarray, m: np.ndarray, prior: float, *, floor: float = 0.01) -> np.ndarray:
    """u among non-matches from the level shares among *all* pairs: ``p = λ m + (1 - λ) u``, so
    ``u = (p - λ m) / (1 - λ)`` — no more than ``floor`` of ``p`` taken away.

    Random pairs (and value frequencies) count matches too; for an identifier, most pairs agreeing on it
    are the same person, so the raw share overstates how often strangers agree.
    """
    agreement = np.asarray(agreement, dtype=float)
    corrected = np.maximum(agreement - prior * np.asarray(m, dtype=float), agreement * floor) / (1.0 - prior)
    return corrected / corrected.sum()


def match_weights(m: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``log2(m / u)`` per level: the evidence each level carries for a match."""
    return np.log2(np.asarray(m, dtype=float)) - np.log2(np.asarray(u, dtype=float))


def prior_weight(prior: float) -> float:
    """The match weight of the prior: ``log2(λ / (1 - λ))``."""
    return float(np.log2(prior) - np.log2(1.0 - prior))


def match_probability(weight: np.ndarray | float) -> np.ndarray:
    """Probability from a total match weight (prior included): ``2^w / (1 + 2^w)``."""
    return 1.0 / (1.0 + np.exp2(-np.asarray(weight, dtype=float)))


def pattern_weights(gammas: np.ndarray, weights: Sequence[np.ndarray], included: Sequence[bool] | None = None) -> np.ndarray:
    """Sum of level weights per pattern; a null level, or a comparison not ``included``, adds nothing."""
    total = np.zeros(len(gammas))
    for f, w in enumerate(weights):
        if included is not None and not included[f]:
            continue
        gamma = gammas[:, f]
        total += np.where(gamma == NULL, 0.0, np.asarray(w)[np.maximum(gamma, 0)])
    return total


@dataclass(frozen=True)
class EMResult:
    m: tuple[np.ndarray, ...]
    prior: float  # λ among the patterns trained on
    iterations: int
    converged: bool
    expected_matches: np.ndarray  # per comparison: Σ count · P(match) over patterns where it is not null


def expectation_maximisation(
    patterns: PatternCounts, u: Sequence[np.ndarray], m_start: Sequence[np.ndarray], prior_start: float, *,
    included: Sequence[bool] | None = None, max_iterations: int = 40, tolerance: float = 1e-5,
) -> EMResult:
    """Estimate m and λ with u held fixed, by EM over pattern counts (Splink's ``fix_u_probabilities``).

    E-step: each pattern's posterior match probability under the current m, u and λ; M-step: m of each
    level is the expected share of matches at that level (nulls left out), λ the expected share of
    matches overall. Comparisons not ``included`` neither inform the posterior nor are trained: a
    blocking rule fixes them inside its pairs. Stops when no parameter moves more than ``tolerance``.
    """
    fields = len(u)
    included = [True] * fields if included is None else list(included)
    gammas, counts = patterns.gammas, patterns.counts
    m = [np.asarray(x, dtype=float).copy() for x in m_start]
    log_u = [np.log2(np.asarray(x, dtype=float)) for x in u]
    prior = float(prior_start)
    present = [gammas[:, f] != NULL for f in range(fields)]
    safe = np.maximum(gammas, 0)
    converged = False
    iterations = 0
    posterior = np.zeros(len(counts))
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - the count is reported
        weights = [np.log2(m[f]) - log_u[f] for f in range(fields)]
        total = prior_weight(prior) + pattern_weights(gammas, weights, included)
        posterior = match_probability(total)
        expected = counts * posterior
        change = 0.0
        for f in range(fields):
            if not included[f]:
                continue
            per_level = np.bincount(safe[present[f], f], weights=expected[present[f]], minlength=len(m[f]))
            if per_level.sum() <= 0:
                continue
            updated = np.maximum(per_level / per_level.sum(), M_FLOOR)
            updated /= updated.sum()
            change = max(change, float(np.abs(updated - m[f]).max()))
            m[f] = updated
        new_prior = float(min(max(expected.sum() / counts.sum(), 1e-12), 1 - 1e-12))
        change = max(change, abs(new_prior - prior))
        prior = new_prior
        if change < tolerance:
            converged = True
            break
    expected = counts * posterior
    matches = np.array([float(expected[present[f]].sum()) for f in range(fields)])
    return EMResult(tuple(m), prior, iterations, converged, matches)


def starting_m(levels: int) -> np.ndarray:
    """A start for EM: most matches at the closest level, a few at each other (Splink starts likewise)."""
    if levels == 2:
        return np.array([0.1, 0.9])
    closer = np.geomspace(0.05, 0.7, levels - 1)
    start = np.concatenate([[0.05], closer])
    return start / start.sum()


@dataclass(frozen=True)
class TrainingSession:
    """One EM run: the pairs of one blocking rule, the comparisons that rule leaves free."""

    rule: str
    pairs: float
    trained: tuple[str, ...]
    prior: float
    iterations: int
    converged: bool


@dataclass(frozen=True)
class ComparisonParameters:
    """m and u per level of one comparison, indexed by gamma (``[0]`` is "else")."""

    name: str
    levels: tuple[str, ...]
    m: tuple[float, ...]
    u: tuple[float, ...]
    is_m_trained: bool
    # share of all pairs (matches included) agreeing at the closest level: what a value's term frequency
    # is measured against, so the u correction for matches carries over to term-frequency weights
    top_agreement: float = 0.0

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(float(w) for w in match_weights(np.array(self.m), np.array(self.u)))


@dataclass(frozen=True)
class FittedModel:
    """Everything scoring needs and a report shows: per comparison m/u per level, and the prior λ."""

    comparisons: tuple[ComparisonParameters, ...]
    prior: float
    sessions: tuple[TrainingSession, ...] = field(default=())
    random_pairs: float = 0.0
    candidate_pairs: float = 0.0

    @property
    def prior_weight(self) -> float:
        return prior_weight(self.prior)

    def weights(self) -> list[np.ndarray]:
        return [np.array(c.weights) for c in self.comparisons]

    def score(self, gammas: np.ndarray) -> np.ndarray:
        """Match weight (prior included) of comparison vectors, without term-frequency adjustments."""
        return self.prior_weight + pattern_weights(np.asarray(gammas), self.weights())


def combine_sessions(results: Sequence[tuple[EMResult, Sequence[bool]]], fallback: Sequence[np.ndarray]) -> tuple[
        list[np.ndarray], list[bool]]:
    """m per comparison: the sessions that trained it, weighted by the matches each saw with it not null.

    A comparison no session trained keeps ``fallback`` (and is reported as untrained).
    """
    fields = len(fallback)
    combined: list[np.ndarray] = []
    trained: list[bool] = []
    for f in range(fields):
        estimates = [(r.m[f], r.expected_matches[f]) for r, inc in results if inc[f] and r.expected_matches[f] > 0]
        if not estimates:
            combined.append(np.asarray(fallback[f], dtype=float))
            trained.append(False)
            continue
        weights = np.array([w for _, w in estimates])
        stacked = np.stack([m for m, _ in estimates])
        combined.append((stacked * weights[:, None]).sum(axis=0) / weights.sum())
        trained.append(True)
    return combined, trained


def estimate_prior(candidates: PatternCounts, weights: Sequence[np.ndarray], total_pairs: float, *,
                   start: float, max_iterations: int = 200, tolerance: float = 1e-9) -> float:
    """λ, the probability that two random records match, with m and u fixed.

    EM over every pair of records, taking pairs that no blocking rule produced as non-matches: λ is the
    expected number of matches among the candidate pairs over the number of all pairs. It is low by
    the share of matches the blocking rules miss.
    """
    base = pattern_weights(candidates.gammas, weights)
    prior = min(max(start, 1e-15), 0.5)
    for _ in range(max_iterations):
        expected = float((candidates.counts * match_probability(prior_weight(prior) + base)).sum())
        updated = min(max(expected / total_pairs, 1e-15), 0.5)
        if abs(updated - prior) <= tolerance * prior:
            return updated
        prior = updated
    return prior
