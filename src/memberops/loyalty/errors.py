from __future__ import annotations

from typing import Any

from memberops.errors import Conflict, Invalid, NotFound


class InvalidProgramme(Invalid):
    code = "invalid_programme"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        fields = ", ".join(e["field"] or "(document)" for e in errors)
        super().__init__(f"the programme is not valid: {fields}", errors=errors)
        self.errors = errors


class MemberNotEnrolled(Conflict):
    code = "member_not_enrolled"

    def __init__(self, member_id: str) -> None:
        super().__init__(f"member {member_id} is not enrolled in the loyalty programme", member_id=member_id)


class InsufficientPoints(Conflict):
    code = "insufficient_points"

    def __init__(self, member_id: str, requested: int, available: int) -> None:
        super().__init__(f"{requested} points requested, {available} available",
                         member_id=member_id, requested=requested, available=available)


class IdempotencyKeyReused(Conflict):
    """The key was used before for a different movement (another member, kind or amount)."""

    code = "idempotency_key_reused"

    def __init__(self, key: str) -> None:
        super().__init__("this idempotency_key was already used for a different request", idempotency_key=key)


class EnrolmentNeedsIdentifier(Invalid):
    code = "identifier_required"

    def __init__(self) -> None:
        super().__init__("give source_id or at least one identifier (phone, email, wechat_unionid, "
                         "wechat_openid, buyer_id, member_card_no)", field="phone")


class ProgrammeChanged(Conflict):
    """The programme was edited from a version that is no longer the active one: saving it would undo
    someone else's change without them seeing it."""

    code = "programme_changed"

    def __init__(self, based_on: int, active: int) -> None:
        super().__init__(f"the programme changed while you edited it: you started from version {based_on}, "
                         f"version {active} is now active", based_on=based_on, active=active)


class ProgrammeVersionNotFound(NotFound):
    code = "programme_version_not_found"

    def __init__(self, version: int) -> None:
        super().__init__(f"no programme version {version}", version=version)


class UnknownTier(Invalid):
    code = "unknown_tier"

    def __init__(self, tier: str, known: list[str]) -> None:
        super().__init__(f"the programme has no tier {tier!r}", field="tier", tier=tier, known=known)
