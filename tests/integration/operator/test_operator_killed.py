"""The operator SIGKILLed at random points with 50+ Backups and Restores in flight.

The real `lifeboat operator` runs as a process and is killed with SIGKILL (no shutdown, no
finalizers released, no status flushed: what a node failure or an OOM kill does) after a random
number of changes it caused has been observed on the API: Jobs created, phases written. Then it
is started again. The workers run for real (SQLite backups to a volume, restores into their own
copies of the database), so every object must end `Completed`, through exactly one Job that ran
exactly once, and every restored database must equal the backed-up one.

The randomness is seeded: `LIFEBOAT_CHAOS_SEED=N` replays a run, and a failure names its seed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lifeboat.builders.naming import child_name
from lifeboat.cli.demo import fingerprint
from tests.integration.operator.conftest import (
    GROUP,
    VERSION,
    Cluster,
    SqliteShop,
    operator_command,
)

pytestmark = pytest.mark.faults

BACKUPS = 30
RESTORES = 25
KILLS = 6
FINAL = ("Completed", "Failed")


@dataclass
class Chaos:
    """The operator process and what the test has seen it do."""

    cluster: Cluster
    logs: Path
    seed: int
    rng: random.Random = field(init=False)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def start(self) -> None:
        self.starts += 1
        with (self.logs / f"operator-{self.starts}.log").open("wb") as out:
            self.process = subprocess.Popen(
                operator_command(self.cluster, "--backup-wait-seconds", "600", debug=True),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self, why: str) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.kills.append(why)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def changes(self) -> int:
        """What the operator has done so far, as seen on the API: Jobs and phases written."""
        jobs = len(self.cluster.jobs())
        phases = sum(1 for status in self.statuses().values() if status.get("phase"))
        return jobs + phases

    def statuses(self) -> dict[tuple[str, str], dict[str, Any]]:
        found = {}
        for plural in ("backups", "restores"):
            listed = self.cluster.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.cluster.namespace, plural
            )
            for item in listed["items"]:
                found[plural, item["metadata"]["name"]] = item.get("status") or {}
        return found

    def all_final(self) -> bool:
        statuses = self.statuses()
        return len(statuses) == BACKUPS + RESTORES and all(
            status.get("phase") in FINAL for status in statuses.values()
        )


@pytest.fixture
def chaos(cluster: Cluster, tmp_path: Path) -> Iterator[Chaos]:
    seed = int(os.environ.get("LIFEBOAT_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"LIFEBOAT_CHAOS_SEED={seed}")  # shown with the failure; replays this run
    logs = tmp_path / "logs"
    logs.mkdir()
    control = Chaos(cluster, logs, seed)
    try:
        yield control
    finally:
        control.stop()


def test_operator_killed_at_random_points_makes_one_job_per_request_and_all_complete(
    cluster: Cluster, sqlite_shop: SqliteShop, chaos: Chaos
) -> None:
    original = fingerprint(sqlite_shop.db_path)
    targets = []
    for i in range(RESTORES):  # each Restore gets its own copy, changed so a restore shows
        target = sqlite_shop.db_path.with_name(f"restore-{i:02d}.db")
        shutil.copy(sqlite_shop.db_path, target)
        with sqlite3.connect(target) as conn:
            conn.execute("DELETE FROM order_lines")
        targets.append(target.name)

    uids: dict[tuple[str, str], str] = {}
    chaos.start()
    for i in range(BACKUPS):
        created = cluster.create("backups", f"b{i:02d}", sqlite_shop.spec())
        uids["backups", f"b{i:02d}"] = created["metadata"]["uid"]
    for i, target in enumerate(targets):
        spec = {
            "backupRef": {"name": f"b{i:02d}"},
            "target": {"engine": "sqlite", "persistentVolumeClaim": "app-data", "path": target},
        }
        created = cluster.create("restores", f"r{i:02d}", spec)
        uids["restores", f"r{i:02d}"] = created["metadata"]["uid"]

    try:
        for _ in range(KILLS):
            # A random number of further changes, then SIGKILL at once: mid-handler,
            # between a Job's creation and its status write, during start-up and listing.
            wanted = chaos.changes() + chaos.rng.randint(0, 12)
            deadline = time.monotonic() + 20
            while chaos.changes() < wanted and time.monotonic() < deadline:
                if chaos.all_final():
                    break
                time.sleep(0.05)  # the polling interval
            chaos.kill(f"after {chaos.changes()} changes")
            chaos.start()
        cluster.wait_for(chaos.all_final, timeout=180)

        statuses = chaos.statuses()
        not_completed = {
            key: (s.get("phase"), s.get("reason"), s.get("message"))
            for key, s in statuses.items()
            if s.get("phase") != "Completed"
        }
        assert not not_completed, not_completed

        jobs = cluster.jobs()
        expected = sorted(
            child_name(name, uid, plural.removesuffix("s")) for (plural, name), uid in uids.items()
        )
        assert sorted(j["metadata"]["name"] for j in jobs) == expected
        assert sorted(j["metadata"]["ownerReferences"][0]["uid"] for j in jobs) == sorted(
            uids.values()
        )
        runs = {j["metadata"]["name"]: cluster.runner.starts(j["metadata"]["name"]) for j in jobs}
        assert set(runs.values()) == {1}, runs
        assert len(chaos.kills) == KILLS
        for target in targets:
            assert fingerprint(sqlite_shop.db_path.with_name(target)) == original, target
    except BaseException as failure:
        raise AssertionError(
            f"seed {chaos.seed} (rerun with LIFEBOAT_CHAOS_SEED={chaos.seed}); kills: "
            f"{chaos.kills}; operator logs in {chaos.logs}"
        ) from failure
