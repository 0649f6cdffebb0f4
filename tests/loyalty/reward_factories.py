"""Factories for rewards tests: a member holding points, a reward with readable defaults."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.loyalty import points, rewards
from memberops.loyalty.reward_models import Reward
from memberops.loyalty.reward_schemas import RewardIn
from tests.loyalty.factories import enrol

OPERATOR = Actor("user", "op-1")
POS = Actor("api_key", "pos-1")


def funded_member(session: Session, workspace: Workspace, source_id: str, points_held: int,
                  *, now: datetime | None = None) -> str:
    """An enrolled member holding ``points_held`` points, available at once (an operator's adjustment)."""
    member = enrol(session, workspace, source_id)
    if points_held:
        points.adjust(session, workspace, member, points=points_held, reason="test", actor=OPERATOR,
                      idempotency_key=f"fund:{source_id}:{points_held}:{now}", now=now)
    return member


def reward_spec(code: str = "TOTE", *, kind: str = "item", points_price: int = 100, **fields: Any) -> RewardIn:
    return RewardIn.model_validate({"code": code, "name": f"{code} reward", "kind": kind, "points": points_price,
                                    **fields})


def make_reward(session: Session, workspace: Workspace, code: str = "TOTE", **fields: Any) -> Reward:
    return rewards.create_reward(session, workspace, reward_spec(code, **fields), actor=OPERATOR)
