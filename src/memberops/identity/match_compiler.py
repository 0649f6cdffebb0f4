"""Probabilistic matching's definitions compiled to Ibis: the same expressions run on DuckDB and PySpark.

- **preparation** (``prepare_records``): names, phones, e-mails, places normalised into the columns
  comparisons read; a Chinese full name ``张伟`` splits into surname ``张`` and given name ``伟``, a
  Latin one into its last and first words;
- **comparison levels** (``compare_pairs``): each ``matching.Comparison`` becomes a ``gamma_*`` column;
  edit distances count characters on every engine (``edit_distance``);
- **blocking** (``blocked_pairs``, ``rule_mask``) and the pseudo-random sample for u (``random_pairs``);
- **term frequencies** per record and the **match weight** of a fitted model (``match_weight_expression``).

Nothing here runs a query: ``probabilistic.py`` decides what to materialise and execute.
"""

from __future__ import annotations

import math

import ibis
from ibis.expr.types import BooleanValue, IntegerValue, NumericValue, StringValue, Table, Value

from memberops.identity import fellegi_sunter as fs
from memberops.identity.matching import (
    BlockingKey,
    BlockingRule,
    Comparison,
    DateTransposedLevel,
    DateWithinLevel,
    EditDistanceLevel,
    ExactLevel,
    Level,
    MatchSettings,
    PrefixLevel,
    SimilarityLevel,
    SuffixLevel,
    SwappedLevel,
)

MAX_POSITIONAL = 6  # non-Latin values longer than this are only ever equal or not (names are shorter)
_ASCII = r"^[\x00-\x7F]*$"
_CJK = "[一-鿿㐀-䶿]"  # CJK unified ideographs and extension A, literally: RE2 and Java read it alike
_SQUASH = r"[\s·•.,'_\-]"
_MODULUS = 2_147_483_647  # the sample's pseudo-random order: two Lehmer steps, all within int64
# per-record helper columns (see ``with_text_helpers``): the text edit distances read, and whether it is ASCII
TEXT_HELPER, LATIN_FLAG, CHAR_HELPER, DROP_HELPER = "_text_", "_latin_", "_char", "_drop"
_HELPERS = (TEXT_HELPER, LATIN_FLAG, CHAR_HELPER, DROP_HELPER)
_TF = "_tf_"  # a record's term frequencies (``with_term_frequencies``); a pair carries its left record's

# The record fields each prepared column is read from: a column with none of them is left out, and so
# are the comparisons and blocking rules that read it.
SOURCES: dict[str, tuple[str, ...]] = {
    "name": ("full_name", "first_name", "last_name"),
    "surname": ("full_name", "last_name"),
    "given_name": ("full_name", "first_name"),
    "birthday": ("birthday",), "gender": ("gender",), "phone": ("phone",),
    "email": ("email",), "email_local": ("email",),
    "city": ("city",), "province": ("province",), "postcode": ("postcode",),
    "street_number": ("street_number",), "address": ("address_line",),
    "wechat_openid": ("wechat_openid",), "buyer_id": ("buyer_id",),
    "wechat_unionid": ("wechat_unionid",), "member_card_no": ("member_card_no",),
}


# --- preparation -------------------------------------------------------------------------------------

def _text(value: Value) -> StringValue:
    return value.cast("string").strip().lower().nullif("")


def _squash(value: StringValue) -> StringValue:
    return value.re_replace(_SQUASH, "").nullif("")


