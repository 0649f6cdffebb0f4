"""Lifecycle stage and AIPL, as ordered rules: the first rule that holds for a member gives the stage.

The chain is prospect → new → active → loyal → at risk → churned. Each rule is a small class that says
which stage it gives, what it guards and how it is checked (an Ibis boolean over the member's traits);
:data:`LIFECYCLE_RULES` is the policy, in order — a test enumerates it. Inputs (columns): ``orders``,
``first_purchase_day``, ``days_since_last_purchase``, ``frequency``, ``p_alive`` (null when no CLV was
fitted), ``loyal_window_orders`` and, for AIPL, ``interest_events``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import ibis
from ibis.expr.types import BooleanValue, Table

from memberops.insight.config import LifecycleConfig

STAGES = ("prospect", "new", "active", "loyal", "at_risk", "churned")
AIPL_STAGES = ("aware", "interested", "purchased", "loyal")


@dataclass(frozen=True)
class StageRule(ABC):
    stage: str

    @abstractmethod
    def holds(self, t: Table, config: LifecycleConfig, as_of_day: int) -> BooleanValue:
        """Whether a member (a row of ``t``) is in ``stage``, given no earlier rule held."""


class NeverBought(StageRule):
    """Known to the brand (an identity) but no counted order yet."""

    def holds(self, t: Table, config: LifecycleConfig, as_of_day: int) -> BooleanValue:
        return t.orders == 0


class LongSilent(StageRule):
    """No purchase for longer than ``churned_days``: churned, whatever the history was."""

    def holds(self, t: Table, config: LifecycleConfig, as_of_day: int) -> BooleanValue:
        return t.days_since_last_purchase > config.churned_days


class FadingAway(StageRule):
    """No purchase for longer than ``at_risk_days``, or — for a repeat buyer, once CLV is fitted — a
    P(alive) below ``at_risk_p_alive`` (BG/NBD gives a one-time buyer P(alive) = 1, so it says nothing)."""

    def holds(self, t: Table, config: LifecycleConfig, as_of_day: int) -> BooleanValue:
        unlikely_alive = (t.frequency > 0) & t.p_alive.notnull() & (t.p_alive < config.at_risk_p_alive)
        return (t.days_since_last_purchase > config.at_risk_days) | unlikely_alive


class RecentlyFirst(StageRule):
    """First purchase within the last ``new_days``."""

    def holds(self, t: Table, config: LifecycleConfig, as_of_day: int) -> BooleanValue:
        return t.first_purchase_day > as_of_day - config.new_days


class Regular(StageRule):
    """At least ``loyal_orders`` orders in the last ``loyal_window_days``."""

    def holds(self, t: Table, config: LifecycleConfig, as_of_day: int) -> BooleanValue:
        return t.loyal_window_orders >= config.loyal_orders


class Buying(StageRule):
    """Any other buyer."""

    def holds(self, t: Table, config: LifecycleConfig, as_of_day: int) -> BooleanValue:
        return ibis.literal(True)


LIFECYCLE_RULES: tuple[StageRule, ...] = (
    NeverBought("prospect"), LongSilent("churned"), FadingAway("at_risk"), RecentlyFirst("new"),
    Regular("loyal"), Buying("active"),
)


def lifecycle_stage(t: Table, config: LifecycleConfig, as_of_day: int) -> ibis.Value:
    """The stage of each row of ``t``: the first of :data:`LIFECYCLE_RULES` that holds."""
    return ibis.cases(*((rule.holds(t, config, as_of_day), rule.stage) for rule in LIFECYCLE_RULES))


def aipl_stage(t: Table, stage: ibis.Value) -> ibis.Value:
    """AIPL: loyal (lifecycle loyal), purchased (any other buyer), interested (interest events in the
    window, no purchase), aware (a known identity, nothing more)."""
    return ibis.cases(
        (stage == "loyal", "loyal"),
        (t.orders > 0, "purchased"),
        (t.interest_events > 0, "interested"),
        else_="aware",
    )
