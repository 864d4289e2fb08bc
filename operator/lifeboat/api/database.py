"""The database a Backup reads or a Restore writes: engine, address, login, or a SQLite file."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import ConfigDict, Field, model_validator

from lifeboat import contract
from lifeboat.api.common import (
    NO_DOTDOT,
    CaBundleRef,
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


# -- TLS --------------------------------------------------------------------------------------


class TlsMode(StrEnum):
    """How the Job's connection to the database uses TLS.

    | mode       | PostgreSQL (libpq sslmode) | MariaDB / MySQL clients                          |
    |------------|----------------------------|--------------------------------------------------|
    | Disable    | disable                    | --skip-ssl (--ssl-mode=DISABLED)                 |
    | Require    | require                    | --ssl (--ssl-mode=REQUIRED), no certificate check|
    | VerifyCA   | verify-ca                  | --ssl --ssl-ca (--ssl-mode=VERIFY_CA)            |
    | VerifyFull | verify-full                | --ssl --ssl-ca --ssl-verify-server-cert          |
    |            |                            | (--ssl-mode=VERIFY_IDENTITY)                     |
    """

    DISABLE = "Disable"
    REQUIRE = "Require"
    VERIFY_CA = "VerifyCA"
    VERIFY_FULL = "VerifyFull"

    @property
    def worker_mode(self) -> str:
        """The worker's name for it (libpq's sslmode): LIFEBOAT_DB_TLS_MODE."""
        return {
            TlsMode.DISABLE: "disable",
            TlsMode.REQUIRE: "require",
            TlsMode.VERIFY_CA: "verify-ca",
            TlsMode.VERIFY_FULL: "verify-full",
        }[self]


class ClientCertSecretRef(SpecModel):
    """A Secret of type kubernetes.io/tls (keys tls.crt and tls.key), in the same namespace, such
    as cert-manager writes."""

    name: ObjectName
    """Name of the Secret. Its tls.crt is the client certificate (for PostgreSQL's cert
    authentication its common name must be the user), tls.key its private key."""


TLS_RULES: Final = (
    CelRule(
        rule="!(has(self.caSecretRef) && has(self.caConfigMapRef))",
        message="set at most one of caSecretRef and caConfigMapRef: the CA bundle comes from one",
    ),
    CelRule(
        rule=(
            "!(self.mode == 'VerifyCA' || self.mode == 'VerifyFull')"
            " || has(self.caSecretRef) || has(self.caConfigMapRef)"
        ),
        message=(
            "modes VerifyCA and VerifyFull check the server's certificate against a CA: set "
            "caSecretRef or caConfigMapRef to the CA bundle, or use mode Require"
        ),
    ),
    CelRule(
        rule=(
            "self.mode != 'Disable'"
            " || !(has(self.caSecretRef) || has(self.caConfigMapRef)"
            " || has(self.clientCertSecretRef))"
        ),
        message=(
            "mode Disable uses no certificates: remove caSecretRef, caConfigMapRef and "
            "clientCertSecretRef, or choose another mode"
        ),
    ),
)


class DatabaseTls(SpecModel):
    """TLS between the Job and the database server. With any mode but Disable the Job refuses
    to log in over a connection that is not encrypted: the password is never sent in clear
    text (the Job fails with TlsUnavailable)."""

    model_config = ConfigDict(json_schema_extra=cel(*TLS_RULES))

    mode: TlsMode
    """Disable: no TLS. Require: TLS, without checking the server's certificate (protects from
    eavesdropping, not from an impostor). VerifyCA: TLS, and the certificate must be signed by
    the CA bundle. VerifyFull: VerifyCA, and the certificate must name host. VerifyFull is the
    one that stops an impostor; VerifyCA and VerifyFull need caSecretRef or caConfigMapRef.
    PostgreSQL gets libpq's sslmode disable, require, verify-ca, verify-full; MariaDB's tools
    --skip-ssl, --ssl, --ssl --ssl-ca, and --ssl-verify-server-cert for VerifyFull (MySQL's
    --ssl-mode DISABLED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY)."""

    ca_secret_ref: CaBundleRef | None = None
    """Secret key holding the PEM CA bundle that signed the server's certificate. Mounted
    read-only into the Job; never read by the operator."""

    ca_config_map_ref: CaBundleRef | None = None
    """ConfigMap key holding the PEM CA bundle (CA certificates are public: a ConfigMap, for
    example one trust-manager fills, will do). Mounted read-only into the Job."""

    client_cert_secret_ref: ClientCertSecretRef | None = None
    """A kubernetes.io/tls Secret (tls.crt, tls.key) for servers that authenticate clients by
    certificate (PostgreSQL hostssl ... cert, MariaDB REQUIRE X509). Mounted read-only, readable
    by the Job's user only; the key never appears in the Job's environment or arguments."""

    @model_validator(mode="after")
    def _certificates_match_mode(self) -> Self:
        has_ca = self.ca_secret_ref is not None or self.ca_config_map_ref is not None
        if self.ca_secret_ref is not None and self.ca_config_map_ref is not None:
            raise invalid("tls_ca", TLS_RULES[0].message)
        if self.mode in (TlsMode.VERIFY_CA, TlsMode.VERIFY_FULL) and not has_ca:
            raise invalid("tls_ca", TLS_RULES[1].message)
        if self.mode is TlsMode.DISABLE and (has_ca or self.client_cert_secret_ref is not None):
            raise invalid("tls_disable", TLS_RULES[2].message)
        return self


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
            " || has(self.user) || has(self.passwordSecretRef) || has(self.tls))"
            " : !(has(self.persistentVolumeClaim) || has(self.path))"
        ),
        message=(
            "host, port, name, user, passwordSecretRef and tls are for postgresql, mysql and "
            "mariadb; "
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

    tls: DatabaseTls | None = None
    """TLS to the database server: mode (Disable, Require, VerifyCA, VerifyFull), the CA bundle
    (caSecretRef or caConfigMapRef) and a client certificate (clientCertSecretRef). Unset: the
    client's default (PostgreSQL: TLS when the server offers it, unverified; MySQL/MariaDB
    tools: their own default). postgresql, mysql, mariadb only."""

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
                "tls": self.tls,
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