def prepare_records(records: Table) -> Table:
    """``node`` and the prepared columns comparisons read (those the records can fill)."""
    present = set(records.columns)

    def raw(name: str) -> StringValue | None:
        return _text(records[name]) if name in present else None

    out: dict[str, Value] = {"node": records.node.cast("int64")}
    full, first, last = raw("full_name"), raw("first_name"), raw("last_name")
    if full is not None or first is not None or last is not None:
        null = ibis.null().cast("string")
        full = full if full is not None else null
        first = first if first is not None else null
        last = last if last is not None else null
        full_is_cjk = full.re_search(_CJK).fill_null(False)
        parts_are_cjk = (first.re_search(_CJK) | last.re_search(_CJK)).fill_null(False)
        compact = _squash(full)
        out["name"] = ibis.coalesce(
            compact, ibis.ifelse(parts_are_cjk, _squash(last + first), _squash(first + last)))
        out["surname"] = ibis.coalesce(_squash(last), ibis.ifelse(
            full_is_cjk, compact.substr(0, 1), full.re_extract(r"(\S+)$", 1).nullif("")))
        out["given_name"] = ibis.coalesce(_squash(first), ibis.ifelse(
            full_is_cjk, compact.substr(1).nullif(""), _squash(full.re_extract(r"^(\S+)\s", 1))))
    if "birthday" in present:
        out["birthday"] = records.birthday.cast("date")
    if (gender := raw("gender")) is not None:
        out["gender"] = gender
    if (phone := raw("phone")) is not None:
        out["phone"] = phone.re_replace(r"[^0-9]", "").nullif("")
    if (email := raw("email")) is not None:
        out["email"] = email
        out["email_local"] = email.re_extract(r"^([^@]+)@", 1).nullif("")
    if (city := raw("city")) is not None:
        out["city"] = city.re_replace("市$", "").nullif("")
    if (province := raw("province")) is not None:
        out["province"] = province.re_replace("(省|市)$", "").nullif("")
    if (postcode := raw("postcode")) is not None:
        out["postcode"] = postcode.re_replace(r"\s", "").nullif("")
    if (street_number := raw("street_number")) is not None:
        out["street_number"] = street_number
    if (address := raw("address_line")) is not None:
        out["address"] = _squash(address)
    for identifier in ("wechat_openid", "buyer_id", "wechat_unionid", "member_card_no"):
        if identifier in present:
            out[identifier] = records[identifier].cast("string").strip().nullif("")
    return records.select(**out)


def usable_settings(settings: MatchSettings, records: Table) -> tuple[tuple[Comparison, ...], tuple[BlockingRule, ...]]:
    """The comparisons and blocking rules whose columns the records can fill."""
    present = set(records.columns)
    available = {column for column, sources in SOURCES.items() if present.intersection(sources)}
    comparisons = tuple(c for c in settings.comparisons if c.columns <= available)
    rules = tuple(r for r in settings.blocking_rules if {k.column for k in r.keys} <= available)
    if not comparisons:
        raise ValueError("no comparison can be made: the records have none of the fields compared")
    if not rules:
        raise ValueError("no blocking rule applies: the records have none of the fields blocked on")
    return comparisons, rules


# --- comparison levels --------------------------------------------------------------------------------

def positional_parts(text: StringValue) -> tuple[list[StringValue], list[StringValue]]:
    """A value's first ``MAX_POSITIONAL`` characters, and the value without each of them: what the
    positional edit distance compares (computed once per record by ``with_text_helpers``)."""
    chars = [text.substr(i, 1) for i in range(MAX_POSITIONAL)]
    drops = [text.substr(0, i) + text.substr(i + 1) for i in range(MAX_POSITIONAL)]
    return chars, drops


