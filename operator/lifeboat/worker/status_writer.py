"""The worker's side of a resource's status: measured progress and the result, nothing else.

Inside a Job the worker writes `status.progress` (at most one write per `min_interval` seconds,
`PROGRESS_WRITE_INTERVAL` by default, per object, and always the final one) and, at the end, the
artifact (Backup) or the verification and notes (Restore). Phase and conditions are the
controller's: one writer per field. A flaky API never fails a backup: a progress write that
fails (throttled, a 5xx, a Conflict, a dropped connection) is logged and skipped; only the final
result is retried, because without it the controller cannot call the work Completed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from lifeboat.api import (
    BACKUP_PLURAL,
    DRILL_PLURAL,
    RESTORE_PLURAL,
    ArtifactEncryption,
    BackupArtifact,
    Compression,
    DrillReport,
    Engine,
    ProgressStatus,
    RestorePlanCheck,
    RestorePlanStatus,
    RestoreStatus,
    RestoreVerification,
    StoredServerSideEncryption,
)
from lifeboat.api.restore import NOTE_MAX_LENGTH, NOTES_LIMIT, PLAN_LIST_LIMIT
from lifeboat.contract import ENV_STATUS_TARGET, ExitCode
from lifeboat.kube.client import make_api_client
from lifeboat.kube.objects import KubeError, patch_status
from lifeboat.kube.retry import DEFAULT_POLICY, RetryPolicy
from lifeboat.worker.errors import LifeboatError, UsageError
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.pipeline import RestoreReport
from lifeboat.worker.progress import ProgressSnapshot

log = logging.getLogger(__name__)
PLURALS = (BACKUP_PLURAL, RESTORE_PLURAL, DRILL_PLURAL)
PROGRESS_WRITE_INTERVAL = 3.0
"""Seconds between progress writes of one worker. With the few writes around them (the
operator's phase changes, the worker's final progress and result) a Backup or Restore gets fewer
than 0.5 status writes per second while its Job runs (docs/benchmarks.md measures it for 1,000 at
once); `kubectl get -w` still sees progress move every few seconds."""
MAX_MISMATCHES = 20  # status must stay small; the message has the rest
PROGRESS_POLICY = RetryPolicy(attempts=1)
"""A progress write is tried once: the next one is a few seconds away, and the work must not
wait on the API server for it."""
FINAL_WRITE_ATTEMPTS = 5
"""Rounds of a final write (each one retried by `DEFAULT_POLICY` within): about 15 s of a
failing API server before the worker gives up with StatusWriteFailed."""
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""In a Pod: its own namespace, written by the kubelet; the Job's spec cannot change it."""


class StatusWriteFailed(LifeboatError):
    reason = "StatusWriteFailed"
    exit_code = ExitCode.STATUS_WRITE


class StatusTargetRefused(UsageError):
    """--report-status names an object this worker may not write: another object than its Job
    was made for, or one in another namespace. Refused before any work starts."""

    reason = "StatusTargetRefused"


def parse_status_target(value: str) -> tuple[str, str, str]:
    """`backups/NAMESPACE/NAME` or `restores/NAMESPACE/NAME`."""
    parts = value.split("/")
    if len(parts) != 3 or parts[0] not in PLURALS or not all(parts):
        raise UsageError(
            f"--report-status: {value!r} should be backups/NAMESPACE/NAME "
            "or restores/NAMESPACE/NAME"
        )
    return parts[0], parts[1], parts[2]


