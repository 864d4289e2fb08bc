"""TLS settings end to end without a server: the API's rules (CEL and pydantic agree), what the
builders put in the Job (volumes, mounts, paths, never content), how the worker reads them
from a URL or the environment, and what each engine's client is given."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lifeboat.api import Backup, BackupStore, DatabaseSpec, S3Storage
from lifeboat.builders.jobs import JobDefaults, build_backup_job, build_store_check_job
from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.engines.mysql import connection as mysql_connection
from lifeboat.worker.engines.postgres.connection import Connector as PgConnector
from lifeboat.worker.errors import UsageError
from tests.support.kubernetes_schemas import KUBERNETES_VERSIONS, kubernetes_errors
from tests.unit.test_builders import BACKUP
from tests.unit.test_crds import api_server_errors

TLS = {
    "mode": "VerifyFull",
    "caConfigMapRef": {"name": "db-ca"},
    "clientCertSecretRef": {"name": "backup-client-cert"},
}


def backup_body(tls: Any = TLS, s3: dict[str, Any] | None = None) -> dict[str, Any]:
    body = copy.deepcopy(BACKUP)
    if tls is not None:
        body["spec"]["database"]["tls"] = tls
    if s3 is not None:
        body["spec"]["storage"]["s3"].update(s3)
    return body


def job_of(body: dict[str, Any]) -> dict[str, Any]:
    backup = Backup.model_validate(body)
    storage = backup.spec.storage.backend()
    assert storage is not None
    return build_backup_job(backup, storage, JobDefaults())


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = pod_of(job)["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# -- API ------------------------------------------------------------------------------------------


def both_reject(body: dict[str, Any], words: str) -> None:
    """`kubectl apply` (CEL) and the controller (pydantic) refuse it, saying `words`."""
    errors = api_server_errors("backups", body)
    assert any(words in error for error in errors), errors
    with pytest.raises(ValidationError) as caught:
        Backup.model_validate(body)
    assert words in str(caught.value)


def test_a_full_tls_block_is_accepted_by_the_api_server_and_the_models() -> None:
    body = backup_body(s3={"endpoint": "https://minio.storage.svc:9000", "timeoutSeconds": 600})
    body["spec"]["storage"]["s3"]["caSecretRef"] = {"name": "minio-ca", "key": "root.pem"}
    assert api_server_errors("backups", body) == []
    backup = Backup.model_validate(body)
    tls = backup.spec.database.tls
    assert tls is not None
    assert tls.mode.worker_mode == "verify-full"


@pytest.mark.parametrize(
    ("tls", "words"),
    [
        ({"mode": "VerifyCA"}, "modes VerifyCA and VerifyFull check the server's certificate"),
        (
            {"mode": "Require", "caSecretRef": {"name": "a"}, "caConfigMapRef": {"name": "b"}},
            "set at most one of caSecretRef and caConfigMapRef",
        ),
        (
            {"mode": "Disable", "clientCertSecretRef": {"name": "c"}},
            "mode Disable uses no certificates",
        ),
    ],
)
def test_tls_rules_name_the_field_and_the_fix(tls: dict[str, Any], words: str) -> None:
    both_reject(backup_body(tls), words)


def test_tls_is_not_for_sqlite() -> None:
    body = backup_body(None)
    body["spec"]["database"] = {
        "engine": "sqlite",
        "persistentVolumeClaim": "app",
        "path": "app.db",
        "tls": {"mode": "Require"},
    }
    assert any("tls" in error for error in api_server_errors("backups", body))
    with pytest.raises(ValidationError, match="tls not used by engine sqlite"):
        DatabaseSpec.model_validate(body["spec"]["database"])


def test_an_s3_ca_needs_an_https_endpoint() -> None:
    body = backup_body(None, s3={"caConfigMapRef": {"name": "ca"}})
    both_reject(body, "caSecretRef and caConfigMapRef verify an https endpoint")


@pytest.mark.parametrize("seconds", [9, 3601])
def test_the_storage_timeout_is_bounded(seconds: int) -> None:
    body = backup_body(None, s3={"timeoutSeconds": seconds})
    assert api_server_errors("backups", body) != []
    with pytest.raises(ValidationError, match="timeoutSeconds"):
        Backup.model_validate(body)


# -- builders -------------------------------------------------------------------------------------


def test_database_tls_reaches_the_job_as_read_only_files_and_their_paths() -> None:
    job = job_of(backup_body())
    pod = pod_of(job)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["database-tls-ca"] == {
        "name": "database-tls-ca",
        "configMap": {
            "name": "db-ca",
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
            "defaultMode": 0o444,
        },
    }
    assert volumes["database-tls-client"]["secret"] == {
        "secretName": "backup-client-cert",
        "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
        "defaultMode": 0o440,
    }
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["database-tls-ca"]["readOnly"] is True
    assert mounts["database-tls-client"]["readOnly"] is True
    env = env_of(job)
    assert env["LIFEBOAT_DB_TLS_MODE"] == "verify-full"
    assert env["LIFEBOAT_DB_TLS_CA_FILE"] == "/var/run/lifeboat/database-tls/ca/ca.crt"
    assert env["LIFEBOAT_DB_TLS_CERT_FILE"] == "/var/run/lifeboat/database-tls/client/tls.crt"
    assert env["LIFEBOAT_DB_TLS_KEY_FILE"] == "/var/run/lifeboat/database-tls/client/tls.key"
    # The worker runs as a non-root user of the fsGroup that owns the Secret's files.
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # Only paths and the mode: no certificate, no key, in env or args.
    text = json.dumps(pod["containers"][0]["env"]) + json.dumps(pod["containers"][0]["args"])
    assert "BEGIN" not in text
    assert "sslmode" not in text


def test_a_ca_from_a_secret_is_mounted_from_that_secret() -> None:
    job = job_of(backup_body({"mode": "VerifyCA", "caSecretRef": {"name": "pg-ca", "key": "x"}}))
    volumes = {v["name"]: v for v in pod_of(job)["volumes"]}
    assert volumes["database-tls-ca"]["secret"] == {
        "secretName": "pg-ca",
        "items": [{"key": "x", "path": "ca.crt"}],
        "defaultMode": 0o444,
    }
    assert "database-tls-client" not in volumes
    assert env_of(job)["LIFEBOAT_DB_TLS_MODE"] == "verify-ca"


def test_no_tls_block_changes_nothing_in_the_job() -> None:
    env = env_of(job_of(backup_body(None)))
    assert not [name for name in env if "TLS" in name or "CA_BUNDLE" in name]
    assert "LIFEBOAT_STORAGE_TIMEOUT" not in env


def test_s3_ca_bundle_and_timeout_reach_backup_and_store_check_jobs() -> None:
    s3 = {
        "endpoint": "https://minio.storage.svc",
        "caConfigMapRef": {"name": "minio-ca"},
        "timeoutSeconds": 900,
    }
    job = job_of(backup_body(None, s3=s3))
    env = env_of(job)
    assert env["LIFEBOAT_S3_CA_BUNDLE"] == "/var/run/lifeboat/storage-tls/ca/ca.crt"
    assert env["LIFEBOAT_STORAGE_TIMEOUT"] == "900"
    volumes = {v["name"]: v for v in pod_of(job)["volumes"]}
    assert volumes["storage-tls-ca"]["configMap"]["name"] == "minio-ca"

    store = BackupStore.model_validate(
        {
            "metadata": {"name": "minio", "namespace": "shop", "uid": "u-1"},
            "spec": {"s3": {"bucket": "backups", **s3}},
        }
    )
    check = build_store_check_job(store, "minio-check-1", JobDefaults())
    env = env_of(check)
    assert env["LIFEBOAT_S3_CA_BUNDLE"] == "/var/run/lifeboat/storage-tls/ca/ca.crt"
    assert env["LIFEBOAT_STORAGE_TIMEOUT"] == "900"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_tls_jobs_are_valid_kubernetes_jobs(version: str) -> None:
    s3 = {"endpoint": "https://minio.storage.svc", "caSecretRef": {"name": "minio-ca"}}
    assert kubernetes_errors(job_of(backup_body(s3=s3)), version) == []


def test_s3_storage_timeout_is_optional() -> None:
    assert S3Storage(bucket="backups").timeout_seconds is None


# -- worker ---------------------------------------------------------------------------------------


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    return files


def test_postgres_url_parameters_become_libpq_settings(pem: dict[str, Path]) -> None:
    url = parse_database_url(
        f"postgresql://app@db:5432/shop?sslmode=verify-full&sslrootcert={pem['ca']}"
        f"&sslcert={pem['cert']}&sslkey={pem['key']}&application_name=x",
        {},
    )
    assert url.tls.mode == "verify-full"
    assert url.options == {"application_name": "x"}
    conninfo = PgConnector(url).conninfo()
    assert "sslmode=verify-full" in conninfo
    assert f"sslrootcert={pem['ca']}" in conninfo
    assert f"sslkey={pem['key']}" in conninfo


def test_the_environment_gives_tls_settings_and_the_url_wins(pem: dict[str, Path]) -> None:
    env = {"LIFEBOAT_DB_TLS_MODE": "verify-ca", "LIFEBOAT_DB_TLS_CA_FILE": str(pem["ca"])}
    assert parse_database_url("postgresql://app@db/shop", env).tls.mode == "verify-ca"
    url = parse_database_url("mariadb://app@db/shop?ssl-mode=VERIFY_IDENTITY", env)
    assert url.tls.mode == "verify-full"
    assert url.tls.ca_file == pem["ca"]


def test_a_ca_alone_means_verify_full(pem: dict[str, Path]) -> None:
    url = parse_database_url(f"mysql://app@db/shop?ssl-ca={pem['ca']}", {})
    assert url.tls.mode == "verify-full"


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("sslmode=prefer", "prefer and allow could send the password unencrypted"),
        ("sslmode=verify-full", "give the CA bundle"),
        ("ssl-mode=REQUIRED&ssl-cert=CERT", "needs both"),
        ("sslmode=disable&sslrootcert=CA", "mode disable with a CA"),
        ("sslrootcert=/nowhere/ca.pem", "not a readable file"),
    ],
)
def test_bad_tls_settings_are_usage_errors(pem: dict[str, Path], query: str, words: str) -> None:
    query = query.replace("CERT", str(pem["cert"])).replace("CA", str(pem["ca"]))
    with pytest.raises(UsageError, match=words):
        parse_database_url(f"postgresql://app@db/shop?{query}", {})


def test_mariadb_tools_get_tls_flags(pem: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mysql_connection, "tool_help", lambda tool: "mariadb Ver 15.1 --ssl")
    url = parse_database_url(
        f"mariadb://app@db/shop?ssl-mode=verify-full&ssl-ca={pem['ca']}"
        f"&ssl-cert={pem['cert']}&ssl-key={pem['key']}",
        {},
    )
    args = mysql_connection.Connector(url, "MariaDB").connection_args()
    assert "--ssl" in args
    assert "--ssl-verify-server-cert" in args
    assert f"--ssl-ca={pem['ca']}" in args
    assert f"--ssl-key={pem['key']}" in args


def test_mysql_tools_get_ssl_mode(pem: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mysql_connection, "tool_help", lambda tool: "mysqldump --ssl-mode=name")
    url = parse_database_url(f"mysql://app@db/shop?sslmode=verify-ca&sslrootcert={pem['ca']}", {})
    args = mysql_connection.Connector(url, "MySQL").connection_args()
    assert "--ssl-mode=VERIFY_CA" in args
    assert "--ssl" not in args
