"""Restore drills without a server: the API (schema and models agree), the reserved names, the
drill's Job (it names only the throwaway database, never a secret), the schedule's decisions
(which Backup is due, how Backups are numbered, what Verified says), the checks' judgement and
the records the operator keeps."""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lifeboat.api import (
    DRILL_PLURAL,
    SCHEDULE_PLURAL,
    Backup,
    BackupSchedule,
    ConditionStatus,
    DrillReport,
    Phase,
    RestoreDrill,
)
from lifeboat.api.common import describe_validation_error
from lifeboat.builders.backups import SCHEDULE_LABEL, SLOT_ANNOTATION
from lifeboat.builders.drills import (
    BACKUP_ANNOTATION,
    DRILL_BACKOFF_LIMIT,
    DRILL_SCRATCH,
    backup_drill_name,
    build_drill_job,
    build_scheduled_drill,
    drill_job_name,
    slot_drill_name,
)
from lifeboat.builders.jobs import JobDefaults
from lifeboat.cli import build_parser
from lifeboat.contract import (
    DRILL_MARKER,
    ENV_DB_PASSWORD,
    ENV_STATUS_TARGET,
    MAX_DRILL_DATABASE_BYTES,
    drill_database_name,
    drill_id,
    drill_prefix,
    parse_drill_database_name,
)
from lifeboat.controller.drill_decisions import (
    DRILL_FAILED,
    NO_DRILL_YET,
    DrillableBackup,
    drilled_backups,
    due_every,
    sequence_numbers,
    verification,
)
from lifeboat.controller.drills import drill_record, passed_verdict, record_drill
from lifeboat.controller.jobs import Target
from lifeboat.controller.transitions import Verdict
from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.drill import report_key
from lifeboat.worker.engines.throwaway import (
    CheckSpec,
    judge,
    render_value,
    reserved_name,
    with_backup_time,
)
from lifeboat.worker.errors import UsageError
from lifeboat.worker.pipeline import delete_backup
from lifeboat.worker.status_writer import parse_status_target
from lifeboat.worker.storage.local import LocalStorage
from tests.support.kubernetes_schemas import KUBERNETES_VERSIONS, kubernetes_errors
from tests.unit.test_builders import BACKUP
from tests.unit.test_crds import api_server_errors

UID = "6b1c3a52-5d7e-4f7e-9d61-0b8a4d0f2e11"
DRILL: dict[str, Any] = {
    "apiVersion": "lifeboat.dev/v1alpha1",
    "kind": "RestoreDrill",
    "metadata": {"name": "shop-drill", "namespace": "shop", "uid": UID},
    "spec": {
        "backupRef": {"name": "shop-db"},
        "checks": [
            {
                "name": "fresh-orders",
                "query": "SELECT max(created_at) > TIMESTAMPTZ ${BACKUP_TIME} - interval '1 day'"
                " FROM shop.orders WHERE note LIKE '%x%'",
                "expect": "true",
            }
        ],
    },
}


def drill_doc(**spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(DRILL)
    body["spec"].update(spec)
    return {k: v for k, v in body.items()}


def completed_backup(**database: Any) -> Backup:
    body = copy.deepcopy(BACKUP)
    body["spec"]["database"].update(database)
    body["status"] = {"phase": "Completed", "completionTime": "2026-12-03T02:04:00Z"}
    return Backup.model_validate(body)


# -- the API ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"backupRef": None, "scheduleRef": None}, "set exactly one of backupRef"),
        ({"scheduleRef": {"name": "nightly"}}, "set exactly one of backupRef"),
        (
            {"target": {"passwordSecretRef": {"name": "drill"}}},
            "passwordSecretRef needs user",
        ),
    ],
    ids=["no-backup", "two-backups", "password-without-user"],
)
def test_bad_drills_are_refused_by_the_api_server_and_the_models_alike(
    spec: dict[str, Any], message: str
) -> None:
    doc = drill_doc(**spec)
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    assert any(message in error for error in api_server_errors(DRILL_PLURAL, doc))
    with pytest.raises(ValidationError) as raised:
        RestoreDrill.model_validate(doc)
    assert message in describe_validation_error(raised.value)


