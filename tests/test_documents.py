"""Pointing a validation error at the line of the YAML an operator wrote (memberops.documents)."""

from __future__ import annotations

import pytest

from memberops.documents import YamlSyntaxError, line_of, load_yaml

TEXT = """name: Club
earn:
  rounding: sideways
tiers:
  - code: silver
    threshold: 1000
  - code: gold
    threshold: oops
"""


class TestLineOf:
    @pytest.mark.parametrize(("path", "line"), [
        (["name"], 1), (["earn", "rounding"], 3), (["tiers", 1, "threshold"], 8), (["tiers", 0], 5),
        (["earn", "pending_days"], 2),  # a missing field: the mapping it belongs in
        (["tiers", 1, "gold-tag", "threshold"], 8),  # a union's tag in the path names no node: skipped
    ])
    def test_paths(self, path: list[str | int], line: int) -> None:
        assert line_of(TEXT, path) == line

    def test_not_yaml_or_empty(self) -> None:
        assert line_of("a: [", ["a"]) is None
        assert line_of("", ["a"]) is None


def test_syntax_error_carries_its_line() -> None:
    with pytest.raises(YamlSyntaxError) as raised:
        load_yaml("name: Club\nearn: [\n  x: 1\n")  # the parser notices at the end, line 4
    assert raised.value.line == 4 and raised.value.message.startswith("not valid YAML")
