"""Vectorised text building for the demo brand: numpy arrays in, Arrow string arrays out.

Every function works on whole columns through Arrow compute kernels, so formatting a million phone
numbers or timestamps never loops in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Text: TypeAlias = Any  # an Arrow string array or scalar, or a Python str


def digits(values: np.ndarray, width: int = 0) -> pa.Array:
    """Integers as decimal text, left-padded with zeros to ``width``."""
    text = pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())
    return pc.ascii_lpad(text, width=width, padding="0") if width else text


def concat(*parts: Text) -> pa.Array:
    """Element-wise concatenation; a null part makes the result null."""
    return pc.binary_join_element_wise(*parts, "")


def pick(choices: Sequence[str], index: np.ndarray) -> pa.Array:
    """``choices[index]`` for every element."""
    return pa.array(list(choices), pa.string()).take(pa.array(np.asarray(index, dtype=np.int64)))


def choose(index: np.ndarray, *variants: Text) -> pa.Array:
    """Per element, the variant named by ``index`` (0 = first variant)."""
    return pc.choose(pa.array(np.asarray(index, dtype=np.int8)), *variants)


def blank_where(values: pa.Array, mask: np.ndarray) -> pa.Array:
    """``values`` with the masked elements null (written as empty cells)."""
    return pc.if_else(pa.array(np.asarray(mask, dtype=bool)), pa.scalar(None, values.type), values)


def money(cents: np.ndarray) -> pa.Array:
    """Integer cents as exact decimal text (``12345`` -> ``"123.45"``), through Arrow's decimal type."""
    cents = np.ascontiguousarray(cents, dtype=np.int64)
    words = np.stack([cents, cents >> 63], axis=1).copy()  # 128-bit little-endian two's complement
    decimal = pa.Array.from_buffers(pa.decimal128(18, 2), len(cents), [None, pa.py_buffer(words)])
    return pc.cast(decimal, pa.string())


