"""The database a Backup reads or a Restore writes: engine, address, login, or a SQLite file."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import ConfigDict, Field, model_validator

from lifeboat import contract
from lifeboat.api.common import (
    NO_DOTDOT,
    CelRule,
    Matches,
    ObjectName,
    SecretKeyRef,
    SpecModel,
    cel,
    invalid,
)


class Engine(StrEnum):
    """The database engine: decides the dump/restore tools and which fields are needed."""

    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    MARIADB = "mariadb"
    SQLITE = "sqlite"


NETWORK_ENGINES: Final = frozenset({Engine.POSTGRESQL, Engine.MYSQL, Engine.MARIADB})
DEFAULT_PORTS: Final[dict[Engine, int]] = {
    engine: contract.DEFAULT_PORTS[engine.value] for engine in NETWORK_ENGINES
}


# -- database ---------------------------------------------------------------------------------

HOST_PATTERN: Final = (
    r"^([A-Za-z0-9_]([-A-Za-z0-9_.]*[A-Za-z0-9_])?|[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)$"
)
"""A DNS name, an IPv4 address or an IPv6 address (without brackets): nothing that could
change the meaning of the URL the Job is given (a port, a user, a path, a query)."""
NO_CONTROL = Matches(r"^[^\x00-\x1f\x7f]*$", "free of control characters (newlines, NUL, tabs)")

DATABASE_RULES: Final = (
    CelRule(
        rule=("self.engine != 'sqlite' || (has(self.persistentVolumeClaim) && has(self.path))"),
        message=(
            "engine sqlite needs persistentVolumeClaim (the claim holding the database file) "
            "and path (the file inside that claim)"
        ),
    ),
    CelRule(
        rule="self.engine == 'sqlite' || (has(self.host) && has(self.name) && has(self.user))",
        message="engines postgresql, mysql and mariadb need host, name (the database) and user",
    ),
    CelRule(
        rule=(
            "self.engine == 'sqlite' ? !(has(self.host) || has(self.port) || has(self.name)"
            " || has(self.user) || has(self.passwordSecretRef))"
            " : !(has(self.persistentVolumeClaim) || has(self.path))"
        ),
        message=(
            "host, port, name, user and passwordSecretRef are for postgresql, mysql and mariadb; "
            "persistentVolumeClaim and path are for sqlite: remove the fields this engine does "
            "not use"
        ),
    ),
)


class DatabaseSpec(SpecModel):
    """The database to back up from or restore into.

    postgresql, mysql and mariadb are reached over the network: set host, name and user (port
    and passwordSecretRef as needed). sqlite is a file on a PersistentVolumeClaim: set
    persistentVolumeClaim and path, nothing else.
    """

    model_config = ConfigDict(json_schema_extra=cel(*DATABASE_RULES))

    engine: Engine
    """Database engine: postgresql, mysql, mariadb or sqlite. Decides which dump and restore
    tools the Job runs and which other fields are needed."""

    host: (
        Annotated[
            str,
            Field(min_length=1, max_length=253),
            Matches(
                HOST_PATTERN,
                "a host name or IP address: letters, digits, '-', '_' and '.' (or an IPv6 "
                "address); no scheme, no port (use port), no user@, no path, no spaces",
            ),
        ]
        | None
    ) = None
    """DNS name or IP address of the database server as seen from the Job's pod, for example
    postgres.shop.svc, 10.0.0.7 or fd00::7. No scheme, no port (use port). postgresql, mysql,
    mariadb only."""

    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """TCP port of the database server. Unset: the engine's default (5432 for postgresql,
    3306 for mysql and mariadb)."""

    name: Annotated[str, Field(min_length=1, max_length=253), NO_CONTROL] | None = None
    """Name of the database on the server (not the Kubernetes Service). Any characters but
    control characters: quotes, spaces and non-ASCII letters reach the server as they are.
    postgresql, mysql, mariadb only."""

    user: Annotated[str, Field(min_length=1, max_length=253), NO_CONTROL] | None = None
    """Database user the Job logs in as. A backup needs read access to every table (and, for
    postgresql, to sequences and large objects); a restore needs to create and drop them."""

    password_secret_ref: SecretKeyRef | None = None
    """Secret key holding the password for user. The password reaches the dump tool through
    its environment, never its command line. Unset: log in without a password."""

    persistent_volume_claim: ObjectName | None = None
    """sqlite only: name of the PersistentVolumeClaim holding the database file, in the same
    namespace. The Job mounts it, so a ReadWriteOnce claim must be free or on the same node."""

    path: Annotated[str, Field(min_length=1, max_length=4096), NO_DOTDOT] | None = None
    """sqlite only: path of the database file inside the claim, for example data/app.db
    (relative to the claim's root; a leading / means the same). No '..' segments."""

    @model_validator(mode="after")
    def _fields_match_engine(self) -> Self:
        if self.engine is Engine.SQLITE:
            if self.persistent_volume_claim is None or self.path is None:
                raise invalid("sqlite_fields", DATABASE_RULES[0].message)
            network = {
                "host": self.host,
                "port": self.port,
                "name": self.name,
                "user": self.user,
                "passwordSecretRef": self.password_secret_ref,
            }
            extra = [field for field, value in network.items() if value is not None]
            if extra:
                raise invalid(
                    "engine_fields",
                    f"{', '.join(extra)} not used by engine sqlite: remove "
                    + ("it" if len(extra) == 1 else "them"),
                )
        else:
            missing = [
                field
                for field, value in (("host", self.host), ("name", self.name), ("user", self.user))
                if value is None
            ]
            if missing:
                raise invalid(
                    "network_fields",
                    f"{DATABASE_RULES[1].message}; missing: {', '.join(missing)}",
                )
            if self.persistent_volume_claim is not None or self.path is not None:
                raise invalid(
                    "engine_fields",
                    f"persistentVolumeClaim and path are for engine sqlite, not {self.engine}: "
                    "remove them",
                )
        return self

    @property
    def effective_port(self) -> int | None:
        """The port to connect to: `port`, else the engine's default; None for sqlite."""
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.engine)
