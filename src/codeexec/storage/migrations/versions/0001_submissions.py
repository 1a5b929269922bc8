"""The submissions table and its indexes.

On PostgreSQL the table is range-partitioned by month on ``created_at``; the
partitions themselves are made by ``MetadataStore.ensure_partitions`` (ahead of time,
and for any month a batch of rows needs), because they depend on the date.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLE = "codeexec_submissions"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.String(255)),
        sa.Column("problem_id", sa.String(255)),
        sa.Column("language", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("backend", sa.String(64), nullable=False),
        sa.Column("cached", sa.Boolean, nullable=False),
        sa.Column("tests_total", sa.Integer, nullable=False),
        sa.Column("tests_passed", sa.Integer, nullable=False),
        sa.Column("cpu_time", sa.Float, nullable=False),
        sa.Column("wall_time", sa.Float, nullable=False),
        sa.Column("memory_peak", sa.BigInteger, nullable=False),
        sa.Column("queue_time", sa.Float, nullable=False),
        sa.Column("total_time", sa.Float, nullable=False),
        sa.Column("code_key", sa.String(255), nullable=False),
        sa.Column("code_bytes", sa.BigInteger, nullable=False),
        sa.Column("tests_key", sa.String(255), nullable=False),
        sa.Column("tests_bytes", sa.BigInteger, nullable=False),
        sa.Column("result_key", sa.String(255), nullable=False),
        sa.Column("result_bytes", sa.BigInteger, nullable=False),
        sa.Column("tier", sa.String(8), nullable=False),
        # A partitioned table's primary key must hold the partition key.
        sa.PrimaryKeyConstraint("id", "created_at", name=f"{TABLE}_pkey"),
        postgresql_partition_by="RANGE (created_at)",
    )
    # Newest-first pages of one user / one problem / everything, in index order (id
    # breaks ties in created_at, so keyset pages need no sort).
    op.create_index(f"ix_{TABLE}_user_created", TABLE, ["user_id", "created_at", "id"])
    op.create_index(f"ix_{TABLE}_problem_created", TABLE, ["problem_id", "created_at", "id"])
    op.create_index(f"ix_{TABLE}_created", TABLE, ["created_at", "id"])
    # The lifecycle's scan: hot records older than a cutoff.
    op.create_index(f"ix_{TABLE}_tier_created", TABLE, ["tier", "created_at"])
    # Is a content-addressed blob still referenced by some record?
    op.create_index(f"ix_{TABLE}_code_key", TABLE, ["code_key"])
    op.create_index(f"ix_{TABLE}_tests_key", TABLE, ["tests_key"])


def downgrade() -> None:
    op.drop_table(TABLE)