def timestamps(seconds: np.ndarray, fmt: str, *, utc_offset_hours: int = 8) -> pa.Array:
    """Unix seconds as local wall-clock text in ``fmt``, at a fixed offset from UTC.

    ``fmt`` takes ``%Y %y %m %d %H %M %S`` and literal ASCII. Every value has the same width, so the
    text is written two digits at a time into one byte matrix: several times faster than Arrow's strftime.
    """
    local = np.asarray(seconds, dtype=np.int64) + utc_offset_hours * 3600
    days, of_day = np.divmod(local, 86_400)
    year, month, day = _calendar(days)
    fields = {"Y": (year, 4), "y": (year % 100, 2), "m": (month, 2), "d": (day, 2),
              "H": (of_day // 3600, 2), "M": (of_day // 60 % 60, 2), "S": (of_day % 60, 2)}
    return _fixed_width(fmt, fields, len(local))


def dates(days: np.ndarray, fmt: str) -> pa.Array:
    """Days since 1970-01-01 as text in ``fmt`` (``%Y %y %m %d`` and literal ASCII)."""
    days = np.asarray(days, dtype=np.int64)
    year, month, day = _calendar(days)
    return _fixed_width(fmt, {"Y": (year, 4), "y": (year % 100, 2), "m": (month, 2), "d": (day, 2)}, len(days))


def _calendar(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """civil_from_days through a lookup table over the (narrow) range of days present."""
    if len(days) == 0:
        return days, days, days
    first = int(days.min())
    year, month, day = civil_from_days(np.arange(first, int(days.max()) + 1))
    index = days - first
    return year[index], month[index], day[index]


def civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) of days since 1970-01-01, proleptic Gregorian (H. Hinnant's algorithm)."""
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    day_of_era = z - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = np.where(shifted_month < 10, shifted_month + 3, shifted_month - 9)
    year = year_of_era + era * 400 + (month <= 2)
    return year, month, day


_TWO_DIGITS = np.array([[48 + i // 10, 48 + i % 10] for i in range(100)], dtype=np.uint8)


def _fixed_width(fmt: str, fields: dict[str, tuple[np.ndarray, int]], n: int) -> pa.Array:
    pieces: list[tuple[int, np.ndarray | int]] = []  # (width, numbers) or (1, a literal byte)
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            values, width = fields[fmt[i + 1]]
            pieces.append((width, np.asarray(values)))
            i += 2
        else:
            pieces.append((1, fmt[i].encode("ascii")[0]))
            i += 1
    width = sum(w for w, _ in pieces)
    rows = np.empty((n, width), dtype=np.uint8)
    position = 0
    for w, value in pieces:
        if isinstance(value, int):
            rows[:, position] = value
        else:
            for pair in range(w // 2):  # two digits per lookup, most significant first
                rows[:, position + 2 * pair: position + 2 * pair + 2] = _TWO_DIGITS[value // 100 ** (w // 2 - 1 - pair) % 100]
        position += w
    offsets = np.arange(n + 1, dtype=np.int32) * width
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(rows)])


def scramble(index: np.ndarray, width: int, *, salt: int = 0) -> np.ndarray:
    """A bijection of ``[0, 10**width)`` that looks random: distinct inputs give distinct ids.

    An affine map ``i * m + c (mod 10**width)`` with ``m`` coprime to ten, the digits reversed, then a
    second affine map: order ids, buyer nicks and card numbers come out unique without a set to check
    them against, and consecutive inputs do not give consecutive-looking ids. ``width`` up to 12.
    """
    if not 1 <= width <= 12:
        raise ValueError("scramble supports 1 to 12 digits")
    modulus = 10**width
    value = _affine(np.asarray(index, dtype=np.int64) % modulus, modulus, salt)
    reversed_digits = np.zeros_like(value)
    for _ in range(width):
        value, digit = np.divmod(value, 10)
        reversed_digits = reversed_digits * 10 + digit
    return _affine(reversed_digits, modulus, salt + 17)


def _affine(value: np.ndarray, modulus: int, salt: int) -> np.ndarray:
    # The product is split in 20-bit halves so that no partial product overflows int64 (modulus <= 1e12).
    multiplier = (7_919_372_137 + 1_000_003 * salt) % modulus
    while np.gcd(multiplier, 10) != 1:
        multiplier += 1
    offset = (2_654_435_761 * (salt + 1)) % modulus
    m_hi, m_lo = divmod(multiplier, 1 << 20)
    high = ((value * m_hi) % modulus) * (1 << 20)
    return (high + value * m_lo + offset) % modulus


TOKEN_ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8)


def tokens(rng: np.random.Generator, index: np.ndarray, prefix: str, random_length: int, *, salt: int = 0,
           alphabet: np.ndarray = TOKEN_ALPHABET) -> pa.Array:
    """Opaque ids such as WeChat openids: ``prefix``, random characters, then a few characters that
    encode ``index`` (scrambled), so distinct indices below 10**9 always give distinct tokens.

    Built as one byte buffer of fixed-width rows, so a million tokens cost one numpy allocation.
    """
    index = np.asarray(index, dtype=np.int64)
    n = len(index)
    base = len(alphabet)
    unique_length = 1
    while base**unique_length < 10**9:
        unique_length += 1
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    unique = scramble(index, 9, salt=salt)
    unique_chars = np.empty((n, unique_length), dtype=np.uint8)
    for position in range(unique_length - 1, -1, -1):
        unique, remainder = np.divmod(unique, base)
        unique_chars[:, position] = alphabet[remainder]
    random_chars = alphabet[rng.integers(0, base, (n, random_length), dtype=np.uint8)]
    rows = np.concatenate([np.broadcast_to(head, (n, len(head))), random_chars, unique_chars], axis=1)
    width = rows.shape[1]
    offsets = np.arange(n + 1, dtype=np.int32) * width
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(rows))])


HEX_ALPHABET = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_PAIRS = np.array([[HEX_ALPHABET[i >> 4], HEX_ALPHABET[i & 15]] for i in range(256)], dtype=np.uint8)


def uuids(rng: np.random.Generator, index: np.ndarray, *, salt: int = 0, upper: bool = False) -> pa.Array:
    """UUID-shaped ids (8-4-4-4-12 hex), unique for distinct indices below 10**9: the last eight hex
    digits encode the scrambled index, the rest are random bytes."""
    index = np.asarray(index, dtype=np.int64)
    n = len(index)
    hex_digits = np.empty((n, 32), dtype=np.uint8)
    hex_digits[:, :24] = _HEX_PAIRS[rng.integers(0, 256, (n, 12), dtype=np.uint8)].reshape(n, 24)
    unique = scramble(index, 9, salt=salt)
    for position in range(8):
        hex_digits[:, 31 - position] = HEX_ALPHABET[(unique >> (4 * position)) & 15]
    if upper:
        hex_digits = np.where(hex_digits >= 97, hex_digits - 32, hex_digits).astype(np.uint8)
    rows = np.full((n, 36), ord("-"), dtype=np.uint8)
    for start, stop, target in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        rows[:, target:target + stop - start] = hex_digits[:, start:stop]
    offsets = np.arange(n + 1, dtype=np.int32) * 36
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(rows)])
