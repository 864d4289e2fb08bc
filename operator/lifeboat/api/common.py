"""What every API model builds on: names, patterns, CEL rules, base models, references, errors.

The shapes shared by the kinds live beside this module by concern: `database.py`,
`storage.py`, `job.py` (Job tuning) and `status.py` (phase, conditions, progress). These models
are the one source of truth for the `lifeboat.dev/v1alpha1` schema: `crd.py`
turns them into `crds/*.yaml`. Field docstrings become the descriptions `kubectl explain`
shows, so they are written for whoever is on call. JSON is camelCase, Python is snake_case.

Rules that span several fields live twice, on purpose: as CEL (`x-kubernetes-validations`, so
`kubectl apply` rejects the object at once) and as a pydantic validator (so the controller and
the CLI reject the same input with the same words). The CEL rules sit next to the model they
guard; tests evaluate both against the same cases.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

# -- names ------------------------------------------------------------------------------------

GROUP: Final = "lifeboat.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
BACKUP_KIND: Final = "Backup"
RESTORE_KIND: Final = "Restore"
BACKUP_PLURAL: Final = "backups"
RESTORE_PLURAL: Final = "restores"

# -- patterns (RE2-compatible: the API server evaluates them in Go) ---------------------------

DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A Kubernetes object name (Secret, PersistentVolumeClaim, Backup, ServiceAccount)."""

SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 - a pattern, not a secret
"""A key inside a Secret's data."""

_SEGMENT = r"(?:[^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+|\.)?"
SAFE_PATH_PATTERN: Final = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
"""A path inside a volume with no `..` segment, so it cannot climb out of the mount."""

QUANTITY_PATTERN: Final = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""A non-negative Kubernetes resource quantity: 500m, 2, 1.5, 512Mi, 4Gi."""

CONDITION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


# -- CEL --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CelRule:
    """One `x-kubernetes-validations` entry: `rule` must hold, else the server says `message`."""

    rule: str
    message: str

    def as_schema(self) -> dict[str, str]:
        return {"rule": self.rule, "message": self.message}


def cel(*rules: CelRule) -> dict[str, Any]:
    """`json_schema_extra` attaching CEL rules to a model's schema."""
    return {"x-kubernetes-validations": [r.as_schema() for r in rules]}


# -- base models ------------------------------------------------------------------------------


class ApiModel(BaseModel):
    """Base of every API model: camelCase in JSON, snake_case in Python, docstrings as docs."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="ignore",
    )

    def to_api_dict(self) -> dict[str, Any]:
        """The JSON the API server stores: camelCase, no None, enums and times as strings."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SpecModel(ApiModel):
    """Spec shapes reject unknown fields: a typo must fail loudly, not be dropped."""

    model_config = ConfigDict(extra="forbid")


class StatusModel(ApiModel):
    """Status shapes ignore unknown fields: an older operator must still read a newer status."""

    model_config = ConfigDict(extra="ignore")


def invalid(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message is shown to the user as written (no 'Value error, ')."""
    return PydanticCustomError(kind, message)


@dataclass(frozen=True)
class Matches:
    """`Annotated` metadata: a regex `pattern` in the schema, and in Python the same check with
    an error that says what is expected instead of quoting the regex."""

    pattern: str
    expected: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = self.pattern
        return json_schema

    def _check(self, value: str) -> str:
        if not re.search(self.pattern, value):
            raise invalid("pattern", f"{value!r} is not {self.expected}")
        return value


# -- references -------------------------------------------------------------------------------

ObjectName = Annotated[
    str,
    Field(min_length=1, max_length=253),
    Matches(
        DNS_SUBDOMAIN_PATTERN,
        "a Kubernetes object name: lowercase letters, digits, '-' and '.', starting and ending "
        "with a letter or digit",
    ),
]
SecretKey = Annotated[
    str,
    Field(min_length=1, max_length=253),
    Matches(SECRET_KEY_PATTERN, "a Secret key: letters, digits, '-', '_' and '.' only"),
]
NO_DOTDOT = Matches(SAFE_PATH_PATTERN, "a safe path: it must not contain a '..' segment")
SafePath = Annotated[str, Field(max_length=4096), NO_DOTDOT]
Timestamp = AwareDatetime


class SecretKeyRef(SpecModel):
    """A key in a Secret in the same namespace as the Backup or Restore."""

    name: ObjectName
    """Name of the Secret, in the same namespace as this object."""

    key: SecretKey = "password"
    """Key inside the Secret whose value is the password. Default: password."""


class CaBundleRef(SpecModel):
    """A key in a Secret or a ConfigMap, in the same namespace as this object, whose value is a
    PEM bundle of CA certificates (one or more -----BEGIN CERTIFICATE----- blocks)."""

    name: ObjectName
    """Name of the Secret or ConfigMap, in the same namespace as this object."""

    key: SecretKey = "ca.crt"
    """Key inside it whose value is the PEM bundle. Default: ca.crt (what cert-manager and
    kube-root-ca.crt use)."""


class ObjectMeta(StatusModel):
    """The parts of metadata Lifeboat reads; everything else is ignored."""

    name: str | None = None
    """Object name."""

    namespace: str | None = None
    """Object namespace."""

    uid: str | None = None
    """Object uid."""

    generation: int | None = None
    """Incremented by the API server on every spec change."""

    resource_version: str | None = None
    """Opaque version for optimistic concurrency."""

    creation_timestamp: datetime | None = None
    """When the object was created."""

    deletion_timestamp: datetime | None = None
    """When deletion was requested; set while finalizers still run."""

    labels: dict[str, str] | None = None
    """Object labels."""

    annotations: dict[str, str] | None = None
    """Object annotations."""

    finalizers: list[str] | None = None
    """Finalizers that must finish before the object goes away."""


# -- errors -----------------------------------------------------------------------------------


def describe_validation_error(error: ValidationError, prefix: Iterable[str] = ()) -> str:
    """One line per problem, each starting with the field path: 'spec.storage: set exactly...'.

    `prefix` is prepended to every path, e.g. ("spec",) when a BackupSpec was validated alone.
    This is the text for a PermanentError, an Event or a condition message.
    """
    lines = []
    for problem in error.errors(include_url=False):
        path = ".".join(prefix)
        for part in problem["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown field: check its spelling (kubectl explain shows the fields)"
        lines.append(f"{path}: {message}" if path else message)
    return "\n".join(lines)
