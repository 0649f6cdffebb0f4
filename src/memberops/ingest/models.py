from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memberops.db.base import Base, BigIntKey, JSONDocument, utcnow
from memberops.ids import new_id

Money = Numeric(18, 2)


class LiveOrder(Base):
    """An order posted through the API: the live path loyalty hooks its points onto.

    Also exported to the lake's ``orders`` (and its items to ``order_items``) through the outbox.
    """

    __tablename__ = "live_order"
    __table_args__ = (
        UniqueConstraint("workspace_id", "channel", "order_id"),
        Index("ix_live_order_member_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str] = mapped_column(String(128))
    customer_key: Mapped[str] = mapped_column(String(200))
    member_id: Mapped[str | None] = mapped_column(ForeignKey("member.id"), default=None)
    store_id: Mapped[str | None] = mapped_column(String(64), default=None)
    ordered_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(32), default="paid")
    gross_amount: Mapped[Decimal | None] = mapped_column(Money, default=None)
    discount_amount: Mapped[Decimal | None] = mapped_column(Money, default=None)
    shipping_amount: Mapped[Decimal | None] = mapped_column(Money, default=None)
    paid_amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    coupon_codes: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    refunded_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class LiveRefund(Base):
    """A refund posted through the API, against an order known live or from the lake."""

    __tablename__ = "live_refund"
    __table_args__ = (UniqueConstraint("workspace_id", "channel", "refund_id"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    refund_id: Mapped[str] = mapped_column(String(128))
    order_id: Mapped[str] = mapped_column(String(128))
    refunded_at: Mapped[datetime]
    amount: Mapped[Decimal] = mapped_column(Money)
    sku: Mapped[str | None] = mapped_column(String(128), default=None)
    quantity: Mapped[int | None] = mapped_column(default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReceivedKey(Base):
    """The natural key of a fact received live and kept only in the lake (events): replays are skipped."""

    __tablename__ = "received_key"
    __table_args__ = (UniqueConstraint("workspace_id", "kind", "channel", "key"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImportRun(Base):
    """One batch import of one file: what it was, with which mapping, and what became of its rows."""

    __tablename__ = "import_run"
    __table_args__ = (Index("ix_import_run_workspace_id_started_at", "workspace_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(32))
    file_name: Mapped[str] = mapped_column(String(500))
    file_sha256: Mapped[str] = mapped_column(String(64))
    mapping: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    mapping_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed
    counts: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class QuarantinedRow(Base):
    """A source row that could not be accepted, kept whole with the reason, until fixed or discarded."""

    __tablename__ = "quarantined_row"
    __table_args__ = (Index("ix_quarantined_row_import_id_status", "import_id", "status"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    import_id: Mapped[str] = mapped_column(ForeignKey("import_run.id", ondelete="CASCADE"))
    row_number: Mapped[int]
    reason: Mapped[str] = mapped_column(String(200))
    raw: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | resolved | discarded
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
