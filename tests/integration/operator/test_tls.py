"""TLS through the operator: a Backup whose database.tls and s3 CA come from a ConfigMap and
Secrets reaches a TLS-only PostgreSQL (client certificate, verify-full) and an https S3 endpoint
with a private CA; its Restore brings the data back. And a TLS Backup against a server without
TLS fails with TlsUnavailable, the password never sent."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.operator.conftest import Cluster, OperatorControl
from tests.support import postgres as pg
from tests.support.e2e import E2E_SETTINGS
from tests.support.s3 import S3Bucket
from tests.support.tls import Pki
from tests.support.tls_servers import TlsPostgres

pytestmark = pytest.mark.skipif(
    E2E_SETTINGS.enabled,
    reason="the test certificates name 127.0.0.1 and localhost, not the cluster's view of them",
)


def _config_map(cluster: Cluster, name: str, data: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    cluster.core.create_namespaced_config_map(cluster.namespace, body)


def _tls_database(db: pg.PgDatabase, tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "engine": "postgresql",
        "host": db.server.host,
        "port": db.server.port,
        "name": db.name,
        "user": db.user,
        "passwordSecretRef": {"name": "db", "key": "password"},
        "tls": tls,
    }


def _https_storage(s3: S3Bucket, endpoint: str) -> dict[str, Any]:
    return {
        "s3": {
            "bucket": s3.bucket,
            "prefix": "tls/",
            "endpoint": endpoint,
            "region": "us-east-1",
            "credentialsSecretRef": {"name": "s3"},
            "forcePathStyle": True,
            "caSecretRef": {"name": "s3-ca"},
            "timeoutSeconds": 30,
        }
    }


def test_backup_and_restore_over_tls_with_client_certificate_and_private_s3_ca(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    tls_postgres_server: TlsPostgres,
    tls_s3_server: str,
    tls_pki: Pki,
    s3_bucket: S3Bucket,
) -> None:
    db = tls_postgres_server.database()
    pg.seed_sample_schema(db, large_object=False)
    tls_postgres_server.require_client_certificate(db.role)
    client = tls_pki.client(db.user)
    ca = tls_pki.ca.read_text()
    _config_map(cluster, "db-ca", {"ca.crt": ca})
    cluster.secret("s3-ca", {"ca.crt": ca})
    cluster.secret(
        "db-client", {"tls.crt": client.cert.read_text(), "tls.key": client.key.read_text()}
    )
    cluster.secret("db", {"password": "not-used-by-cert-auth"})
    cluster.secret(
        "s3",
        {
            "AWS_ACCESS_KEY_ID": s3_bucket.env["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s3_bucket.env["AWS_SECRET_ACCESS_KEY"],
        },
    )
    tls = {
        "mode": "VerifyFull",
        "caConfigMapRef": {"name": "db-ca"},
        "clientCertSecretRef": {"name": "db-client"},
    }
    storage = _https_storage(s3_bucket, tls_s3_server)

    cluster.create("backups", "tls-db", {"database": _tls_database(db, tls), "storage": storage})
    status = cluster.wait_phase("backups", "tls-db", "Completed", "Failed")
    assert status["phase"] == "Completed", status

    (job,) = cluster.jobs()
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LIFEBOAT_DB_TLS_MODE"] == "verify-full"
    assert env["LIFEBOAT_STORAGE_TIMEOUT"] == "30"
    assert client.key.read_text() not in str(job)
    assert "BEGIN" not in str(container["env"]) + str(container["args"])

    with db.admin() as admin:
        admin.execute("DELETE FROM shop.orders WHERE id > 10")
    cluster.create(
        "restores",
        "tls-db-back",
        {"backupRef": {"name": "tls-db"}, "target": _tls_database(db, tls)},
    )
    status = cluster.wait_phase("restores", "tls-db-back", "Completed", "Failed")
    assert status["phase"] == "Completed", status
    with db.admin() as admin:
        row = admin.execute("SELECT count(*) FROM shop.orders").fetchone()
    assert row is not None
    assert row[0] > 10


def test_a_tls_backup_against_a_server_without_tls_fails_before_logging_in(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    pg_database: pg.PgDatabase,
    s3_bucket: S3Bucket,
) -> None:
    cluster.secret("db", {"password": pg_database.password})
    cluster.secret(
        "s3",
        {
            "AWS_ACCESS_KEY_ID": s3_bucket.env["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s3_bucket.env["AWS_SECRET_ACCESS_KEY"],
        },
    )
    storage = {
        "s3": {
            "bucket": s3_bucket.bucket,
            "endpoint": s3_bucket.endpoint,
            "region": "us-east-1",
            "credentialsSecretRef": {"name": "s3"},
            "forcePathStyle": True,
        }
    }
    database = _tls_database(pg_database, {"mode": "Require"})

    cluster.create("backups", "cleartext", {"database": database, "storage": storage})
    status = cluster.wait_phase("backups", "cleartext", "Completed", "Failed")

    assert status["phase"] == "Failed", status
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["reason"] == "TlsUnavailable", ready
    assert "nothing was sent" in ready["message"]
    assert pg_database.password not in str(status)
