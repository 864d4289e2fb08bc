"""A restore drill: prove a backup restores, in a throwaway database that is always dropped.

In order, holding the throwaway name's lock all along (`engines.throwaway`):

1. drop what earlier drills of the same database left (a killed worker's throwaway database,
   found by the reserved name, whose lock nobody holds any more);
2. restore with the ordinary restore (`pipeline.run_restore`) into the reserved name, which does
   not exist yet, so the engine creates it: the same checksum pass, the same row counts against
   the manifest, the same atomic load as a real restore; its duration is the evidence of how long
   a recovery takes;
3. run the user's checks, read-only;
4. drop the throwaway database, whatever happened before;
5. write the report: into the drill's status and, as JSON, next to the backup in storage
   (`drills/<time>-<id>.json`), for a drill that passed and one that failed alike.

The source database is never named: the URL the worker gets names the throwaway database, and
`throwaway.reserved_name` refuses any name that is not reserved.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from lifeboat import __version__
from lifeboat.api import DrillCheckResult, DrillReport
from lifeboat.contract import DRILL_PASSED, parse_drill_database_name
from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.encryption import EncryptionKey
from lifeboat.worker.engines import open_engine
from lifeboat.worker.engines.base import RestoreOptions
from lifeboat.worker.engines.throwaway import CheckOutcome, CheckSpec, Throwaway, open_throwaway
from lifeboat.worker.errors import (
    DrillCheckFailed,
    DrillCleanupFailed,
    LifeboatError,
    VerificationFailed,
)
from lifeboat.worker.manifest import MANIFEST_NAME, Manifest
from lifeboat.worker.pipeline import (
    DRILLS_DIRECTORY,
    RestoreReport,
    load_manifest,
    run_restore,
)
from lifeboat.worker.progress import Progress
from lifeboat.worker.storage.base import Storage

REPORT_KIND: Final = "LifeboatDrillReport"
MAX_MISMATCHES: Final = 20


@dataclass(frozen=True)
class DrillRequest:
    """What to drill and how, as the command line says it."""

    checks: Sequence[CheckSpec] = ()
    restore: RestoreOptions = field(default_factory=RestoreOptions)
    verify_first: bool = True
    requested_by: str | None = None
    encryption_key: EncryptionKey | None = field(default=None, repr=False)
    """The key of an encrypted backup."""


@dataclass
class DrillOutcome:
    """How a drill ended: the report, and the error that failed it (None: it passed)."""

    report: DrillReport
    error: LifeboatError | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def run_drill(
    storage: Storage,
    url: DatabaseURL,
    progress: Progress,
    request: DrillRequest = DrillRequest(),
    *,
    clock: Callable[[], float] = time.monotonic,
    throwaway: Throwaway | None = None,
) -> DrillOutcome:
    """Drill the backup at `storage` into the throwaway database `url` names; report either
    way. Raises only for what prevents any report (a URL that does not name a reserved
    database); every other failure is in the outcome, after the throwaway database is gone."""
    throwaway = throwaway or open_throwaway(url)  # refuses a name that is not reserved
    started_at, started = _now(), clock()
    restore_seconds: float | None = None
    checks_seconds: float | None = None
    outcomes: list[CheckOutcome] = []
    error: LifeboatError | None = None
    restored: RestoreReport | None = None
    manifest: Manifest | None = None
    cleaned_up = False
    notes: list[str] = []
    leftovers: list[str] = []
    held = False
    try:
        with throwaway.hold():
            held = True
            try:
                progress.set_stage("removing leftovers")
                found = throwaway.remove_leftovers()
                leftovers, notes = found.removed, list(found.notes)
                manifest = load_manifest(storage)
                restore_started = clock()
                restored = run_restore(
                    storage,
                    open_engine(url),
                    progress,
                    request.restore,
                    verify_first=request.verify_first,
                    encryption_key=request.encryption_key,
                )
                restore_seconds = clock() - restore_started
                notes += restored.plan.notes
                progress.set_stage("checking")
                checks_started = clock()
                outcomes = throwaway.run_checks(request.checks, manifest.started_at)
                checks_seconds = clock() - checks_started
                failed = [o for o in outcomes if not o.passed]
                if failed:
                    error = DrillCheckFailed(
                        "; ".join(o.message or o.name for o in failed)
                        + f" ({len(outcomes) - len(failed)} of {len(outcomes)} checks passed)"
                    )
            except LifeboatError as exc:
                error = exc
            finally:
                progress.set_stage("dropping the throwaway database")
                try:
                    throwaway.drop()
                    cleaned_up = not throwaway.exists()
                except LifeboatError as exc:
                    notes.append(f"dropping {throwaway.name} failed: {exc}")
                if not cleaned_up and error is None:
                    error = DrillCleanupFailed(
                        f"the drill passed but its throwaway database {throwaway.name} on "
                        f"{throwaway.where} could not be dropped; the next drill drops it"
                    )
    except LifeboatError as exc:  # taking (or letting go of) the lock
        error = error or exc
        cleaned_up = cleaned_up or not held  # not locked: nothing was created
    if manifest is None:
        with contextlib.suppress(LifeboatError):
            manifest = load_manifest(storage)
    report = _report(
        throwaway=throwaway,
        storage=storage,
        request=request,
        manifest=manifest,
        restored=restored,
        outcomes=outcomes,
        error=error,
        cleaned_up=cleaned_up,
        leftovers=leftovers,
        notes=notes,
        started_at=started_at,
        total_seconds=clock() - started,
        restore_seconds=restore_seconds,
        checks_seconds=checks_seconds,
    )
    if error is None:
        progress.finish()
    else:
        progress.set_stage("failed")
    return DrillOutcome(report, error)


def _report(
    *,
    throwaway: Throwaway,
    storage: Storage,
    request: DrillRequest,
    manifest: Manifest | None,
    restored: RestoreReport | None,
    outcomes: list[CheckOutcome],
    error: LifeboatError | None,
    cleaned_up: bool,
    leftovers: list[str],
    notes: list[str],
    started_at: datetime,
    total_seconds: float,
    restore_seconds: float | None = None,
    checks_seconds: float | None = None,
) -> DrillReport:
    failed = next((o.name for o in outcomes if not o.passed), None)
    mismatches = error.mismatches[:MAX_MISMATCHES] if isinstance(error, VerificationFailed) else []
    if error is None:
        rows = restored.rows_verified if restored else 0
        message = (
            f"restored in {restore_seconds or 0:.1f}s: checksum verified, "
            f"{len(restored.row_counts) if restored else 0} tables / {rows} rows match the "
            f"manifest, {len(outcomes)} checks passed; {throwaway.name} dropped"
        )
    else:
        message = str(error)
    return DrillReport(
        passed=error is None,
        reason=DRILL_PASSED if error is None else error.reason,
        message=message[:32768],
        started_at=started_at,
        finished_at=_now(),
        restore_seconds=restore_seconds,
        checks_seconds=checks_seconds,
        total_seconds=total_seconds,
        checksum_verified=restored.checksum_verified if restored else None,
        row_counts_matched=True if restored else (False if mismatches else None),
        tables_verified=len(restored.row_counts) if restored else None,
        rows_verified=restored.rows_verified if restored else None,
        mismatches=[m[:1024] for m in mismatches] or None,
        checks=[
            DrillCheckResult(
                name=o.name,
                passed=o.passed,
                expected=o.expected[:1024],
                actual=o.actual,
                message=(o.message or "")[:2048] or None,
            )
            for o in outcomes
        ]
        or None,
        failed_check=failed,
        drill_database=throwaway.name,
        server=throwaway.server,
        server_version=restored.plan.server_version if restored else None,
        login=throwaway.login,
        cleaned_up=cleaned_up,
        leftovers_removed=leftovers or None,
        engine=manifest.engine if manifest else None,
        source_database=manifest.database if manifest else None,
        backup_uri=storage.uri(),
        backup_sha256=manifest.artifact.sha256 if manifest else None,
        backup_taken_at=manifest.started_at if manifest else None,
        backup_completed_at=manifest.completed_at if manifest else None,
        requested_by=request.requested_by,
        notes=[n[:1024] for n in notes] or None,
    )


def report_key(report: DrillReport) -> str:
    """`<finished, UTC>-<drill id>.json`: in order of time, one per attempt."""
    parsed = parse_drill_database_name(report.drill_database)
    drill = parsed[1] if parsed else "drill"
    return f"{report.finished_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{drill}.json"


def store_report(storage: Storage, report: DrillReport) -> DrillReport:
    """Write the report next to the backup (`drills/<key>`); returns it with `report_uri`."""
    drills = storage.at(DRILLS_DIRECTORY)
    key = report_key(report)
    stored = report.model_copy(update={"report_uri": drills.uri(key)})
    document = {
        "kind": REPORT_KIND,
        "version": 1,
        "lifeboatVersion": __version__,
        "manifest": storage.uri(MANIFEST_NAME),
        **stored.to_api_dict(),
    }
    drills.put_bytes(key, json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n")
    return stored
