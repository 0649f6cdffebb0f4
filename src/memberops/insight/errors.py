from __future__ import annotations

from typing import Any

from memberops.errors import Conflict, Invalid, NotFound


class TagNotFound(NotFound):
    code = "tag_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no tag named {name!r}", name=name)
        self.name = name


class InvalidTag(Invalid):
    code = "invalid_tag"

    def __init__(self, message: str, **facts: object) -> None:
        super().__init__(message, **facts)


class TagExists(Conflict):
    """A new tag was asked for under a name a current tag already has (edit that tag instead)."""

    code = "tag_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"a tag named {name!r} already exists; edit it instead", name=name)
        self.name = name


class InvalidInsightConfig(Invalid):
    """An insight configuration document that does not validate; ``problems`` names each bad field."""

    code = "invalid_insight_config"

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        summary = "; ".join(f"{p['field'] or 'config'}: {p['message']}" for p in problems)
        super().__init__(f"the insight configuration is not valid: {summary}", problems=problems)


class InsightNotComputed(NotFound):
    """The workspace has no finished insight computation yet (``memberops insight compute`` makes one)."""

    code = "insight_not_computed"

    def __init__(self) -> None:
        super().__init__("no insight computation has finished yet: run `memberops insight compute`")
