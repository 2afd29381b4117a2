"""Alembic environment: runs on the connection the caller hands over (AuditStore.migrate)."""

from alembic import context

from actors.stores.audit_sql import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
