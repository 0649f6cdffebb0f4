"""Operator-written YAML documents (programmes, tags): parse them, and point at the line an error is on.

Pure functions, no I/O. A validation error names a field path (``tiers.1.threshold``); an operator editing
the document in a text box wants the line, so :func:`line_of` walks the YAML's node tree along that path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, SequenceNode


class YamlSyntaxError(ValueError):
    """Text that is not YAML: what the parser says and the 1-based line (``None``: unknown). Not a domain
    error: each caller turns it into its own (``InvalidProgramme``, ``InvalidTag``)."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def load_yaml(text: str) -> Any:
    """``text`` as data (YAML, so JSON too); :class:`YamlSyntaxError` when it is not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlSyntaxError(f"not valid YAML: {problem}", None if mark is None else mark.line + 1) from None


def line_of(text: str, path: Sequence[Any]) -> int | None:
    """The 1-based line of the value at ``path`` (keys and list indexes) in the YAML ``text``.

    Path parts that do not match the document are skipped: pydantic puts the tag of a tagged union
    (``all``, ``trait`` …) in its error paths, and those parts name no node of their own. When the path
    stops short (a missing field), the line of the deepest node found is returned: the mapping the field
    belongs in. ``None`` when ``text`` is not YAML or is empty.
    """
    try:
        node: Node | None = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in path:
        if isinstance(node, MappingNode):
            found = next(((key, value) for key, value in node.value if key.value == str(part)), None)
            if found is None:
                continue
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line


def field_path(field: str) -> list[str | int]:
    """A dotted field name as a path: ``tiers.1.threshold`` → ``["tiers", 1, "threshold"]``."""
    return [int(part) if part.isdigit() else part for part in field.split(".") if part]


def problems_of(error: ValidationError) -> list[dict[str, Any]]:
    """A pydantic error as one ``{"field", "message"}`` per problem, ``field`` dotted (``rfm.window_days``)."""
    return [{"field": ".".join(str(part) for part in e["loc"]), "message": e["msg"]} for e in error.errors()]


def with_lines(text: str, problems: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``problems`` (each with a dotted ``field``) with the 1-based ``line`` of ``text`` each is on
    (``None`` for the document as a whole), so a text box can point at it."""
    return [{**p, "line": line_of(text, field_path(p["field"])) if p["field"] else None} for p in problems]
