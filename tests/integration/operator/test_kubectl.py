"""What people see: real kubectl against the operator's resources."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.integration.operator.conftest import Cluster, OperatorControl, SqliteShop

MANIFEST = """\
apiVersion: lifeboat.dev/v1alpha1
kind: Backup
metadata:
  name: shop-db
  namespace: {namespace}
spec:
  database:
    engine: sqlite
    persistentVolumeClaim: app-data
    path: shop.db
  storage:
    volume:
      persistentVolumeClaim: backups
  compression: zstd
  deletionPolicy: Delete
"""


def kubectl(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def parse_table(text: str) -> tuple[list[str], dict[str, str]]:
    """kubectl's columns by their header offsets (cells may contain spaces)."""
    lines = text.splitlines()
    header = lines[0]
    names = header.split()
    starts = [header.index(name) for name in names]
    ends = [*starts[1:], None]
    row = {n: lines[1][a:b].strip() for n, a, b in zip(names, starts, ends, strict=True)}
    return names, row


def test_apply_get_wait_describe(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    sqlite_shop: SqliteShop,
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "backup.yaml"
    manifest.write_text(MANIFEST.format(namespace=cluster.namespace))
    applied = kubectl(cluster, "apply", "-f", str(manifest))
    assert "backup.lifeboat.dev/shop-db created" in applied.stdout

    waited = kubectl(cluster, "wait", "--for=condition=Ready", "backup/shop-db", "--timeout=60s")
    assert "condition met" in waited.stdout

    header, row = parse_table(kubectl(cluster, "get", "backups").stdout)
    assert header == ["NAME", "PHASE", "PROGRESS", "SIZE", "AGE"]
    assert (row["NAME"], row["PHASE"], row["PROGRESS"]) == ("shop-db", "Completed", "100%")
    assert row["SIZE"].endswith(" KiB")

    header, row = parse_table(kubectl(cluster, "get", "backups", "-o", "wide").stdout)
    assert header[:5] == ["NAME", "PHASE", "PROGRESS", "SIZE", "AGE"]
    assert {"ENGINE", "DATABASE", "JOB"} <= set(header)
    assert row["ENGINE"] == "sqlite"
    assert row["DATABASE"] == "shop.db"
    assert row["JOB"] == cluster.status("backups", "shop-db")["jobName"]

    described = kubectl(cluster, "describe", "backup", "shop-db").stdout
    assert "JobCreated" in described
    assert "Completed" in described

    short = kubectl(cluster, "get", "lbb").stdout
    assert "shop-db" in short

    again = kubectl(cluster, "apply", "-f", str(manifest))
    assert "unchanged" in again.stdout


def test_kubectl_apply_rejects_an_invalid_backup_with_the_field_named(
    cluster: Cluster, tmp_path: Path
) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        MANIFEST.format(namespace=cluster.namespace).replace("engine: sqlite", "engine: oracle")
    )
    rejected = kubectl(cluster, "apply", "-f", str(manifest), check=False)
    assert rejected.returncode != 0
    assert "spec.database.engine" in rejected.stderr
    assert "oracle" in rejected.stderr