def test_a_good_drill_is_accepted_and_its_spec_is_immutable() -> None:
    doc = drill_doc(
        target={"host": "drills.shop.svc", "user": "lifeboat_drill",
                "passwordSecretRef": {"name": "drill"}},
        noOwner=True,
    )  # fmt: skip
    assert api_server_errors(DRILL_PLURAL, doc) == []
    RestoreDrill.model_validate(doc)
    edited = copy.deepcopy(doc)
    edited["spec"]["noOwner"] = False
    assert any(
        "cannot change once created" in e for e in api_server_errors(DRILL_PLURAL, edited, doc)
    )


def test_a_check_needs_a_short_lowercase_name() -> None:
    doc = drill_doc(checks=[{"name": "Fresh Orders", "query": "SELECT 1", "expect": "1"}])
    assert api_server_errors(DRILL_PLURAL, doc) != []
    with pytest.raises(ValidationError, match="a short name"):
        RestoreDrill.model_validate(doc)


def schedule_doc(drill: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupSchedule",
        "metadata": {"name": "nightly", "namespace": "shop", "uid": "sched-uid"},
        "spec": {
            "schedule": "0 2 * * *",
            "template": {k: v for k, v in BACKUP["spec"].items()},
            "drill": drill,
        },
    }


@pytest.mark.parametrize(
    ("drill", "accepted"),
    [
        ({"every": 2}, True),
        ({"schedule": "0 4 * * 0"}, True),
        ({"every": 2, "schedule": "0 4 * * 0"}, False),
        ({"checks": []}, False),
        ({"every": 0}, False),
    ],
    ids=["every", "cron", "both", "neither", "every-zero"],
)
def test_a_schedules_drill_is_every_nth_backup_or_a_cron_of_its_own(
    drill: dict[str, Any], accepted: bool
) -> None:
    doc = schedule_doc(drill)
    errors = api_server_errors(SCHEDULE_PLURAL, doc)
    assert (errors == []) is accepted, errors
    if accepted:
        BackupSchedule.model_validate(doc)
    else:
        with pytest.raises(ValidationError):
            BackupSchedule.model_validate(doc)


# -- reserved names -----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["shop", "x" * 200, "żółć" * 20, "a_b%c"])
def test_a_reserved_name_fits_postgresql_and_parses_back_to_its_source(source: str) -> None:
    name = drill_database_name(source, drill_id(UID))
    assert len(name.encode()) <= MAX_DRILL_DATABASE_BYTES
    assert name.startswith(drill_prefix(source))
    assert parse_drill_database_name(name) == (drill_prefix(source), drill_id(UID))
    assert drill_id(UID) == drill_id(UID) != drill_id(UID + "x")


@pytest.mark.parametrize(
    "name",
    ["shop", f"shop{DRILL_MARKER}", f"shop{DRILL_MARKER}1234567", f"shop{DRILL_MARKER}ABCDEF12",
     f"{DRILL_MARKER}12345678"],
)  # fmt: skip
def test_any_other_name_is_refused_by_the_worker(name: str) -> None:
    assert parse_drill_database_name(name) is None
    with pytest.raises(UsageError, match="a drill only creates and drops databases named"):
        reserved_name(parse_database_url(f"postgresql://app@db:5432/{name}", {}))


# -- the drill's Job ------------------------------------------------------------------------------


def container(job: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return result


def env(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job)["env"]}


def drill_job(doc: dict[str, Any], source: Backup | None = None) -> dict[str, Any]:
    source = source or completed_backup()
    storage = source.spec.storage.backend()
    assert storage is not None
    return build_drill_job(
        RestoreDrill.model_validate(doc),
        source,
        storage=storage,
        defaults=JobDefaults(),
        requested_by="RestoreDrill shop/shop-drill",
    )


