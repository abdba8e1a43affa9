"""shared lists: lists and their members; todos gain a list, labels and an assignee, and may
outlive their creator's account; the invitation email

Revision ID: 9b3f6d2a7c15
Revises: 8e3f5c1a7b92
Create Date: 2026-12-06 20:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from keel.models.base import UTCDateTime

revision: str = "9b3f6d2a7c15"
down_revision: str | None = "8e3f5c1a7b92"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


KINDS = (
    "verify_email",
    "signup_attempt",
    "password_reset",
    "reset_no_account",
    "password_changed",
    "account_locked",
    "second_factor_added",
    "second_factor_removed",
    "recovery_code_used",
    "sign_in_code",
    "identity_link",
    "identity_linked",
    "identity_unlinked",
)
NEW_KINDS = ("list_invitation",)


def _kind(*values: str) -> sa.Enum:
    # The kinds live in the column's CHECK constraint; Alembic replaces it when given both types in full.
    return sa.Enum(*values, name="email_kind", native_enum=False, create_constraint=True, length=24)


# SQLite recreates these tables: they must keep AUTOINCREMENT, so no id is ever handed out twice.
AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    op.create_table(
        "list",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["user.id"], name=op.f("fk_list_owner_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_list")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_list_owner_id"), "list", ["owner_id"])
    op.create_table(
        "list_member",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "owner", "editor", "viewer", name="member_role", native_enum=False, create_constraint=True, length=16
            ),
            nullable=False,
        ),
        sa.Column("added_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["list.id"], name=op.f("fk_list_member_list_id_list"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_list_member_user_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("list_id", "user_id", name=op.f("pk_list_member")),
    )
    op.create_index(op.f("ix_list_member_user_id"), "list_member", ["user_id"])
    with op.batch_alter_table("todo", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.alter_column("owner_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("list_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("labels", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("assignee_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_todo_list_id_list"), "list", ["list_id"], ["id"], ondelete="CASCADE")
        batch_op.create_foreign_key(
            batch_op.f("fk_todo_assignee_id_user"), "user", ["assignee_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_index("ix_todo_list_id_created_at", ["list_id", "created_at", "id"])
        batch_op.create_index(batch_op.f("ix_todo_assignee_id"), ["assignee_id"])
    with op.batch_alter_table("email_outbox", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS), type_=_kind(*KINDS, *NEW_KINDS), existing_nullable=False
        )
        batch_op.add_column(sa.Column("list_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_email_outbox_list_id_list"), "list", ["list_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    op.execute(
        sa.text("DELETE FROM email_outbox WHERE kind IN :kinds").bindparams(
            sa.bindparam("kinds", NEW_KINDS, expanding=True)
        )
    )
    with op.batch_alter_table("email_outbox", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_email_outbox_list_id_list"), type_="foreignkey")
        batch_op.drop_column("list_id")
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS, *NEW_KINDS), type_=_kind(*KINDS), existing_nullable=False
        )
    # Todos in lists have no place without them, nor do those whose creator is gone.
    op.execute(sa.text("DELETE FROM todo WHERE list_id IS NOT NULL OR owner_id IS NULL"))
    with op.batch_alter_table("todo", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.drop_index(batch_op.f("ix_todo_assignee_id"))
        batch_op.drop_index("ix_todo_list_id_created_at")
        batch_op.drop_constraint(batch_op.f("fk_todo_assignee_id_user"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_todo_list_id_list"), type_="foreignkey")
        batch_op.drop_column("assignee_id")
        batch_op.drop_column("labels")
        batch_op.drop_column("list_id")
        batch_op.alter_column("owner_id", existing_type=sa.Integer(), nullable=False)
    op.drop_index(op.f("ix_list_member_user_id"), table_name="list_member")
    op.drop_table("list_member")
    op.drop_index(op.f("ix_list_owner_id"), table_name="list")
    op.drop_table("list")
