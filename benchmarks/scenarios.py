"""What is timed, per engine and database size: the limits (the dump or restore tool alone), the
peer pipeline users run today, and Lifeboat's backups and restore.

Every task names the command it runs exactly as a person would type it; `prepare` runs before
the clock starts (an empty target database, an empty directory) and `collect` after it stops
(the artifact's size, then its removal, since moto keeps every object in memory).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from benchmarks.servers import MariaDB, Postgres, S3Server

LIFEBOAT = str(Path(sys.executable).parent / "lifeboat")
BUCKET = "bench"

LIMIT_BACKUP = "limit-backup"
LIFEBOAT_S3 = "lifeboat-s3"
LIFEBOAT_DIR = "lifeboat-dir"
PEER = "peer"
LIMIT_RESTORE = "limit-restore"
LIFEBOAT_RESTORE = "lifeboat-restore"
BACKUP_TASKS = (LIMIT_BACKUP, LIFEBOAT_S3, LIFEBOAT_DIR, PEER)
RESTORE_TASKS = (LIMIT_RESTORE, LIFEBOAT_RESTORE)


@dataclass
class Task:
    key: str
    label: str
    commands: list[list[str]]
    env: dict[str, str]
    stdin: Path | None = None
    prepare: Callable[[], None] | None = None
    collect: Callable[[], dict[str, int]] | None = None
    """After the run: {'artifact_bytes': ..., 'raw_bytes': ...} where it applies."""
    cleanup: Callable[[], None] | None = None
    sample_worker: bool = False
    """True for `lifeboat`: the first process is the worker whose peak RSS is reported."""


@dataclass
class Scenario:
    """One engine at one size."""

    engine: str
    size_label: str
    dbname: str
    db_bytes: int
    workdir: Path
    s3: S3Server | None
    aws: str | None
    server_pids: list[int]
    settle: Callable[[], None]
    """Before every run: the server writes out what earlier runs left dirty."""
    tasks: dict[str, Task] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    setup: Callable[[], None] | None = None
    """Untimed, once: what the restore limit reads (a dump file)."""

    @property
    def name(self) -> str:
        return f"{self.engine} {self.size_label}"


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _dir_manifest(path: Path) -> dict[str, int]:
    manifest = json.loads((path / "manifest.json").read_text())
    art = manifest["artifact"]
    return {"artifact_bytes": art["size"], "raw_bytes": art["raw_size"]}


def _s3_manifest(s3: S3Server, prefix: str) -> dict[str, int]:
    body = s3.client().get_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json")["Body"].read()
    art = json.loads(body)["artifact"]
    return {"artifact_bytes": art["size"], "raw_bytes": art["raw_size"]}


def _s3_clear(s3: S3Server, prefix: str) -> None:
    client = s3.client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])
    if listed:
        client.delete_objects(
            Bucket=BUCKET, Delete={"Objects": [{"Key": o["Key"]} for o in listed], "Quiet": True}
        )


def _peer_upload(aws: str, s3: S3Server, key: str) -> list[str]:
    return [aws, "s3", "cp", "-", f"s3://{BUCKET}/{key}", "--endpoint-url", s3.endpoint, "--quiet"]


class _Server(Protocol):
    """What the Lifeboat tasks need of a database server (PostgreSQL, MariaDB)."""

    def url(self, dbname: str) -> str: ...
    def recreate(self, dbname: str) -> None: ...
    def drop(self, dbname: str) -> None: ...


def _lifeboat_tasks(
    scenario: Scenario, server: _Server, env: dict[str, str], dump: list[str], restore_file: Path
) -> None:
    """Lifeboat's backups (to a directory, to S3) and restore of `scenario.dbname`, and the
    set-up writing the dump file the restore limit reads."""
    url = server.url(scenario.dbname)
    target = f"{scenario.dbname}_lifeboat_restore"
    scenario.setup = lambda: _write_dump(dump, env, restore_file)
    tag = f"{scenario.engine}-{scenario.size_label}".replace(" ", "")
    directory = scenario.workdir / f"lifeboat-{tag}"
    scenario.tasks[LIFEBOAT_DIR] = Task(
        LIFEBOAT_DIR,
        "lifeboat backup -> directory",
        [[LIFEBOAT, "backup", url, str(directory), "--progress", "none"]],
        env,
        prepare=lambda: _remove(directory),
        collect=lambda: _dir_manifest(directory),
        cleanup=lambda: _remove(directory),
        sample_worker=True,
    )
    if scenario.s3 is not None:
        s3 = scenario.s3
        prefix = f"run-{tag}"
        scenario.tasks[LIFEBOAT_S3] = Task(
            LIFEBOAT_S3,
            "lifeboat backup -> S3",
            [[LIFEBOAT, "backup", url, f"s3://{BUCKET}/{prefix}/", "--progress", "none"]],
            {**env, **s3.env},
            prepare=lambda: _s3_clear(s3, prefix),
            collect=lambda: _s3_manifest(s3, prefix),
            cleanup=lambda: _s3_clear(s3, prefix),
            sample_worker=True,
        )
        scenario.tasks[LIFEBOAT_RESTORE] = Task(
            LIFEBOAT_RESTORE,
            "lifeboat restore <- S3 (checksum pass, proof, commit)",
            [
                [
                    LIFEBOAT,
                    "restore",
                    f"s3://{BUCKET}/seed-{tag}/",
                    server.url(target),
                    "--progress",
                    "none",
                ]
            ],
            {**env, **s3.env},
            prepare=lambda: server.recreate(target),
            cleanup=lambda: server.drop(target),
            sample_worker=True,
        )


def seed_backup(scenario: Scenario) -> None:
    """The backup every Lifeboat restore of the rounds reads (made once, not timed)."""
    task = scenario.tasks.get(LIFEBOAT_S3)
    if task is None:
        return
    tag = f"{scenario.engine}-{scenario.size_label}".replace(" ", "")
    argv = [a.replace(f"/run-{tag}/", f"/seed-{tag}/") for a in task.commands[0]]
    subprocess.run(
        [*argv, "--overwrite"], env={**os.environ, **task.env}, check=True, capture_output=True
    )


def postgres_scenario(
    server: Postgres,
    dbname: str,
    size_label: str,
    db_bytes: int,
    workdir: Path,
    s3: S3Server | None,
    aws: str | None,
) -> Scenario:
    scenario = Scenario(
        "PostgreSQL",
        size_label,
        dbname,
        db_bytes,
        workdir,
        s3,
        aws,
        [server.postmaster_pid],
        server.settle,
    )
    env = server.env
    dump = ["pg_dump", "-Fc", "-Z0", *server.tool_args, dbname]
    scenario.tasks[LIMIT_BACKUP] = Task(
        LIMIT_BACKUP, "limit: pg_dump -Fc -Z0 > /dev/null", [dump], env
    )
    if shutil.which("pigz"):
        _peer_task(
            scenario,
            "peer (Zalando): pg_dump -Fc -Z0 | pigz | aws s3 cp -",
            dump,
            "pigz",
            env,
            key=f"peer-{dbname}/dump.pgc.gz",
        )
    else:
        scenario.notes.append("peer skipped: it needs pigz, awscli and the S3 server")
    restore_file = workdir / f"{dbname}.pgc"
    limit_target = f"{dbname}_limit_restore"
    scenario.tasks[LIMIT_RESTORE] = Task(
        LIMIT_RESTORE,
        "restore limit: pg_restore --single-transaction -d (local -Fc file)",
        [
            [
                "pg_restore",
                "--single-transaction",
                *server.tool_args,
                "-d",
                limit_target,
                str(restore_file),
            ]
        ],
        env,
        prepare=lambda: server.recreate(limit_target),
        cleanup=lambda: server.drop(limit_target),
    )
    _lifeboat_tasks(scenario, server, env, dump, restore_file)
    return scenario


def mariadb_scenario(
    server: MariaDB,
    dbname: str,
    size_label: str,
    db_bytes: int,
    workdir: Path,
    s3: S3Server | None,
    aws: str | None,
) -> Scenario:
    scenario = Scenario(
        "MariaDB",
        size_label,
        dbname,
        db_bytes,
        workdir,
        s3,
        aws,
        [server.process.pid],
        server.settle,
    )
    env = server.env
    dump = ["mariadb-dump", *server.tool_args, "--single-transaction", "--quick", dbname]
    scenario.tasks[LIMIT_BACKUP] = Task(
        LIMIT_BACKUP, "limit: mariadb-dump --single-transaction --quick > /dev/null", [dump], env
    )
    _peer_task(
        scenario,
        "peer: mariadb-dump --single-transaction --quick | gzip | aws s3 cp -",
        dump,
        "gzip",
        env,
        key=f"peer-{dbname}/dump.sql.gz",
    )
    restore_file = workdir / f"{dbname}.sql"
    limit_target = f"{dbname}_limit_restore"
    scenario.tasks[LIMIT_RESTORE] = Task(
        LIMIT_RESTORE,
        "restore limit: mariadb DB < dump.sql (empty database)",
        [["mariadb", *server.tool_args, limit_target]],
        env,
        stdin=restore_file,
        prepare=lambda: server.recreate(limit_target),
        cleanup=lambda: server.drop(limit_target),
    )
    _lifeboat_tasks(scenario, server, env, dump, restore_file)
    return scenario


def _peer_task(
    scenario: Scenario,
    title: str,
    dump: list[str],
    compressor: str,
    env: dict[str, str],
    *,
    key: str,
) -> None:
    """What the peers do: the dump tool piped through a compressor into `aws s3 cp -`."""
    s3, aws = scenario.s3, scenario.aws
    if s3 is None or aws is None:
        scenario.notes.append("peer skipped: it needs awscli and the S3 server")
        return
    scenario.tasks[PEER] = Task(
        PEER,
        title,
        [dump, [compressor], _peer_upload(aws, s3, key)],
        {**env, **s3.env},
        collect=lambda: {"artifact_bytes": s3.object_size(BUCKET, key)},
        cleanup=lambda: _s3_clear(s3, key.split("/")[0]),
    )


def _write_dump(dump: list[str], env: dict[str, str], path: Path) -> None:
    with path.open("wb") as out:
        subprocess.run(dump, env={**os.environ, **env}, stdout=out, check=True)


def set_up(scenario: Scenario) -> None:
    """Untimed: one dump to a file (which also warms the caches), the seed backup."""
    if scenario.setup is not None:
        scenario.setup()
    seed_backup(scenario)
