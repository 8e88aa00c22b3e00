"""Alembic environment: runs on the connection authsite hands it (see authsite/schema.py)."""

from alembic import context
from sqlmodel import SQLModel

from authsite import models  # noqa: F401  (the tables autogenerate compares against)

connection = context.config.attributes["connection"]
# render_as_batch: SQLite cannot ALTER most things in place; batch mode copies
# the table instead, so the same migration runs on SQLite and Postgres.
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
