"""Identifier normalisation, applied once on the way in so equal identifiers compare equal.

Pure functions. ``None`` means "not a usable identifier" (the caller decides whether that is an error).
Phones become E.164 (``+8613800138000``) through Google's libphonenumber rules, read in the given
default region when the number has no country code.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

IDENTIFIER_TYPES = ("phone", "email", "wechat_unionid", "wechat_openid", "buyer_id", "member_card_no")
DEFAULT_REGION = "CN"

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_EMAIL = re.compile(EMAIL_PATTERN)


def normalise_email(value: str) -> str | None:
    cleaned = value.strip().lower()
    return cleaned if _EMAIL.match(cleaned) else None


@lru_cache(maxsize=65_536)
def normalise_phone(value: str, region: str = DEFAULT_REGION) -> str | None:
    """E.164 for a valid number; ``None`` for anything libphonenumber does not accept as possible."""
    text = value.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_token(value: str) -> str | None:
    cleaned = value.strip()
    return cleaned or None


def normalise_identifier(type_: str, value: str, region: str = DEFAULT_REGION) -> str | None:
    if type_ == "email":
        return normalise_email(value)
    if type_ == "phone":
        return normalise_phone(value, region)
    return normalise_token(value)
