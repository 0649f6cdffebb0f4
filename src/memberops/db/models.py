"""Every state-store model, imported so that ``Base.metadata`` (and Alembic) sees all tables."""

from memberops.accounts.models import ApiKey, OperatorSession, OperatorUser, Workspace
from memberops.audit.models import AuditEntry
from memberops.db.base import Base
from memberops.db.outbox import OutboxRow
from memberops.identity.models import (
    FlaggedIdentifier,
    Identifier,
    IdentityConfigVersion,
    IdentityDecision,
    IdentityEvent,
    IdentityLink,
    Member,
    ResolutionRun,
    ReviewPair,
)
from memberops.ingest.models import ImportRun, LiveOrder, LiveRefund, QuarantinedRow, ReceivedKey
from memberops.insight.models import InsightRun, MemberTrait, TagVersion, TraitChange
from memberops.loyalty.benefit_models import BenefitConsumption, BenefitDefinition, BenefitGrant
from memberops.loyalty.coupon_models import Coupon, CouponRedemption, CouponTemplate, CouponTemplateVersion
from memberops.loyalty.event_models import EventEarning
from memberops.loyalty.models import (
    LoyaltyEvent,
    Membership,
    PointsAccount,
    PointsAllocation,
    PointsLot,
    PointsMovement,
    ProgrammeVersion,
)
from memberops.loyalty.referral_models import ReferralBinding, ReferralCode
from memberops.loyalty.reward_models import Reward, RewardRedemption, RewardVersion
from memberops.loyalty.tier_models import GrowthMovement, MemberTier, QualifyingOrder, TierChange

__all__ = [
    "IdentityConfigVersion",
    "ApiKey",
    "AuditEntry",
    "Base",
    "BenefitConsumption",
    "BenefitDefinition",
    "BenefitGrant",
    "Coupon",
    "CouponRedemption",
    "CouponTemplate",
    "CouponTemplateVersion",
    "EventEarning",
    "FlaggedIdentifier",
    "GrowthMovement",
    "Identifier",
    "IdentityDecision",
    "IdentityEvent",
    "ImportRun",
    "InsightRun",
    "LiveOrder",
    "LiveRefund",
    "LoyaltyEvent",
    "MemberTier",
    "Membership",
    "PointsAccount",
    "PointsAllocation",
    "PointsLot",
    "PointsMovement",
    "ProgrammeVersion",
    "QualifyingOrder",
    "QuarantinedRow",
    "ReferralBinding",
    "ReferralCode",
    "ReceivedKey",
    "Reward",
    "RewardRedemption",
    "RewardVersion",
    "ResolutionRun",
    "ReviewPair",
    "TagVersion",
    "TierChange",
    "TraitChange",
    "IdentityLink",
    "Member",
    "MemberTrait",
    "OperatorSession",
    "OperatorUser",
    "OutboxRow",
    "Workspace",
]
