from __future__ import annotations

from memberops.errors import Invalid, NotFound


class TagNotFound(NotFound):
    code = "tag_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no tag named {name!r}", name=name)
        self.name = name


class InvalidTag(Invalid):
    code = "invalid_tag"

    def __init__(self, message: str, **facts: object) -> None:
        super().__init__(message, **facts)
