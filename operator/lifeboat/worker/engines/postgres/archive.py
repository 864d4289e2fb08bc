"""Reading a custom-format archive's table of contents from the restore's stream, and checking
what it needs from the target server, before the target is touched.

pg_dump writes the TOC first, and the TOC holds the SQL of every object (only table data and
large-object contents come after it). So the first bytes of the stream tell, without loading
anything: that this is a pg_dump archive, which schemas it creates, and which roles and
extensions its SQL needs under the restore's options (`ArchiveNeeds`, checked against the server
by `check_archive_needs`). The bytes read for that are kept and handed out again, so the restore
proper gets the stream from its first byte.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from lifeboat.worker.engines._process import ToolProcess
from lifeboat.worker.engines.base import RestoreOptions
from lifeboat.worker.engines.postgres.catalog import quote_ident
from lifeboat.worker.engines.postgres.connection import (
    Connector,
    Login,
    catalog_error,
    existing_roles,
    login,
)
from lifeboat.worker.engines.postgres.tools import tool_error
from lifeboat.worker.errors import (
    IncompatibleServer,
    InsufficientPrivilege,
    RestoreError,
    RoleMissing,
)
from lifeboat.worker.streams import CHUNK_SIZE, Readable


class Replay:
    """The restore's source, with the bytes already read for the TOC handed out again first.

    It remembers the end of `source`, so `source.read` is never called again after b"".
    """

    def __init__(self, source: Readable) -> None:
        self._source = source
        self._head: list[bytes] = []
        self._at_end = False

    def read_ahead(self, n: int) -> bytes:
        """Read from the source and keep the bytes for the replay."""
        chunk = self._read_source(n)
        if chunk:
            self._head.append(chunk)
        return chunk

    @property
    def head(self) -> bytes:
        """The bytes read ahead and not yet handed out again."""
        return b"".join(self._head)

    def read(self, n: int = -1, /) -> bytes:
        if self._head:
            return self._head.pop(0)
        return self._read_source(n)

    def _read_source(self, n: int) -> bytes:
        if self._at_end:
            return b""
        chunk = self._source.read(n)
        self._at_end = not chunk
        return chunk


def read_toc(source: Readable, listing_path: Path) -> tuple[Replay, str]:
    """Feed the stream's start to `pg_restore --list` until it has read the archive's TOC.

    This proves the stream is a pg_dump archive before anything is touched. Returns the replay
    (holding the bytes read) and the TOC listing.
    """
    lister = ToolProcess(
        ["pg_restore", "--list", f"--file={listing_path}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    replay = Replay(source)
    try:
        while lister.proc.poll() is None:
            chunk = replay.read_ahead(CHUNK_SIZE)
            if not chunk:
                break
            try:
                lister.stdin.write(chunk)
                lister.stdin.flush()
            except BrokenPipeError:
                break
        with contextlib.suppress(BrokenPipeError):
            lister.stdin.close()
        code = lister.wait()
    except BaseException:
        lister.kill()
        raise
    if code != 0:
        raise RestoreError(
            f"the backup is not a readable pg_dump archive: {tool_error(lister)}; "
            "nothing was restored"
        )
    return replay, listing_path.read_text(encoding="utf-8", errors="replace")


# TOC entries whose content follows the TOC in the stream: everything else is SQL in the TOC.
_DATA_ENTRY = re.compile(r"^\d+; \d+ \d+ (TABLE DATA|BLOBS|LARGE OBJECTS) ")
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_IDENTS = rf"{_IDENT}(?:, {_IDENT})*"
_OWNER_TO = re.compile(rf"^ALTER .+ OWNER TO (?P<roles>{_IDENT});$")
_FOR_ROLE = re.compile(rf"^ALTER DEFAULT PRIVILEGES FOR ROLE (?P<roles>{_IDENTS}) ")
_GRANT_TO = re.compile(
    rf"^(?:ALTER DEFAULT PRIVILEGES .*)?GRANT .+ TO (?P<roles>{_IDENTS})"
    r"(?: WITH GRANT OPTION)?;$"
)
_REVOKE_FROM = re.compile(
    rf"^(?:ALTER DEFAULT PRIVILEGES .*)?REVOKE .+ FROM (?P<roles>{_IDENTS})"
    r"(?: CASCADE)?;$"
)
_POLICY_TO = re.compile(rf"^CREATE POLICY .+? TO (?P<roles>{_IDENTS})(?: USING| WITH CHECK|;)")
_SESSION_AUTHORIZATION = re.compile(rf"^SET SESSION AUTHORIZATION (?P<roles>{_IDENT});$")
_EXTENSION = re.compile(rf"^CREATE EXTENSION IF NOT EXISTS (?P<name>{_IDENT})")
_NOT_ROLES = {"PUBLIC", "CURRENT_USER", "CURRENT_ROLE", "SESSION_USER"}


@dataclass
class ArchiveNeeds:
    """What the archive's SQL, as this restore will run it, needs from the target server."""

    owners: set[str] = field(default_factory=set)
    """Roles objects are given to (ALTER ... OWNER TO, ALTER DEFAULT PRIVILEGES FOR ROLE): they
    must exist and the restoring role must be a member of each."""
    grantees: set[str] = field(default_factory=set)
    """Roles named by GRANT, REVOKE and policies: they must exist."""
    grantors: set[str] = field(default_factory=set)
    """Roles whose grants pg_restore replays as them (SET SESSION AUTHORIZATION): superuser."""
    extensions: list[str] = field(default_factory=list)


