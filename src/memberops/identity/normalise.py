"""Identifier normalisation, applied once on the way in so equal identifiers compare equal.

Pure functions. ``None`` means "not a usable identifier" (the caller decides whether that is an error).
"""

from __future__ import annotations

import re

IDENTIFIER_TYPES = ("phone", "email", "wechat_unionid", "wechat_openid", "buyer_id", "member_card_no")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NON_DIGITS = re.compile(r"[^\d]")


def normalise_email(value: str) -> str | None:
    cleaned = value.strip().lower()
    return cleaned if _EMAIL.match(cleaned) else None


def normalise_phone(value: str) -> str | None:
    """Digits only, a leading ``+`` kept; fewer than 6 digits is not a phone number."""
    stripped = value.strip()
    digits = _NON_DIGITS.sub("", stripped)
    if len(digits) < 6 or len(digits) > 15:
        return None
    return f"+{digits}" if stripped.startswith("+") else digits


def normalise_token(value: str) -> str | None:
    cleaned = value.strip()
    return cleaned or None


def normalise_identifier(type_: str, value: str) -> str | None:
    if type_ == "email":
        return normalise_email(value)
    if type_ == "phone":
        return normalise_phone(value)
    return normalise_token(value)
