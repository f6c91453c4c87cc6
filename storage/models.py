"""The tables. Every column that could say something about a person is ciphertext.

In clear there is only what the queue and retention need: sender keys (an HMAC,
not an id), case references, status, urgency, channel kind and times.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Conversation(Base):
    """One official on one channel, with the intake they are in (encrypted)."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sender_key: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[bytes] = mapped_column(LargeBinary)  # where to reply, encrypted
    state: Mapped[bytes] = mapped_column(LargeBinary)  # IntakeState, encrypted
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class ConversationRow(NamedTuple):
    """What a step reads of a conversation's row (storage/hotpath.py): sealed, as stored."""

    state: bytes
    address: bytes
    channel: str


class StoredBlob(Base):
    """An attachment's bytes, encrypted. Belongs to an intake until it becomes part of a case."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sender_key: Mapped[str] = mapped_column(String(64), index=True)
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), index=True, nullable=True
    )
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    sender_key: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    urgent: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Since when the case waits in the queue: submission, or its last release or reopening.
    queued_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The case key pair: public in clear (the server seals to it), private only wrapped
    # to the team key. Null only for cases written before sealing existed.
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    team_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("team_keys.id"), nullable=True, index=True
    )
    # The queue and the handoff (metadata only; see storage/queue.py).
    claimed_by: Mapped[int | None] = mapped_column(
        ForeignKey("counsellors.id"), nullable=True, index=True
    )
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    first_claimed_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    first_reply_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    escalate_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )
    thread: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    previous_case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), nullable=True
    )
    # How many items the case has, under an HMAC keyed from the server secret: the newest
    # items cannot be cut off unnoticed (see casefile.open_case).
    item_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    item_mac: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # An HMAC over public_key and the reference (storage/key_binding.py): a swapped key is refused.
    key_binding: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CaseItem(Base):
    """One piece of a case's record (the answers, later messages and notes), encrypted."""

    __tablename__ = "case_items"
    __table_args__ = (UniqueConstraint("case_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ReferenceCounter(Base):
    """The last case number given out per year: L-2026-0042."""

    __tablename__ = "reference_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(BigInteger)


class ProcessedEvent(Base):
    """Platform events already handled, by HMAC, so a redelivered message is not answered twice."""

    __tablename__ = "processed_events"

    event_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class ChatMessage(Base):
    """One message id of an official's chat (theirs or the bot's), so `/chat_leeren` can
    delete it from their phone: the chat as an HMAC, the id encrypted with the server
    secret, forgotten after 48 hours (when Telegram no longer lets a bot delete it)."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_key: Mapped[str] = mapped_column(String(64), index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class Counsellor(Base):
    """A counsellor: the public half of their key, and how the staff room knows them."""

    __tablename__ = "counsellors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))  # shown to officials
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[str] = mapped_column(String(32))
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The signature chain (storage/chain.py): their signing key (None for a version 1 key
    # file), and the adding counsellor's signature over their keys (None for the first).
    signing_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    endorsement: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    endorsed_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Loaded with the counsellor: every staff-room message asks who its author is.
    handles: Mapped[list[CounsellorHandle]] = relationship(
        lazy="selectin",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="CounsellorHandle.channel",
    )


class CounsellorHandle(Base):
    """How one platform knows a counsellor (a Matrix or Telegram user id): who may act in the
    staff room, and whom to mention. One platform account belongs to one counsellor."""

    __tablename__ = "counsellor_handles"
    __table_args__ = (UniqueConstraint("channel", "handle"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    counsellor_id: Mapped[int] = mapped_column(
        ForeignKey("counsellors.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    handle: Mapped[str] = mapped_column(String(255))


class TeamKey(Base):
    """One generation of the team key pair; the newest unretired one seals new case keys."""

    __tablename__ = "team_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # An HMAC over public_key and the id (storage/key_binding.py): a swapped key is refused.
    binding: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The creating or rotating counsellor's signature over id and key (storage/chain.py).
    signature: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    signed_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TeamKeyWrap(Base):
    """A team private key, sealed to one counsellor's public key."""

    __tablename__ = "team_key_wraps"
    __table_args__ = (UniqueConstraint("team_key_id", "counsellor_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_key_id: Mapped[int] = mapped_column(
        ForeignKey("team_keys.id", ondelete="CASCADE"), index=True
    )
    counsellor_id: Mapped[int] = mapped_column(
        ForeignKey("counsellors.id", ondelete="CASCADE"), index=True
    )
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)


class AuditEntry(Base):
    """One link of the audit chain; see storage/audit.py."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(String(32))
    case_reference: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    detail: Mapped[str] = mapped_column(Text)
    previous: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """Where the audit chain ends, under an HMAC: cutting entries off the end is noticed too."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class ServerCheck(Base):
    """A check value derived from the server secret (never the secret): see storage/secret_check.py.

    Empty until the server's first start on this database; once set, a start with a
    missing or different secret is refused, and an empty audit log means it was wiped.
    """

    __tablename__ = "server_check"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    secret_check: Mapped[str | None] = mapped_column(String(64), nullable=True)


class OutboxMessage(Base):
    """A message to the staff room or to an official, written in the same transaction as the
    change that causes it and deleted once delivered: nothing is lost when a platform is down.

    `channel` is the platform that sends it ("staff" for the staff room, wherever it lives);
    `stream` orders it: messages of one stream (one official, one case thread) go out in
    the order they were written. A message that can never be delivered (the official
    blocked the bot) is kept as a dead letter, without content, until the purge.

    The content is encrypted with the server key: the running server must read it to send it.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16), index=True)
    stream: Mapped[str] = mapped_column(String(80))
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reference: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    file_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    leased_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    dead_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TransitFile(Base):
    """A counsellor's file on its way to an official, encrypted with the server key.

    Stored once, referenced by the outbox message that carries it, deleted once delivered;
    its sealed copy in the case stays.
    """

    __tablename__ = "transit_files"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ServiceLease(Base):
    """Which instance is active: the holder, until `expires_at` by the database's clock."""

    __tablename__ = "service_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    generation: Mapped[int] = mapped_column(BigInteger)


# The tables as SQLAlchemy Core sees them, for the statements built on them once (the hot
# path, a submission, the audit chain, the batches): one handle each, typed as a Table.
EVENTS = cast(Table, ProcessedEvent.__table__)
CONVERSATIONS = cast(Table, Conversation.__table__)
CASES = cast(Table, Case.__table__)
CASE_ITEMS = cast(Table, CaseItem.__table__)
REFERENCE_COUNTERS = cast(Table, ReferenceCounter.__table__)
COUNSELLORS = cast(Table, Counsellor.__table__)
TEAM_KEYS = cast(Table, TeamKey.__table__)
AUDIT_ENTRIES = cast(Table, AuditEntry.__table__)
AUDIT_HEAD = cast(Table, AuditHead.__table__)
OUTBOX = cast(Table, OutboxMessage.__table__)
TRANSIT_FILES = cast(Table, TransitFile.__table__)
CHAT_MESSAGES = cast(Table, ChatMessage.__table__)
