"""Which field of the object a failure is about, so its message names it.

The worker and the kubelet speak of values (`bucket "shop-backups" does not exist`, `secret "db"
not found`): they do not know which field of which object gave them. The controller does, and
adds it to the message of a Failed Backup or Restore: `...; check spec.storage.s3.bucket`.
Pure functions of the spec and the Job, so every reconcile writes the same message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from lifeboat.api import DatabaseSpec, Engine, Phase, StorageSpec
from lifeboat.contract import (
    ENV_AWS_ACCESS_KEY_ID,
    ENV_AWS_SECRET_ACCESS_KEY,
    ENV_DB_PASSWORD,
    Object,
)
from lifeboat.controller.transitions import Verdict

CONTAINER_CONFIG_ERROR: Final = "CreateContainerConfigError"


@dataclass(frozen=True)
class FieldHints:
    """reason -> the fields to check; Job env variable -> the field naming its Secret."""

    reasons: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)


def storage_field(storage: StorageSpec, at: str) -> str:
    """The field holding the storage settings: `at.s3`, `at.volume`, or the store's spec."""
    if storage.store_ref is not None:
        return f"the spec of BackupStore {storage.store_ref.name} ({at}.storeRef)"
    return f"{at}.s3" if storage.s3 is not None else f"{at}.volume"


def field_hints(
    *,
    database_at: str,
    database: DatabaseSpec | None,
    storage_at: str,
    storage: StorageSpec | None,
) -> FieldHints:
    """The hints for a Job reading `database` (the spec at `database_at`; None when it is not
    this object's, such as a Restore's Backup's) and `storage` (likewise)."""
    where = storage_field(storage, storage_at) if storage is not None else storage_at
    s3 = storage is None or storage.s3 is not None or storage.store_ref is not None
    volume = storage is None or storage.volume is not None or storage.store_ref is not None
    sqlite = database is not None and database.engine is Engine.SQLITE
    network = database is None or database.engine is not Engine.SQLITE
    reasons: dict[str, str] = {}
    if network:
        reasons["AuthenticationFailed"] = (
            f"{database_at}.user and the Secret named by {database_at}.passwordSecretRef"
        )
        reasons["DatabaseUnreachable"] = f"{database_at}.host and {database_at}.port"
    reasons["DatabaseNotFound"] = (
        f"{database_at}.path"
        if sqlite
        else f"{database_at}.name"
        if database is not None
        else f"{database_at}.name (or .path)"
    )
    inline = storage is not None and storage.store_ref is None

    def inside(name: str) -> str:
        return f"{where}.{name}" if inline else f"{where}: {name}"

    credentials = inside("credentialsSecretRef")
    if s3:
        reasons["BucketNotFound"] = inside("bucket")
        reasons["StorageUnreachable"] = inside("endpoint")
    if s3 and volume:
        reasons["AccessDenied"] = f"{credentials} (s3) or persistentVolumeClaim (volume)"
    elif s3:
        reasons["AccessDenied"] = credentials
    else:
        reasons["AccessDenied"] = inside("persistentVolumeClaim")
    secrets = {
        ENV_DB_PASSWORD: f"{database_at}.passwordSecretRef",
        ENV_AWS_ACCESS_KEY_ID: credentials,
        ENV_AWS_SECRET_ACCESS_KEY: credentials,
    }
    return FieldHints(reasons, secrets)


def _missing_secret_field(message: str, job: Object | None, hints: FieldHints) -> str | None:
    """The field naming the Secret (or key) the kubelet could not find, read off the Job's
    secretKeyRef variables: `secret "db" not found`, `couldn't find key k in Secret ns/db`."""
    pod = ((job or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    key_missing = "couldn't find key" in message
    for container in pod.get("containers") or []:
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            secret, key, variable = ref.get("name"), ref.get("key"), env.get("name")
            if not secret or variable not in hints.secrets:
                continue
            name = re.escape(secret)
            if not re.search(rf'"{name}"|/{name}(?![-.a-z0-9])', message):
                continue
            if key_missing and f"key {key} " not in message:
                continue  # another key of the same Secret is the missing one
            what = f"Secret {secret} has no key {key}" if key_missing else f"no Secret {secret}"
            return f"{hints.secrets[variable]} ({what} in this namespace)"
    return None


def with_field_hint(verdict: Verdict, hints: FieldHints | None, job: Object | None) -> Verdict:
    """`verdict` with '; check <field>' added to its message when it failed for a reason the
    object's spec can fix."""
    if hints is None or verdict.phase is not Phase.FAILED:
        return verdict
    if verdict.reason == CONTAINER_CONFIG_ERROR:
        found = _missing_secret_field(verdict.message, job, hints)
    else:
        found = hints.reasons.get(verdict.reason)
    if found is None:
        return verdict
    return Verdict(verdict.phase, verdict.reason, f"{verdict.message}; check {found}")
