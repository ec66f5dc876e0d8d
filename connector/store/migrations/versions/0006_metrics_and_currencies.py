"""metrics and currencies: invoice dates and credited amounts, credit note links, refunds

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import connector.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "effective_at", connector.store.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("amount_credited", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("credit_notes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "effective_at", connector.store.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("invoice_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("refund_ids", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.create_index(
            batch_op.f("ix_credit_notes_invoice_id"), ["invoice_id"], unique=False
        )
    with op.batch_alter_table("account_metrics", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_currency", sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=64), nullable=False),
        sa.Column("crm_account_id", sa.String(length=64), nullable=True),
        sa.Column("charge_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created", connector.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("synced_at", connector.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_refunds_crm_account_id"), ["crm_account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_refunds_stripe_customer_id"), ["stripe_customer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_stripe_customer_id"))
        batch_op.drop_index(batch_op.f("ix_refunds_crm_account_id"))
    op.drop_table("refunds")
    with op.batch_alter_table("account_metrics", schema=None) as batch_op:
        batch_op.drop_column("note")
        batch_op.drop_column("account_currency")
    with op.batch_alter_table("credit_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_notes_invoice_id"))
        batch_op.drop_column("refund_ids")
        batch_op.drop_column("invoice_id")
        batch_op.drop_column("effective_at")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_column("amount_credited")
        batch_op.drop_column("effective_at")