def edit_distance(a: StringValue, b: StringValue, *, is_latin: BooleanValue | None = None,
                  bound: NumericValue | None = None, latin_only: bool = False, positional: bool = True,
                  parts: tuple[tuple[list[StringValue], list[StringValue]],
                               tuple[list[StringValue], list[StringValue]]] | None = None) -> IntegerValue:
    """Edits between two values, in characters on every engine (DuckDB's ``levenshtein`` counts bytes).

    Latin text: Levenshtein. Otherwise, for values up to ``MAX_POSITIONAL`` characters: mismatched
    positions when the lengths are equal, 1 when dropping one character of the longer gives the
    shorter; anything else counts as the longer length (nothing in common). ``is_latin`` says both are
    ASCII when the caller knows it already; past ``bound`` the distance is not computed (the lengths
    alone differ by more) and the longer length is returned instead. The caller may know that no value
    is anything but ASCII (``latin_only``) or that no value short enough for the positional comparison
    is (``positional=False``): the expressions that cannot apply are left out. ``parts``: both sides'
    ``positional_parts``, when the records carry them already.
    """
    la, lb = a.length(), b.length()
    longest = ibis.greatest(la, lb)
    branches: list[tuple[BooleanValue, Value]] = []
    if bound is not None:
        branches.append(((la - lb).abs() > bound, longest))
    if latin_only:
        return ibis.cases(*branches, else_=a.levenshtein(b)) if branches else a.levenshtein(b)
    latin = is_latin if is_latin is not None else a.re_search(_ASCII) & b.re_search(_ASCII)
    if not positional:
        return ibis.cases(*branches, (latin, a.levenshtein(b)), else_=longest)
    (chars_a, drops_a), (chars_b, drops_b) = parts or (positional_parts(a), positional_parts(b))
    mismatches = sum((x != y).ifelse(1, 0) for x, y in zip(chars_a, chars_b, strict=True))
    branches += [
        (latin, a.levenshtein(b)),
        ((la == lb) & (la <= MAX_POSITIONAL), mismatches),
        ((la == lb + 1) & (la <= MAX_POSITIONAL) & ibis.or_(*[d == b for d in drops_a]), 1),
        ((lb == la + 1) & (lb <= MAX_POSITIONAL) & ibis.or_(*[d == a for d in drops_b]), 1),
    ]
    return ibis.cases(*branches, else_=longest)


class _Sides:
    """A pair's two sides: ``<column>_l`` and ``<column>_r``, and their text and ASCII helpers."""

    def __init__(self, pairs: Table) -> None:
        self.pairs = pairs

    def left(self, column: str) -> Value:
        return self.pairs[f"{column}_l"]

    def right(self, column: str) -> Value:
        return self.pairs[f"{column}_r"]

    def text(self, column: str, side: str) -> StringValue:
        """The value as text: a date as ``YYYYMMDD`` (prepared once per record, see ``with_text_helpers``)."""
        helper = f"{TEXT_HELPER}{column}_{side}"
        return self.pairs[helper] if helper in self.pairs.columns else self.pairs[f"{column}_{side}"]

    def is_latin(self, column: str) -> BooleanValue:
        return self.pairs[f"{LATIN_FLAG}{column}_l"] & self.pairs[f"{LATIN_FLAG}{column}_r"]

    def positional_parts(self, column: str, side: str) -> tuple[list[StringValue], list[StringValue]]:
        return ([self.pairs[f"{CHAR_HELPER}{i}_{column}_{side}"] for i in range(MAX_POSITIONAL)],
                [self.pairs[f"{DROP_HELPER}{i}_{column}_{side}"] for i in range(MAX_POSITIONAL)])


def needs_distance(comparison: Comparison) -> bool:
    return any(isinstance(level, EditDistanceLevel | SimilarityLevel) for level in comparison.levels)


def _distance_bound(comparison: Comparison, longest: NumericValue) -> NumericValue:
    """The most edits any level of ``comparison`` accepts: past it, computing the distance is wasted."""
    edits = max((lv.distance for lv in comparison.levels if isinstance(lv, EditDistanceLevel)), default=0)
    shares = [1.0 - lv.similarity for lv in comparison.levels if isinstance(lv, SimilarityLevel)]
    if not shares:
        return ibis.literal(edits)
    return ibis.greatest(ibis.literal(float(edits)), longest * max(shares))


