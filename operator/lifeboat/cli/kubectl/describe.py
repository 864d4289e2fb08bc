"""`kubectl lifeboat describe`: one object's state, result, conditions and recent Events, laid
out as `kubectl describe` does. A pure function of the objects the API returned and "now"."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from lifeboat.api import (
    BackupScheduleStatus,
    BackupStatus,
    RestoreStatus,
    format_bytes,
)
from lifeboat.cli.kubectl.kinds import SCHEDULE, Kind
from lifeboat.cli.kubectl.render import (
    NONE,
    age,
    count_text,
    load_status,
    progress_line,
    staleness,
    status_model,
    timestamp,
    took,
    unattended,
)
from lifeboat.contract import Object
from lifeboat.worker.listing import format_table


class _Lines:
    """kubectl describe's layout: 'Label:' padded to a column, nested blocks indented."""

    WIDTH = 18

    def __init__(self) -> None:
        self.lines: list[str] = []

    def field(self, label: str, value: Any, indent: int = 0) -> None:
        if value is None or value == "":
            return
        pad = max(self.WIDTH - indent, len(label) + 2)
        self.lines.append(f"{' ' * indent}{label + ':':<{pad}}{value}")

    def title(self, label: str, indent: int = 0) -> None:
        self.lines.append(f"{' ' * indent}{label}:")

    def text(self, line: str, indent: int = 2) -> None:
        self.lines.append(f"{' ' * indent}{line}")

    def block(self, table: str, indent: int = 2) -> None:
        self.lines += [f"{' ' * indent}{line}" for line in table.splitlines()]

    def render(self) -> str:
        return "\n".join(self.lines)


def describe(kind: Kind, obj: Object, events: Sequence[Object], now: datetime) -> str:
    """`kubectl lifeboat describe`: state, result, conditions and recent Events."""
    out = _Lines()
    meta = obj["metadata"]
    out.field("Name", meta["name"])
    out.field("Namespace", meta.get("namespace"))
    out.field("Kind", kind.kind)
    out.field("Created", timestamp(meta.get("creationTimestamp"), now))
    spec = obj.get("spec") or {}
    if kind is SCHEDULE:
        _describe_schedule(out, spec, load_status(BackupScheduleStatus, obj), now)
        conditions = load_status(BackupScheduleStatus, obj).conditions
    else:
        status = load_status(status_model(kind), obj)
        conditions = status.conditions
        _describe_operation(out, kind, obj, status, now)
    if conditions:
        out.title("Conditions")
        rows = [
            [c.type, c.status.value, c.reason, age(c.last_transition_time, now), c.message or ""]
            for c in conditions
        ]
        out.block(format_table(("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"), rows))
    out.title("Events")
    if events:
        rows = [
            [
                str(e.get("type") or ""),
                str(e.get("reason") or ""),
                _event_age(e, now),
                str((e.get("source") or {}).get("component") or e.get("reportingComponent") or ""),
                " ".join(str(e.get("message") or "").split()),
            ]
            for e in events[-EVENTS_SHOWN:]
        ]
        out.block(format_table(("TYPE", "REASON", "AGE", "FROM", "MESSAGE"), rows))
    else:
        out.text("<none>")
    return out.render()


EVENTS_SHOWN = 15


def _event_age(event: Object, now: datetime) -> str:
    last = event.get("lastTimestamp") or event.get("eventTime")
    first = event.get("firstTimestamp")
    count = event.get("count") or 1
    if count > 1 and first:
        return f"{age(last, now)} (x{count} over {age(first, now)})"
    return age(last or first or (event.get("metadata") or {}).get("creationTimestamp"), now)


