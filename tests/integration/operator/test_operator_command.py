"""`lifeboat operator` itself, as a process: the command users and the chart run."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.integration.operator.conftest import TEST_IMAGE, Cluster, SqliteShop, operator_command


def test_lifeboat_operator_command_reconciles_and_stops_cleanly(
    cluster: Cluster, sqlite_shop: SqliteShop
) -> None:
    process = subprocess.Popen(
        operator_command(cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        cluster.create("backups", "via-command", sqlite_shop.spec())
        status = cluster.wait_phase("backups", "via-command", "Completed", "Failed", timeout=60)
        assert status["phase"] == "Completed", status
        (job,) = cluster.jobs()
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == TEST_IMAGE
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output


def test_lifeboat_operator_needs_a_scope() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lifeboat", "operator"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--namespace NS" in done.stderr
    assert "--all-namespaces" in done.stderr