def with_text_helpers(prepared: Table, comparisons: tuple[Comparison, ...], *,
                      positional_columns: frozenset[str] = frozenset()) -> Table:
    """Per record, once: the text edit distances read (dates as ``YYYYMMDD``), whether it is ASCII and,
    for ``positional_columns``, its ``positional_parts`` — so a pair compares columns, not cut strings."""
    helpers: dict[str, Value] = {}
    for comparison in comparisons:
        column = comparison.column
        if not needs_distance(comparison) and not any(
                isinstance(lv, PrefixLevel | SuffixLevel) for lv in comparison.levels):
            continue
        value = prepared[column]
        text = value.strftime("%Y%m%d") if value.type().is_date() else value
        if value.type().is_date():
            helpers[f"{TEXT_HELPER}{column}"] = text
        helpers[f"{LATIN_FLAG}{column}"] = text.re_search(_ASCII)
        if needs_distance(comparison) and column in positional_columns:
            chars, drops = positional_parts(text)
            helpers.update({f"{CHAR_HELPER}{i}_{column}": char for i, char in enumerate(chars)})
            helpers.update({f"{DROP_HELPER}{i}_{column}": drop for i, drop in enumerate(drops)})
    return prepared.mutate(**helpers) if helpers else prepared


def _distance_column(comparison: Comparison) -> str:
    return f"_distance_{comparison.name}"


def _longest(sides: _Sides, column: str) -> IntegerValue:
    return ibis.greatest(sides.text(column, "l").length(), sides.text(column, "r").length())


def _level_condition(level: Level, comparison: Comparison, sides: _Sides) -> BooleanValue:
    column = comparison.column
    match level:
        case ExactLevel(column=override):
            target = override or column
            return sides.left(target) == sides.right(target)
        case SwappedLevel(other=other):
            return (sides.left(column) == sides.right(other)) & (sides.left(other) == sides.right(column))
        case EditDistanceLevel(distance=distance):
            # something must be left in common: any two one-character surnames are one edit apart
            edits: NumericValue = sides.pairs[_distance_column(comparison)]
            return (edits <= distance) & (edits < _longest(sides, column))
        case SimilarityLevel(similarity=similarity):
            edits = sides.pairs[_distance_column(comparison)]
            return edits <= _longest(sides, column) * (1.0 - similarity)
        case PrefixLevel(chars=chars):
            return sides.text(column, "l").substr(0, chars) == sides.text(column, "r").substr(0, chars)
        case SuffixLevel(chars=chars):
            return sides.text(column, "l").right(chars) == sides.text(column, "r").right(chars)
        case DateWithinLevel(days=days):
            return sides.left(column).delta(sides.right(column), unit="day").abs() <= days
        case DateTransposedLevel():
            return sides.left(column).strftime("%Y%d%m") == sides.right(column).strftime("%Y%m%d")
    raise TypeError(f"unknown level {level!r}")


def gamma_expression(comparison: Comparison, sides: _Sides) -> IntegerValue:
    """``-1`` null, ``len(levels)`` … ``1`` for the first level that holds, ``0`` else."""
    column = comparison.column
    top = len(comparison.levels)
    branches: list[tuple[BooleanValue, int]] = [(sides.left(column).isnull() | sides.right(column).isnull(), -1)]
    branches += [(_level_condition(level, comparison, sides), top - i) for i, level in enumerate(comparison.levels)]
    return ibis.cases(*branches, else_=0).cast("int8")