def test_the_drill_job_names_only_the_throwaway_database_and_no_secret() -> None:
    job = drill_job(DRILL)
    args = container(job)["args"]
    reserved = drill_database_name("shop", drill_id(UID))
    assert args[:3] == [
        "drill",
        "s3://backups/shop/shop/shop-db-0f1e2d3c/",
        f"postgresql://backup@postgres.shop.svc:5432/{reserved}",
    ]
    assert not any(arg.endswith("/shop") for arg in args), "the source database is never named"
    assert json.loads(args[args.index("--checks") + 1]) == DRILL["spec"]["checks"]
    assert args[args.index("--report-status") + 1] == f"{DRILL_PLURAL}/shop/shop-drill"
    assert env(job)[ENV_STATUS_TARGET] == f"{DRILL_PLURAL}/shop/shop-drill"
    assert env(job)[ENV_DB_PASSWORD] == {"secretKeyRef": {"name": "shop-db", "key": "password"}}
    assert job["metadata"]["name"] == drill_job_name(RestoreDrill.model_validate(DRILL))
    assert job["metadata"]["ownerReferences"][0]["kind"] == "RestoreDrill"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "drill"
    assert job["spec"]["backoffLimit"] == DRILL_BACKOFF_LIMIT
    parsed = build_parser().parse_args(args)  # the worker accepts what the operator writes
    assert [c.name for c in parsed.checks] == ["fresh-orders"]
    assert (parsed.no_owner, parsed.verify_first) == (False, True)
    for version in KUBERNETES_VERSIONS:
        assert kubernetes_errors(job, version) == []


def test_a_drill_target_moves_the_server_and_the_login() -> None:
    source = completed_backup(port=6432)
    elsewhere = drill_job(
        drill_doc(target={"host": "drills.svc", "user": "lifeboat_drill",
                          "passwordSecretRef": {"name": "drill", "key": "pw"}}, noOwner=True),
        source,
    )  # fmt: skip
    args = container(elsewhere)["args"]
    assert args[2].startswith("postgresql://lifeboat_drill@drills.svc:5432/shop__lifeboat_drill_")
    assert env(elsewhere)[ENV_DB_PASSWORD] == {"secretKeyRef": {"name": "drill", "key": "pw"}}
    assert "--no-owner" in args
    same_server = drill_job(drill_doc(target={"user": "lifeboat_drill"}), source)
    assert container(same_server)["args"][2].startswith(
        "postgresql://lifeboat_drill@postgres.shop.svc:6432/shop__lifeboat_drill_"
    )
    assert ENV_DB_PASSWORD not in env(same_server), "another login never gets the source's password"


def test_a_sqlite_drill_uses_the_jobs_scratch_volume_and_never_the_applications_claim() -> None:
    body = copy.deepcopy(BACKUP)
    body["spec"]["database"] = {
        "engine": "sqlite", "persistentVolumeClaim": "app-data", "path": "data/shop.db",
    }  # fmt: skip
    job = drill_job(drill_doc(checks=None), Backup.model_validate(body))
    pod = job["spec"]["template"]["spec"]
    assert "app-data" not in json.dumps(pod["volumes"])
    reserved = drill_database_name("shop.db", drill_id(UID))
    assert container(job)["args"][2] == f"sqlite://{DRILL_SCRATCH}/{reserved}"
    assert {"name": "tmp", "mountPath": "/tmp"} in container(job)["volumeMounts"]


def test_scheduled_drills_are_owned_by_their_backup_and_named_once_per_backup_or_slot() -> None:
    schedule = BackupSchedule.model_validate(
        schedule_doc({"every": 2, "noOwner": True, "checks": DRILL["spec"]["checks"]})
    )
    slot = dt.datetime(2026, 12, 3, 2, tzinfo=dt.UTC)
    body = build_scheduled_drill(
        schedule,
        backup_drill_name("nightly-20261203-0200"),
        backup_name="nightly-20261203-0200",
        backup_uid="backup-uid",
        slot=slot,
    )
    meta = body["metadata"]
    assert meta["name"] == "nightly-20261203-0200-drill"
    assert meta["labels"][SCHEDULE_LABEL] == "nightly"
    assert meta["annotations"][BACKUP_ANNOTATION] == "nightly-20261203-0200"
    assert meta["annotations"][SLOT_ANNOTATION] == "2026-12-03T02:00:00Z"
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Backup", "backup-uid", True)
    assert body["spec"]["backupRef"] == {"name": "nightly-20261203-0200"}
    assert "every" not in body["spec"]
    assert body["spec"]["noOwner"] is True
    assert api_server_errors(DRILL_PLURAL, body) == []
    assert slot_drill_name("nightly", "20261206-0400") == "nightly-drill-20261206-0400"
    assert len(backup_drill_name("x" * 300)) <= 253


