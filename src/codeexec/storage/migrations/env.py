"""Alembic environment of codeexec's storage tables.

codeexec runs it itself (``MetadataStore.migrate``), passing the connection in
``config.attributes["connection"]``; a host may also run ``alembic`` with
``script_location = codeexec.storage:migrations`` and ``sqlalchemy.url`` set. The
version table has its own name, so codeexec's migrations never mix with the host's.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

VERSION_TABLE = "codeexec_alembic_version"


def _run(connection: sa.Connection) -> None:
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
