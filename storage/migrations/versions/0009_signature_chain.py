"""the signature chain: counsellors' signing keys and endorsements, team key signatures

Revision ID: 0009
Revises: 0008

All nullable: counsellors with version 1 key files have no signing key, and team
keys made before signatures existed carry none (storage/chain.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("counsellors") as batch:
        batch.add_column(sa.Column("signing_key", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("endorsement", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("endorsed_by", sa.Integer(), nullable=True))
    with op.batch_alter_table("team_keys") as batch:
        batch.add_column(sa.Column("signature", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("signed_by", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+, PostgreSQL): a batch rebuild of
    # counsellors would take their handles with it when foreign keys are on.
    for table, column in (
        ("team_keys", "signed_by"),
        ("team_keys", "signature"),
        ("counsellors", "endorsed_by"),
        ("counsellors", "endorsement"),
        ("counsellors", "signing_key"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