def _unquote(ident: str) -> str:
    if ident.startswith('"'):
        return ident[1:-1].replace('""', '"')
    return ident


def _roles(text: str) -> set[str]:
    names = re.findall(_IDENT, text)
    return {_unquote(n) for n in names if n not in _NOT_ROLES}


def parse_needs(script: str) -> ArchiveNeeds:
    """The roles and extensions named by the SQL pg_restore writes for the archive's TOC.

    pg_dump writes each of these statements on a line of its own, so a line-anchored match finds
    them; a function body that happens to hold such a line only adds a role to check."""
    needs = ArchiveNeeds()
    for line in script.splitlines():
        if match := _OWNER_TO.match(line):
            needs.owners |= _roles(match.group("roles"))
            continue
        if match := _FOR_ROLE.match(line):
            needs.owners |= _roles(match.group("roles"))
        if match := _GRANT_TO.match(line) or _REVOKE_FROM.match(line) or _POLICY_TO.match(line):
            needs.grantees |= _roles(match.group("roles"))
        elif match := _SESSION_AUTHORIZATION.match(line):
            needs.grantors |= _roles(match.group("roles"))
        elif match := _EXTENSION.match(line):
            needs.extensions.append(_unquote(match.group("name")))
    return needs


def read_needs(head: bytes, listing: str, options: RestoreOptions, workdir: Path) -> ArchiveNeeds:
    """Run pg_restore on the TOC alone (the `head` of the stream, no data entries) with the
    restore's own options, and read what its SQL needs."""
    head_path = workdir / "toc-head.dump"
    head_path.write_bytes(head)
    toc_only = workdir / "toc-only.list"
    toc_only.write_text(
        "\n".join(line for line in listing.splitlines() if not _DATA_ENTRY.match(line)) + "\n"
    )
    script = workdir / "toc.sql"
    argv = ["pg_restore", f"--use-list={toc_only}", f"--file={script}"]
    argv += restore_option_flags(options)
    try:
        tool = ToolProcess([*argv, str(head_path)], stdout=subprocess.DEVNULL)
        if tool.wait() != 0:
            raise RestoreError(
                f"could not read the SQL of the archive's table of contents: {tool_error(tool)}; "
                "nothing was restored"
            )
        return parse_needs(script.read_text(encoding="utf-8", errors="replace"))
    finally:  # not left for the whole restore (or behind a killed worker)
        head_path.unlink(missing_ok=True)
        script.unlink(missing_ok=True)


def restore_option_flags(options: RestoreOptions) -> list[str]:
    """pg_restore's flags for the options that change which SQL it writes."""
    flags = []
    if options.no_owner:
        flags.append("--no-owner")
    if options.no_privileges:
        flags.append("--no-privileges")
    return flags


def skip_existing_schemas(listing: str, existing: set[str]) -> str:
    """The TOC with CREATE SCHEMA entries commented out for schemas the target already has.

    With keep_extra_objects, `--clean` would otherwise DROP such a schema (failing if it holds
    objects that are not in the backup) and CREATE it again (failing if it exists).
    """
    out = []
    for line in listing.splitlines():
        match = re.match(r"^\d+; \d+ \d+ SCHEMA - (?P<rest>.*)$", line)
        if match and any(match.group("rest").startswith(f"{s} ") for s in existing):
            line = ";" + line
        out.append(line)
    return "\n".join(out) + "\n"


