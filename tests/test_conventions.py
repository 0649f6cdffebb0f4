"""Mechanical conventions from docs/CONVENTIONS.md, checked so they stay true."""

from __future__ import annotations

import re
from pathlib import Path

import memberops

SRC = Path(memberops.__file__).parent
FACES = [*sorted((SRC / "api").rglob("*.py")), *sorted((SRC / "web").rglob("*.py")), SRC / "cli.py"]
FACES += sorted(SRC.glob("*/*api.py")) + sorted(SRC.glob("*/*cli.py"))  # routers and command modules: coupon_api.py, clv_cli.py …


def test_faces_hold_no_queries_and_never_commit() -> None:
    """Routers, console pages and CLI commands call services; they open transactions, never commit them."""
    offenders = []
    for path in FACES:
        text = path.read_text()
        if re.search(r"\.commit\(\)", text) or re.search(r"\bselect\(", text):
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


def test_services_never_commit() -> None:
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if "migrations" not in p.parts and re.search(r"session\.commit\(\)", p.read_text())]
    assert offenders == []


def test_no_asset_from_a_cdn() -> None:
    pattern = re.compile(r"(src|href)=\"(https?:)?//", re.IGNORECASE)
    templates = list((SRC / "web").rglob("*.html"))
    assert [str(t) for t in templates if pattern.search(t.read_text())] == []
