"""Backup and restore throughput and memory of the worker, next to pg_dump/pg_restore.

Starts a throwaway PostgreSQL server, fills a database of --size-mb with pgbench, then times:

  baseline   pg_dump -Fc -Z0 > /dev/null           (the dump tool alone, no compression)
  lifeboat   backup --compression none  -> local directory
  lifeboat   backup --compression zstd  -> local directory
  lifeboat   backup --compression zstd  -> S3 (moto server over HTTP on 127.0.0.1)
  baseline   pg_restore -d (from a -Fc file)
  lifeboat   restore (zstd, local) with checksum pass, verification and atomic swap

and prints wall time, throughput (database bytes per second), peak RSS (the kernel's
`ru_maxrss` from `wait4`: the largest resident set of the process and of the children it
reaped, so for `lifeboat restore` it includes pg_restore and psql), and each run's time
relative to its baseline. Nothing is estimated: every number
comes from a run in this invocation.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.postgres import _as_postgres, _find_bin_dir, _start_cluster  # noqa: E402

LIFEBOAT = str(Path(sys.executable).parent / "lifeboat")


@dataclass
class Run:
    name: str
    seconds: float
    peak_rss_mib: float
    output_bytes: int | None = None
    baseline: str | None = None


def measure(name: str, argv: list[str], env: dict[str, str], **popen: object) -> Run:
    """Run a command to completion; wall time and the peak RSS the kernel recorded for it."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, **popen)  # type: ignore[call-overload]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed with exit code {proc.returncode}: {' '.join(argv)}")
    return Run(name, elapsed, usage.ru_maxrss / 1024)


