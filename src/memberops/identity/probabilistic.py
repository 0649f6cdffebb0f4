"""Probabilistic matching (Fellegi–Sunter) in the warehouse engine, end to end: ``score_pairs``.

The definitions of ``matching.py`` are compiled to Ibis by ``match_compiler.py``; this module decides
what the warehouse materialises and counts, and hands the counts to ``fellegi_sunter.py``:

1. **prepare** the records (names split, identifiers normalised) and profile them in one query;
2. **candidate pairs** from the blocking rules (each rule skipping pairs an earlier one produced) and
   a **pseudo-random sample** of pairs (arithmetic on ``node``: every engine draws the same one) get
   their comparison vectors in one pass; the warehouse counts pairs per (sample, rule mask, vector);
3. **u** from the random pairs (exact matches' u from value frequencies over all records); **m** by
   EM in numpy, one session per blocking rule on the pairs it holds, leaving out the comparisons it
   fixes; the **prior** from the fitted model over all pairs; then u without the matches that random
   pairs hold too (``p = λ m + (1 - λ) u``) — for an identifier, most agreeing pairs are one person;
4. **scores**: each candidate pair's match weight and probability, computed in the warehouse from the
   fitted weights (term frequencies adjusting exact matches); pairs already in one deterministic
   component are compared (they train m: stitching says they match) but neither scored nor returned.

No Python loop touches a record or a pair: Python loops over comparisons, levels and patterns only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ibis
import numpy as np
from ibis.expr.types import IntegerValue, Table

from memberops.identity import fellegi_sunter as fs
from memberops.identity.match_compiler import (
    LATIN_FLAG,
    MAX_POSITIONAL,
    TEXT_HELPER,
    blocked_pairs,
    blocking_keys,
    compare_pairs,
    double,
    match_weight_expression,
    needs_distance,
    prepare_records,
    random_pairs,
    tf_column,
    usable_settings,
    with_term_frequencies,
    with_text_helpers,
)
from memberops.identity.matching import BlockingRule, Comparison, ExactLevel, MatchSettings
from memberops.lake.engine import Warehouse


@dataclass(frozen=True)
class MatchResult:
    """Scored candidate pairs and the model that scored them.

    ``pairs`` is materialised: ``node_l < node_r``, ``match_weight`` (prior included, log2),
    ``match_probability``, ``rule`` (the first blocking rule that produced the pair) and a
    ``gamma_<comparison>`` column per comparison. Only pairs at or above ``settings.min_probability``
    and not already in one deterministic component are in it.
    """

    pairs: Table
    model: fs.FittedModel
    settings: MatchSettings


# --- what the warehouse counts ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordProfile:
    """What one query learns about the prepared records before comparing them."""

    records: int
    latin_columns: frozenset[str]  # compared columns holding ASCII only
    positional_columns: frozenset[str]  # ... holding non-Latin values short enough to compare by position


def profile_records(warehouse: Warehouse, prepared: Table, comparisons: tuple[Comparison, ...]) -> RecordProfile:
    """How many records, and which scripts the edit-distance columns hold (their expressions compile and
    run smaller when a case cannot occur, see ``match_compiler.edit_distance``)."""
    columns = sorted({c.column for c in comparisons if needs_distance(c)})
    records = with_text_helpers(prepared, comparisons)
    flags: dict[str, IntegerValue] = {}
    for column in columns:
        non_latin = (~records[f"{LATIN_FLAG}{column}"]).fill_null(False)
        text = records[f"{TEXT_HELPER}{column}"] if f"{TEXT_HELPER}{column}" in records.columns else records[column]
        flags[f"_non_latin_{column}"] = non_latin.cast("int32").max()
        flags[f"_short_{column}"] = (non_latin & (text.length() <= MAX_POSITIONAL)).cast("int32").max()
    row = warehouse.to_pyarrow(records.aggregate(_records=records.count(), **flags)).to_pylist()[0]
    return RecordProfile(
        records=int(row["_records"]),
        latin_columns=frozenset(c for c in columns if not row[f"_non_latin_{c}"]),
        positional_columns=frozenset(c for c in columns if row[f"_short_{c}"]),
    )


def exact_agreement(warehouse: Warehouse, prepared: Table, comparisons: tuple[Comparison, ...]) -> dict[str, float]:
    """Per comparison whose closest level is an exact match: the share of all pairs of non-null values
    that agree, ``Σ n_v (n_v - 1) / (N (N - 1))``, in one query — exact where a sample would be noisy
    (matches are among those pairs too: ``fellegi_sunter.non_match_u`` takes them out)."""
    parts = []
    for comparison in comparisons:
        top = comparison.levels[0]
        if not isinstance(top, ExactLevel) or top.column:
            continue
        column = prepared[comparison.column]
        values = prepared.filter(column.notnull()).group_by(comparison.column).aggregate(_n=ibis._.count())
        parts.append(values.select(_comparison=ibis.literal(comparison.name), _n=values._n.cast("float64")))
    if not parts:
        return {}
    union = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    totals = union.group_by("_comparison").aggregate(
        _agreeing=(union._n * (union._n - 1.0)).sum(), _records=union._n.sum())
    result: dict[str, float] = {}
    for row in warehouse.to_pyarrow(totals).to_pylist():
        pairs = row["_records"] * (row["_records"] - 1.0)
        if pairs > 0:
            result[row["_comparison"]] = float(row["_agreeing"] / pairs)
    return result


def pattern_counts(warehouse: Warehouse, compared: Table, comparisons: tuple[Comparison, ...]) -> tuple[
        fs.PatternCounts, fs.PatternCounts]:
    """The warehouse's ``count(*)`` per distinct (rule mask, comparison vector), as arrays: of the candidate
    pairs, and of the random pairs (those ``_random`` marks)."""
    gamma_columns = [c.gamma_column for c in comparisons]
    mask = compared["mask"] if "mask" in compared.columns else ibis.literal(0, "int64")
    is_random = compared["_random"] if "_random" in compared.columns else ibis.literal(False)
    grouped = compared.mutate(_mask=mask, _sample=is_random).group_by(["_sample", "_mask", *gamma_columns]).aggregate(
        _pairs=ibis._.count())
    table = warehouse.to_pyarrow(grouped)
    sample = table["_sample"].to_numpy(zero_copy_only=False).astype(bool)
    gammas = np.stack([table[c].to_numpy(zero_copy_only=False).astype(np.int64) for c in gamma_columns], axis=1) \
        if table.num_rows else np.zeros((0, len(comparisons)), dtype=np.int64)
    counts = table["_pairs"].to_numpy(zero_copy_only=False).astype(float)
    masks = table["_mask"].to_numpy(zero_copy_only=False).astype(np.int64)
    candidates, random = (fs.PatternCounts(gammas[sample == flag], counts[sample == flag], masks[sample == flag])
                          for flag in (False, True))
    return candidates, random


# --- fitting ---------------------------------------------------------------------------------------------

def fit_model(
    random_counts: fs.PatternCounts, candidate_counts: fs.PatternCounts, comparisons: tuple[Comparison, ...],
    rules: tuple[BlockingRule, ...], records: int, settings: MatchSettings, exact_u: dict[str, float] | None = None,
) -> fs.FittedModel:
    """u from random pairs (exact matches' u from value frequencies), m by EM per blocking rule, the
    prior; then, unless ``settings.correct_u`` is off, u without the matches among those pairs and the
    prior again. See the module docstring."""
    sizes = [len(c.levels) + 1 for c in comparisons]
    exact_u = exact_u or {}
    u = [fs.u_from_counts(random_counts.level_counts(f, sizes[f]), exact_u.get(c.name))
         for f, c in enumerate(comparisons)]
    fallback = [np.array(c.default_m) if c.default_m else fs.starting_m(sizes[f]) for f, c in enumerate(comparisons)]
    results: list[tuple[fs.EMResult, list[bool]]] = []
    sessions: list[fs.TrainingSession] = []
    for r, rule in enumerate(rules):
        inside = candidate_counts.select((candidate_counts.masks >> r) & 1 == 1)
        included = [not (c.families & rule.families) for c in comparisons]
        if inside.pairs == 0 or not any(included):
            continue
        result = fs.expectation_maximisation(
            inside, u, [fs.starting_m(n) for n in sizes], 0.5, included=included,
            max_iterations=settings.max_em_iterations, tolerance=settings.em_tolerance,
        )
        results.append((result, included))
        sessions.append(fs.TrainingSession(
            rule=rule.name, pairs=inside.pairs, trained=tuple(c.name for c, inc in zip(comparisons, included, strict=True) if inc),
            prior=result.prior, iterations=result.iterations, converged=result.converged,
        ))
    m, trained = fs.combine_sessions(results, fallback)
    weights = [fs.match_weights(m[f], u[f]) for f in range(len(comparisons))]
    total_pairs = records * (records - 1) / 2
    if settings.prior is not None:
        prior = settings.prior
    else:
        start = sum(s.prior * s.pairs for s in sessions) / max(total_pairs, 1.0)
        prior = fs.estimate_prior(candidate_counts, weights, max(total_pairs, 1.0), start=start)
    sampled_u = u
    if settings.correct_u:
        u = [fs.non_match_u(u[f], m[f], prior) for f in range(len(comparisons))]
        weights = [fs.match_weights(m[f], u[f]) for f in range(len(comparisons))]
        if settings.prior is None:
            prior = fs.estimate_prior(candidate_counts, weights, max(total_pairs, 1.0), start=prior)
    parameters = tuple(
        fs.ComparisonParameters(
            name=c.name, levels=c.level_labels, m=tuple(float(x) for x in m[f]), u=tuple(float(x) for x in u[f]),
            is_m_trained=trained[f], top_agreement=float(sampled_u[f][-1]),
        )
        for f, c in enumerate(comparisons)
    )
    return fs.FittedModel(parameters, prior, tuple(sessions), random_counts.pairs, candidate_counts.pairs)


# --- scoring ---------------------------------------------------------------------------------------------

def _apart(candidates: Table, components: Table) -> Table:
    """``candidates`` with ``_scored``: false for a pair whose records one deterministic component holds.

    Such a pair is compared all the same: it trains m (stitching found it a match; on the demo brand,
    training without those pairs loses 0.02 of cluster F1), but it is never scored or returned.
    """
    left = components.select(node_l=components.node.cast("int64"), _component_l=components.component)
    right = components.select(node_r=components.node.cast("int64"), _component_r=components.component)
    joined = candidates.join(left, "node_l", how="left").join(right, "node_r", how="left")
    same = (joined._component_l == joined._component_r).fill_null(False)
    return joined.select(*candidates.columns, _scored=~same)


def _first_rule(mask: IntegerValue, rules: int) -> IntegerValue:
    branches = [(((mask // (1 << r)) % 2) == 1, r) for r in range(rules)]
    return ibis.cases(*branches, else_=-1).cast("int16")


def score_pairs(
    warehouse: Warehouse, records: Table, *, settings: MatchSettings | None = None,
    exclude_same: Table | None = None, progress: Callable[[str], None] | None = None,
) -> MatchResult:
    """Score every candidate pair of ``records`` with a Fellegi–Sunter model trained on them, unsupervised.

    ``records`` has ``node`` (int64) and any of the identity fields (``full_name``, ``first_name``,
    ``last_name``, ``gender``, ``birthday``, ``phone``, ``email``, ``city``, ``province``, ``postcode``,
    ``street_number``, ``address_line``, ``wechat_openid``, ``buyer_id``, and the strong
    ``wechat_unionid`` and ``member_card_no``, whose disagreement is evidence apart); comparisons of fields it
    lacks are left out. ``exclude_same`` ``(node, component)`` — deterministic stitching's result —
    leaves out pairs already in one component (they take part in training: they are matches too).

    Examples:
        >>> result = score_pairs(warehouse, records, exclude_same=components)  # doctest: +SKIP
        >>> result.pairs.filter(result.pairs.match_probability >= 0.9).count().execute()  # doctest: +SKIP
        1234
        >>> result.model.prior, [c.weights for c in result.model.comparisons]  # doctest: +SKIP
    """
    settings = settings or MatchSettings()
    report = progress or (lambda _step: None)
    comparisons, rules = usable_settings(settings, records)

    report("preparing records")
    prepared = warehouse.materialise(prepare_records(records))
    profile = profile_records(warehouse, prepared, comparisons)
    exact_u = exact_agreement(warehouse, prepared, comparisons)

    report("comparing candidate pairs and random pairs")
    keys = warehouse.materialise(blocking_keys(prepared, rules))
    candidates = warehouse.materialise(blocked_pairs(prepared, rules, keys=keys))
    with_helpers = warehouse.materialise(with_term_frequencies(
        with_text_helpers(prepared, comparisons, positional_columns=profile.positional_columns), prepared, comparisons))
    sample = warehouse.materialise(random_pairs(prepared, settings.u_sample_pairs, settings.seed))
    candidates = (_apart(candidates, exclude_same) if exclude_same is not None
                  else candidates.mutate(_scored=ibis.literal(True)))
    # one comparison pass over both: the random pairs give u, the candidates m and the scores
    pairs = ibis.union(candidates.mutate(_random=ibis.literal(False)),
                       sample.mutate(mask=ibis.literal(0, "int64"), _scored=ibis.literal(False),
                                     _random=ibis.literal(True)))
    compared = compare_pairs(pairs, with_helpers, comparisons, latin_columns=profile.latin_columns,
                             positional_columns=profile.positional_columns)
    tf_columns = [tf_column(c) for c in comparisons if c.term_frequency]
    gamma_columns = [c.gamma_column for c in comparisons]
    compared_all = warehouse.materialise(
        compared.select("node_l", "node_r", "_random", "_scored", "mask", *gamma_columns, *tf_columns))
    candidate_counts, random_counts = pattern_counts(warehouse, compared_all, comparisons)
    vectors = compared_all.filter(compared_all._scored)

    report("estimating m by expectation maximisation")
    model = fit_model(random_counts, candidate_counts, comparisons, rules, profile.records, settings, exact_u)

    report("scoring pairs")
    weight = match_weight_expression(vectors, comparisons, model)
    scored = vectors.select(
        "node_l", "node_r", *gamma_columns, match_weight=weight, rule=_first_rule(vectors["mask"], len(rules)),
    )
    scored = scored.mutate(match_probability=double(1.0) / (double(1.0) + double(2.0) ** (-scored.match_weight)))
    kept = scored.filter(scored.match_probability >= settings.min_probability)
    pairs = warehouse.materialise(kept.select(
        "node_l", "node_r", "match_weight", "match_probability", "rule", *gamma_columns,
    ))
    return MatchResult(pairs=pairs, model=model, settings=settings)
