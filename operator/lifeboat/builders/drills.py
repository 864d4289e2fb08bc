"""Restore drills as plain dicts: the drill's Job, and the RestoreDrills a schedule creates.

A drill restores into a throwaway database whose name is reserved (`<db>__lifeboat_drill_<id>`,
`lifeboat.contract.drill_database_name`), derived from the drill's uid: every attempt of one
drill uses the same name, and the worker refuses to create or drop any other. On the Backup's
own server the source database is therefore never named in the Job at all. A SQLite drill
restores into the Job's own scratch volume (`/tmp`, an emptyDir): it never mounts the
application's claim, and nothing it writes outlives its Pod.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import PurePosixPath
from typing import Final

from lifeboat.api import (
    API_VERSION,
    BACKUP_KIND,
    DRILL_KIND,
    DRILL_PLURAL,
    Backup,
    BackupSchedule,
    DatabaseSpec,
    DrillOptions,
    DrillTarget,
    Engine,
    RestoreDrill,
    ScheduleDrill,
    StorageBackend,
)
from lifeboat.builders.backups import (
    GITOPS_ANNOTATIONS,
    SCHEDULE_LABEL,
    SLOT_ANNOTATION,
    rfc3339,
    schedule_label_value,
)
from lifeboat.builders.jobs import (
    PROGRESS_ARGS,
    JobDefaults,
    _database_mounts,
    _encryption_mounts,
    _job,
    _Mounts,
    _storage_mounts,
    backup_url,
    database_url,
    status_target,
)
from lifeboat.builders.naming import (
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
    child_labels,
    child_name,
    owner_reference,
)
from lifeboat.contract import Object, drill_database_name, drill_id

DRILL_SCRATCH: Final = "/tmp/lifeboat-drill"  # noqa: S108 - the Job's own emptyDir
"""Where a SQLite drill puts its throwaway file: the drill Pod's /tmp emptyDir."""
DRILL_BACKOFF_LIMIT: Final = 1
"""One retry: a drill Pod killed (evicted, out of memory) is run again, and the retry first
drops what the killed attempt left under the same reserved name."""
SEQUENCE_ANNOTATION: Final = "lifeboat.dev/sequence"
"""On a scheduled Backup once it Completed: its number among the schedule's Completed Backups
(1, 2, 3...), what spec.drill.every counts."""
BACKUP_ANNOTATION: Final = "lifeboat.dev/backup"
"""On a RestoreDrill a schedule created: the Backup it drills."""
MAX_NAME: Final = 253


def source_label(database: DatabaseSpec) -> str:
    """The name a drill's throwaway database is derived from: the database's name, or a SQLite
    file's name."""
    if database.engine is Engine.SQLITE:
        return PurePosixPath(database.path or "database").name
    return database.name or ""


def drill_database(source: DatabaseSpec, target: DrillTarget | None, drill: str) -> DatabaseSpec:
    """Where a network engine's drill restores: the target's server and login where given,
    else the source's, always under the reserved name. Not for sqlite."""
    target = target or DrillTarget()
    same_server = target.host is None
    own_login = target.user is not None
    user = target.user if own_login else source.user
    password = target.password_secret_ref if own_login else source.password_secret_ref
    return DatabaseSpec(
        engine=source.engine,
        host=target.host or source.host,
        port=target.port or (source.port if same_server else None),
        name=drill_database_name(source_label(source), drill),
        user=user,
        password_secret_ref=password,
        tls=source.tls if same_server else None,
    )


def drill_name_of(drill: RestoreDrill) -> str:
    """The drill's short id (from its uid)."""
    return drill_id(drill.metadata.uid or "")


def drill_url(source: DatabaseSpec, target: DrillTarget | None, drill: str) -> str:
    """DATABASE_URL of the throwaway database, as the worker gets it: never a password."""
    if source.engine is Engine.SQLITE:
        name = drill_database_name(source_label(source), drill)
        return f"sqlite://{DRILL_SCRATCH}/{name}"
    return database_url(drill_database(source, target, drill))


def drill_server(source: DatabaseSpec, target: DrillTarget | None) -> str | None:
    """host:port of the drill server, for status (None for sqlite)."""
    if source.engine is Engine.SQLITE:
        return None
    database = drill_database(source, target, "")
    return f"{database.host}:{database.effective_port}"


