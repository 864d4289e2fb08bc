"""`kubectl lifeboat`, run the way people run it: the real kubectl finds the `kubectl-lifeboat`
executable on PATH and runs it, with the test kubeconfig, against the real operator and real
worker processes (SQLite on volumes: the fastest Jobs)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from tests.integration.operator.conftest import GROUP, VERSION, Cluster, OperatorControl, SqliteShop

VENV_BIN = Path(sys.executable).parent
PLUGIN = ("kubectl", "lifeboat")


def plugin_env(**extra: str) -> dict[str, str]:
    """The environment of a shell where the package is installed: its bin directory on PATH."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KUBECONFIG", None)
    env.update(extra)
    return env


def kubectl_lifeboat(
    cluster: Cluster, *args: str, timeout: float = 90, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl lifeboat ARGS` with the test kubeconfig (stdin closed, no terminal)."""
    return subprocess.run(
        ["kubectl", "lifeboat", "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or plugin_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def completed_backup(cluster: Cluster, shop: SqliteShop, name: str = "shop") -> dict[str, Any]:
    cluster.create("backups", name, shop.spec())
    status = cluster.wait_phase("backups", name, "Completed", "Failed")
    assert status["phase"] == "Completed", status
    return status


def test_backup_create_from_a_backup_waits_and_prints_the_result(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    completed_backup(cluster, sqlite_shop)

    run = kubectl_lifeboat(
        cluster, "backup", "create", "shop-again", "--from", "backup/shop", "--wait"
    )

    assert run.returncode == 0, run.stderr
    status = cluster.status("backups", "shop-again")
    artifact = status["artifact"]
    lines = run.stdout.splitlines()
    assert lines[0] == "backup.lifeboat.dev/shop-again created"
    assert lines[-1].startswith("backup/shop-again completed in ")
    assert (
        f": {artifact['uri']} ({artifact['sizeText']}, {artifact['tables']} tables, " in lines[-1]
    )
    assert f"{artifact['rows']} rows, sha256 {artifact['sha256'][:12]}" in lines[-1]
    # Without a terminal: plain lines on stderr, the last progress line the worker's final one.
    assert "backup/shop-again: done  100.0%" in run.stderr, run.stderr
    created = cluster.get("backups", "shop-again")
    assert created is not None
    assert created["spec"] == cluster.get("backups", "shop")["spec"]  # type: ignore[index]
    assert created["metadata"]["annotations"]["lifeboat.dev/created-from"] == "backup/shop"


def test_backup_create_from_a_schedule_uses_its_template(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    template = sqlite_shop.spec(compression="gzip")
    cluster.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        cluster.namespace,
        "backupschedules",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BackupSchedule",
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 2 * * *", "suspend": True, "template": template},
        },
    )

    run = kubectl_lifeboat(
        cluster, "backup", "create", "nightly-now", "--from", "schedule/nightly", "--wait"
    )

    assert run.returncode == 0, run.stderr
    assert "backup/nightly-now completed" in run.stdout
    created = cluster.get("backups", "nightly-now")
    assert created is not None
    assert created["spec"]["compression"] == "gzip"
    assert created["spec"]["database"] == template["database"]
    assert created["metadata"]["annotations"]["lifeboat.dev/created-from"] == (
        "backupschedule/nightly"
    )
    assert cluster.status("backups", "nightly-now")["artifact"]["compression"] == "gzip"

    listed = kubectl_lifeboat(cluster, "list", "schedules")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["schedule/nightly"]
    described = kubectl_lifeboat(cluster, "describe", "schedule", "nightly")
    assert described.returncode == 0, described.stderr
    assert "Schedule:         0 2 * * * (UTC)" in described.stdout
    assert "Suspended:        yes" in described.stdout
    assert "Database:         sqlite shop.db on claim app-data" in described.stdout


def test_a_failing_backup_exits_1_with_its_reason(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    spec = sqlite_shop.spec()
    spec["database"]["path"] = "missing.db"
    cluster.create("backups", "broken", spec)
    cluster.wait_phase("backups", "broken", "Completed", "Failed")

    run = kubectl_lifeboat(
        cluster, "backup", "create", "broken-again", "--from", "backup/broken", "--wait"
    )

    assert run.returncode == 1, (run.stdout, run.stderr)
    status = cluster.status("backups", "broken-again")
    assert status["phase"] == "Failed"
    assert status["reason"]
    last = run.stderr.strip().splitlines()[-1]
    assert last == f"backup/broken-again failed: {status['reason']}: {status['message']}"
    assert "no SQLite database" in last
    assert "completed" not in run.stdout


def test_restore_create_from_a_backup_waits_for_the_verified_result(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    backup = completed_backup(cluster, sqlite_shop)

    run = kubectl_lifeboat(
        cluster, "restore", "create", "shop-back", "--from-backup", "shop", "--wait"
    )

    assert run.returncode == 0, run.stderr
    status = cluster.status("restores", "shop-back")
    assert status["phase"] == "Completed"
    assert status["verification"]["rowCountsMatched"] is True
    assert run.stdout.splitlines()[-1] == (
        f"restore/shop-back completed in {_took(status)}: shop.db restored from backup/shop; "
        f"checksum verified, {backup['artifact']['tables']} tables / "
        f"{backup['artifact']['rows']} rows match the manifest"
    )


def test_restore_create_dry_run_records_the_plan_and_says_so(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    backup = completed_backup(cluster, sqlite_shop)

    run = kubectl_lifeboat(
        cluster,
        "restore",
        "create",
        "rehearsal",
        "--from-backup",
        "shop",
        "--dry-run",
        "--keep-extra-objects",
        "--wait",
    )

    assert run.returncode == 0, run.stderr
    restore = cluster.get("restores", "rehearsal")
    assert restore is not None
    assert restore["spec"] == {
        "backupRef": {"name": "shop"},
        "dryRun": True,
        "keepExtraObjects": True,
        "noOwner": False,  # the rest: the CRD's defaults, applied by the API server
        "noPrivileges": False,
        "verifyChecksumFirst": True,
    }
    status = restore["status"]
    assert status["reason"] == "DryRunSucceeded"
    last = run.stdout.splitlines()[-1]
    assert last.startswith("restore/rehearsal dry run succeeded")
    assert "nothing was changed" in last
    assert (
        f"would load {backup['artifact']['tables']} tables, {backup['artifact']['rows']} rows "
        f"({backup['artifact']['sizeText']})" in last
    )

    described = kubectl_lifeboat(cluster, "describe", "restore", "rehearsal")
    assert described.returncode == 0, described.stderr
    assert "Plan (dry run: nothing was changed)" in described.stdout
    assert "✓ checksum: SHA-256" in described.stdout


def test_restore_into_another_sqlite_file_with_target_database(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    completed_backup(cluster, sqlite_shop)

    run = kubectl_lifeboat(
        cluster,
        "restore",
        "create",
        "copy",
        "--from-backup",
        "shop",
        "--target-database",
        "copy.db",
        "--wait",
    )

    assert run.returncode == 0, run.stderr
    restore = cluster.get("restores", "copy")
    assert restore is not None
    assert restore["spec"]["target"] == {
        "engine": "sqlite",
        "persistentVolumeClaim": "app-data",
        "path": "copy.db",
    }
    assert (sqlite_shop.db_path.parent / "copy.db").exists()
    assert "copy.db restored from backup/shop" in run.stdout


def test_list_describe_and_logs(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    backup = completed_backup(cluster, sqlite_shop)
    cluster.create("restores", "shop-back", {"backupRef": {"name": "shop"}})
    cluster.wait_phase("restores", "shop-back", "Completed", "Failed")

    listed = kubectl_lifeboat(cluster, "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "PROGRESS", "SIZE", "AGE", "REASON"]
    cells = {row.split()[0]: row.split() for row in rows}
    size = backup["artifact"]["sizeText"].split()
    assert cells["backup/shop"][1:5] == ["Completed", "100%", *size]
    assert cells["restore/shop-back"][1:5] == ["Completed", "100%", *size]

    everywhere = kubectl_lifeboat(cluster, "list", "-A", "-o", "json")
    assert everywhere.returncode == 0, everywhere.stderr
    rows_json = json.loads(everywhere.stdout)
    assert {(r["NAMESPACE"], r["NAME"]) for r in rows_json} == {
        (cluster.namespace, "backup/shop"),
        (cluster.namespace, "restore/shop-back"),
    }
    only = kubectl_lifeboat(cluster, "list", "restores")
    assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == ["restore/shop-back"]

    described = kubectl_lifeboat(cluster, "describe", "backup/shop")
    assert described.returncode == 0, described.stderr
    text = described.stdout
    assert "Phase:            Completed" in text
    assert f"URI:            {backup['artifact']['uri']}" in text
    assert f"SHA-256:        {backup['artifact']['sha256']}" in text
    assert "Progress:         done  100.0%" in text
    assert "Conditions:" in text
    assert "Ready" in text
    events = text.split("Events:")[1]
    assert "JobCreated" in events
    assert "Normal" in events

    logs = kubectl_lifeboat(cluster, "logs", "backup", "shop")
    assert logs.returncode == 0, logs.stderr
    assert cluster.runner.logs(_pod_of(cluster, backup["jobName"])) == logs.stdout
    assert "backup complete: " in logs.stdout

    followed = kubectl_lifeboat(cluster, "logs", "restore", "shop-back", "-f", "--all-attempts")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.startswith("==> pod ")
    assert "restore complete: " in followed.stdout


def test_logs_follow_waits_for_the_worker_and_streams_it_to_the_end(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    """-f on a Backup whose Job is held: the plugin waits for the Pod, then streams the log
    until the container ends (released while the plugin is already waiting)."""
    cluster.runner.hold_when(lambda namespace, name: True)
    cluster.create("backups", "held", sqlite_shop.spec())
    cluster.wait_for(lambda: cluster.status("backups", "held").get("jobName"))
    follower = subprocess.Popen(
        [
            "kubectl",
            "lifeboat",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "logs",
            "backup",
            "held",
            "-f",
            "--pod-running-timeout",
            "60s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=plugin_env(),
    )
    try:
        assert follower.stderr is not None
        waiting = read_line(follower.stderr, timeout=30)
        assert waiting.startswith("waiting for Job "), waiting  # it waits, it did not give up
        cluster.runner.hold_when(None)
        cluster.runner.release(cluster.status("backups", "held")["jobName"])
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert "backup complete: " in out


def test_wait_gives_up_at_the_timeout_with_124_and_the_object_keeps_running(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.runner.hold_when(lambda namespace, name: True)
    cluster.create("backups", "slow", sqlite_shop.spec())

    started = time.monotonic()
    run = kubectl_lifeboat(cluster, "wait", "backup", "slow", "--timeout", "2s")
    took = time.monotonic() - started

    assert run.returncode == 124, (run.stdout, run.stderr)
    assert 2 <= took < 20
    assert "backup/slow is still " in run.stderr
    assert "keeps running (kubectl lifeboat wait backup slow)" in run.stderr
    assert cluster.get("backups", "slow") is not None


def test_errors_have_their_exit_codes(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    missing = kubectl_lifeboat(cluster, "describe", "backup", "nope")
    assert missing.returncode == 3
    assert missing.stderr.strip() == "error: backup 'nope' not found in namespace 'default'"

    no_source = kubectl_lifeboat(cluster, "backup", "create", "x", "--from", "backup/nope")
    assert no_source.returncode == 3
    assert cluster.get("backups", "x") is None

    completed_backup(cluster, sqlite_shop)
    twice = kubectl_lifeboat(cluster, "backup", "create", "shop", "--from", "backup/shop")
    assert twice.returncode == 5
    assert "already exists" in twice.stderr

    usage = kubectl_lifeboat(cluster, "describe", "pizza", "x")
    assert usage.returncode == 2
    assert "'pizza' is not a kind" in usage.stderr

    wrong_context = kubectl_lifeboat(cluster, "--context", "elsewhere", "list")
    assert wrong_context.returncode == 5
    assert "no context 'elsewhere'" in wrong_context.stderr

    refused = kubectl_lifeboat(
        cluster, "restore", "create", "r", "--from-backup", "shop", "--no-owner"
    )
    assert refused.returncode == 2
    assert "postgresql options" in refused.stderr


def test_the_executable_uses_kubeconfig_and_its_context_namespace(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop, tmp_path: Path
) -> None:
    """$KUBECONFIG (a list of files, as kubectl merges them) and the context's namespace."""
    cluster.core.create_namespace({"metadata": {"name": "shop"}})
    cluster.namespace = "shop"
    completed_backup(cluster, sqlite_shop)
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["contexts"][0]["context"]["namespace"] = "shop"
    shop_config = tmp_path / "config-shop"
    shop_config.write_text(yaml.safe_dump(config))
    env = plugin_env(KUBECONFIG=f"{tmp_path / 'absent'}{os.pathsep}{shop_config}")

    run = subprocess.run(
        [str(VENV_BIN / "kubectl-lifeboat"), "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert "backup/shop" in run.stdout
    elsewhere = subprocess.run(
        [str(VENV_BIN / "kubectl-lifeboat"), "list", "-n", "default"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert elsewhere.stdout == ""
    assert elsewhere.stderr.strip() == "No resources found in default namespace."


def read_line(stream: IO[str], timeout: float) -> str:
    """One line from a child's pipe, or fail after `timeout` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no line within {timeout}s"
    return stream.readline()


def _pod_of(cluster: Cluster, job_name: str) -> str:
    pods = cluster.core.list_namespaced_pod(
        cluster.namespace, label_selector=f"job-name={job_name}"
    )
    return str(pods.items[-1].metadata.name)


def _took(status: dict[str, Any]) -> str:
    from lifeboat.cli.kubectl.render import took

    value = took(status.get("startTime"), status.get("completionTime"))
    assert value is not None
    return value


@pytest.fixture(autouse=True)
def _kubectl_is_installed() -> None:
    if not (VENV_BIN / "kubectl").exists() or not (VENV_BIN / "kubectl-lifeboat").exists():
        pytest.fail("kubectl and kubectl-lifeboat must be installed in the virtualenv (make setup)")


def test_wait_watches_on_through_dropped_watch_streams(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    """The API server cuts every watch stream (as when it restarts behind a load balancer):
    `kubectl lifeboat wait` reads the object again and watches on, and sees the Backup end."""
    assert cluster.server is not None
    cluster.runner.hold_when(lambda namespace, name: True)
    cluster.create("backups", "cut", sqlite_shop.spec())
    job = cluster.wait_for(lambda: cluster.status("backups", "cut").get("jobName"))
    waiting = subprocess.Popen(
        [*PLUGIN, "--kubeconfig", str(cluster.kubeconfig), "wait", "backup", "cut"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=plugin_env(),
        stdin=subprocess.DEVNULL,
    )
    try:
        plugin_watch = "/apis/lifeboat.dev/v1alpha1/namespaces/default/backups"
        faults = cluster.server.faults

        def plugin_watches_cut() -> int:
            return faults.count(reason="WatchDropped", path_glob=plugin_watch)

        for _ in range(3):  # the plugin's watch opens, is cut, and opens again: three times
            before = plugin_watches_cut()
            cluster.wait_for(
                lambda b=before: faults.drop_watches() >= 0 and plugin_watches_cut() > b
            )
        cluster.runner.release(job)
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, (out, err)
    assert cluster.status("backups", "cut")["phase"] == "Completed"
