"""Progress as a Backup's status shows it: the real worker backs up the full PostgreSQL data set to
S3, reporting to a Backup on the test API server exactly as in a Job (`--progress json
--report-status backups/NS/NAME`), while a watch records every status write as it arrives.

Measured: how long after the worker process started its first progress write reached the status;
whether the percent ever went backwards (in the status and in the worker's own JSON lines); and
how far the percent was from the truth at the halfway mark. The truth is known only afterwards:
the dump's real size (the manifest's raw size), so a snapshot's truth is its `bytesDone` over that
size. The halfway mark is the snapshot whose truth is nearest 50%.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.scenarios import BUCKET, LIFEBOAT, Scenario
from benchmarks.servers import Postgres, S3Server

REPO = Path(__file__).resolve().parent.parent
NAME = "progress-bench"


@dataclass
class Snapshot:
    at: float
    """Seconds after the worker process started."""
    stage: str
    percent: float
    bytes_done: int


@dataclass
class ProgressReport:
    database: str
    raw_size: int = 0
    status: list[Snapshot] = field(default_factory=list)
    lines: list[Snapshot] = field(default_factory=list)
    wall: float = 0.0
    error: str | None = None

    @property
    def first_write(self) -> float | None:
        return self.status[0].at if self.status else None

    @staticmethod
    def backwards(snapshots: list[Snapshot]) -> int:
        return sum(1 for a, b in itertools.pairwise(snapshots) if b.percent < a.percent)

    def halfway(self, snapshots: list[Snapshot]) -> tuple[Snapshot, float] | None:
        """The dumping snapshot whose truth is nearest 50%, and that truth."""
        dumping = [s for s in snapshots if s.stage == "dumping" and self.raw_size]
        if not dumping:
            return None
        best = min(dumping, key=lambda s: abs(s.bytes_done / self.raw_size * 100 - 50))
        return best, best.bytes_done / self.raw_size * 100

    def worst(self, snapshots: list[Snapshot]) -> float | None:
        errors = [
            abs(s.percent - s.bytes_done / self.raw_size * 100)
            for s in snapshots
            if s.stage == "dumping" and self.raw_size
        ]
        return max(errors) if errors else None

    def to_json(self) -> dict[str, object]:
        return {
            "database": self.database,
            "raw_size": self.raw_size,
            "wall": self.wall,
            "status": [s.__dict__ for s in self.status],
            "lines": [s.__dict__ for s in self.lines],
            "error": self.error,
        }

    def render(self) -> str:
        lines = [
            "",
            f"Progress: `lifeboat backup` of {self.database} to S3 ({self.raw_size / 2**20:,.0f} "
            f"MiB dump, {self.wall:.1f} s), reporting to a Backup's status on the test API server",
        ]
        if self.error:
            lines.append(f"  error: {self.error}")
        first = self.first_write
        lines.append(
            f"  status writes: {len(self.status)}; the first reached the status "
            + ("never" if first is None else f"{first:.2f} s after the worker started")
            + f"; JSON progress lines: {len(self.lines)}"
        )
        for what, snapshots in (("status", self.status), ("JSON lines", self.lines)):
            half = self.halfway(snapshots)
            worst = self.worst(snapshots)
            lines.append(
                f"  {what}: percent went backwards {self.backwards(snapshots)} time(s); "
                + (
                    "no snapshot while dumping"
                    if half is None
                    else f"nearest the halfway mark: {half[0].percent:.1f}% shown at a true "
                    f"{half[1]:.1f}% ({half[0].percent - half[1]:+.1f} points, at "
                    f"{half[0].at:.1f} s)"
                )
                + ("" if worst is None else f"; largest error while dumping {worst:.1f} points")
            )
        ok_first = first is not None and first <= 5.0
        lines.append(f"  [{'MET ' if ok_first else 'MISS'}] first progress write within 5 s")
        ok_back = self.backwards(self.status) == 0 and self.backwards(self.lines) == 0
        lines.append(f"  [{'MET ' if ok_back else 'MISS'}] percent never goes backwards")
        half = self.halfway(self.status) or self.halfway(self.lines)
        if half is not None:
            ok = abs(half[0].percent - half[1]) <= 10
            lines.append(
                f"  [{'MET ' if ok else 'MISS'}] within 10 points of the truth at the halfway "
                f"mark: {half[0].percent - half[1]:+.1f}"
            )
        return "\n".join(lines)


class _Watch(threading.Thread):
    def __init__(self, url: str, token: str, t0: list[float]) -> None:
        super().__init__(daemon=True, name="progress-watch")
        self.url, self.token, self.t0 = url, token, t0
        self.snapshots: list[Snapshot] = []
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        request = urllib.request.Request(  # noqa: S310 (our own test server)
            f"{self.url}/apis/lifeboat.dev/v1alpha1/namespaces/default/backups"
            f"?watch=true&fieldSelector=metadata.name%3D{NAME}&timeoutSeconds=3600",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        last: Any = None
        try:
            with urllib.request.urlopen(request, timeout=3600) as response:  # noqa: S310
                self.ready.set()
                for raw in response:
                    if not raw.strip():
                        continue
                    event = json.loads(raw)
                    progress = ((event.get("object") or {}).get("status") or {}).get("progress")
                    if progress and progress != last and self.t0:
                        last = progress
                        self.snapshots.append(
                            Snapshot(
                                time.monotonic() - self.t0[0],
                                progress.get("stage", ""),
                                float(progress.get("percent", 0.0)),
                                int(progress.get("bytesDone", 0)),
                            )
                        )
                        if progress.get("stage") == "done":
                            return
        except Exception as exc:  # noqa: BLE001 (reported with the result)
            self.error = exc
            self.ready.set()


def measure_progress(server: Postgres, scenario: Scenario, s3: S3Server) -> ProgressReport:
    sys.path.insert(0, str(REPO))
    import kubernetes
    from tests.support.kube.server import KubeServer

    report = ProgressReport(database=f"{scenario.name} ({scenario.dbname})")
    with contextlib.ExitStack() as stack:
        kube = stack.enter_context(KubeServer(crd_paths=[REPO / "crds"]))
        api = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))
        stack.callback(api.close)
        kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
            "lifeboat.dev",
            "v1alpha1",
            "default",
            "backups",
            {
                "apiVersion": "lifeboat.dev/v1alpha1",
                "kind": "Backup",
                "metadata": {"name": NAME},
                "spec": {
                    "database": {"engine": "sqlite", "persistentVolumeClaim": "d", "path": "x"},
                    "storage": {"volume": {"persistentVolumeClaim": "b"}},
                },
            },
        )
        t0: list[float] = []
        watch = _Watch(kube.url, "lifeboat-test-token", t0)
        watch.start()
        watch.ready.wait(30)
        argv = [
            LIFEBOAT,
            "backup",
            server.url(scenario.dbname),
            f"s3://{BUCKET}/progress/",
            "--overwrite",
            "--progress",
            "json",
            "--report-status",
            f"backups/default/{NAME}",
        ]
        env = {**os.environ, **server.env, **s3.env, "KUBECONFIG": str(kube.kubeconfig)}
        t0.append(time.monotonic())
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        for raw in proc.stderr:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                snap = json.loads(raw)["progress"]
                report.lines.append(
                    Snapshot(
                        time.monotonic() - t0[0],
                        snap["stage"],
                        float(snap["percent"]),
                        int(snap["bytes_done"]),
                    )
                )
        code = proc.wait()
        report.wall = time.monotonic() - t0[0]
        watch.join(timeout=30)
        report.status = list(watch.snapshots)
        if code != 0:
            report.error = f"the backup exited with {code}"
            return report
        body = s3.client().get_object(Bucket=BUCKET, Key="progress/manifest.json")["Body"].read()
        report.raw_size = int(json.loads(body)["artifact"]["raw_size"])
        if watch.error is not None:
            report.error = f"watch failed: {watch.error!r}"
    return report
