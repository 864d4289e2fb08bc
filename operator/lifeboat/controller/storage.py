"""Where a Backup or Restore writes and reads: its storage, resolved before a Job is built.

`spec.storage` is inline (s3 or volume) or a `storeRef` naming a BackupStore in the same
namespace. The controller resolves it to a `StorageBackend`, then the pure builders build the Job
from that (they never read a storeRef).

A Backup records what its storage resolved to in `status.storage` before it creates its Job, and
everything that later reads the backup (Restores, the storage cleanup of deletionPolicy Delete)
reads it from there: editing a store, or deleting it, never loses track of backups already
written. Backups from before status.storage existed have inline storage, read from their spec.

A storeRef to a store that does not exist waits (Pending, WaitingForStore), because GitOps tools
apply objects in any order, and fails with StoreNotFound after `store_wait_seconds`. A store
that exists but failed its last reachability check does not block anything (the Job's own error
is the truth, and the check may be stale): the object's message says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client
from pydantic import ValidationError

from lifeboat.api import (
    STORE_KIND,
    STORE_PLURAL,
    Backup,
    BackupStore,
    ConditionType,
    Phase,
    StorageBackend,
    StorageSpec,
    describe_validation_error,
)
from lifeboat.contract import Object
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.jobs import Target
from lifeboat.controller.transitions import Verdict
from lifeboat.kube.objects import read_custom

WAITING_FOR_STORE = "WaitingForStore"
STORE_NOT_FOUND = "StoreNotFound"
STORE_INVALID = "StoreInvalid"
BACKUP_STORE_FIELD = "spec.storage.storeRef.name"
SOURCE_STORE_FIELD = "spec.source.storage.storeRef.name"


@dataclass(frozen=True)
class ResolvedStorage:
    """The storage a Job uses, and a word for the object's message when the store it came from
    failed its last check."""

    backend: StorageBackend
    note: str | None = None


def age_seconds(obj: Object, now: datetime | None = None) -> float:
    """Seconds since the object was created (0 when the server did not say)."""
    created = obj.get("metadata", {}).get("creationTimestamp")
    if not created:
        return 0.0
    then = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return ((now or datetime.now(UTC)) - then).total_seconds()


def store_backend(store: Object) -> StorageBackend:
    """A BackupStore's settings as the storage a Job uses; ValidationError if its spec is bad."""
    spec = BackupStore.model_validate(store).spec
    return StorageBackend(s3=spec.s3, volume=spec.volume, encryption=spec.encryption)


def store_note(name: str, store: Object | None) -> str | None:
    """'BackupStore X was not Ready at its last check: Reason: message', or None when it was
    (or has not been checked yet)."""
    conditions = ((store or {}).get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == ConditionType.READY.value), None)
    if ready is None or ready.get("status") != "False":
        return None
    reason = ready.get("reason") or "NotReady"
    detail = f": {ready['message']}" if ready.get("message") else ""
    return f"{STORE_KIND} {name} was not Ready at its last check ({reason}{detail})"


def decide_storage(
    storage: StorageSpec,
    store: Object | None,
    *,
    kind: str,
    field: str,
    namespace: str,
    waited_seconds: float,
    wait_seconds: float,
    recorded: StorageBackend | None = None,
) -> ResolvedStorage | Verdict:
    """The storage to use, or the verdict while it cannot be known.

    `store` is the BackupStore `storage.storeRef` names (None: it does not exist; ignored for
    inline storage); `recorded` what the object already recorded (a Backup's status.storage),
    which wins over the store's current settings; `waited_seconds` how long the object has
    existed; `field` the spec field that names the store, for messages."""
    name = storage.store_ref.name if storage.store_ref is not None else None
    note = store_note(name, store) if name is not None and store is not None else None
    if recorded is not None:
        return ResolvedStorage(recorded, note)
    inline = storage.backend()
    if inline is not None:
        return ResolvedStorage(inline)
    assert name is not None  # exactly one of s3, volume, storeRef: the model checked it
    if store is None:
        if waited_seconds < wait_seconds:
            return Verdict(
                Phase.PENDING,
                WAITING_FOR_STORE,
                f"{STORE_KIND} {name} ({field}) does not exist yet in namespace {namespace}; "
                f"waiting up to {wait_seconds:g}s for it",
            )
        return Verdict(
            Phase.FAILED,
            STORE_NOT_FOUND,
            f"{STORE_KIND} {name} ({field}) does not exist in namespace {namespace} (waited "
            f"{wait_seconds:g}s); create the {STORE_KIND}, then create a new {kind}",
        )
    try:
        backend = store_backend(store)
    except ValidationError as exc:
        detail = describe_validation_error(exc).replace("\n", "; ")
        return Verdict(
            Phase.FAILED, STORE_INVALID, f"{STORE_KIND} {name} ({field}) is invalid: {detail}"
        )
    if storage.encryption is not None:  # the object's own encryption wins over the store's
        backend = backend.model_copy(update={"encryption": storage.encryption})
    return ResolvedStorage(backend, note)


def resolve_storage(
    api: client.ApiClient,
    target: Target,
    storage: StorageSpec,
    *,
    field: str,
    config: OperatorConfig,
    recorded: StorageBackend | None = None,
) -> ResolvedStorage | Verdict:
    """`decide_storage` with the store read from the API (only for a storeRef) and the wait
    measured from the object's creation."""
    store = None
    if storage.store_ref is not None:
        store = read_custom(api, STORE_PLURAL, target.namespace, storage.store_ref.name)
    return decide_storage(
        storage,
        store,
        kind=target.kind,
        field=field,
        namespace=target.namespace,
        waited_seconds=age_seconds(target.obj),
        wait_seconds=config.store_wait_seconds,
        recorded=recorded,
    )


def backup_location(api: client.ApiClient, backup: Backup) -> StorageBackend | None:
    """Where a Backup's data is, for those who read or delete it after it was written:
    status.storage, recorded before its Job started; for a Backup from before status.storage
    existed, its inline spec.storage. Only a storeRef never recorded (a status edited by hand)
    is resolved from the store as it is now; None when that store is gone too."""
    if backup.status.storage is not None:
        return backup.status.storage
    inline = backup.spec.storage.backend()
    if inline is not None:
        return inline
    assert backup.spec.storage.store_ref is not None
    namespace = backup.metadata.namespace or ""
    store = read_custom(api, STORE_PLURAL, namespace, backup.spec.storage.store_ref.name)
    if store is None:
        return None
    try:
        return store_backend(store)
    except ValidationError:
        return None