def fill_database(server, bin_dir: Path, dbname: str, size_mb: int, env: dict[str, str]) -> int:
    with server.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    # Half pgbench (numbers and blank padding, compresses very well), half an events table of
    # hex text (compresses about 2:1): closer to real data than either alone.
    scale = max(1, round(size_mb / 2 / 15))  # pgbench: ~15 MB per scale unit with indexes
    events = max(1, size_mb // 2) * 4_000  # ~250 bytes per row with its index
    print(f"filling {dbname}: pgbench scale {scale} + {events} event rows...", flush=True)
    subprocess.run(
        [
            str(bin_dir / "pgbench"),
            "-i",
            "-q",
            "-s",
            str(scale),
            "-h",
            server.host,
            "-p",
            str(server.port),
            "-U",
            server.user,
            dbname,
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    with server.connect(dbname) as conn:
        conn.execute(
            "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, kind text, payload text)"
        )
        conn.execute(
            "INSERT INTO events SELECT g, now() - g * interval '1 second', "
            "(ARRAY['click','view','buy'])[1 + g %% 3], "
            "md5(g::text) || md5((g * 31)::text) || md5((g * 77)::text) || md5((g * 97)::text) "
            "FROM generate_series(1, %s) g",
            (events,),
        )
        conn.execute("VACUUM ANALYZE")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None
        return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024, help="database size to generate")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--skip-restore", action="store_true")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the pieces of a backup's overhead: the Python stream alone, row counts "
        "alone, and pg_dump while the counts run",
    )
    args = parser.parse_args()

    bin_dir = _find_bin_dir()
    if bin_dir is None or shutil.which("pg_dump") is None:
        raise SystemExit("PostgreSQL is not installed: run as root `make system-deps` first")
    server, root = _start_cluster(bin_dir)
    work = Path(tempfile.mkdtemp(prefix="lifeboat-bench-"))
    env = {**os.environ, "PGPASSWORD": server.password, "LIFEBOAT_DB_PASSWORD": server.password}
    moto = None
    try:
        db_bytes = fill_database(server, bin_dir, "bench", args.size_mb, env)
        url = f"postgresql://{server.user}@{server.host}:{server.port}/bench"
        pg_args = ["-h", server.host, "-p", str(server.port), "-U", server.user]
        runs: list[Run] = []
        print(f"database size: {db_bytes / 2**20:.0f} MiB; running...", flush=True)

        # Warm-up: the first dump reads the tables from disk into the caches; every run after it
        # finds them there. Without this the baseline would pay for everyone.
        subprocess.run(
            ["pg_dump", "-Fc", "-Z0", *pg_args, "bench"],
            env=env,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        base = measure(
            "pg_dump -Fc -Z0 > /dev/null",
            ["pg_dump", "-Fc", "-Z0", *pg_args, "bench"],
            env,
            stdout=subprocess.DEVNULL,
        )
        runs.append(base)
        for compression in ("none", "zstd"):
            target = work / f"local-{compression}"
            run = measure(
                f"lifeboat backup {compression} -> dir",
                [
                    LIFEBOAT,
                    "backup",
                    url,
                    str(target),
                    "--compression",
                    compression,
                    "--progress",
                    "none",
                ],
                env,
                stdout=subprocess.DEVNULL,
            )
            run.output_bytes = sum(p.stat().st_size for p in target.iterdir())
            run.baseline = base.name
            runs.append(run)

        if args.breakdown:
            runs += breakdown(server, [*pg_args, "bench"], env, work, base.name)

        if not args.skip_s3:
            import boto3
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request else

            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            moto.start()
            host, port = moto.get_host_and_port()
            s3_env = {
                **env,
                "AWS_ENDPOINT_URL": f"http://{host}:{port}",
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            boto3.client(
                "s3",
                endpoint_url=s3_env["AWS_ENDPOINT_URL"],
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
                region_name="us-east-1",
            ).create_bucket(Bucket="bench")
            run = measure(
                "lifeboat backup zstd -> S3",
                [LIFEBOAT, "backup", url, "s3://bench/run/", "--progress", "none"],
                s3_env,
                stdout=subprocess.DEVNULL,
            )
            run.baseline = base.name
            runs.append(run)

        if not args.skip_restore:
            dump_file = work / "bench.dump"
            with dump_file.open("wb") as out:
                subprocess.run(
                    ["pg_dump", "-Fc", *pg_args, "bench"], env=env, stdout=out, check=True
                )
            with server.connect() as conn:
                conn.execute("CREATE DATABASE restore_baseline")
            rbase = measure(
                "pg_restore -d (from -Fc file)",
                ["pg_restore", *pg_args, "-d", "restore_baseline", str(dump_file)],
                env,
            )
            runs.append(rbase)
            run = measure(
                "lifeboat restore zstd <- dir",
                [
                    LIFEBOAT,
                    "restore",
                    str(work / "local-zstd"),
                    f"postgresql://{server.user}@{server.host}:{server.port}/restore_lifeboat",
                    "--progress",
                    "none",
                ],
                env,
                stdout=subprocess.DEVNULL,
            )
            run.baseline = rbase.name
            runs.append(run)

        print_table(runs, db_bytes)
    finally:
        if moto is not None:
            moto.stop()
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "stop"]
            ),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def breakdown(
    server, dump_args: list[str], env: dict[str, str], work: Path, base: str
) -> list[Run]:
    """Where a backup's time goes beyond pg_dump: the stream through Python, and the row
    counts that run in the dump's snapshot at the same time."""
    import hashlib
    import threading

    argv = ["pg_dump", "-Fc", "-Z0", *dump_args]

    def timed(name: str, fn) -> Run:
        started = time.perf_counter()
        fn()
        return Run(name, time.perf_counter() - started, float("nan"), baseline=base)

    def piped() -> None:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        digest = hashlib.sha256()
        with (work / "piped.dump").open("wb") as out:
            while chunk := proc.stdout.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())  # a backup is durable before it is published
        proc.wait()
        (work / "piped.dump").unlink()

    def startup() -> None:
        subprocess.run([LIFEBOAT, "--version"], check=True, stdout=subprocess.DEVNULL)

    def counts() -> None:
        with server.connect("bench") as conn:
            tables = conn.execute(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(relname) "
                "FROM pg_stat_user_tables"
            ).fetchall()
            for (table,) in tables:
                conn.execute(f"SELECT count(*) FROM {table}").fetchone()

    def dump_while_counting() -> None:
        counter = threading.Thread(target=counts)
        counter.start()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
        counter.join()

    return [
        timed("  lifeboat --version (start-up)", startup),
        timed("  pg_dump | python sha256 -> fsync", piped),
        timed("  count(*) of every table alone", counts),
        timed("  pg_dump while count(*) runs", dump_while_counting),
    ]


def print_table(runs: list[Run], db_bytes: int) -> None:
    by_name = {r.name: r for r in runs}
    header = f"{'run':<34} {'seconds':>8} {'MiB/s':>8} {'peak RSS MiB':>13} {'output MiB':>11} "
    header += f"{'time vs baseline':>17}"
    print()
    print(f"database: {db_bytes / 2**20:.0f} MiB (pg_database_size); cores: {os.cpu_count()}")
    print(header)
    print("-" * len(header))
    for run in runs:
        rate = db_bytes / 2**20 / run.seconds
        ratio = (
            f"{run.seconds / by_name[run.baseline].seconds:.2f}x" if run.baseline else "baseline"
        )
        out = f"{run.output_bytes / 2**20:.0f}" if run.output_bytes is not None else "-"
        rss = "-" if run.peak_rss_mib != run.peak_rss_mib else f"{run.peak_rss_mib:.0f}"  # NaN
        print(f"{run.name:<34} {run.seconds:>8.1f} {rate:>8.1f} {rss:>13} {out:>11} {ratio:>17}")


if __name__ == "__main__":
    main()
