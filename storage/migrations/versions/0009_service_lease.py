"""the active instance's lease

Revision ID: 0009
Revises: 0006

One row per lease name: who holds it and until when (the database's own clock),
so that of two `lotse run` processes on one PostgreSQL database exactly one is
active (storage/lease.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_lease",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_service_lease")),
    )


def downgrade() -> None:
    op.drop_table("service_lease")
