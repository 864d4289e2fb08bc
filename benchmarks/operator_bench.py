"""The operator at scale: N Backups applied at once against the project's Kubernetes API test
server (tests/support/kube), with the real operator (`lifeboat operator`, a process of its own)
and the test Job runner playing the Job controller and kubelet.

The Jobs run a worker stand-in, because a thousand real workers would measure the two CPUs, not
the operator: a small stdlib-only program that does what the worker does to the Backup's status,
at the worker's cadence (`status_writer.PROGRESS_WRITE_INTERVAL`), for
`--operator-work-seconds`: progress writes, the final progress, then the artifact (the bodies are
made by the API's own models, so they pass the CRD schema), then exits 0. Its running time is the
thing under test here only in that the operator must keep quiet while Jobs run.

Measured, from outside the operator: the time until every Job exists and until every Backup is
Completed, that there is exactly one Job per Backup (count, names, owner uids), every status
write (a watch on Backups: a MODIFIED event whose status differs from the one before), the
status writes per object per second while its Job runs (from the first status write after the
Job started to Completed), and the operator process's peak RSS and CPU.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.measure import _HighWaterMark
from benchmarks.servers import pid_cpu_seconds

REPO = Path(__file__).resolve().parent.parent
GROUP, VERSION = "lifeboat.dev", "v1alpha1"
NAMESPACE = "default"
IMAGE = "lifeboat-bench-standin:1"

STAND_IN = """\
import json, os, sys, time, urllib.request
args = sys.argv[1:]
plural, namespace, name = args[args.index("--report-status") + 1].split("/")
conf = json.load(open(os.environ["LIFEBOAT_BENCH_STANDIN"]))
url = f"{conf['server']}/apis/lifeboat.dev/v1alpha1/namespaces/{namespace}/{plural}/{name}/status"
def patch(status):
    body = json.dumps({"status": status}).encode()
    request = urllib.request.Request(url, data=body, method="PATCH", headers={
        "Content-Type": "application/merge-patch+json",
        "Authorization": "Bearer " + conf["token"]})
    urllib.request.urlopen(request, timeout=60).read()
started = time.monotonic()
while (elapsed := time.monotonic() - started) < conf["work_seconds"]:
    progress = dict(conf["progress"], percent=round(99 * elapsed / conf["work_seconds"], 1),
                    elapsedSeconds=round(elapsed, 3))
    patch({"progress": progress})
    time.sleep(min(conf["interval"], conf["work_seconds"] - elapsed))  # the worker's cadence
