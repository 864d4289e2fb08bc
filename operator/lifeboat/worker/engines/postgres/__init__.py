"""PostgreSQL: pg_dump inside one exported snapshot, and a restore that commits only when proven.

Where things are: `engine` (the `Engine`), `connection` (reaching the server, login errors),
`catalog` (what the server's catalog says), `preflight` (privileges, versions and roles; the
restore plan), `dump` (pg_dump and the snapshot session), `archive` (the TOC of a restore's
stream) and `restore` (the single-transaction verified restore).
"""

from lifeboat.worker.engines.postgres.engine import PostgresEngine

__all__ = ["PostgresEngine"]
