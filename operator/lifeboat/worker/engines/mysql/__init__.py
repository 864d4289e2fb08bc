"""MySQL and MariaDB: `mariadb-dump` for backups; staged tables inside the target database and
one RENAME TABLE for restores, so a login with privileges on that one database can do both.

Where things are:
  engine.py          the Engine (MySQLEngine, MariaDBEngine)
  connection.py      sessions, the tools' arguments, server errors as typed errors
  privileges.py      what a login may do (SHOW GRANTS) and what each operation needs
  preflight.py       checks before a backup; plan_restore (also the dry run); server versions
  dump.py            mariadb-dump as a stream
  dump_stream.py     the scanner: row counts, objects, DEFINERs; the stream rewritten for staging
  reserved_names.py  names of staged and parked tables and staged foreign keys
  staging.py         loading into staged tables, verifying them, leftovers of killed restores
  held_objects.py    views, routines, triggers and events held back until the swap
  swap.py            the RENAME swap, its journal and undo, and the commit
  catalog.py         what a database holds, exactly enough to put it back
  restore.py         the order of it all

Limits (docs/restores.md): users and grants are server-wide, not in a backup, so DEFINERs must
exist where a backup is restored. mariadb-dump makes view definitions relative to the dumped
database, but routine and trigger bodies that name it explicitly (`shop.orders`) keep naming it.
A foreign key from a table the restore keeps (or from another database) to a table it replaces
is refused before anything changes.
"""

from lifeboat.worker.engines.mysql.dump_stream import SqlDumpScanner
from lifeboat.worker.engines.mysql.engine import MariaDBEngine, MySQLEngine

__all__ = ["MariaDBEngine", "MySQLEngine", "SqlDumpScanner"]
