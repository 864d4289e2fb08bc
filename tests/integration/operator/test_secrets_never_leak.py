"""No secret ever leaves its Secret: the proof.

Full scenarios with recognisable secret values (a database password and a wrong one, an S3
access key pair and session token, an encryption key, another one, a malformed one), everything
at debug level, failures included:

- through the operator (`lifeboat --debug operator --log-format json` as a process, serving
  metrics), with the test API server and the Job runner, the workers at debug level too: an
  encrypted backup with SSE, a backup refused for its password, a backup with a malformed key, a
  restore, a restore with the wrong key;
- through the command line, `--debug`: backup, restore, a wrong password, a wrong key, a
  malformed key, `show` and `list`.

Then everything the system produced is searched for every secret, as itself, in base64 (as Secret
data carries it) and, for keys, as hex: the operator's log, every worker Pod's log, every version
of every object the API server stored (Backups, Restores, stores, Jobs, Pods, Events: all but the
Secrets), the metrics endpoint, every object in the bucket (manifests as text, artifacts as
bytes), and the command line's output. And every Job gets its secrets through `secretKeyRef`
only.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.operator.conftest import Cluster, operator_command
from tests.integration.operator.test_backup_restore import postgres_backup_spec
from tests.integration.operator.test_metrics import free_port
from tests.support import postgres as pg
from tests.support.databases import lifeboat
from tests.support.s3 import S3Bucket

SECRET_ENV = {
    "LIFEBOAT_DB_PASSWORD",
    "LIFEBOAT_ENCRYPTION_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}


def canary(what: str) -> str:
    return f"canary-{what}-{secrets.token_hex(8)}"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def text_forms(secret: str) -> list[str]:
    forms = [secret, base64.b64encode(secret.encode()).decode()]
    try:
        raw = base64.b64decode(secret, validate=True)
    except ValueError:
        return forms
    if len(raw) == 32:  # an encryption key: also as the hex of its bytes
        forms.append(raw.hex())
    return forms


def byte_forms(secret: str) -> list[bytes]:
    forms = [form.encode() for form in text_forms(secret)]
    try:
        raw = base64.b64decode(secret, validate=True)
    except ValueError:
        return forms
    return [*forms, raw] if len(raw) == 32 else forms


def stored_objects(cluster: Cluster) -> list[dict[str, Any]]:
    """Every version of every object the API server stored, Secrets excepted."""
    server = cluster.server
    assert server is not None

    def collect() -> list[dict[str, Any]]:
        found = []
        for resource, events in server._events.items():
            if resource.plural == "secrets":
                continue
            for event in events:
                found += [obj for obj in (event.obj, event.old) if obj is not None]
        for resource, obj in server._iter_all():
            if resource.plural != "secrets":
                found.append(obj)
        return found

    return server.call(collect)


def test_no_secret_reaches_status_events_logs_jobs_metrics_or_storage(
    cluster: Cluster, pg_database: pg.PgDatabase, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    pg.seed_sample_schema(pg_database, large_object=False)
    wrong_password = canary("wrong-db-password")
    access_key_id = "AKIA" + secrets.token_hex(8).upper()
    secret_access_key = canary("s3-secret-access-key")
    session_token = canary("s3-session-token")
    key, other_key = new_key(), new_key()
    malformed_key = canary("malformed-key")
    all_secrets = [
        pg_database.password,
        wrong_password,
        access_key_id,
        secret_access_key,
        session_token,
        key,
        other_key,
        malformed_key,
    ]
    cluster.secret("db", {"password": pg_database.password})
    cluster.secret("wrong-db", {"password": wrong_password})
    s3_keys = {"AWS_ACCESS_KEY_ID": access_key_id, "AWS_SECRET_ACCESS_KEY": secret_access_key}
    cluster.secret("s3", s3_keys)  # the test S3 server accepts any key pair
    cluster.secret("backup-key", {"key": key})
    cluster.secret("other-key", {"key": other_key})
    cluster.secret("malformed-key", {"key": malformed_key})
    cluster.runner.extra_env["LIFEBOAT_DEBUG"] = "1"  # the workers log at debug level too

    metrics_port = free_port()
    log_file = tmp_path / "operator.log"
    with log_file.open("w") as out:
        operator = subprocess.Popen(
            operator_command(
                cluster,
                "--metrics-address",
                f"127.0.0.1:{metrics_port}",
                debug=True,
                json_logs=True,
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            spec = postgres_backup_spec(pg_database, s3_bucket)
            spec["storage"]["s3"]["serverSideEncryption"] = {"type": "AES256"}
            spec["storage"]["encryption"] = {"keySecretRef": {"name": "backup-key"}}
            cluster.create("backups", "shop-db", spec)
            good = cluster.wait_phase("backups", "shop-db", "Completed", "Failed")
            assert good["phase"] == "Completed", good

            refused = postgres_backup_spec(pg_database, s3_bucket)
            refused["database"]["passwordSecretRef"] = {"name": "wrong-db", "key": "password"}
            cluster.create("backups", "refused", refused)
            bad = cluster.wait_phase("backups", "refused", "Completed", "Failed")
            assert (bad["phase"], bad["reason"]) == ("Failed", "AuthenticationFailed"), bad

            malformed = postgres_backup_spec(pg_database, s3_bucket)
            malformed["storage"]["encryption"] = {"keySecretRef": {"name": "malformed-key"}}
            cluster.create("backups", "malformed", malformed)
            bad = cluster.wait_phase("backups", "malformed", "Completed", "Failed")
            assert (bad["phase"], bad["reason"]) == ("Failed", "EncryptionKeyInvalid"), bad

            wrong: dict[str, Any] = {
                "backupRef": {"name": "shop-db"},
                "encryption": {"keySecretRef": {"name": "other-key"}},
            }
            cluster.create("restores", "wrong-key", wrong)
            bad = cluster.wait_phase("restores", "wrong-key", "Completed", "Failed")
            assert (bad["phase"], bad["reason"]) == ("Failed", "EncryptionKeyMismatch"), bad

            cluster.create("restores", "shop-db-back", {"backupRef": {"name": "shop-db"}})
            back = cluster.wait_phase("restores", "shop-db-back", "Completed", "Failed")
            assert back["phase"] == "Completed", back

            with urllib.request.urlopen(
                f"http://127.0.0.1:{metrics_port}/metrics", timeout=10
            ) as response:
                metrics = response.read().decode()
        finally:
            operator.send_signal(signal.SIGTERM)
            operator.wait(timeout=30)

    # The command line, at debug level, with the same kinds of secrets in its environment.
    key_file = tmp_path / "key.b64"
    key_file.write_text(key + "\n")
    cli_env = {
        **s3_bucket.env,
        "AWS_ACCESS_KEY_ID": access_key_id,
        "AWS_SECRET_ACCESS_KEY": secret_access_key,
        "AWS_SESSION_TOKEN": session_token,
        "LIFEBOAT_DB_PASSWORD": pg_database.password,
    }
    location = s3_bucket.url("cli") + "?sse=AES256"
    runs = [
        ("backup", pg_database.url, location, "--encryption-key-file", str(key_file)),
        ("restore", location, pg_database.url, "--encryption-key-file", str(key_file)),
        ("show", s3_bucket.url("cli")),
        ("list", s3_bucket.url(), "--output", "json"),
    ]
    failing = [
        ({"LIFEBOAT_DB_PASSWORD": wrong_password}, ("backup", pg_database.url, s3_bucket.url("x"))),
        ({"LIFEBOAT_ENCRYPTION_KEY": other_key}, ("restore", location, pg_database.url)),
        ({"LIFEBOAT_ENCRYPTION_KEY": malformed_key}, ("restore", location, pg_database.url)),
    ]
    cli_output = []
    for args in runs:
        quiet = () if args[0] in ("show", "list") else ("--progress", "none")
        done = lifeboat("--debug", *args, *quiet, env=cli_env)
        assert done.returncode == 0, done.stderr[-3000:]
        cli_output.append(done.stdout + done.stderr)
    for extra, args in failing:
        done = lifeboat("--debug", *args, "--progress", "none", env={**cli_env, **extra})
        assert done.returncode != 0
        cli_output.append(done.stdout + done.stderr)
    cli_text = "\n".join(cli_output)

    # What was produced, and that it is the real thing (so the search below means something).
    operator_log = log_file.read_text()
    pods = [p.metadata.name for p in cluster.core.list_namespaced_pod(cluster.namespace).items]
    worker_logs = "\n".join(cluster.runner.logs(pod) for pod in pods)
    objects = stored_objects(cluster)
    objects_text = "\n".join(json.dumps(obj) for obj in objects)
    names = s3_bucket.keys()
    stored = {
        name: s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key=name)["Body"].read()
        for name in names
    }
    assert '"level": "DEBUG"' in operator_log
    assert "EncryptionKeyMismatch" in operator_log
    assert "DEBUG" in worker_logs  # the workers really logged at debug level
    for reason in ("AuthenticationFailed", "EncryptionKeyInvalid", "EncryptionKeyMismatch"):
        assert reason in worker_logs, reason
        assert reason in cli_text, reason
    assert "Secret malformed-key, key key" in objects_text  # the field is named, not the value
    assert "botocore" in cli_text
    # Signed requests were logged with their headers; credentials and the token were masked.
    assert "Credential=***" in cli_text
    assert "'X-Amz-Security-Token': b'***'" in cli_text
    assert "lifeboat_backups" in metrics
    kinds = {obj.get("kind") for obj in objects}
    assert {"Backup", "Restore", "Job", "Pod", "Event"} <= kinds, kinds
    assert any(name.endswith(".enc") for name in stored)
    assert sum(name.endswith("manifest.json") for name in stored) >= 2

    for secret in all_secrets:
        for form in text_forms(secret):
            assert form not in operator_log, "a secret is in the operator's log"
            assert form not in worker_logs, "a secret is in a worker's log"
            assert form not in objects_text, "a secret is in an object the API server stored"
            assert form not in metrics, "a secret is in the metrics"
            assert form not in cli_text, "a secret is in the command line's output"
        for blob in byte_forms(secret):
            for name, data in stored.items():
                assert blob not in data, f"a secret is in the bucket: {name}"

    # Every Job, in every version stored, gets its secrets from Secrets, never as values.
    jobs = [obj for obj in objects if obj.get("kind") == "Job"]
    assert jobs
    for job in jobs:
        for container in job["spec"]["template"]["spec"]["containers"]:
            for entry in container.get("env", []):
                if entry["name"] in SECRET_ENV:
                    assert "value" not in entry, entry
                    assert set(entry["valueFrom"]) == {"secretKeyRef"}, entry
            assert not any(arg.startswith("--encryption-key") for arg in container["args"])
