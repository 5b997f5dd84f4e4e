"""Index operations for migrations that run against a live database.

On PostgreSQL a plain CREATE INDEX blocks every write to the table while it
builds (minutes for a submissions table of millions): these build and drop
CONCURRENTLY there, and run as usual on SQLite, which has no such form. A
migration using them sets `atomic = False` (CONCURRENTLY cannot run in a
transaction).
"""

from __future__ import annotations

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db.migrations import AddIndex, RemoveIndex


class _ConcurrentlyOnPostgres:
    """Put before a django.contrib.postgres *Concurrently operation: on any other
    database, `plain` (the ordinary operation) runs instead."""

    plain: type

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)

    def describe(self):
        text = super().describe().replace("Concurrently ", "", 1)
        return f"{text[:1].upper()}{text[1:]} (concurrently on PostgreSQL)"


class AddIndexLive(_ConcurrentlyOnPostgres, AddIndexConcurrently):
    plain = AddIndex


class RemoveIndexLive(_ConcurrentlyOnPostgres, RemoveIndexConcurrently):
    plain = RemoveIndex