def _describe_operation(
    out: _Lines,
    kind: Kind,
    obj: Object,
    status: BackupStatus | RestoreStatus,
    now: datetime,
) -> None:
    out.field("Phase", status.phase.value if status.phase else "(no status yet)")
    out.field("Warning", unattended(obj, status, now))
    out.field("Reason", status.reason)
    out.field("Message", status.message)
    if isinstance(status, RestoreStatus):
        _describe_restore_spec(out, obj.get("spec") or {}, status)
    else:
        _describe_backup_spec(out, obj.get("spec") or {}, status)
    if status.job_name:
        attempts = f" (attempts: {status.attempts})" if status.attempts else ""
        out.field("Job", f"{status.job_name}{attempts}")
    out.field("Started", timestamp(status.start_time, now) if status.start_time else None)
    if status.completion_time:
        duration = took(status.start_time, status.completion_time)
        suffix = f", took {duration}" if duration else ""
        out.field("Finished", timestamp(status.completion_time, now) + suffix)
    if status.progress is not None:
        out.field("Progress", progress_line(kind, status.progress))
        if status.progress.current_item:
            out.field("Current table", status.progress.current_item, indent=2)
        if status.progress.updated_at is not None:
            out.field("Updated", timestamp(status.progress.updated_at, now), indent=2)
        quiet = staleness(status.progress, status.phase, now)
        if quiet:
            out.field("Warning", f"{quiet}: is the worker stuck? see its logs", indent=2)
    if isinstance(status, BackupStatus):
        _describe_artifact(out, status)
    else:
        _describe_verification(out, status)
        _describe_notes(out, status)
        _describe_plan(out, status)


def _database_text(database: Object | None) -> str | None:
    if not database:
        return None
    engine = database.get("engine", "?")
    if engine == "sqlite":
        return f"sqlite {database.get('path')} on claim {database.get('persistentVolumeClaim')}"
    port = f":{database['port']}" if database.get("port") else ""
    return (
        f"{engine} {database.get('name')} at {database.get('host')}{port} as {database.get('user')}"
    )


def _storage_text(storage: Object | None) -> str | None:
    if not storage:
        return None
    if storage.get("storeRef"):
        return f"store {storage['storeRef'].get('name')}"
    if storage.get("s3"):
        s3 = storage["s3"]
        endpoint = f" at {s3['endpoint']}" if s3.get("endpoint") else ""
        return f"s3://{s3.get('bucket')}/{s3.get('prefix', '')}{endpoint}"
    if storage.get("volume"):
        volume = storage["volume"]
        return f"claim {volume.get('persistentVolumeClaim')}, path /{volume.get('path', '')}"
    return None


def _describe_backup_spec(out: _Lines, spec: Object, status: BackupStatus) -> None:
    out.field("Database", _database_text(spec.get("database")))
    out.field("Storage", _storage_text(spec.get("storage")))
    out.field("Compression", spec.get("compression"))
    out.field("Deletion policy", spec.get("deletionPolicy"))


def _describe_restore_spec(out: _Lines, spec: Object, status: RestoreStatus) -> None:
    if spec.get("backupRef"):
        source = f"backup/{spec['backupRef'].get('name')}"
    elif spec.get("scheduleRef"):
        source = f"newest Completed backup of schedule/{spec['scheduleRef'].get('name')}"
    elif spec.get("source"):
        location = spec["source"]
        path = location.get("path")
        source = f"{_storage_text(location.get('storage'))}{' path ' + path if path else ''}"
    else:
        source = NONE
    out.field("Source", source)
    out.field("Resolved backup", status.resolved_backup)
    target = _database_text(spec.get("target"))
    out.field("Target", target or f"the backup's own database {status.database or ''}".strip())
    options = [
        name
        for name, on in (
            ("dryRun", spec.get("dryRun")),
            ("keepExtraObjects", spec.get("keepExtraObjects")),
            ("noOwner", spec.get("noOwner")),
            ("noPrivileges", spec.get("noPrivileges")),
            ("no checksum pass first", spec.get("verifyChecksumFirst") is False),
        )
        if on
    ]
    out.field("Options", ", ".join(options))


def _describe_artifact(out: _Lines, status: BackupStatus) -> None:
    artifact = status.artifact
    if artifact is None:
        return
    out.title("Artifact")
    out.field("URI", artifact.uri, indent=2)
    out.field("Manifest", artifact.manifest_uri, indent=2)
    if artifact.size is not None:
        raw = f" (raw {format_bytes(artifact.raw_size)})" if artifact.raw_size is not None else ""
        compression = f", {artifact.compression.value}" if artifact.compression else ""
        out.field("Size", f"{artifact.size_text}{raw}{compression}", indent=2)
    out.field("SHA-256", artifact.sha256, indent=2)
    if artifact.engine:
        version = f" {artifact.server_version}" if artifact.server_version else ""
        out.field("Engine", f"{artifact.engine.value}{version}", indent=2)
    out.field("Database", artifact.database, indent=2)
    if artifact.tables is not None:
        out.field("Tables / rows", f"{artifact.tables} / {count_text(artifact.rows)}", indent=2)