# -- at restore time, from the archive ------------------------------------------------------


def check_archive_needs(
    connector: Connector, needs: ArchiveNeeds, options: RestoreOptions, *, database_exists: bool
) -> None:
    """The roles and extensions the archive's SQL names (as this restore runs it) exist and the
    login may use them: read in the archive's TOC, checked before the target changes."""
    conn = connector.connect() if database_exists else connector.connect_maintenance()
    with conn:
        me = login(conn)
        try:
            _check_needed_roles(conn, connector, me, needs, options)
            _check_needed_extensions(conn, connector, me, needs, options, database_exists)
        except psycopg.Error as exc:
            raise catalog_error(connector, exc) from None


def _check_needed_roles(
    conn: psycopg.Connection[Any],
    connector: Connector,
    me: Login,
    needs: ArchiveNeeds,
    options: RestoreOptions,
) -> None:
    named = needs.owners | needs.grantees | needs.grantors
    existing = existing_roles(conn, sorted(named))
    missing = sorted(named - set(existing))
    if missing:
        fixes = []
        if not options.no_owner and needs.owners & set(missing):
            fixes.append("--no-owner")
        if not options.no_privileges and (needs.grantees | needs.grantors) & set(missing):
            fixes.append("--no-privileges")
        how = f", or restore with {' '.join(fixes)}" if fixes else ""
        raise RoleMissing(
            f"the backup names roles that do not exist on {connector.where}: "
            f"{', '.join(missing)}; create them first (roles belong to the server, not to a "
            f"database backup){how}; nothing was restored"
        )
    if me.superuser:
        return
    foreign = sorted(o for o in needs.owners if not existing.get(o, False))
    if foreign:
        role = quote_ident(foreign[0])
        raise InsufficientPrivilege(
            f"role '{me.user}' cannot give the backup's objects to role {foreign[0]} (it is not "
            f"a member of it): GRANT {role} TO {me.sql_user} (or restore with --no-owner, so "
            f"that they belong to '{me.user}'); nothing was restored"
        )
    if needs.grantors:
        raise InsufficientPrivilege(
            f"the backup holds GRANTs made by {', '.join(sorted(needs.grantors))} through a "
            "grant option, which only a superuser can replay: restore as a superuser or with "
            "--no-privileges; nothing was restored"
        )


def _check_needed_extensions(
    conn: psycopg.Connection[Any],
    connector: Connector,
    me: Login,
    needs: ArchiveNeeds,
    options: RestoreOptions,
    database_exists: bool,
) -> None:
    """Every extension the backup creates is available on the server, and the login may
    create it (superuser, or a trusted extension) and, with keep_extra_objects, drop the one
    already installed (pg_restore --clean drops what it recreates)."""
    if not needs.extensions:
        return
    rows = conn.execute(
        "SELECT a.name, a.installed_version IS NOT NULL, "
        "coalesce(v.trusted OR NOT v.superuser, false), "
        "coalesce((SELECT pg_catalog.pg_has_role(x.extowner, 'USAGE') "
        "          FROM pg_catalog.pg_extension x WHERE x.extname = a.name), true) "
        "FROM pg_catalog.pg_available_extensions a "
        "LEFT JOIN pg_catalog.pg_available_extension_versions v "
        "  ON v.name = a.name AND v.version = a.default_version "
        "WHERE a.name = ANY(%s)",
        (needs.extensions,),
    ).fetchall()
    available = {str(name): (bool(i), bool(t), bool(d)) for name, i, t, d in rows}
    for name in needs.extensions:
        if name not in available:
            raise IncompatibleServer(
                f"the backup needs extension {name}, which is not available on "
                f"{connector.where}: install it on the server first (or restore into a server "
                "that has it); nothing was restored"
            )
        installed, creatable, may_drop = available[name]
        installed = installed and database_exists  # else it was seen in the maintenance database
        if me.superuser:
            continue
        if options.keep_extra_objects and installed and not may_drop:
            raise InsufficientPrivilege(
                f"role '{me.user}' cannot drop extension {name}, which the restore replaces "
                f"(pg_restore --clean drops what it recreates): have its owner DROP EXTENSION "
                f"{quote_ident(name)} first, or restore as a superuser; nothing was restored"
            )
        if not creatable:
            raise InsufficientPrivilege(
                f"role '{me.user}' may not create extension {name}, which the backup needs (it "
                "is not a trusted extension): restore as a superuser; nothing was restored"
            )