# -- the schedule's decisions ----------------------------------------------------------------------


def backup_view(
    day: int,
    sequence: int | None = -1,
    *,
    phase: str = "Completed",
    owned: bool = True,
    drills: tuple[Any, ...] = (),
) -> DrillableBackup:
    """The schedule's Backup of day `day` (`b<day>`), numbered `day` unless told otherwise."""
    return DrillableBackup(
        name=f"b{day}",
        uid=f"u{day}",
        time=dt.datetime(2026, 12, 1, tzinfo=dt.UTC) + dt.timedelta(days=day),
        phase=phase,
        completion_time=f"2026-12-{day + 1:02d}T02:05:00Z",
        owned=owned,
        deleting=False,
        sequence=day if sequence == -1 else sequence,
        drills=drills,
    )


def test_completed_backups_are_numbered_after_the_highest_number_in_slot_order() -> None:
    backups = [
        backup_view(4),
        backup_view(6, None),
        backup_view(5, None),
        backup_view(7, None, phase="Running"),
        backup_view(8, None, phase="Failed"),
        backup_view(9, None, owned=False),
    ]
    assert sequence_numbers(backups) == {"b5": 5, "b6": 6}
    assert sequence_numbers([backup_view(1, None)]) == {"b1": 1}
    assert sequence_numbers([]) == {}


@pytest.mark.parametrize(
    ("numbers", "drilled", "every", "due"),
    [
        ([1], set(), 2, None),
        ([1, 2], set(), 2, "b2"),
        ([1, 2, 3], {"b2"}, 2, None),
        ([1, 2, 3, 4], {"b2"}, 2, "b4"),
        ([1, 2, 3], set(), 2, "b2"),  # the operator was down when 2 was due: it is still drilled
        ([1, 2, 3, 4, 5, 6], set(), 2, "b6"),  # drills enabled late: the newest due, no burst
        ([2, 3, 4, 5], {"b4"}, 2, None),  # 2 was never drilled but 4, newer, was
        ([3, 6, 9], {"b6"}, 3, "b9"),
        ([1, 2, 3], set(), 1, "b3"),
    ],
)
def test_the_newest_due_backup_newer_than_the_last_drilled_is_drilled_once(
    numbers: list[int], drilled: set[str], every: int, due: str | None
) -> None:
    found = due_every([backup_view(n) for n in numbers], every, drilled)
    assert (found.name if found else None) == due


def test_drilled_backups_are_known_by_their_drills_or_their_records() -> None:
    drill = {"metadata": {"name": "b2-drill", "annotations": {BACKUP_ANNOTATION: "b2"}}}
    recorded = backup_view(4, drills=({"name": backup_drill_name("b4"), "result": "Completed"},))
    one_off = backup_view(6, drills=({"name": "someone-elses-drill", "result": "Completed"},))
    assert drilled_backups([backup_view(2), recorded, one_off], [drill]) == {"b2", "b4"}


def record(name: str, result: str, time: str, **extra: Any) -> dict[str, Any]:
    reason = "DrillPassed" if result == "Completed" else "DrillCheckFailed"
    return {"name": name, "uid": name, "result": result, "time": time, "reason": reason, **extra}


def test_verified_says_what_the_newest_drill_said_and_when_the_proven_backup_completed() -> None:
    proven = record("d2", "Completed", "2026-12-04T00:00:00Z", restoreSeconds=12.5, rowsVerified=57)
    broken = record("d4", "Failed", "2026-12-06T00:00:00Z", failedCheck="fresh-orders")
    passed = backup_view(2, drills=(proven,))
    failed = backup_view(4, drills=(broken,))
    found = verification([passed, failed], configured=True)
    assert (found.last_verified_backup, found.last_verified_time) == ("b2", passed.completion_time)
    assert found.condition is not None
    status, reason, message = found.condition
    assert (status, reason) == (ConditionStatus.FALSE, DRILL_FAILED)
    assert "d4 of Backup b4" in message
    assert "(check fresh-orders)" in message
    status, reason, message = verification([passed], configured=True).condition or ("", "", "")
    assert (status, reason) == (ConditionStatus.TRUE, "DrillPassed")
    assert "restored in 12.5s, 57 rows verified" in message
    assert verification([backup_view(1)], configured=True).condition == (
        ConditionStatus.UNKNOWN,
        NO_DRILL_YET,
        "no restore drill of this schedule's Backups has ended yet",
    )
    assert verification([backup_view(1)], configured=False).condition is None


