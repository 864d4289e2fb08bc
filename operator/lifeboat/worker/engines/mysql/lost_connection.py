"""A tool whose session the server cut (a restart, a shutdown, a killed connection, the network
gone): a retry may succeed, so the error says that, and is DatabaseUnreachable (retried by the
Job), not a failure of the backup's data."""

from __future__ import annotations

import re

from lifeboat.worker.engines.mysql.connection import Connector
from lifeboat.worker.errors import DatabaseUnreachable

# 1053 server shutdown in progress, 1927 connection killed, 2006 server has gone away,
# 2013 lost connection during query, 2055 lost connection (system error).
LOST_CONNECTION_CODES = frozenset({1053, 1927, 2006, 2013, 2055})
# `ERROR 2006 (HY000) at line 3: ...` (mariadb), `mariadb-dump: Error 2013: ...` (dump tools).
_CODE = re.compile(r"\b(?:ERROR|[Ee]rror:?) (\d{4})\b")


def lost_connection(
    connector: Connector, lines: list[str], *, doing: str, outcome: str
) -> DatabaseUnreachable | None:
    """DatabaseUnreachable if one of a tool's error `lines` says its session was cut."""
    for line in lines:
        found = _CODE.search(line)
        if found and int(found.group(1)) in LOST_CONNECTION_CODES:
            return DatabaseUnreachable(
                f"the connection to {connector.product} at {connector.where} was lost {doing} "
                f"({connector.redact(line)}): the server restarted or the network failed; "
                f"{outcome}; a retry may succeed"
            )
    return None
