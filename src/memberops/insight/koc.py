"""Influence (KOC, key opinion consumer): who brings the brand new buyers and spreads the word.

A referral is an identity record carrying a ``referrer_code`` equal to another member's
``member_card_no`` (how channels record "referred by": the referrer's member code). Per referrer:

- ``referrals``: distinct members referred (self-referrals ignored);
- ``referrals_converted``: of them, those who bought (a counted order up to ``as_of``);
- ``referred_value``: the referred members' net spend;
- ``shares``: ``share`` events in the last ``window_days``;
- ``koc_score`` = 100 · (1 − exp(−points / scale)), rounded to 0.1, where points =
  ``converted_weight``·converted + ``referral_weight``·(referrals − converted) + ``share_weight``·shares
  + referred_value ÷ the brand's order value (net spend ÷ orders over all buyers). The score grows with
  every point and saturates at 100; with the defaults 10 points (e.g. three converted referrals and five
  shares) score 63.2.
"""

from __future__ import annotations

import ibis
from ibis.expr.types import Table

from memberops.insight.config import KocConfig
from memberops.insight.facts import MemberFacts

MEMBER = "member_id"


def influence(facts: MemberFacts, stats: Table, config: KocConfig) -> Table:
    """``member_id, referrals, referrals_converted, referred_value, shares`` (members with any of them)."""
    records = facts.records
    codes = records.filter(records.member_card_no.notnull()).select(
        code=records.member_card_no, referrer_id=records[MEMBER]).distinct()
    referred = records.filter(records.referrer_code.notnull()).select(
        code=records.referrer_code, referee_id=records[MEMBER])
    pairs = referred.join(codes, "code").select("referrer_id", "referee_id").distinct()
    pairs = pairs.filter(pairs.referrer_id != pairs.referee_id)
    spend = stats.select(referee_id=stats[MEMBER], bought=stats.orders > 0, value=stats.net_spend)
    joined = pairs.join(spend, "referee_id")
    per_referrer = joined.group_by("referrer_id").aggregate(
        referrals=joined.count().cast("int64"),
        referrals_converted=joined.bought.cast("int64").sum().cast("int64"),
        referred_value=joined.value.sum().cast("decimal(18, 2)"),
    ).rename(member_id="referrer_id")
    events = facts.events
    shares = events.filter((events.type == "share") & (events.day > facts.as_of_day - config.window_days))
    per_sharer = shares.group_by(MEMBER).aggregate(shares=shares.count().cast("int64"))
    return per_referrer.join(per_sharer, MEMBER, how="outer").select(
        member_id=ibis.coalesce(per_referrer[MEMBER], per_sharer[MEMBER]),
        referrals=per_referrer.referrals, referrals_converted=per_referrer.referrals_converted,
        referred_value=per_referrer.referred_value, shares=per_sharer.shares,
    )


def koc_score(t: Table, config: KocConfig, brand_order_value: float) -> ibis.Value:
    """The 0–100 score of each row of ``t`` (columns of :func:`influence`, nulls meaning none)."""
    converted = t.referrals_converted.fill_null(0).cast("float64")
    others = t.referrals.fill_null(0).cast("float64") - converted
    points = (config.converted_weight * converted + config.referral_weight * others
              + config.share_weight * t.shares.fill_null(0).cast("float64"))
    if brand_order_value > 0:
        points = points + t.referred_value.fill_null(0).cast("float64") / brand_order_value
    return (100 * (1 - (-points / config.scale).exp())).round(1)