# -- what the operator records ---------------------------------------------------------------------


def test_a_finished_drill_is_recorded_on_its_backup_once_and_the_history_stays_short() -> None:
    obj = {**DRILL, "status": {"report": {
        "passed": True, "restoreSeconds": 3.5, "tablesVerified": 5, "rowsVerified": 57,
        "checks": [{"name": "a", "passed": True}, {"name": "b", "passed": True}],
        "reportUri": "s3://backups/shop/shop-db/drills/x.json"}}}  # fmt: skip
    target = Target(DRILL_PLURAL, "RestoreDrill", obj)
    verdict = passed_verdict(target.status)
    assert verdict == Verdict(Phase.COMPLETED, "DrillPassed", "drill passed")
    entry = drill_record(target, verdict, "2026-12-03T03:00:00Z")
    assert entry == {
        "name": "shop-drill", "uid": UID, "time": "2026-12-03T03:00:00Z", "result": "Completed",
        "reason": "DrillPassed", "restoreSeconds": 3.5, "tablesVerified": 5, "rowsVerified": 57,
        "checksPassed": 2, "reportUri": "s3://backups/shop/shop-db/drills/x.json",
    }  # fmt: skip
    history = [{"uid": str(i)} for i in range(12)]
    assert record_drill(history, entry)[-1] == entry
    assert len(record_drill(history, entry)) == 10
    assert record_drill([entry], entry) == [entry]
    assert passed_verdict({"report": {"passed": False}}) is None


# -- the worker's pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (None, "NULL"),
        (40, "40"),
        (decimal.Decimal("12.50"), "12.50"),
        (b"\x00\xff", "\\x00ff"),
        (dt.date(2026, 12, 3), "2026-12-03"),
        ("text", "text"),
    ],
)
def test_a_checks_value_is_compared_as_text(value: object, text: str) -> None:
    assert render_value(value) == text


def test_a_check_passes_only_on_one_value_equal_to_its_expectation() -> None:
    check = CheckSpec("fresh-orders", "SELECT 1", "true")
    assert judge(check, [(True,)], 1).passed
    wrong = judge(check, [(False,)], 1)
    assert (wrong.passed, wrong.actual) == (False, "false")
    assert wrong.message == "check 'fresh-orders' returned 'false', expected 'true'"
    assert "2+ rows of 1 columns" in (judge(check, [(True,), (True,)], 1).message or "")
    assert "0 rows" in (judge(check, [], 1).message or "")
    assert "of 2 columns" in (judge(check, [(True, 1)], 2).message or "")


def test_the_backup_time_is_an_sql_literal_in_utc() -> None:
    taken = dt.datetime(2026, 12, 3, 3, 0, 41, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    query = "SELECT ${BACKUP_TIME} < now(), '100%'"
    assert with_backup_time(query, taken) == "SELECT '2026-12-03 02:00:41' < now(), '100%'"


def test_the_report_key_sorts_by_time_and_names_the_drill() -> None:
    name = drill_database_name("shop", "1a2b3c4d")
    now = dt.datetime(2026, 12, 3, 2, 0, 41, tzinfo=dt.UTC)
    report = DrillReport(
        passed=True, reason="DrillPassed", message="ok", started_at=now, finished_at=now,
        drill_database=name, cleaned_up=True,
    )  # fmt: skip
    assert report_key(report) == "20261203T020041Z-1a2b3c4d.json"


def test_the_worker_may_report_on_its_drill() -> None:
    assert parse_status_target(f"{DRILL_PLURAL}/shop/shop-drill") == (
        DRILL_PLURAL,
        "shop",
        "shop-drill",
    )


def test_deleting_a_backup_deletes_its_drill_reports(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "backup")
    storage.put_bytes("manifest.json", b"{}")
    storage.at("drills").put_bytes("20261203T020041Z-1a2b3c4d.json", b"{}")
    removed = delete_backup(storage)
    assert "drills/20261203T020041Z-1a2b3c4d.json" in removed
    assert list(storage.list_objects()) == []
