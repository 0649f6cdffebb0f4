"""Arrow columns as JSON text, a column at a time: the serving traits' documents without a Python object per value.

What :func:`json_documents` writes parses to exactly what ``json.dumps`` of the row's values gave when each
value was first made JSON-ready the old way (money as a decimal string, a timestamp or a date as its
``isoformat()``, a float rounded to 6 decimals and NaN as null): the same keys in the same order, the same
values of the same types. A float's digits are the shortest that read back to it (``1e-05`` may be written
``0.00001``), which every JSON reader takes as the same number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DECIMALS = 6  # a float trait is rounded to this many decimals
NULL = pa.scalar("null")


def json_value(value: Any) -> Any:
    """``value`` as the documents hold it: a decimal or a timestamp as a string, a float rounded, NaN as None."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, DECIMALS)
    return value


def _by_python(values: pa.Array) -> pa.Array:
    return pa.array([json.dumps(json_value(v)) for v in values.to_pylist()], pa.string())


def _quoted(strings: pa.Array) -> pa.Array:
    """JSON strings as ``json.dumps`` writes them, encoded once per distinct value (a trait has few)."""
    encoded = pc.dictionary_encode(strings)
    dictionary = pa.array([json.dumps(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.take(dictionary, encoded.indices)


def _floats(values: pa.Array) -> pa.Array:
    """Rounded as Python's ``round(v, 6)`` does: ``rint(v·10⁶) / 10⁶`` is that same double unless v·10⁶ lies
    near a half (where the product's own rounding could tip it) or is too large to be exact; those few, and
    infinities, go through Python."""
    x = values.to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = x * 10.0 ** DECIMALS
        rounded = np.rint(scaled) / 10.0 ** DECIMALS
        fraction = scaled - np.floor(scaled)
        doubtful = ~np.isfinite(x) | (np.abs(x) >= 1e9) | (np.abs(fraction - 0.5) < 1e-3)
    text = pc.cast(pa.array(rounded, pa.float64()), pa.string())
    # Arrow writes an integral double as "100", which a JSON reader takes as an integer: make it "100.0"
    is_decimal = pc.or_(pc.match_substring(text, "."), pc.match_substring(text, "e"))
    text = pc.if_else(is_decimal, text, pc.binary_join_element_wise(text, ".0", ""))
    missing = np.isnan(x)
    if values.null_count:
        missing |= values.is_null().to_numpy(zero_copy_only=False)
    text = pc.if_else(pa.array(missing), NULL, text)
    slow = np.flatnonzero(doubtful & ~missing)
    if len(slow):
        fixed = text.to_pylist()
        for i, v in zip(slow, x[slow], strict=True):
            fixed[i] = json.dumps(round(float(v), DECIMALS))
        text = pa.array(fixed, pa.string())
    return text


def _timestamps(values: pa.Array) -> pa.Array:
    """``datetime.isoformat()`` of UTC timestamps: microseconds only when there are some, ``+00:00``. Formatted
    once per distinct value (a snapshot's ``as_of`` is one value for every member)."""
    encoded = pc.dictionary_encode(values)
    text = pc.strftime(encoded.dictionary, format="%Y-%m-%dT%H:%M:%S")  # with the fraction, ".000000" when whole
    text = pc.replace_substring_regex(text, r"\.0{6}$", "")
    return pc.take(pc.binary_join_element_wise('"', text, '+00:00"', ""), encoded.indices)


def json_tokens(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value of ``values`` as JSON text (``null`` for a null), without nulls."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = values.type
    if pa.types.is_integer(kind):
        text = pc.cast(values, pa.string())
    elif pa.types.is_boolean(kind):
        text = pc.if_else(values, "true", "false")
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = _quoted(values.cast(pa.string()))
    elif pa.types.is_decimal(kind):
        text = pc.binary_join_element_wise('"', pc.cast(values, pa.string()), '"', "")
    elif pa.types.is_floating(kind):
        return _floats(values)
    elif pa.types.is_date(kind):
        text = pc.binary_join_element_wise('"', pc.cast(values, pa.string()), '"', "")
    elif pa.types.is_timestamp(kind) and str(kind.tz) in ("UTC", "+00:00"):
        text = _timestamps(values)
    elif pa.types.is_list(kind) and pa.types.is_string(kind.value_type):
        text = _lists(values)
    else:
        return _by_python(values)
    return pc.fill_null(text, "null")


def _lists(values: pa.ListArray) -> pa.Array:
    """Lists of strings as JSON arrays (``json.dumps`` of the list)."""
    values = values.cast(pa.list_(pa.string()))
    flat = values.flatten()
    items = pc.fill_null(_quoted(flat), "null") if len(flat) else pa.array([], pa.string())
    offsets = pc.subtract(values.offsets, values.offsets[0])
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, items), ", ")
    text = pc.binary_join_element_wise("[", joined, "]", "")
    return pc.if_else(values.is_null(), NULL, text)


def json_documents(table: pa.Table | pa.RecordBatch, names: Sequence[str]) -> pa.Array:
    """One JSON object per row of ``table`` with the columns ``names``, in that order (``json.dumps``'s
    ``", "`` and ``": "`` separators)."""
    if not table.num_rows:
        return pa.array([], pa.string())
    parts: list[Any] = []
    for i, name in enumerate(names):  # the keys as constants between the columns' values: one join in all
        parts += [pa.scalar(("{" if i == 0 else ", ") + f"{json.dumps(name)}: "), json_tokens(table.column(name))]
    return pc.binary_join_element_wise(*parts, pa.scalar("}"), "")
