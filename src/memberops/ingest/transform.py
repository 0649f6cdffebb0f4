"""From a source's text columns to canonical, typed, validated values: SQL expressions, built as text.

Pure: nothing here touches a database. The batch importer runs these expressions in DuckDB over the
whole file at once (vectorised), so no row passes through Python. Each canonical field gets

- ``raw``: the trimmed source text after defaults and value maps (NULL when empty),
- ``parsed``: the typed value, NULL when the text is not a valid value of the type,
- a **reason** when the field is required and missing, invalid or negative (the row is quarantined),
- a **warning** when the field is optional and its text was not valid (the row is kept without it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from memberops.identity.normalise import EMAIL_PATTERN
from memberops.ingest.canonical import (
    BOOLEAN_FALSE,
    BOOLEAN_TRUE,
    GENDER_FEMALE,
    GENDER_MALE,
    GENDER_UNKNOWN,
    CanonicalField,
    FieldType,
    RecordKind,
)
from memberops.ingest.mapping import Mapping

ColumnText = Callable[[str, bool], str]
"""Given a source column name and whether it holds JSON, the SQL that reads it as text."""

PHONE_FUNCTION = "mo_phone_e164"  # a DuckDB function the importer registers (libphonenumber rules)
EARLIEST_TIME = "2000-01-01"
EARLIEST_BIRTHDAY = "1900-01-01"

LAKE_SQL_TYPES = {
    FieldType.string: "VARCHAR", FieldType.phone: "VARCHAR", FieldType.email: "VARCHAR",
    FieldType.identifier: "VARCHAR", FieldType.date: "DATE", FieldType.timestamp: "TIMESTAMPTZ",
    FieldType.money: "DECIMAL(18,2)", FieldType.integer: "INTEGER", FieldType.boolean: "BOOLEAN",
    FieldType.gender: "VARCHAR", FieldType.string_list: "VARCHAR[]", FieldType.json: "VARCHAR",
}



def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(literal(v) for v in values)


@dataclass(frozen=True)
class FieldPlan:
    field: CanonicalField
    source_column: str | None
    source: str | None  # SQL reading the column's text from the source row, or None when it has no column
    raw: str | None  # SQL over ``s_<field>`` (the source text), or None when the file has nothing for this field
    parsed: str | None


def trimmed(x: str) -> str:
    """``x`` without surrounding spaces, NULL when empty.

    DuckDB's ``trim`` decodes every character of the string (it strips Unicode space separators such as
    U+3000), which makes it one of the costliest steps of an import; plain ASCII text that neither starts
    nor ends with a space — nearly every value — is passed through untouched instead.
    """
    needs_trim = f"prefix({x}, ' ') OR suffix({x}, ' ') OR strlen({x}) <> length({x})"
    return f"NULLIF(CASE WHEN {needs_trim} THEN trim({x}) ELSE {x} END, '')"


def raw_text(field: CanonicalField, mapping: Mapping, source_columns: set[str], column_text: ColumnText) -> tuple[str | None, str | None, str | None]:
    """For ``field``: the SQL reading its column's text from the source row, the SQL turning that text
    (as the column ``s_<field>``) into the field's raw text, and the column it comes from."""
    column = mapping.columns.get(field.name)
    if column not in source_columns:  # not mapped, or the file lacks the mapped column: try the canonical name
        column = field.name if field.name in source_columns else None
    expr = None
    source = None
    if column is not None:
        source = column_text(column, field.type == FieldType.json)
        expr = trimmed(f"s_{field.name}")
    default = mapping.defaults.get(field.name)
    if default is not None:
        expr = f"COALESCE({expr}, {literal(default)})" if expr else literal(default)
    value_map = mapping.values.get(field.name)
    if expr is not None and value_map:
        cases = " ".join(f"WHEN {literal(k)} THEN {literal(v)}" for k, v in value_map.items())
        expr = f"(CASE {expr} {cases} ELSE {expr} END)"
    return source, expr, column


_ISO_DIRECTIVES = "YmdHMSf"
_ISO_SEPARATORS = set("-/:. T")


