"""What the plugin prints, as pure functions of the objects the API returned and "now".

Every number comes from an object's status, written by the operator (phase, reason, message,
conditions) or by the worker (progress, artifact, verification, plan): nothing is estimated
here. Tables look like kubectl's (see `format_table`); times are kubectl's ages (`5m10s`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lifeboat.api import (
    BackupScheduleStatus,
    BackupStatus,
    ConditionType,
    Phase,
    ProgressStatus,
    RestoreStatus,
    format_bytes,
)
from lifeboat.cli.kubectl.kinds import RESTORE, SCHEDULE, Kind
from lifeboat.contract import Object
from lifeboat.worker.listing import format_table
from lifeboat.worker.progress import ProgressSnapshot
from lifeboat.worker.terminal import describe as describe_snapshot

M = TypeVar("M", bound=BaseModel)

FINAL_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED})
DRY_RUN_SUCCEEDED = "DryRunSucceeded"
NONE = "-"


# -- reading --------------------------------------------------------------------------------


def load_status(model: type[M], obj: Object) -> M:
    """The object's status as `model`. A status this version does not fully understand (a
    newer operator wrote it) keeps every field that does parse."""
    raw = obj.get("status") or {}
    try:
        return model.model_validate(raw)
    except ValidationError:
        usable = {}
        for key, value in raw.items():
            try:
                model.model_validate({key: value})
            except ValidationError:
                continue
            usable[key] = value
        return model.model_validate(usable)


def status_model(kind: Kind) -> type[BackupStatus] | type[RestoreStatus]:
    return RestoreStatus if kind is RESTORE else BackupStatus


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def reference(kind: Kind, obj: Object) -> str:
    return f"{kind.word}/{obj['metadata']['name']}"


# -- times ----------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """kubectl's ages: 45s, 5m10s, 3h, 2d4h, 400d, 2y30d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(value: Any, now: datetime) -> str:
    when = parse_time(value)
    return NONE if when is None else human_duration((now - when).total_seconds())


def timestamp(value: Any, now: datetime) -> str:
    """'2026-03-01T02:00:13Z (5m ago)'."""
    when = parse_time(value)
    if when is None:
        return NONE
    return f"{when.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} ({age(when, now)} ago)"


def took(start: Any, end: Any) -> str | None:
    begun, ended = parse_time(start), parse_time(end)
    if begun is None or ended is None:
        return None
    return human_duration((ended - begun).total_seconds())


# -- progress -------------------------------------------------------------------------------


def snapshot(kind: Kind, progress: ProgressStatus) -> ProgressSnapshot:
    """The status' progress in the worker's own shape, so the plugin prints the worker's line."""
    return ProgressSnapshot(
        operation=kind.word,
        stage=progress.stage or "",
        percent=progress.percent or 0.0,
        bytes_done=progress.bytes_done or 0,
        bytes_total=progress.bytes_total,
        items_done=progress.items_done or 0,
        items_total=progress.items_total,
        current_item=progress.current_item,
        rate_bytes_per_second=progress.rate_bytes_per_second,
        eta_seconds=progress.eta_seconds,
        elapsed_seconds=progress.elapsed_seconds or 0.0,
        done=progress.stage == "done",
        updated_at=progress.updated_at.isoformat() if progress.updated_at else "",
    )


def progress_line(kind: Kind, progress: ProgressStatus) -> str:
    """'dumping   42.0%  1.2 MiB / 3.0 MiB  2/4 tables  1.0 MiB/s  ETA 00:02'."""
    return f"{progress.stage or NONE}  {describe_snapshot(snapshot(kind, progress))}"


STALE_AFTER_SECONDS = 30.0
"""The worker writes progress every 2 s: silence this long while Running is worth saying."""


def staleness(progress: ProgressStatus | None, phase: Phase | None, now: datetime) -> str | None:
    """'no progress reported for 1m5s' when a Running worker has gone quiet."""
    if progress is None or progress.updated_at is None or phase is not Phase.RUNNING:
        return None
    quiet = (now - progress.updated_at).total_seconds()
    if quiet < STALE_AFTER_SECONDS:
        return None
    return f"no progress reported for {human_duration(quiet)}"


def unattended(obj: Object, status: BackupStatus | RestoreStatus, now: datetime) -> str | None:
    """'no status after 45s: …' when no operator has picked the object up."""
    created = parse_time(obj["metadata"].get("creationTimestamp"))
    if status.phase is not None or created is None:
        return None
    waited = (now - created).total_seconds()
    if waited < STALE_AFTER_SECONDS:
        return None
    namespace = obj["metadata"].get("namespace", "")
    return (
        f"no status after {human_duration(waited)}: is the Lifeboat operator running and "
        f"watching namespace {namespace}?"
    )


def phase_line(status: BackupStatus | RestoreStatus) -> str:
    """'Pending (WaitingForBackup): backup 'x' is not Completed yet'."""
    phase = status.phase.value if status.phase else "waiting for the operator"
    reason = f" ({status.reason})" if status.reason and status.reason != phase else ""
    message = f": {status.message}" if status.message else ""
    return f"{phase}{reason}{message}"


# -- results --------------------------------------------------------------------------------


def result_line(kind: Kind, obj: Object) -> str:
    """The one line that ends a wait: what was done, or why it failed."""
    ref = reference(kind, obj)
    if kind is RESTORE:
        status = load_status(RestoreStatus, obj)
        return _restore_result(ref, status, restored_backup(obj, status))
    return _backup_result(ref, load_status(BackupStatus, obj))


