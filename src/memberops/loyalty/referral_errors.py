"""Why a referral binding is refused (mapped to HTTP statuses by ``api/errors.py`` through their bases)."""

from __future__ import annotations

from memberops.errors import Conflict, Invalid


class ReferralsDisabled(Conflict):
    code = "referrals_disabled"

    def __init__(self) -> None:
        super().__init__("the loyalty programme has no referrals (referrals.enabled is false)")


class UnknownReferralCode(Invalid):
    """No enrolled member holds this referral code or member card number."""

    code = "unknown_referral_code"

    def __init__(self) -> None:
        # the code itself is left out: it may be a member card number
        super().__init__("no member of the programme has this referral code", field="code")


class AlreadyReferred(Conflict):
    """The friend is bound to another referrer (or by another code): the first binding wins."""

    code = "already_referred"

    def __init__(self, friend_member_id: str, bound_at: str) -> None:
        super().__init__("this member was already referred; the first binding stands",
                         member_id=friend_member_id, bound_at=bound_at)


class SelfReferral(Conflict):
    """The referrer is the friend, shares an identifier with them, or was referred by them."""

    code = "self_referral"

    def __init__(self, member_id: str, reason: str) -> None:
        super().__init__(f"a member cannot be referred by themself ({reason})", member_id=member_id, reason=reason)
