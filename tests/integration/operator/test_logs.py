"""The operator's logs: `lifeboat --debug operator --log-format json` as a process (as the chart
runs it, at the most verbose level), through real scenarios whose Secrets hold real credentials (a
PostgreSQL password, a wrong one, S3 keys), then every line is read.

Every line is one JSON object with the documented keys; each transition is one line naming the
object, its phase and reason; and no secret value appears anywhere, in plain or base64 form,
neither in the operator's log nor in the worker Pods' logs.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.integration.operator.conftest import Cluster, operator_command
from tests.integration.operator.test_backup_restore import postgres_backup_spec, secrets_for
from tests.support import postgres as pg

KEYS = {"time", "level", "logger", "message", "kind", "namespace", "name", "phase", "reason"}


def forms(secret: str) -> list[str]:
    """A secret as it could leak: itself, and base64 as Secret data carries it."""
    return [secret, base64.b64encode(secret.encode()).decode()]


def test_json_logs_have_one_line_per_transition_and_no_secret_at_debug_level(
    cluster: Cluster, pg_database: pg.PgDatabase, s3_bucket: Any, tmp_path: Path
) -> None:
    pg.seed_sample_schema(pg_database, large_object=False)
    secrets_for(cluster, pg_database, s3_bucket)
    wrong_password = "wrong-" + pg_database.password[::-1]
    cluster.secret("wrong", {"password": wrong_password})
    secrets = [
        pg_database.password,
        wrong_password,
        s3_bucket.env["AWS_SECRET_ACCESS_KEY"],
    ]
    log_file = tmp_path / "operator.log"
    with log_file.open("w") as out:
        process = subprocess.Popen(
            operator_command(cluster, debug=True, json_logs=True),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            cluster.create("backups", "shop-db", postgres_backup_spec(pg_database, s3_bucket))
            good = cluster.wait_phase("backups", "shop-db", "Completed", "Failed")
            assert good["phase"] == "Completed", good
            refused = postgres_backup_spec(pg_database, s3_bucket)
            refused["database"]["passwordSecretRef"] = {"name": "wrong", "key": "password"}
            cluster.create("backups", "refused", refused)
            bad = cluster.wait_phase("backups", "refused", "Completed", "Failed")
            assert (bad["phase"], bad["reason"]) == ("Failed", "AuthenticationFailed"), bad
            cluster.create("restores", "shop-db-back", {"backupRef": {"name": "shop-db"}})
            back = cluster.wait_phase("restores", "shop-db-back", "Completed", "Failed")
            assert back["phase"] == "Completed", back
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert process.returncode == 0

    text = log_file.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert len(lines) > 20
    assert all(set(line) >= KEYS for line in lines), [x for x in lines if not set(x) >= KEYS][:3]
    assert {line["level"] for line in lines} >= {"DEBUG", "INFO", "WARNING"}
    transitions = [
        (line["kind"], line["name"], line["phase"], line["reason"], line["level"])
        for line in lines
        if line["phase"] is not None and line["namespace"] == cluster.namespace
    ]
    for expected in [
        ("Backup", "shop-db", "Completed", "Completed", "INFO"),
        ("Backup", "refused", "Failed", "AuthenticationFailed", "WARNING"),
        ("Restore", "shop-db-back", "Completed", "Completed", "INFO"),
    ]:
        assert transitions.count(expected) == 1, (expected, transitions)
    kopf_lines = [line for line in lines if line["logger"].startswith("kopf.objects")]
    assert any(line["name"] == "shop-db" and line["kind"] == "Backup" for line in kopf_lines)

    worker_logs = "".join(
        cluster.runner.logs(pod)
        for pod in (
            p.metadata.name for p in cluster.core.list_namespaced_pod(cluster.namespace).items
        )
    )
    assert "AuthenticationFailed" in worker_logs  # the logs were read, with the failure in them
    for secret in secrets:
        for leaked in forms(secret):
            assert leaked not in text, "a secret is in the operator's log"
            assert leaked not in worker_logs, "a secret is in a worker's log"
