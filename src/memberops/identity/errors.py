from __future__ import annotations

from typing import Any

from memberops.errors import Invalid, NotFound


class MemberNotFound(NotFound):
    code = "member_not_found"

    def __init__(self, member_id: str) -> None:
        super().__init__(f"no member {member_id}", member_id=member_id)


class InvalidIdentifier(Invalid):
    code = "invalid_identifier"

    def __init__(self, type_: str) -> None:
        super().__init__(f"the {type_} given is not a valid {type_}", field=type_)


class InvalidIdentityConfig(Invalid):
    code = "invalid_identity_config"

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        summary = "; ".join(f"{p['field'] or 'config'}: {p['message']}" for p in problems)
        super().__init__(f"the identity configuration is not valid: {summary}", problems=problems)
