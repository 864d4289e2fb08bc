"""The Argo CD health checks, run as Argo CD runs them (Lua 5.1, like its gopher-lua) against
status the operator's own code writes: a Failed Backup must never show as Healthy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from lifeboat.api import Phase
from lifeboat.controller.transitions import JobState, JobView, Verdict, status_update

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "integrations" / "argocd"


def health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Run an Argo CD health script on `obj` the way Argo CD does: a global `obj`, a returned
    table with status and message."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((ARGOCD / "health" / script).read_text())
    return str(result["status"]), str(result["message"])


def operation(kind: str, verdict: Verdict, **status: Any) -> dict[str, Any]:
    """A Backup/Restore with the status the controller writes for `verdict`."""
    state = {
        Phase.PENDING: JobState.PENDING,
        Phase.RUNNING: JobState.RUNNING,
        Phase.COMPLETED: JobState.SUCCEEDED,
        Phase.FAILED: JobState.FAILED,
    }[verdict.phase]
    update = status_update(
        {}, verdict, JobView(state), job_name="x-job", generation=1, now="2026-12-03T02:00:00Z"
    )
    return {
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "shop", "namespace": "shop", "generation": 1},
        "spec": {},
        "status": {**update.patch, **status},
    }


@pytest.mark.parametrize("kind", ["Backup", "Restore", "RestoreDrill"])
@pytest.mark.parametrize(
    ("verdict", "extra", "expected", "words"),
    [
        (
            Verdict(Phase.COMPLETED, "Completed", "backup completed and verified"),
            {},
            "Healthy",
            "verified",
        ),
        (
            Verdict(Phase.COMPLETED, "Completed", "restore completed and verified"),
            {"notes": ["removed the staged copy an interrupted restore left: /data/.x"]},
            "Healthy",
            "verified",
        ),
        (
            Verdict(Phase.FAILED, "AuthenticationFailed", "user 'app' was refused"),
            {},
            "Degraded",
            "AuthenticationFailed: user 'app' was refused",
        ),
        (
            Verdict(Phase.RUNNING, "Running", "the backup Job is running"),
            {"progress": {"percent": 42.0, "percentText": "42%"}},
            "Progressing",
            "Running 42%",
        ),
        (
            Verdict(Phase.PENDING, "JobPending", "waiting for the Job's Pod"),
            {},
            "Progressing",
            "Pending",
        ),
        (
            Verdict(Phase.COMPLETED, "DryRunSucceeded", "dry run: nothing was changed"),
            {},
            "Healthy",
            "dry run",
        ),
        (
            Verdict(Phase.FAILED, "DrillCheckFailed", "check 'fresh-orders' returned 'false'"),
            {},
            "Degraded",
            "DrillCheckFailed: check 'fresh-orders'",
        ),
    ],
)
def test_operations(
    kind: str, verdict: Verdict, extra: dict[str, Any], expected: str, words: str
) -> None:
    status, message = health("operation.lua", operation(kind, verdict, **extra))
    assert status == expected
    assert words in message


def test_an_object_without_status_is_progressing() -> None:
    obj = {"metadata": {"name": "x", "generation": 1}, "spec": {}}
    assert health("operation.lua", obj)[0] == "Progressing"
    assert health("schedule.lua", obj)[0] == "Progressing"
    assert health("store.lua", obj)[0] == "Progressing"


def test_an_unobserved_spec_edit_is_progressing_even_when_completed() -> None:
    done = operation("Backup", Verdict(Phase.COMPLETED, "Completed", "ok"))
    done["metadata"]["generation"] = 2
    status, message = health("operation.lua", done)
    assert status == "Progressing"
    assert "generation 2" in message


def conditions(**types: tuple[str, str, str]) -> list[dict[str, str]]:
    return [
        {"type": t, "status": s, "reason": r, "message": m, "lastTransitionTime": "x"}
        for t, (s, r, m) in types.items()
    ]


@pytest.mark.parametrize(
    ("spec", "status", "expected", "words"),
    [
        (
            {"schedule": "0 2 * * *"},
            {
                "conditions": conditions(Ready=("True", "Scheduled", "next at 02:00")),
                "lastSuccessfulTime": "2026-12-03T02:01:00Z",
                "nextScheduleTime": "2026-12-04T02:00:00Z",
            },
            "Healthy",
            "last success: 2026-12-03T02:01:00Z",
        ),
        (
            {"schedule": "61 * * * *"},
            {
                "conditions": conditions(
                    Ready=("False", "InvalidSchedule", "bad"),
                    Stalled=("True", "InvalidSchedule", "spec.schedule: not valid"),
                )
            },
            "Degraded",
            "InvalidSchedule: spec.schedule",
        ),
        (
            {"schedule": "0 2 * * *", "suspend": True},
            {"conditions": conditions(Ready=("True", "Suspended", "suspended"))},
            "Suspended",
            "suspended",
        ),
        (
            {"schedule": "0 2 * * *", "drill": {"every": 2}},
            {
                "conditions": conditions(
                    Ready=("True", "Scheduled", "next at 02:00"),
                    Verified=("False", "DrillFailed", "RestoreDrill x of Backup y failed"),
                ),
            },
            "Degraded",
            "DrillFailed: RestoreDrill x of Backup y failed",
        ),
        (
            {"schedule": "0 2 * * *", "drill": {"every": 2}},
            {
                "conditions": conditions(
                    Ready=("True", "Scheduled", "next at 02:00"),
                    Verified=("True", "DrillPassed", "passed"),
                ),
                "lastSuccessfulTime": "2026-12-03T02:01:00Z",
                "lastVerifiedTime": "2026-12-02T02:01:00Z",
            },
            "Healthy",
            "last verified: 2026-12-02T02:01:00Z",
        ),
    ],
)
def test_schedules(spec: dict[str, Any], status: dict[str, Any], expected: str, words: str) -> None:
    obj = {
        "metadata": {"generation": 1},
        "spec": spec,
        "status": {"observedGeneration": 1, **status},
    }
    got, message = health("schedule.lua", obj)
    assert got == expected
    assert words in message


@pytest.mark.parametrize(
    ("ready", "expected"),
    [
        (("True", "Reachable", "s3://backups/shop/ is reachable"), "Healthy"),
        (("False", "BucketNotFound", "bucket 'backups' does not exist"), "Degraded"),
    ],
)
def test_stores(ready: tuple[str, str, str], expected: str) -> None:
    obj = {
        "metadata": {"generation": 1},
        "spec": {},
        "status": {"observedGeneration": 1, "conditions": conditions(Ready=ready)},
    }
    got, message = health("store.lua", obj)
    assert got == expected
    assert ready[2] in message


def test_the_committed_argocd_patch_embeds_the_scripts() -> None:
    from integrations.argocd.render import SCRIPTS, render

    assert (ARGOCD / "argocd-cm-patch.yaml").read_text() == render(), "run render.py"
    data = yaml.safe_load(render())["data"]
    for kind, script in SCRIPTS.items():
        assert (
            data[f"resource.customizations.health.{kind}"]
            == (ARGOCD / "health" / script).read_text()
        )