def _failed(ref: str, status: BackupStatus | RestoreStatus) -> str:
    return f"{ref} failed: {status.reason or 'Failed'}: {status.message or 'no message'}"


def _in(status: BackupStatus | RestoreStatus) -> str:
    duration = took(status.start_time, status.completion_time)
    return f" in {duration}" if duration else ""


def _backup_result(ref: str, status: BackupStatus) -> str:
    if status.phase is Phase.FAILED:
        return _failed(ref, status)
    artifact = status.artifact
    if artifact is None or artifact.uri is None:
        return f"{ref} completed{_in(status)}"
    sha = f", sha256 {artifact.sha256[:12]}…" if artifact.sha256 else ""
    return (
        f"{ref} completed{_in(status)}: {artifact.uri} ({artifact.size_text or NONE}, "
        f"{count_text(artifact.tables)} tables, {count_text(artifact.rows)} rows{sha})"
    )


def restored_backup(obj: Object, status: RestoreStatus) -> str | None:
    """The Backup a Restore restores: resolved by the operator, else its spec.backupRef."""
    if status.resolved_backup:
        return status.resolved_backup
    if status.verification is not None and status.verification.backup_name:
        return status.verification.backup_name
    name = ((obj.get("spec") or {}).get("backupRef") or {}).get("name")
    return str(name) if name else None


def _restore_result(ref: str, status: RestoreStatus, backup: str | None) -> str:
    if status.phase is Phase.FAILED:
        return _failed(ref, status)
    source = f" from backup/{backup}" if backup else ""
    into = status.database or "the target"
    if status.reason == DRY_RUN_SUCCEEDED:
        plan = status.plan
        if plan is None:
            return f"{ref} dry run succeeded{_in(status)}: nothing was changed"
        changes = [f"replace {plan.replaced_count or 0}", f"drop {plan.dropped_count or 0}"]
        if plan.kept_count:
            changes.append(f"keep {plan.kept_count}")
        return (
            f"{ref} dry run succeeded{_in(status)}, nothing was changed: a restore{source} into "
            f"{into} would load {count_text(plan.tables)} tables, {count_text(plan.rows)} rows "
            f"({_bytes(plan.bytes_to_download)}) and {', '.join(changes)} object(s)"
        )
    check = status.verification
    if check is None:
        return f"{ref} completed{_in(status)}: {into} restored{source}"
    checksum = "checksum verified" if check.checksum_verified else "checksum not verified"
    return (
        f"{ref} completed{_in(status)}: {into} restored{source}; {checksum}, "
        f"{count_text(check.tables_verified)} tables / {count_text(check.rows_verified)} rows "
        "match the manifest"
    )


def count_text(value: int | None) -> str:
    return NONE if value is None else str(value)


def _bytes(value: int | None) -> str:
    return NONE if value is None else format_bytes(value)


# -- list -----------------------------------------------------------------------------------

LIST_HEADERS = ("NAME", "PHASE", "PROGRESS", "SIZE", "AGE", "REASON")


def resource_rows(
    kind: Kind, objects: Iterable[Object], backups: Sequence[Object], now: datetime
) -> list[dict[str, str]]:
    """One row per object; a Restore's size is its Backup's (looked up in `backups`)."""
    sizes = {
        (b["metadata"].get("namespace"), b["metadata"]["name"]): load_status(
            BackupStatus, b
        ).artifact
        for b in backups
    }
    rows = []
    for obj in sorted(objects, key=lambda o: (o["metadata"].get("namespace", ""), _name(o))):
        meta = obj["metadata"]
        row = {"NAMESPACE": meta.get("namespace", ""), "NAME": reference(kind, obj)}
        if kind is SCHEDULE:
            row.update(_schedule_cells(obj))
        else:
            status = load_status(status_model(kind), obj)
            size: str | None = None
            if isinstance(status, BackupStatus):
                size = status.artifact.size_text if status.artifact else None
            else:
                artifact = sizes.get((meta.get("namespace"), restored_backup(obj, status)))
                size = artifact.size_text if artifact else None
            row.update(
                {
                    "PHASE": status.phase.value if status.phase else NONE,
                    "PROGRESS": (status.progress.percent_text if status.progress else None) or NONE,
                    "SIZE": size or NONE,
                    "REASON": status.reason or NONE,
                }
            )
        row["AGE"] = age(meta.get("creationTimestamp"), now)
        rows.append(row)
    return rows


def _name(obj: Object) -> str:
    return str(obj["metadata"]["name"])


def _schedule_cells(obj: Object) -> dict[str, str]:
    status = load_status(BackupScheduleStatus, obj)
    conditions = {c.type: c for c in status.conditions or ()}
    stalled = conditions.get(ConditionType.STALLED)
    ready = conditions.get(ConditionType.READY)
    if (obj.get("spec") or {}).get("suspend"):
        phase, reason = "Suspended", ready.reason if ready else NONE
    elif stalled is not None and stalled.status == "True":
        phase, reason = "Stalled", stalled.reason
    elif ready is not None:
        phase, reason = ("Active" if ready.status == "True" else "NotReady"), ready.reason
    else:
        phase, reason = NONE, NONE
    return {"PHASE": phase, "PROGRESS": NONE, "SIZE": NONE, "REASON": reason}


def list_table(rows: Sequence[dict[str, str]], all_namespaces: bool) -> str:
    headers = (("NAMESPACE",) if all_namespaces else ()) + LIST_HEADERS
    return format_table(headers, [[row[h] for h in headers] for row in rows])