def _drill_mounts(source: DatabaseSpec, target: DrillTarget | None, drill: str) -> _Mounts:
    if source.engine is Engine.SQLITE:
        return _Mounts()  # the scratch file lives in /tmp; the application's claim stays free
    return _database_mounts(drill_database(source, target, drill))


def drill_job_name(drill: RestoreDrill) -> str:
    return child_name(drill.metadata.name or "", drill.metadata.uid or "", "drill")


def checks_argument(options: DrillOptions) -> str:
    """The checks as the worker's --checks JSON (queries are not secrets)."""
    return json.dumps(
        [check.model_dump(mode="json") for check in options.checks or ()],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def build_drill_job(
    drill: RestoreDrill,
    backup: Backup,
    *,
    storage: StorageBackend,
    defaults: JobDefaults,
    requested_by: str,
) -> Object:
    """The one Job that runs `lifeboat drill` for this RestoreDrill: the Backup's artifact from
    `storage` (where it was written), into the reserved throwaway database."""
    meta = drill.metadata
    name, namespace, uid = meta.name or "", meta.namespace or "", meta.uid or ""
    spec = drill.spec
    source = backup.spec.database
    short = drill_name_of(drill)
    args = ["drill", backup_url(backup, storage), drill_url(source, spec.target, short)]
    if spec.checks:
        args += ["--checks", checks_argument(spec)]
    if spec.no_owner:
        args.append("--no-owner")
    if spec.no_privileges:
        args.append("--no-privileges")
    if not spec.verify_checksum_first:
        args.append("--no-verify-first")
    target_ref = status_target(DRILL_PLURAL, namespace, name)
    args += ["--requested-by", requested_by, *PROGRESS_ARGS, "--report-status", target_ref]
    return _job(
        name=drill_job_name(drill),
        namespace=namespace,
        labels=child_labels(DRILL_KIND, name, "drill"),
        owner=owner_reference(API_VERSION, DRILL_KIND, name, uid),
        args=args,
        mounts=_drill_mounts(source, spec.target, short)
        + _storage_mounts(storage)
        + _encryption_mounts(storage.encryption),
        options=spec.job,
        defaults=defaults,
        backoff_limit=DRILL_BACKOFF_LIMIT,
        status_target=target_ref,
    )


# -- the RestoreDrills a schedule creates --------------------------------------------------------


def _bounded(head: str, suffix: str) -> str:
    room = MAX_NAME - len(suffix) - 1
    if len(head) > room:
        digest = hashlib.sha256(head.encode()).hexdigest()[:6]
        head = re.sub(r"[-.]+$", "", head[: room - 7]) + "-" + digest
    return f"{head}-{suffix}"


def backup_drill_name(backup_name: str) -> str:
    """The one scheduled drill of a Backup (spec.drill.every): `<backup>-drill`."""
    return _bounded(backup_name, "drill")


def slot_drill_name(schedule_name: str, label: str) -> str:
    """The one drill of a drill slot (spec.drill.schedule): `<schedule>-drill-<yyyymmdd-hhmm>`."""
    return _bounded(schedule_name, f"drill-{label}")


def build_scheduled_drill(
    schedule: BackupSchedule,
    name: str,
    *,
    backup_name: str,
    backup_uid: str,
    slot: datetime,
) -> Object:
    """The RestoreDrill `name` of `schedule` for its Backup `backup_name`, at `slot` (the drill
    slot, or when the Backup's turn came). Owned by that Backup: it goes when retention prunes
    the Backup; labelled with the schedule, which finds its drills by it."""
    drill: ScheduleDrill | None = schedule.spec.drill
    assert drill is not None
    options = {k: v for k, v in drill.to_api_dict().items() if k not in ("every", "schedule")}
    spec = {"backupRef": {"name": backup_name}, **options}
    meta = schedule.metadata
    return {
        "apiVersion": API_VERSION,
        "kind": DRILL_KIND,
        "metadata": {
            "name": name,
            "namespace": meta.namespace or "",
            "labels": {
                LABEL_NAME: "lifeboat",
                LABEL_COMPONENT: "drill",
                LABEL_MANAGED_BY: MANAGED_BY,
                SCHEDULE_LABEL: schedule_label_value(meta.name or ""),
            },
            "annotations": {
                **GITOPS_ANNOTATIONS,
                SLOT_ANNOTATION: rfc3339(slot),
                BACKUP_ANNOTATION: backup_name,
            },
            "ownerReferences": [owner_reference(API_VERSION, BACKUP_KIND, backup_name, backup_uid)],
        },
        "spec": spec,
    }
