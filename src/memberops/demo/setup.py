"""Setting up the demo workspace and its operator login."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from memberops.accounts import service as accounts
from memberops.accounts.models import OperatorUser
from memberops.audit.service import Actor
from memberops.runtime import Context

DEMO_EMAIL = "demo@memberops.local"
DEMO_WORKSPACE = "default"


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str


def ensure_demo_operator(context: Context) -> DemoLogin:
    """The demo admin's login; created on first run with a random password kept (0600) in the data dir."""
    password_file = context.settings.data_dir / "demo-login.txt"
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session, DEMO_WORKSPACE, name="Demo brand")
        exists = session.scalar(select(OperatorUser.id).where(OperatorUser.email == DEMO_EMAIL)) is not None
        if exists and password_file.exists():
            return DemoLogin(DEMO_EMAIL, password_file.read_text().strip())
        password = secrets.token_urlsafe(12)
        if exists:
            user = session.scalar(select(OperatorUser).where(OperatorUser.email == DEMO_EMAIL))
            assert user is not None
            user.password_hash = accounts.hash_password(password)
        else:
            accounts.create_user(session, workspace, email=DEMO_EMAIL, password=password, role="admin",
                                 actor=Actor.system(), display_name="Demo admin")
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password)
    return DemoLogin(DEMO_EMAIL, password)


# The demo brand's tags (a mother-and-baby brand); an operator edits them with `memberops tags` or the API.
DEMO_TAGS: tuple[dict[str, Any], ...] = (
    {"name": "new_mom", "description": "bought a newborn gift box in the last 90 days",
     "rule": {"bought": {"category": "newborn_gift", "within_days": 90}}},
    {"name": "price_sensitive", "description": "buys with a discount or coupon at least 30 % of the time",
     "rule": {"all": [{"trait": "orders", "op": "gte", "value": 2},
                      {"trait": "discount_share", "op": "gte", "value": 0.3}]}},
    {"name": "high_value", "description": "net spend in the top 10 % of members, or 5,000 or more",
     "rule": {"any": [{"trait": "net_spend", "op": "top_percent", "value": 10},
                      {"trait": "net_spend", "op": "gte", "value": 5000}]}},
    {"name": "formula_regular", "description": "three or more formula orders in the last 180 days",
     "rule": {"bought": {"category": "formula", "within_days": 180, "min_orders": 3}}},
    {"name": "window_shopper", "description": "viewed products in the last 30 days and never bought",
     "rule": {"all": [{"event": {"type": "product_view", "within_days": 30}},
                      {"trait": "orders", "op": "eq", "value": 0}]}},
    {"name": "advocate", "description": "brought at least two buyers, or a KOC score of 50 or more",
     "rule": {"any": [{"trait": "referrals_converted", "op": "gte", "value": 2},
                      {"trait": "koc_score", "op": "gte", "value": 50}]}},
)


def ensure_demo_tags(context: Context) -> int:
    """Store the demo tags in the demo workspace (unchanged ones keep their version); returns how many changed."""
    from memberops.insight.tagging import put_tag
    from memberops.insight.tags import TagDefinition

    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session, DEMO_WORKSPACE, name="Demo brand")
        return sum(put_tag(session, workspace.id, TagDefinition.model_validate(tag), actor=Actor.system())[1]
                   for tag in DEMO_TAGS)