def is_iso_ordered(fmt: str) -> bool:
    """Whether text that DuckDB's own date/time cast accepts always means the same under ``fmt``.

    True for formats naming year, month, day, hour, minute, second in that order, separated only by
    ``- / : . T`` or spaces (``%Y-%m-%d %H:%M``, ``%Y/%m/%d``, ``%Y%m%d``): text both readings accept
    has one meaning, so the cheap cast can go first and the format only reads what the cast refused.
    A failed ``strptime`` costs ten times a cast, and a file whose times carry seconds the format lacks
    would otherwise pay it on every row. Any other format (day first, literal ``Z``, 12-hour clock …)
    keeps priority over the cast.
    """
    directives = re.findall(r"%(.)", fmt)
    if not directives or any(d not in _ISO_DIRECTIVES for d in directives):
        return False
    positions = [_ISO_DIRECTIVES.index(d) for d in directives]
    literals = re.sub(r"%.", "", fmt)
    return positions == sorted(set(positions)) and set(literals) <= _ISO_SEPARATORS


def parsed_value(field: CanonicalField, x: str, mapping: Mapping) -> str:
    """The SQL turning the text ``x`` into ``field``'s type; NULL for text that is not a valid value."""
    fmt = mapping.formats.get(field.name)
    tz = literal(mapping.timezone)
    match field.type:
        case FieldType.string | FieldType.identifier:
            return x
        case FieldType.email:
            return f"(CASE WHEN regexp_full_match(lower({x}), {literal(EMAIL_PATTERN)}) THEN lower({x}) END)"
        case FieldType.phone:
            return f"{PHONE_FUNCTION}({x}, {literal(mapping.phone_region)})"
        case FieldType.date:
            general = f"TRY_CAST({x} AS DATE)"
            if not fmt:
                return general
            formatted = f"TRY_CAST(try_strptime({x}, {literal(fmt)}) AS DATE)"
            return f"COALESCE({general}, {formatted})" if is_iso_ordered(fmt) else f"COALESCE({formatted}, {general})"
        case FieldType.timestamp:
            # A cast to TIMESTAMP silently drops an offset, so text with one is read as TIMESTAMPTZ instead.
            # (The sign tested by position: the same test as LIKE '%+__:__' … at a third of its cost.)
            has_offset = (f"(suffix({x}, 'Z') OR (substr({x}, -6, 1) IN ('+', '-') AND substr({x}, -3, 1) = ':') "
                          f"OR substr({x}, -5, 1) = '+')")
            general = (f"(CASE WHEN {has_offset} THEN TRY_CAST({x} AS TIMESTAMPTZ) "
                       f"ELSE timezone({tz}, TRY_CAST({x} AS TIMESTAMP)) END)")
            if not fmt:
                return general
            formatted = f"timezone({tz}, try_strptime({x}, {literal(fmt)}))"
            return f"COALESCE({general}, {formatted})" if is_iso_ordered(fmt) else f"COALESCE({formatted}, {general})"
        case FieldType.money:
            return (f"COALESCE(TRY_CAST({x} AS DECIMAL(18,2)), "
                    f"TRY_CAST(regexp_replace({x}, '[,¥￥$\\s]|CNY|RMB', '', 'g') AS DECIMAL(18,2)))")
        case FieldType.integer:
            return f"TRY_CAST({x} AS INTEGER)"
        case FieldType.boolean:
            return f"(CASE WHEN lower({x}) IN ({_in(BOOLEAN_TRUE)}) THEN true WHEN lower({x}) IN ({_in(BOOLEAN_FALSE)}) THEN false END)"
        case FieldType.gender:
            return (f"(CASE WHEN lower({x}) IN ({_in(GENDER_FEMALE)}) THEN 'female' WHEN lower({x}) IN ({_in(GENDER_MALE)}) "
                    f"THEN 'male' WHEN lower({x}) IN ({_in(GENDER_UNKNOWN)}) THEN NULL WHEN {x} IS NOT NULL THEN 'other' END)")
        case FieldType.string_list:
            return (f"list_filter(list_transform(string_split_regex({x}, '[,;|，；]'), s -> trim(s)), "
                    "s -> s <> '')")
        case FieldType.json:
            return f"(CASE WHEN json_valid({x}) THEN {x} END)"
    raise AssertionError(f"unhandled field type {field.type}")


