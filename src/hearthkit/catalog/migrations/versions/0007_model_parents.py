"""lineage: a model's further parents (e.g. st's decoder_from), so withdrawal reaches every model built on them

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model_parents',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=50), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ),
    sa.ForeignKeyConstraint(['parent_id'], ['models.id'], ),
    sa.PrimaryKeyConstraint('model_id', 'parent_id', 'role')
    )
    with op.batch_alter_table('model_parents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_parents_parent_id'), ['parent_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('model_parents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_parents_parent_id'))
    op.drop_table('model_parents')
