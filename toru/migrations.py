"""Numbered schema migrations, applied in order at start-up.

A migration is never edited once released: change the schema by appending a
new one. Each runs in its own transaction together with the row that records
it in ``schema_migrations``, so a crash leaves the database at a clean version.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "settings, users, sessions, login history",
        """
        CREATE TABLE settings (
            key         TEXT PRIMARY KEY,
            value       TEXT NOT NULL,
            updated_at  REAL NOT NULL
        );

        CREATE TABLE users (
            id                   INTEGER PRIMARY KEY,
            username             TEXT NOT NULL UNIQUE COLLATE NOCASE,
            display_name         TEXT NOT NULL DEFAULT '',
            password_hash        TEXT NOT NULL,
            role                 TEXT NOT NULL CHECK (role IN ('client', 'admin')),
            is_active            INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
            created_at           REAL NOT NULL,
            updated_at           REAL NOT NULL,
            password_changed_at  REAL NOT NULL
        );

        -- user_id NULL is the environment administrator, who has no row in users.
        CREATE TABLE sessions (
            token_hash  TEXT PRIMARY KEY,
            user_id     INTEGER REFERENCES users (id) ON DELETE CASCADE,
            created_at  REAL NOT NULL,
            expires_at  REAL NOT NULL,
            address     TEXT NOT NULL DEFAULT '',
            user_agent  TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX sessions_by_user ON sessions (user_id);
        CREATE INDEX sessions_by_expiry ON sessions (expires_at);

        CREATE TABLE login_history (
            id          INTEGER PRIMARY KEY,
            timestamp   REAL NOT NULL,
            username    TEXT NOT NULL,
            address     TEXT NOT NULL,
            user_agent  TEXT NOT NULL DEFAULT '',
            outcome     TEXT NOT NULL
                        CHECK (outcome IN ('success', 'failure', 'locked', 'reset')),
            reason      TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX login_history_by_username ON login_history (username, timestamp);
        CREATE INDEX login_history_by_address ON login_history (address, timestamp);
        CREATE INDEX login_history_by_time ON login_history (timestamp);
        """,
    ),
    Migration(
        2,
        "plugin lifecycle events",
        """
        CREATE TABLE plugin_events (
            id          INTEGER PRIMARY KEY,
            plugin_id   TEXT NOT NULL,
            event       TEXT NOT NULL,
            details     TEXT NOT NULL DEFAULT '{}',
            timestamp   REAL NOT NULL
        );
        CREATE INDEX plugin_events_by_plugin ON plugin_events (plugin_id, id);
        """,
    ),
    Migration(
        3,
        "plugin key-value storage",
        """
        CREATE TABLE plugin_kv (
            plugin_id   TEXT NOT NULL,
            key         TEXT NOT NULL,
            value       TEXT NOT NULL,
            updated_at  REAL NOT NULL,
            PRIMARY KEY (plugin_id, key)
        ) WITHOUT ROWID;
        """,
    ),
)