def checked_value(field: CanonicalField, p: str) -> str:
    """``p`` (the parsed value, a column) kept only when plausible: dates and times in a sane range."""
    if field.type == FieldType.date:
        earliest = EARLIEST_BIRTHDAY if field.name == "birthday" else EARLIEST_TIME
        return f"(CASE WHEN {p} BETWEEN DATE '{earliest}' AND current_date THEN {p} END)"
    if field.type == FieldType.timestamp:
        return (f"(CASE WHEN {p} BETWEEN TIMESTAMPTZ '{EARLIEST_TIME} 00:00:00+00' "
                f"AND now() + INTERVAL 1 DAY THEN {p} END)")
    return p


def plan_fields(kind: RecordKind, mapping: Mapping, source_columns: set[str], column_text: ColumnText) -> list[FieldPlan]:
    plans = []
    for field in kind.fields:
        source, raw, column = raw_text(field, mapping, source_columns, column_text)
        plans.append(FieldPlan(field, column, source, raw,
                               parsed_value(field, "r_" + field.name, mapping) if raw else None))
    return plans


_NON_NEGATIVE = (FieldType.money, FieldType.integer)


REASON_SEPARATOR = "; "


def _labelled(checks: list[tuple[str, str]]) -> str:
    """``(condition, label)`` pairs → the labels whose condition holds, joined by ``REASON_SEPARATOR``.

    Nearly every row passes every check: a cheap OR of the conditions decides whether a row needs its
    labels built at all (joining a dozen CASE results on every row costs a third of the whole parse).
    """
    if not checks:
        return "''"
    labels = ", ".join(f"CASE WHEN {condition} THEN {literal(label)} END" for condition, label in checks)
    any_failed = " OR ".join(f"({condition})" for condition, _ in checks)
    return f"(CASE WHEN {any_failed} THEN concat_ws('{REASON_SEPARATOR}', {labels}) ELSE '' END)"


def reasons_sql(kind: RecordKind, plans: list[FieldPlan]) -> str:
    """The reasons a row is refused, joined by ``REASON_SEPARATOR`` ('' when it is accepted).

    A string, not a list: building a list per row costs more than the whole parse.
    """
    checks: list[tuple[str, str]] = []
    for plan in plans:
        name = plan.field.name
        if plan.field.required:
            if plan.raw is None:
                checks.append(("true", f"missing {name}"))
                continue
            checks.append((f"r_{name} IS NULL", f"missing {name}"))
            checks.append((f"r_{name} IS NOT NULL AND p_{name} IS NULL", f"invalid {name}"))
        if plan.raw is not None and plan.field.type in _NON_NEGATIVE:
            checks.append((f"p_{name} < 0", f"negative {name}"))
    if kind.name == "events":
        has = {p.field.name for p in plans if p.raw is not None}
        present = " OR ".join(f"p_{n} IS NOT NULL" for n in ("customer_key", "anonymous_id") if n in has) or "false"
        checks.append((f"NOT ({present})", "missing customer_key and anonymous_id"))
    return _labelled(checks)


def _not_unknown(field: CanonicalField, raw: str) -> str:
    """A gender given as "unknown" (未知, 保密, 0 …) is an absent value, not an invalid one."""
    return f" AND lower({raw}) NOT IN ({_in(GENDER_UNKNOWN)})" if field.type == FieldType.gender else ""


_ALWAYS_VALID = (FieldType.string, FieldType.identifier)  # any text is a value: nothing to warn about


def warnings_sql(plans: list[FieldPlan]) -> str:
    """The optional fields whose text was dropped as invalid, joined like the reasons ('' when none)."""
    return _labelled([
        (f"r_{p.field.name} IS NOT NULL AND p_{p.field.name} IS NULL{_not_unknown(p.field, 'r_' + p.field.name)}",
         f"invalid {p.field.name}")
        for p in plans if p.raw is not None and not p.field.required and p.field.type not in _ALWAYS_VALID
    ])