def compare_pairs(pairs: Table, prepared: Table, comparisons: tuple[Comparison, ...], *,
                  latin_columns: frozenset[str] = frozenset(), positional_columns: frozenset[str] | None = None) -> Table:
    """``pairs`` (``node_l``, ``node_r`` and any other columns) with a ``gamma_*`` column per comparison.

    What the records hold, when known (``probabilistic.profile_records``), keeps edit distances small:
    ``latin_columns`` hold ASCII only; only ``positional_columns`` (``None``: any) hold values short and
    non-Latin enough for the positional comparison. ``prepared`` may carry its ``with_text_helpers``
    already (materialised once, rather than computed again on each side of the join), and its
    ``with_term_frequencies``: each pair then has its left record's ``_tf_<comparison>``.
    """
    frequencies = [c for c in prepared.columns if c.startswith(_TF)]
    columns = [c for c in prepared.columns if c != "node" and not c.startswith((*_HELPERS, _TF))]
    if positional_columns is None:
        positional_columns = frozenset(c.column for c in comparisons if c.column not in latin_columns)
    has_helpers = any(c.startswith(_HELPERS) for c in prepared.columns)  # materialised by the caller
    records = prepared if has_helpers else with_text_helpers(prepared, comparisons, positional_columns=positional_columns)
    left = records.rename({f"{c}_l": c for c in records.columns})
    right = records.rename({f"{c}_r": c for c in records.columns})
    joined = pairs.join(left, "node_l").join(right, "node_r")
    sides = _Sides(joined)
    distances = {}
    for c in comparisons:
        if not needs_distance(c):
            continue
        a, b = sides.text(c.column, "l"), sides.text(c.column, "r")
        bound = _distance_bound(c, ibis.greatest(a.length(), b.length()))
        positional = c.column in positional_columns
        parts = (sides.positional_parts(c.column, "l"), sides.positional_parts(c.column, "r")) if positional else None
        distances[_distance_column(c)] = edit_distance(
            a, b, is_latin=sides.is_latin(c.column), bound=bound, latin_only=c.column in latin_columns,
            positional=positional, parts=parts)
    with_distances = joined.mutate(**distances) if distances else joined
    sides = _Sides(with_distances)
    gammas = {c.gamma_column: gamma_expression(c, sides) for c in comparisons}
    kept = [*pairs.columns, *(f"{c}_l" for c in columns), *(f"{c}_r" for c in columns)]
    left_frequencies = {tf: with_distances[f"{tf}_l"] for tf in frequencies}
    return with_distances.select(*kept, **left_frequencies, **gammas)


# --- blocking ------------------------------------------------------------------------------------------

def _key_value(key: BlockingKey, value: Value) -> Value:
    if value.type().is_date():
        return value
    text: StringValue = value.cast("string")
    if key.prefix:
        return text.substr(0, key.prefix)
    if key.suffix:
        return text.right(key.suffix)
    return text


def _key_name(rule: int, key: int) -> str:
    return f"_k{rule}_{key}"


def blocking_keys(prepared: Table, rules: tuple[BlockingRule, ...]) -> Table:
    """``node`` and every blocking rule's key values, per record (worth materialising: each rule reads it)."""
    return prepared.select("node", **{
        _key_name(r, k): _key_value(key, prepared[key.column]) for r, rule in enumerate(rules)
        for k, key in enumerate(rule.keys)
    })


def blocked_pairs(prepared: Table, rules: tuple[BlockingRule, ...], *, keys: Table | None = None) -> Table:
    """``(node_l, node_r, mask)`` once per pair any rule produces (``node_l < node_r``); bit ``r`` of
    ``mask`` is set when the pair satisfies rule ``r`` (the training sessions it belongs to).

    Each rule's join reads only its own keys and yields its bit; one hash aggregation over all of them
    makes each pair one row and sums its bits (a rule yields a pair at most once, so the sum is the
    union). Splink instead filters each rule's pairs with every earlier rule's condition, which needs
    every key on both sides of every join; pairs two rules share are few next to the join's width.
    ``keys``: ``blocking_keys`` already materialised.
    """
    keys = keys if keys is not None else blocking_keys(prepared, rules)
    parts: list[Table] = []
    for r, rule in enumerate(rules):
        names = [_key_name(r, k) for k in range(len(rule.keys))]
        side = keys.filter(*[keys[n].notnull() for n in names])
        left = side.select(node_l=side.node, **{f"{n}_l": side[n] for n in names})
        right = side.select(node_r=side.node, **{f"{n}_r": side[n] for n in names})
        joined = left.join(right, [left[f"{n}_l"] == right[f"{n}_r"] for n in names])
        joined = joined.filter(joined.node_l < joined.node_r)
        parts.append(joined.select("node_l", "node_r", _bit=ibis.literal(1 << r, "int64")))
    pairs = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    return pairs.group_by(["node_l", "node_r"]).aggregate(mask=pairs._bit.sum().cast("int64"))


