"""Every state-store model, imported so that ``Base.metadata`` (and Alembic) sees all tables."""

from memberops.accounts.models import ApiKey, OperatorSession, OperatorUser, Workspace
from memberops.audit.models import AuditEntry
from memberops.db.base import Base
from memberops.db.outbox import OutboxRow
from memberops.identity.models import (
    FlaggedIdentifier,
    Identifier,
    IdentityDecision,
    IdentityEvent,
    IdentityLink,
    Member,
    ResolutionRun,
    ReviewPair,
)
from memberops.ingest.models import ImportRun, LiveOrder, LiveRefund, QuarantinedRow, ReceivedKey
from memberops.loyalty.models import (
    LoyaltyEvent,
    Membership,
    PointsAccount,
    PointsAllocation,
    PointsLot,
    PointsMovement,
    ProgrammeVersion,
)

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "FlaggedIdentifier",
    "Identifier",
    "IdentityDecision",
    "IdentityEvent",
    "ImportRun",
    "LiveOrder",
    "LiveRefund",
    "LoyaltyEvent",
    "Membership",
    "PointsAccount",
    "PointsAllocation",
    "PointsLot",
    "PointsMovement",
    "ProgrammeVersion",
    "QuarantinedRow",
    "ReceivedKey",
    "ResolutionRun",
    "ReviewPair",
    "IdentityLink",
    "Member",
    "OperatorSession",
    "OperatorUser",
    "OutboxRow",
    "Workspace",
]
