"""`kubectl lifeboat`: argument parsing and the pure formatting (tables, results, describe,
plain progress lines), on plain dicts shaped like what the API server returns."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lifeboat.api import BackupStatus, Phase
from lifeboat.cli.kubectl import parse_args, parse_duration
from lifeboat.cli.kubectl.commands import is_location, retarget
from lifeboat.cli.kubectl.describe import describe
from lifeboat.cli.kubectl.kinds import BACKUP, RESTORE, SCHEDULE
from lifeboat.cli.kubectl.live import PLAIN_INTERVAL, PlainView
from lifeboat.cli.kubectl.render import (
    human_duration,
    list_table,
    load_status,
    resource_rows,
    result_line,
    staleness,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SHA = "ab" * 32


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def obj(name: str, status: dict[str, Any], spec: dict[str, Any] | None = None, **meta: Any) -> Any:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"uid-{name}",
            "creationTimestamp": ago(meta.pop("age", 300)),
            **meta,
        },
        "spec": spec or {},
        "status": status,
    }


COMPLETED_BACKUP = obj(
    "nightly-1",
    {
        "phase": "Completed",
        "reason": "Completed",
        "message": "backup completed and verified",
        "startTime": ago(200),
        "completionTime": ago(75),
        "jobName": "nightly-1-backup-1a2b3c4d",
        "attempts": 1,
        "progress": {
            "percent": 100.0,
            "percentText": "100%",
            "bytesDone": 3 * 1024 * 1024,
            "bytesTotal": 3 * 1024 * 1024,
            "itemsDone": 4,
            "itemsTotal": 4,
            "stage": "done",
            "updatedAt": ago(75),
        },
        "artifact": {
            "uri": "s3://backups/shop/nightly-1-1a2b3c4d/postgresql.dump.zst",
            "manifestUri": "s3://backups/shop/nightly-1-1a2b3c4d/manifest.json",
            "size": 1536,
            "sizeText": "1.5 KiB",
            "rawSize": 4096,
            "sha256": SHA,
            "compression": "zstd",
            "engine": "postgresql",
            "serverVersion": "15.8",
            "database": "shop",
            "tables": 4,
            "rows": 1730,
        },
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Completed",
                "message": "backup completed and verified",
                "lastTransitionTime": ago(75),
            }
        ],
    },
    {
        "database": {
            "engine": "postgresql",
            "host": "db.shop.svc",
            "name": "shop",
            "user": "backup",
            "passwordSecretRef": {"name": "shop-db", "key": "password"},
        },
        "storage": {"s3": {"bucket": "backups", "prefix": "shop/"}},
    },
)


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("0", 0.0)],
)
def test_durations_are_read_as_kubectl_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "m5", "1h30", "-5s", "-3"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(Exception, match="duration"):
        parse_duration(text)


def test_connection_flags_work_before_and_after_the_command() -> None:
    before = parse_args(["-n", "shop", "--context", "prod", "list"])
    after = parse_args(["list", "-n", "shop", "--context", "prod", "--kubeconfig", "/k"])
    assert (before.namespace, before.context, before.kubeconfig) == ("shop", "prod", None)
    assert (after.namespace, after.context, after.kubeconfig) == ("shop", "prod", "/k")
    both = parse_args(["-n", "ignored", "describe", "backup", "x", "-n", "shop"])
    assert both.namespace == "shop"
    kept = parse_args(["-n", "shop", "backup", "create", "x", "--from", "backup/y"])
    assert kept.namespace == "shop"


def test_backup_create_reads_its_source_reference() -> None:
    args = parse_args(["backup", "create", "now", "--from", "schedule/nightly", "--wait"])
    assert args.source == (SCHEDULE, "nightly")
    assert args.wait is True
    assert args.timeout == 0.0
    assert parse_args(["backup", "create", "n", "--from", "lbb/old"]).source == (BACKUP, "old")
    assert parse_args(["backup", "create", "n", "--from", "backupschedule/s"]).source[0] is SCHEDULE


@pytest.mark.parametrize(
    "argv",
    [
        ["backup", "create", "n", "--from", "nightly"],  # no kind
        ["backup", "create", "n", "--from", "restore/r"],  # not a source of a Backup
        ["backup", "create", "n"],  # --from is required
        ["restore", "create", "r"],  # a source is required
        ["restore", "create", "r", "--from-backup", "b", "--from-schedule", "s"],
        ["describe", "pizza", "x"],
        ["describe", "backup/x", "y"],
        ["logs", "schedule", "x"],  # a schedule has no Job
        ["list", "-A", "-n", "shop"],
        ["wait", "backup", "x", "--timeout", "soon"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_targets_are_kind_and_name_or_kind_slash_name() -> None:
    assert parse_args(["describe", "backup", "x"]).target == (BACKUP, "x")
    assert parse_args(["describe", "restore/x"]).target == (RESTORE, "x")
    assert parse_args(["describe", "lbs/nightly"]).target == (SCHEDULE, "nightly")
    assert parse_args(["wait", "backups.lifeboat.dev", "x"]).target == (BACKUP, "x")
    logs = parse_args(["logs", "backup/x", "-f", "--tail", "20", "--all-attempts"])
    assert (logs.follow, logs.tail, logs.all_attempts, logs.pod_running_timeout) == (
        True,
        20,
        True,
        60.0,
    )


def test_restore_create_options_map_to_spec_flags() -> None:
    flags = ["--dry-run", "--keep-extra-objects", "--no-owner", "--no-privileges"]
    target = ["--target-database", "copy", "--timeout", "10m"]
    args = parse_args(["restore", "create", "r", "--from-backup", "b", *flags, *target])
    assert (args.from_backup, args.from_schedule, args.target_database) == ("b", None, "copy")
    assert (args.dry_run, args.keep_extra_objects, args.no_owner, args.no_privileges) == (
        True,
        True,
        True,
        True,
    )
    assert args.timeout == 600.0


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ("s3://bucket/prefix/", True),
        ("file:///var/backups", True),
        ("./backups", True),
        ("~/backups", True),
        ("/mnt/backups", True),
        ("backups", False),
        ("schedules", False),
    ],
)
def test_list_tells_locations_from_kinds(text: str, location: bool) -> None:
    assert is_location(text) is location
    args = parse_args(["list", text])
    assert hasattr(args, "what_kind") is not location


def test_target_database_replaces_the_name_or_the_sqlite_file() -> None:
    pg = COMPLETED_BACKUP["spec"]["database"]
    assert retarget(pg, "shop_copy") == {**pg, "name": "shop_copy"}
    assert pg["name"] == "shop"  # the source is not changed
    lite = {"engine": "sqlite", "persistentVolumeClaim": "data", "path": "shop.db"}
    assert retarget(lite, "copy.db") == {**lite, "path": "copy.db"}


# -- formatting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (310, "5m10s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 20 * 60, "5h20m"),
        (30 * 3600, "30h"),
        (50 * 3600, "2d2h"),
        (10 * 86400, "10d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_ages_read_like_kubectls(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_a_completed_backups_result_names_the_artifact_and_its_numbers() -> None:
    assert result_line(BACKUP, COMPLETED_BACKUP) == (
        "backup/nightly-1 completed in 2m5s: "
        "s3://backups/shop/nightly-1-1a2b3c4d/postgresql.dump.zst "
        f"(1.5 KiB, 4 tables, 1730 rows, sha256 {SHA[:12]}…)"
    )


def test_a_failed_operation_says_its_reason_and_message() -> None:
    failed = obj(
        "bad",
        {
            "phase": "Failed",
            "reason": "AuthenticationFailed",
            "message": "user 'backup' was refused: wrong password",
        },
    )
    assert result_line(BACKUP, failed) == (
        "backup/bad failed: AuthenticationFailed: user 'backup' was refused: wrong password"
    )


def test_a_restore_result_says_what_was_proven() -> None:
    restored = obj(
        "back",
        {
            "phase": "Completed",
            "reason": "Completed",
            "database": "shop",
            "startTime": ago(30),
            "completionTime": ago(20),
            "verification": {
                "checksumVerified": True,
                "rowCountsMatched": True,
                "tablesVerified": 4,
                "rowsVerified": 1730,
                "backupName": "nightly-1",
            },
        },
        {"backupRef": {"name": "nightly-1"}},
    )
    assert result_line(RESTORE, restored) == (
        "restore/back completed in 10s: shop restored from backup/nightly-1; checksum verified, "
        "4 tables / 1730 rows match the manifest"
    )


def test_a_dry_runs_result_says_nothing_changed_and_what_would() -> None:
    rehearsal = obj(
        "dry",
        {
            "phase": "Completed",
            "reason": "DryRunSucceeded",
            "database": "shop",
            "resolvedBackup": "nightly-1",
            "plan": {
                "tables": 4,
                "rows": 1730,
                "bytesToDownload": 1536,
                "replacedCount": 5,
                "droppedCount": 1,
                "dropped": ["table scratch"],
            },
        },
        {"scheduleRef": {"name": "nightly"}, "dryRun": True},
    )
    assert result_line(RESTORE, rehearsal) == (
        "restore/dry dry run succeeded, nothing was changed: a restore from backup/nightly-1 "
        "into shop would load 4 tables, 1730 rows (1.5 KiB) and replace 5, drop 1 object(s)"
    )


def test_list_rows_show_phase_progress_size_age_and_reason() -> None:
    running = obj(
        "nightly-2",
        {
            "phase": "Running",
            "reason": "Running",
            "progress": {"percent": 42.7, "percentText": "42%", "stage": "dumping"},
        },
        age=30,
    )
    restore = obj("back", {"phase": "Pending", "reason": "WaitingForBackup"}, age=5)
    restore["spec"] = {"backupRef": {"name": "nightly-1"}}
    schedule = obj("nightly", {}, {"schedule": "0 2 * * *", "suspend": True}, age=86400 * 3)
    backups = [COMPLETED_BACKUP, running]
    rows = (
        resource_rows(SCHEDULE, [schedule], backups, NOW)
        + resource_rows(BACKUP, backups, backups, NOW)
        + resource_rows(RESTORE, [restore], backups, NOW)
    )
    assert list_table(rows, all_namespaces=False).splitlines() == [
        "NAME               PHASE       PROGRESS   SIZE      AGE   REASON",
        "schedule/nightly   Suspended   -          -         3d    -",
        "backup/nightly-1   Completed   100%       1.5 KiB   5m    Completed",
        "backup/nightly-2   Running     42%        -         30s   Running",
        "restore/back       Pending     -          1.5 KiB   5s    WaitingForBackup",
    ]
    assert (
        list_table(rows[:1], all_namespaces=True)
        .splitlines()[1]
        .startswith("shop        schedule/nightly")
    )


def test_a_status_from_a_newer_operator_keeps_what_this_version_understands() -> None:
    newer = obj("x", {"phase": "Archived", "reason": "Archived", "jobName": "x-backup-1"})
    status = load_status(BackupStatus, newer)
    assert status.phase is None
    assert (status.reason, status.job_name) == ("Archived", "x-backup-1")


def test_describe_tells_the_whole_story_without_secrets() -> None:
    events: list[dict[str, Any]] = [
        {
            "type": "Normal",
            "reason": "JobCreated",
            "message": "created Job nightly-1-backup-1a2b3c4d",
            "lastTimestamp": ago(200),
            "source": {"component": "kopf"},
        },
        {
            "type": "Normal",
            "reason": "Completed",
            "message": "Completed: backup completed\nand verified",
            "firstTimestamp": ago(100),
            "lastTimestamp": ago(75),
            "count": 2,
            "source": {"component": "kopf"},
        },
    ]
    text = describe(BACKUP, COMPLETED_BACKUP, events, NOW)
    lines = text.splitlines()
    assert lines[:5] == [
        "Name:             nightly-1",
        "Namespace:        shop",
        "Kind:             Backup",
        "Created:          2026-03-01T11:55:00Z (5m ago)",
        "Phase:            Completed",
    ]
    assert "Database:         postgresql shop at db.shop.svc as backup" in lines
    assert "Storage:          s3://backups/shop/" in lines
    assert "Job:              nightly-1-backup-1a2b3c4d (attempts: 1)" in lines
    assert "Finished:         2026-03-01T11:58:45Z (75s ago), took 2m5s" in lines
    assert "  SHA-256:        " + SHA in lines
    assert "  Size:           1.5 KiB (raw 4.0 KiB), zstd" in lines
    assert "  Tables / rows:  4 / 1730" in lines
    progress = next(line for line in lines if line.startswith("Progress:"))
    assert progress.split()[1:4] == ["done", "100.0%", "3.0"]
    tail = text.split("Events:\n")[1].splitlines()
    assert tail[0].split() == ["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]
    assert tail[1].split()[:4] == ["Normal", "JobCreated", "3m20s", "kopf"]
    assert "75s (x2 over 100s)" in tail[2]
    assert tail[2].endswith("Completed: backup completed and verified")
    assert "password" not in text.replace("passwordSecretRef", "")


def test_describe_a_dry_run_shows_the_plan() -> None:
    names = [f"table t{i}" for i in range(25)]
    rehearsal = obj(
        "dry",
        {
            "phase": "Completed",
            "reason": "DryRunSucceeded",
            "plan": {
                "targetExists": True,
                "replacedCount": 130,
                "replaced": names,
                "droppedCount": 1,
                "dropped": ["table scratch"],
                "checks": [{"name": "connect", "detail": "PostgreSQL 15.8"}],
            },
        },
        {"backupRef": {"name": "nightly-1"}, "dryRun": True},
    )
    lines = describe(RESTORE, rehearsal, [], NOW).splitlines()
    assert "Plan (dry run: nothing was changed):" in lines
    assert "  Would replace:  130 object(s)" in lines
    assert "    … and 110 more" in lines
    assert "  Would drop:     1 object(s)" in lines
    assert "    - table scratch" in lines
    assert "    ✓ connect: PostgreSQL 15.8" in lines
    assert "Options:          dryRun" in lines
    assert lines[-1] == "  <none>"


def test_describe_a_restore_shows_its_notes_after_the_verification() -> None:
    leftover = (
        "removed the staged copy an interrupted restore left: /data/.shop.db.lifeboat-restore-x1"
    )
    restored = obj(
        "back",
        {
            "phase": "Completed",
            "reason": "Completed",
            "verification": {"checksumVerified": True, "rowCountsMatched": True},
            "notes": [leftover, "created database shop"],
        },
        {"backupRef": {"name": "nightly-1"}},
    )
    lines = describe(RESTORE, restored, [], NOW).splitlines()
    notes = lines.index("Notes:")
    assert lines.index("Verification:") < notes
    assert lines[notes + 1 : notes + 3] == [f"  - {leftover}", "  - created database shop"]

    del restored["status"]["notes"]
    assert "Notes:" not in describe(RESTORE, restored, [], NOW).splitlines()


def test_a_silent_running_worker_is_called_out_from_its_updated_at() -> None:
    status = load_status(
        BackupStatus,
        obj("x", {"phase": "Running", "progress": {"percent": 10.0, "updatedAt": ago(65)}}),
    )
    assert staleness(status.progress, status.phase, NOW) == "no progress reported for 65s"
    assert staleness(status.progress, Phase.COMPLETED, NOW) is None
    fresh = status.progress.model_copy(update={"updated_at": NOW})  # type: ignore[union-attr]
    assert staleness(fresh, status.phase, NOW) is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def running(percent: float, stage: str = "dumping", **status: Any) -> Any:
    progress = {"percent": percent, "stage": stage, "bytesDone": int(percent * 1024)}
    return obj("x", {"phase": "Running", "reason": "Running", "progress": progress, **status})


def test_plain_lines_follow_phase_and_stage_and_throttle_progress() -> None:
    out, clock = io.StringIO(), Clock()
    view = PlainView(BACKUP, out, clock)
    view.update(obj("x", {}))
    view.update(obj("x", {"phase": "Pending", "reason": "JobPending", "message": "waiting"}))
    view.update(running(1.0))
    clock.now += 1
    view.update(running(2.0))  # same stage, too soon: not printed
    clock.now += PLAIN_INTERVAL
    view.update(running(30.0))
    view.update(running(31.0, stage="uploading"))  # a new stage: printed at once
    done = running(100.0, stage="done")
    done["status"].update(phase="Completed", reason="Completed")
    view.update(done)
    view.close()
    lines = out.getvalue().splitlines()
    assert [line.split(":")[1].split()[0] for line in lines] == [
        "waiting",
        "Pending",
        "Running",
        "dumping",
        "dumping",
        "uploading",
        "done",
    ]
    assert "1.0%" in lines[3]
    assert "30.0%" in lines[4]
    assert not any("2.0%" in line for line in lines)
    assert "100.0%" in lines[-1]


def test_an_object_no_operator_picked_up_says_so_after_a_while() -> None:
    fresh = obj("new", {}, {"backupRef": {"name": "b"}}, age=5)
    ignored = obj("old", {}, {"backupRef": {"name": "b"}}, age=45)
    assert "Warning" not in describe(RESTORE, fresh, [], NOW)
    assert (
        "Warning:          no status after 45s: is the Lifeboat operator running and watching "
        "namespace shop?"
    ) in describe(RESTORE, ignored, [], NOW).splitlines()