def _describe_verification(out: _Lines, status: RestoreStatus) -> None:
    check = status.verification
    if check is None:
        return
    out.title("Verification")
    out.field("Checksum verified", _yes_no(check.checksum_verified), indent=2)
    out.field("Row counts matched", _yes_no(check.row_counts_matched), indent=2)
    if check.tables_verified is not None:
        out.field(
            "Tables / rows",
            f"{check.tables_verified} / {count_text(check.rows_verified)}",
            indent=2,
        )
    out.field("Artifact", check.artifact_uri, indent=2)
    out.field("SHA-256", check.sha256, indent=2)
    if check.mismatches:
        out.title("Mismatches", indent=2)
        for line in check.mismatches:
            out.text(f"- {line}", indent=4)


def _describe_notes(out: _Lines, status: RestoreStatus) -> None:
    """What the restore did besides loading the backup: leftovers of an interrupted restore it
    removed, parked tables it kept, a database it created."""
    if not status.notes:
        return
    out.title("Notes")
    for note in status.notes:
        out.text(f"- {note}")


def _describe_plan(out: _Lines, status: RestoreStatus) -> None:
    plan = status.plan
    if plan is None:
        return
    out.title("Plan (dry run: nothing was changed)")
    if plan.target_exists is not None:
        out.field("Target exists", _yes_no(plan.target_exists), indent=2)
    out.field("Server version", plan.server_version, indent=2)
    if plan.backup_taken_at is not None:
        taken = plan.backup_taken_at.astimezone(UTC)
        out.field("Backup taken at", f"{taken:%Y-%m-%dT%H:%M:%SZ}", indent=2)
    if plan.bytes_to_download is not None:
        out.field("Would download", format_bytes(plan.bytes_to_download), indent=2)
    out.field("Checksum verified", _yes_no(plan.checksum_verified), indent=2)
    if plan.tables is not None:
        out.field("Would load", f"{plan.tables} tables, {count_text(plan.rows)} rows", indent=2)
    for label, count, names in (
        ("Would replace", plan.replaced_count, plan.replaced),
        ("Would drop", plan.dropped_count, plan.dropped),
        ("Would keep", plan.kept_count, plan.kept),
    ):
        if count:
            out.field(label, f"{count} object(s)", indent=2)
            for name in (names or [])[:PLAN_NAMES_SHOWN]:
                out.text(f"- {name}", indent=4)
            if len(names or []) < count:
                out.text(f"… and {count - min(len(names or []), PLAN_NAMES_SHOWN)} more", 4)
            elif len(names or []) > PLAN_NAMES_SHOWN:
                out.text(f"… and {len(names or []) - PLAN_NAMES_SHOWN} more", indent=4)
    if plan.checks:
        out.title("Checks passed", indent=2)
        for check in plan.checks:
            out.text(f"✓ {check.name}: {check.detail}", indent=4)
    for note in plan.notes or []:
        out.field("Note", note, indent=2)


PLAN_NAMES_SHOWN = 20


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("yes" if value else "NO")


def _describe_schedule(
    out: _Lines, spec: Object, status: BackupScheduleStatus, now: datetime
) -> None:
    out.field("Schedule", f"{spec.get('schedule')} ({spec.get('timeZone', 'UTC')})")
    out.field("Suspended", "yes" if spec.get("suspend") else "no")
    out.field("Concurrency", spec.get("concurrencyPolicy"))
    template = spec.get("template") or {}
    out.field("Database", _database_text(template.get("database")))
    out.field("Storage", _storage_text(template.get("storage")))
    out.field("Last scheduled", timestamp(status.last_schedule_time, now))
    out.field("Last success", timestamp(status.last_successful_time, now))
    out.field("Next", timestamp(status.next_schedule_time, now))
    out.field("Last backup", status.last_backup)
    out.field("Last good backup", status.last_successful_backup)
    if status.active:
        out.field("Active", ", ".join(status.active))
    if status.kept:
        total = status.kept_count if status.kept_count is not None else len(status.kept)
        out.title(f"Kept by retention ({total})")
        rows = [[k.name, age(k.time, now), ", ".join(k.rules)] for k in status.kept]
        out.block(format_table(("BACKUP", "AGE", "RULES"), rows))
