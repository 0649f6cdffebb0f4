from __future__ import annotations

from memberops.errors import Invalid, NotFound


class MemberNotFound(NotFound):
    code = "member_not_found"

    def __init__(self, member_id: str) -> None:
        super().__init__(f"no member {member_id}", member_id=member_id)


class InvalidIdentifier(Invalid):
    code = "invalid_identifier"

    def __init__(self, type_: str) -> None:
        super().__init__(f"the {type_} given is not a valid {type_}", field=type_)
