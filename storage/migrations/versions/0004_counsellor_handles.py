"""counsellors' platform handles in one table

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 19:15:00

`counsellors.matrix_id` and `counsellors.telegram_id` become rows of
`counsellor_handles` (channel, handle), telegram ids as decimal strings. Only
active counsellors' ids are carried over: a revoked counsellor holds no handle
(revoking removes them from now on), so their platform account may be given to
someone else. Should two active counsellors share an id, the first added keeps it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    handles = op.create_table(
        "counsellor_handles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("counsellor_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("handle", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["counsellor_id"],
            ["counsellors.id"],
            name=op.f("fk_counsellor_handles_counsellor_id_counsellors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_counsellor_handles")),
        sa.UniqueConstraint("channel", "handle", name=op.f("uq_counsellor_handles_channel")),
    )
    with op.batch_alter_table("counsellor_handles", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_counsellor_handles_counsellor_id"), ["counsellor_id"], unique=False
        )

    rows = op.get_bind().execute(
        sa.text(
            "SELECT id, matrix_id, telegram_id FROM counsellors "
            "WHERE revoked_at IS NULL ORDER BY added_at, id"
        )
    )
    taken: set[tuple[str, str]] = set()
    carried: list[dict[str, object]] = []
    for counsellor_id, matrix_id, telegram_id in rows:
        for channel, handle in (
            ("matrix", matrix_id),
            ("telegram", None if telegram_id is None else str(telegram_id)),
        ):
            if handle and (channel, handle) not in taken:
                taken.add((channel, handle))
                carried.append(
                    {"counsellor_id": counsellor_id, "channel": channel, "handle": handle}
                )
    if carried:
        op.bulk_insert(handles, carried)

    with op.batch_alter_table("counsellors", schema=None) as batch_op:
        batch_op.drop_column("telegram_id")
        batch_op.drop_column("matrix_id")


def downgrade() -> None:
    with op.batch_alter_table("counsellors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("matrix_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("telegram_id", sa.BigInteger(), nullable=True))
    # One handle per platform fits the old columns; a console handle has no column.
    op.execute(
        "UPDATE counsellors SET matrix_id = (SELECT min(handle) FROM counsellor_handles "
        "WHERE counsellor_handles.counsellor_id = counsellors.id "
        "AND counsellor_handles.channel = 'matrix')"
    )
    op.execute(
        "UPDATE counsellors SET telegram_id = (SELECT CAST(min(handle) AS BIGINT) "
        "FROM counsellor_handles WHERE counsellor_handles.counsellor_id = counsellors.id "
        "AND counsellor_handles.channel = 'telegram')"
    )
    with op.batch_alter_table("counsellor_handles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_counsellor_handles_counsellor_id"))
    op.drop_table("counsellor_handles")
