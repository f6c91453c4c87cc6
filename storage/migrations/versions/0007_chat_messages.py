"""chat message ids for clearing an official's chat

Revision ID: 0007
Revises: 0006

Adds `chat_messages`: the ids of the messages of an official's Telegram chat (the
chat as an HMAC, each id encrypted with the server secret), kept for 48 hours so that
`/chat_leeren` can delete them from the official's phone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("chat_key", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
    )
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chat_messages_chat_key"), ["chat_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_chat_messages_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_messages_sent_at"))
        batch_op.drop_index(batch_op.f("ix_chat_messages_chat_key"))
    op.drop_table("chat_messages")