def check_status_target(
    value: str,
    environ: Mapping[str, str] | None = None,
    namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE,
) -> tuple[str, str, str]:
    """`parse_status_target`, then the worker's own check that it writes only its own object:
    the one its Job names in LIFEBOAT_STATUS_TARGET (set by the operator on every backup and
    restore Job), in the namespace its Pod runs in (the service account's namespace file).
    RBAC cannot tell one Backup from another in a namespace; this does. Outside a Pod (a person
    running `lifeboat backup --report-status ...`) neither is there, and nothing is refused."""
    plural, namespace, name = parse_status_target(value)
    env = os.environ if environ is None else environ
    expected = env.get(ENV_STATUS_TARGET)
    if expected is not None and expected != value:
        raise StatusTargetRefused(
            f"--report-status {value} is not the object this Job was made for "
            f"({ENV_STATUS_TARGET}={expected}): a worker writes the status of its own Backup or "
            "Restore only"
        )
    try:
        own = namespace_file.read_text(encoding="utf-8").strip()
    except OSError:
        own = ""
    if own and own != namespace:
        raise StatusTargetRefused(
            f"--report-status {value}: this Pod runs in namespace {own}, and a worker writes the "
            "status of objects of its own namespace only"
        )
    return plural, namespace, name


def progress_status(snapshot: ProgressSnapshot) -> ProgressStatus:
    return ProgressStatus(
        percent=snapshot.percent,
        bytes_done=snapshot.bytes_done,
        bytes_total=snapshot.bytes_total,
        items_done=snapshot.items_done,
        items_total=snapshot.items_total,
        rate_bytes_per_second=snapshot.rate_bytes_per_second,
        eta_seconds=snapshot.eta_seconds,
        elapsed_seconds=snapshot.elapsed_seconds,
        stage=snapshot.stage,
        current_item=snapshot.current_item,
        updated_at=datetime.fromisoformat(snapshot.updated_at.replace("Z", "+00:00")),
    )


def bounded_notes(notes: Sequence[str]) -> list[str]:
    """The notes as status.notes holds them: at most `NOTES_LIMIT`, each cut to
    `NOTE_MAX_LENGTH` characters; when there are more, the last one says how many more the
    worker's log has (it prints every note)."""
    lines = [
        note if len(note) <= NOTE_MAX_LENGTH else note[: NOTE_MAX_LENGTH - 1] + "…"
        for note in notes
    ]
    if len(lines) <= NOTES_LIMIT:
        return lines
    more = len(lines) - (NOTES_LIMIT - 1)
    return [*lines[: NOTES_LIMIT - 1], f"… and {more} more notes in the Job's log"]


