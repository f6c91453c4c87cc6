"""key bindings and the server secret's check value

Revision ID: 0006
Revises: 0005

Adds
- `team_keys.binding` and `cases.key_binding`: an HMAC, keyed from the server
  secret, over each stored public key and where it belongs (storage/key_binding.py).
  Before sealing to a stored public key the server checks it; a key whose
  binding is wrong is refused, so a key swapped in the database is not used.
- `server_check`: one row holding a check value derived from the server secret
  (an HMAC of a fixed label, never the secret), so a start with a missing or
  different `server.secret` is refused instead of silently replacing it
  (storage/secret_check.py).

A migration cannot compute HMACs: the secret never reaches the database or
Alembic. So this migration leaves `server_check.secret_check` and every
existing binding empty, and the running server fills them once, on its first
start after the upgrade, in the same transaction that first records the check
value (audited as "server check set" and "keys bound"). From then on the check
value is set, and a key without a binding is refused like one with a wrong
binding: an attacker cannot get a swapped key bound by emptying its binding.
A fresh database goes the same way with nothing to bind.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("team_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("binding", sa.String(length=64), nullable=True))
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_binding", sa.String(length=64), nullable=True))
    op.create_table(
        "server_check",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("secret_check", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_check")),
    )


def downgrade() -> None:
    op.drop_table("server_check")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("key_binding")
    with op.batch_alter_table("team_keys", schema=None) as batch_op:
        batch_op.drop_column("binding")