patch({"progress": conf["final_progress"]})
patch({"artifact": conf["artifact"]})
"""


@dataclass
class OperatorReport:
    backups: int
    work_seconds: float
    jobs: int = 0
    duplicates: int = 0
    missing: int = 0
    applied_seconds: float = 0.0
    all_jobs_seconds: float | None = None
    all_completed_seconds: float | None = None
    completed: int = 0
    writes_per_object: list[int] = field(default_factory=list)
    rates_while_running: list[float] = field(default_factory=list)
    operator_peak_rss_mib: float = 0.0
    operator_cpu_seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k not in ("rates_while_running",)} | {
            "rate_median": self.rate_median,
            "rate_max": self.rate_max,
        }

    @property
    def rate_median(self) -> float | None:
        return statistics.median(self.rates_while_running) if self.rates_while_running else None

    @property
    def rate_max(self) -> float | None:
        return max(self.rates_while_running) if self.rates_while_running else None

    def render(self) -> str:
        def fmt(v: float | None, unit: str = " s") -> str:
            return "-" if v is None else f"{v:.2f}{unit}" if unit == "/s" else f"{v:.1f}{unit}"

        writes = self.writes_per_object
        lines = [
            "",
            f"Operator: {self.backups} Backups applied at once (test API server, the real "
            f"`lifeboat operator` process, a worker stand-in running {self.work_seconds:g} s "
            "per Job)",
            f"  applied in {self.applied_seconds:.1f} s; every Job existed after "
            f"{fmt(self.all_jobs_seconds)}; all Completed after "
            f"{fmt(self.all_completed_seconds)} ({self.completed}/{self.backups})",
            f"  Jobs: {self.jobs} for {self.backups} Backups, duplicates {self.duplicates}, "
            f"Backups without a Job {self.missing}",
            "  status writes per object: "
            + (
                f"median {statistics.median(writes):.0f}, max {max(writes)} in total; "
                if writes
                else ""
            )
            + f"while running: median {fmt(self.rate_median, '/s')}, max {fmt(self.rate_max, '/s')}"
            " (every status write from the Running transition to the Completed one, inclusive, "
            "over that time; target <= 0.5/s)",
            f"  operator: peak RSS {self.operator_peak_rss_mib:.0f} MiB, CPU "
            f"{self.operator_cpu_seconds:.1f} s",
        ]
        exact = self.jobs == self.backups and self.duplicates == 0 and self.missing == 0
        lines.append(f"  [{'MET ' if exact else 'MISS'}] exactly one Job per Backup")
        if self.rate_max is not None:
            lines.append(
                f"  [{'MET ' if self.rate_max <= 0.5 else 'MISS'}] status writes per object per "
                f"second while running <= 0.5: max {self.rate_max:.2f}"
            )
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


def _status_bodies() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    sys.path.insert(0, str(REPO / "operator"))
    from lifeboat.api import BackupArtifact, Compression, Engine, ProgressStatus

    now = datetime.now(UTC)
    progress = ProgressStatus(
        percent=0.0,
        bytes_done=0,
        bytes_total=100 * 2**20,
        items_done=0,
        items_total=3,
        elapsed_seconds=0.0,
        stage="dumping",
        updated_at=now,
    ).to_api_dict()
    final = ProgressStatus(
        percent=100.0,
        bytes_done=100 * 2**20,
        bytes_total=100 * 2**20,
        items_done=3,
        items_total=3,
        elapsed_seconds=1.0,
        stage="done",
        updated_at=now,
    ).to_api_dict()
    artifact = BackupArtifact(
        uri="file:///backups/nightly/sqlite.dump.zst",
        manifest_uri="file:///backups/nightly/manifest.json",
        size=12345,
        raw_size=54321,
        sha256="0" * 64,
        compression=Compression.ZSTD,
        engine=Engine("sqlite"),
        server_version="3",
        database="/data/shop.db",
        tables=3,
        rows=300,
    ).to_api_dict()
    return progress, final, artifact


class _BackupWatch(threading.Thread):
    """Watches every Backup; counts status writes and notes phases with their times."""

    def __init__(self, server_url: str, token: str) -> None:
        super().__init__(daemon=True, name="backup-watch")
        self.url = server_url
        self.token = token
        self.status: dict[str, dict[str, Any]] = {}
        self.writes: dict[str, list[float]] = {}
        self.phase_at: dict[str, dict[str, float]] = {}
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            request = urllib.request.Request(  # noqa: S310 (our own test server)
                f"{self.url}/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/backups"
                "?watch=true&timeoutSeconds=3600&allowWatchBookmarks=true",
                headers={"Authorization": f"Bearer {self.token}"},
            )
            with urllib.request.urlopen(request, timeout=3600) as response:  # noqa: S310
                self.ready.set()
                for line in response:
                    if self.stopping.is_set():
                        return
                    if line.strip():
                        self._event(json.loads(line), time.monotonic())
        except Exception as exc:  # noqa: BLE001 (reported with the result)
            self.error = exc
            self.ready.set()

    def _event(self, event: dict[str, Any], at: float) -> None:
        obj = event.get("object") or {}
        name = (obj.get("metadata") or {}).get("name")
        if not name or event.get("type") not in ("ADDED", "MODIFIED"):
            return
        status = obj.get("status") or {}
        if name in self.status and status != self.status[name]:
            self.writes.setdefault(name, []).append(at)
        self.status[name] = status
        phase = status.get("phase")
        if phase:
            self.phase_at.setdefault(name, {}).setdefault(phase, at)


def _readiness_url(argv: list[str]) -> str | None:
    """A readiness probe URL if this operator serves one (so the burst starts once it watches;
    without one, its start-up is part of the time until every Job exists)."""
    help_text = subprocess.run(
        [*argv[:4], "--help"], capture_output=True, text=True, check=False
    ).stdout
    if "--readiness" not in help_text:
        return None
    from benchmarks.servers import free_port

    return f"http://127.0.0.1:{free_port()}/readyz"


SERVER_MAIN = """\
import sys, pathlib
sys.path.insert(0, sys.argv[1])
from tests.support.kube.server import KubeServer
server = KubeServer(crd_paths=[pathlib.Path(sys.argv[1]) / "crds"]).start()
print(server.url, server.kubeconfig, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
server.stop()
"""


class _ServerProcess:
    """tests/support/kube's API server, run in a Python process of its own."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self.url = ""
        self.kubeconfig = Path()
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> _ServerProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-c", SERVER_MAIN, str(REPO)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self._tmp / "kube-server.log").open("w"),
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().split()
        if len(line) != 2:
            self.__exit__()
            raise RuntimeError(f"the test API server did not start: {self._tmp}/kube-server.log")
        self.url, self.kubeconfig = line[0], Path(line[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is None:
            return
        with contextlib.suppress(OSError):
            assert self._process.stdin is not None
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _wait_ready(url: str, operator: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and operator.poll() is None:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as response,  # noqa: S310 (ours)
        ):
            if response.status == 200:
                return
        time.sleep(0.1)  # polling the probe


def measure_operator(count: int, work_seconds: float) -> OperatorReport:
    sys.path.insert(0, str(REPO))
    import kubernetes
    from tests.support.kube.jobs import Image, JobRunner

    report = OperatorReport(backups=count, work_seconds=work_seconds)
    progress, final, artifact = _status_bodies()
    from lifeboat.worker.status_writer import PROGRESS_WRITE_INTERVAL as interval

    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="lifeboat-operator-bench-"))
        stack.callback(lambda: subprocess.run(["rm", "-rf", str(tmp)], check=False))
        # The API server in a process of its own: in the benchmark's process it would share
        # one interpreter (and its GIL) with the Job runner and the watch, and on two CPUs that
        # process, not the operator, would set the pace.
        server = stack.enter_context(_ServerProcess(tmp))
        token = "lifeboat-test-token"
        stand_in = tmp / "stand-in.py"
        stand_in.write_text(f"#!{sys.executable} -SI\n" + STAND_IN)
        stand_in.chmod(0o755)
        config = tmp / "stand-in.json"
        config.write_text(
            json.dumps(
                {
                    "server": server.url,
                    "token": token,
                    "work_seconds": work_seconds,
                    "interval": interval,
                    "progress": progress,
                    "final_progress": final,
                    "artifact": artifact,
                }
            )
        )
        for directory in ("app-data", "backups"):
            (tmp / directory).mkdir()
        runner = JobRunner(
            server.url,
            token=token,
            images={IMAGE: Image(executables={"lifeboat": str(stand_in)})},
            extra_env={"LIFEBOAT_BENCH_STANDIN": str(config)},
            volumes={"app-data": tmp / "app-data", "backups": tmp / "backups"},
        )
        stack.enter_context(runner)
        watch = _BackupWatch(server.url, token)
        watch.start()
        stack.callback(watch.stopping.set)
        watch.ready.wait(30)
        argv = [
            sys.executable,
            "-m",
            "lifeboat",
            "operator",
            "--kubeconfig",
            str(server.kubeconfig),
            "--all-namespaces",
            "--worker-image",
            IMAGE,
        ]
        readiness = _readiness_url(argv)
        operator = subprocess.Popen(
            argv + (["--readiness", readiness] if readiness else []),
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "operator.log").open("wb"),
        )
        rss = _HighWaterMark(operator.pid)
        rss.start()

        def stop_operator() -> None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                report.operator_cpu_seconds = pid_cpu_seconds(operator.pid)
            operator.terminate()
            try:
                operator.wait(timeout=60)
            except subprocess.TimeoutExpired:
                operator.kill()
            rss.stop.set()
            rss.join()
            report.operator_peak_rss_mib = rss.kib / 1024

        stack.callback(stop_operator)
        api = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
        stack.callback(api.close)
        custom = kubernetes.client.CustomObjectsApi(api)
        batch = kubernetes.client.BatchV1Api(api)
        if readiness is not None:
            _wait_ready(readiness, operator, 120)

        def create(i: int) -> str:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Backup",
                "metadata": {"name": f"b{i:05d}", "namespace": NAMESPACE},
                "spec": {
                    "database": {
                        "engine": "sqlite",
                        "persistentVolumeClaim": "app-data",
                        "path": "shop.db",
                    },
                    "storage": {"volume": {"persistentVolumeClaim": "backups", "path": "b"}},
                },
            }
            created = custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "backups", body
            )
            return str(created["metadata"]["uid"])

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            uids = list(pool.map(create, range(count)))
        report.applied_seconds = time.monotonic() - started
        # The test API server, the Job runner and a Python process per running stand-in share
        # the machine with the operator: on 2 CPUs they start about 1.5 Jobs/s (the operator
        # itself stays under 10% of a CPU), so 1,000 Backups need well over 1,000 s.
        deadline = started + max(600.0, count * 2.5 + work_seconds)
        jobs: list[Any] = []
        while time.monotonic() < deadline:
            jobs = batch.list_namespaced_job(NAMESPACE).items
            if report.all_jobs_seconds is None and len(jobs) >= count:
                report.all_jobs_seconds = time.monotonic() - started
            done = sum(
                1 for s in list(watch.status.values()) if s.get("phase") in ("Completed", "Failed")
            )
            report.completed = sum(
                1 for s in list(watch.status.values()) if s.get("phase") == "Completed"
            )
            if done >= count:
                report.all_completed_seconds = time.monotonic() - started
                break
            if operator.poll() is not None:
                report.error = f"the operator exited with {operator.returncode}"
                break
            time.sleep(0.25)  # polling the API for the end of the run
        else:
            report.error = "not every Backup finished before the deadline"
        time.sleep(1.0)  # late writes (there should be none) still count
        jobs = batch.list_namespaced_job(NAMESPACE).items
        report.jobs = len(jobs)
        owners = [
            (j.metadata.owner_references or [None])[0].uid
            for j in jobs
            if j.metadata.owner_references
        ]
        report.duplicates = len(owners) - len(set(owners))
        report.missing = len(set(uids) - set(owners))
        for name, writes in watch.writes.items():
            report.writes_per_object.append(len(writes))
            phases = watch.phase_at.get(name, {})
            end = phases.get("Completed")
            running = phases.get("Running")
            if end is None or running is None:
                continue
            during = [t for t in writes if running <= t <= end]
            window = end - running
            if window > 0:
                report.rates_while_running.append(len(during) / window)
        if watch.error is not None and report.error is None:
            report.error = f"watch failed: {watch.error!r}"
        if runner.errors and report.error is None:
            report.error = f"job runner: {runner.errors[:3]!r}"
    return report