class StatusWriter:
    """A progress `Reporter` that patches the resource's status subresource."""

    def __init__(
        self,
        target: str,
        *,
        kubeconfig: str | None = None,
        min_interval: float = PROGRESS_WRITE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        api: Any = None,
    ) -> None:
        self.plural, self.namespace, self.name = check_status_target(target)
        self._api = api if api is not None else make_api_client(kubeconfig)
        self._min_interval = min_interval
        self._clock = clock
        self._last_write = float("-inf")
        self.writes = 0

    def report(self, snapshot: ProgressSnapshot) -> None:
        now = self._clock()
        if not snapshot.done and now - self._last_write < self._min_interval:
            return
        self._last_write = now
        body = {"progress": progress_status(snapshot).to_api_dict()}
        if snapshot.done:
            self._write_with_retries(body)
            return
        try:
            self._patch(body, PROGRESS_POLICY)
        except KubeError as exc:
            log.warning("could not write progress to %s: %s", self._where(), exc)

    def close(self) -> None:
        return None

    def record_backup(self, manifest: Manifest, artifact_uri: str, manifest_uri: str) -> None:
        encrypted, at_rest = manifest.artifact.encryption, manifest.artifact.server_side_encryption
        artifact = BackupArtifact(
            uri=artifact_uri,
            manifest_uri=manifest_uri,
            size=manifest.artifact.size,
            raw_size=manifest.artifact.raw_size,
            sha256=manifest.artifact.sha256,
            compression=Compression(manifest.artifact.compression),
            encryption=None
            if encrypted is None
            else ArtifactEncryption(algorithm=encrypted.algorithm, key_id=encrypted.key_id),
            server_side_encryption=None
            if at_rest is None
            else StoredServerSideEncryption(type=at_rest.type, kms_key_id=at_rest.kms_key_id),
            engine=Engine(manifest.engine),
            server_version=manifest.server_version,
            database=manifest.database,
            tables=len(manifest.tables),
            rows=sum(t.rows for t in manifest.tables),
        )
        self._write_with_retries({"artifact": artifact.to_api_dict()})

    def record_restore(
        self,
        manifest: Manifest,
        artifact_uri: str,
        *,
        checksum_verified: bool,
        row_counts: dict[str, int],
        notes: Sequence[str] = (),
    ) -> None:
        """Record a restore that ended proven: every table's rows matched the manifest (a
        mismatch fails the restore and reaches status.message instead), and the engine's notes
        (status.notes) in the same write, so they are there when the Restore is Completed."""
        verification = RestoreVerification(
            checksum_verified=checksum_verified,
            row_counts_matched=True,
            tables_verified=len(row_counts),
            rows_verified=sum(row_counts.values()),
            artifact_uri=artifact_uri,
            sha256=manifest.artifact.sha256,
        )
        result = RestoreStatus(verification=verification, notes=bounded_notes(notes) or None)
        self._write_with_retries(result.to_api_dict())

    def record_drill(self, report: DrillReport) -> None:
        """Record a drill's report, passed or failed (the controller decides the phase)."""
        self._write_with_retries({"report": report.to_api_dict()})

    def record_failed_verification(self, mismatches: list[str]) -> None:
        """Record what did not match when a restore was refused after its checksum passed (the
        target was rolled back; status.message carries the whole error)."""
        verification = RestoreVerification(
            checksum_verified=True,
            row_counts_matched=False,
            mismatches=mismatches[:MAX_MISMATCHES],
        )
        self._write_with_retries({"verification": verification.to_api_dict()})

    def record_plan(self, report: RestoreReport, artifact_uri: str) -> None:
        """Record a dry run's plan: what a restore would do and every check that passed."""
        plan = report.plan
        manifest = report.manifest
        status = RestorePlanStatus(
            target_exists=plan.database_exists,
            server_version=plan.server_version,
            backup_taken_at=manifest.completed_at,
            bytes_to_download=manifest.artifact.size,
            checksum_verified=report.checksum_verified,
            tables=len(manifest.tables),
            rows=report.rows_verified,
            replaced_count=len(plan.replaced),
            replaced=plan.replaced[:PLAN_LIST_LIMIT],
            dropped_count=len(plan.dropped),
            dropped=plan.dropped[:PLAN_LIST_LIMIT],
            kept_count=len(plan.kept),
            kept=plan.kept[:PLAN_LIST_LIMIT],
            checks=[
                RestorePlanCheck(name=c.name[:63], detail=c.detail[:1024]) for c in plan.checks
            ],
            notes=[note[:1024] for note in plan.notes],
        )
        verification = RestoreVerification(
            checksum_verified=report.checksum_verified,
            artifact_uri=artifact_uri,
            sha256=manifest.artifact.sha256,
        )
        self._write_with_retries(
            {"plan": status.to_api_dict(), "verification": verification.to_api_dict()}
        )

    def _patch(self, body: dict[str, Any], policy: RetryPolicy = DEFAULT_POLICY) -> None:
        written = patch_status(
            self._api, self.plural, self.namespace, self.name, body, policy=policy
        )
        if written is None:
            raise StatusWriteFailed(f"{self._where()} no longer exists")
        self.writes += 1

    def _write_with_retries(
        self, body: dict[str, Any], attempts: int = FINAL_WRITE_ATTEMPTS
    ) -> None:
        delay = 0.5
        for attempt in range(1, attempts + 1):
            try:
                self._patch(body)
                return
            except KubeError as exc:
                if attempt == attempts:
                    raise StatusWriteFailed(f"could not write {self._where()}: {exc}") from None
                log.warning("retrying status write to %s: %s", self._where(), exc)
                time.sleep(delay)  # backoff between API retries, not a progress stand-in
                delay *= 2

    def _where(self) -> str:
        return f"{self.plural}/{self.namespace}/{self.name}"
