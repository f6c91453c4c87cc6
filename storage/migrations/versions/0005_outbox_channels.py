"""outbox per channel: streams, dead letters, attachments in transit by reference

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 19:30:00

Messages that were waiting in an outbox of an older version can only have been meant for
the terminal demo: before this version `lotse run` ran no channel. They are given the
console channel (officials) or the staff room (staff posts), and a stream each of their
kind and reference, so they still go out in order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channel", sa.String(length=16), server_default="console", nullable=False)
        )
        batch_op.add_column(
            sa.Column("stream", sa.String(length=80), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("file_id", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_channel"), ["channel"], unique=False)
    outbox = sa.table(
        "outbox",
        sa.column("kind", sa.String),
        sa.column("reference", sa.String),
        sa.column("channel", sa.String),
        sa.column("stream", sa.String),
    )
    op.execute(
        outbox.update()
        .where(outbox.c.kind != "official")
        .values(channel="staff", stream="staff:" + sa.func.coalesce(outbox.c.reference, ""))
    )
    op.execute(
        outbox.update()
        .where(outbox.c.kind == "official")
        .values(stream="legacy:" + sa.func.coalesce(outbox.c.reference, ""))
    )
    op.create_table(
        "transit_files",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transit_files")),
    )


def downgrade() -> None:
    op.drop_table("transit_files")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_channel"))
        for column in ("file_id", "dead_at", "leased_until", "priority", "stream", "channel"):
            batch_op.drop_column(column)
