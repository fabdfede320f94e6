"""Comparisons: one row per comparison, naming its member certification jobs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.store.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "comparisons",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("members", sa.JSON, nullable=False),
        sa.Column("data_name", sa.String(200), nullable=False),
    )
    op.create_index("ix_comparisons_tenant_created", "comparisons", ["tenant", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_comparisons_tenant_created", table_name="comparisons")
    op.drop_table("comparisons")