def random_pairs(prepared: Table, pairs: int, seed: int) -> Table:
    """``(node_l, node_r)`` over a pseudo-random sample of about ``sqrt(2 * pairs)`` records.

    The order is arithmetic on ``node`` (no engine's ``random()`` or ``hash()``), so DuckDB and Spark
    draw the same sample.
    """
    size = math.ceil(math.sqrt(2 * pairs)) + 1
    node = prepared.node
    a = ((node % _MODULUS) * 48_271 + (seed % _MODULUS)) % _MODULUS
    b = (a * 16_807 + 12_345) % _MODULUS
    sample = prepared.select("node", _order=b).order_by(["_order", "node"]).limit(size).select("node")
    left = sample.rename(node_l="node")
    right = sample.rename(node_r="node")
    return left.join(right, left.node_l < right.node_r)


# --- term frequencies ----------------------------------------------------------------------------------

def tf_column(comparison: Comparison) -> str:
    return f"{_TF}{comparison.name}"


def with_term_frequencies(records: Table, prepared: Table, comparisons: tuple[Comparison, ...]) -> Table:
    """``records`` (one row per ``node``) with ``_tf_<comparison>``: the share of ``prepared`` records
    holding the record's value, for exact-match adjustments.

    Per record, once: ``compare_pairs`` carries the left record's as the pair's, so a pair table is
    never joined with a frequency table (a join per comparison over every pair, rather than over every record).
    """
    table = records
    for comparison in comparisons:
        if not comparison.term_frequency:
            continue
        column = comparison.column
        values = prepared.filter(prepared[column].notnull()).group_by(column).aggregate(_n=ibis._.count())
        frequencies = values.select(_value=values[column], _tf=values._n / values._n.sum().over())
        joined = table.join(frequencies, table[column] == frequencies._value, how="left")
        table = joined.select(*table.columns, **{tf_column(comparison): joined._tf.cast("float64")})
    return table


# --- scoring ---------------------------------------------------------------------------------------------

def double(value: float) -> NumericValue:
    """A float literal the engines read as a double: a bare ``-0.39949374844039354`` is a DECIMAL(18,17)
    to DuckDB and Spark, and a sum of such literals overflows its scale."""
    return ibis.literal(float(value), "float32").cast("float64")  # Ibis writes it CAST(... AS DOUBLE), in full


def match_weight_expression(table: Table, comparisons: tuple[Comparison, ...], model: fs.FittedModel) -> NumericValue:
    """The prior's weight plus each comparison's level weight; an exact match on a value with a known
    frequency ``tf`` weighs ``log2(m_exact / tf)`` instead (Splink's term-frequency adjustment)."""
    total: NumericValue = double(model.prior_weight)
    for comparison, parameters in zip(comparisons, model.comparisons, strict=True):
        gamma = table[comparison.gamma_column]
        weights = parameters.weights
        branches = [(gamma == g, double(w)) for g, w in enumerate(weights)]
        total = total + ibis.cases(*branches, else_=double(0.0))
        if comparison.term_frequency:
            top = len(comparison.levels)
            tf = table[tf_column(comparison)]
            # log2(m/tf) - log2(m/u), with tf scaled as u was for the matches among agreeing pairs
            agreement = parameters.top_agreement or parameters.u[top]
            adjustment = double(math.log2(agreement)) - tf.log2()
            total = total + ibis.ifelse((gamma == top) & tf.notnull() & (tf > 0), adjustment, double(0.0))
    return total
