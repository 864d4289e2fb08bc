"""Lifeboat side by side with the dump tools alone and with the pipelines users run today.

    python -m benchmarks                 # the full run (make bench); about 25 minutes on 2 cores
    python -m benchmarks --smoke         # seconds: every code path on tiny data, no verdicts

It starts its own servers (PostgreSQL, MariaDB, moto's S3 server over HTTP in its own process),
generates deterministic data at two sizes (the full size and 1/--fraction of it), and then runs,
interleaved in rounds (every task of every engine and size once per round, in an order rotated
per round):

  limit     pg_dump -Fc -Z0 > /dev/null              mariadb-dump --single-transaction --quick
  lifeboat  backup -> S3, backup -> a directory (defaults)
  peer      pg_dump -Fc -Z0 | pigz | aws s3 cp -     mariadb-dump ... | gzip | aws s3 cp -
  limit     pg_restore --single-transaction -d       mariadb DB < dump.sql
  lifeboat  restore <- S3 (checksum pass, verification, commit)

then the operator (1,000 Backups at once against the test API server, the real operator, a fast
worker stand-in) and the worker's progress reporting (a real backup reporting to a Backup's
status). It prints one table: medians, ranges, ratios taken within each round, artifact sizes,
peak RSS, CPU of the client, the database server and the S3 server, and the CPU other work took
on the machine meanwhile ("noise"), then the targets of issue 10 with their verdicts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import data  # noqa: E402
from benchmarks.measure import CommandFailed, run_measured, wait_for_quiet  # noqa: E402
from benchmarks.report import ORDER, Result, Table, render_targets  # noqa: E402
from benchmarks.scenarios import (  # noqa: E402
    BUCKET,
    Scenario,
    mariadb_scenario,
    postgres_scenario,
    set_up,
)
from benchmarks.servers import MariaDB, Postgres, S3Server  # noqa: E402

AWSCLI_VERSION = "1.46.3"
AWSCLI_VENV = REPO / ".venv" / "awscli"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_awscli(install: bool) -> str | None:
    """awscli from PyPI in a virtualenv of its own (its botocore pins differ from ours)."""
    aws = AWSCLI_VENV / "bin" / "aws"
    if aws.exists():
        return str(aws)
    if not install:
        return shutil.which("aws")
    log(f"installing awscli {AWSCLI_VERSION} into {AWSCLI_VENV} ...")
    subprocess.run([sys.executable, "-m", "venv", str(AWSCLI_VENV)], check=True)
    subprocess.run(
        [str(AWSCLI_VENV / "bin" / "pip"), "install", "--quiet", f"awscli=={AWSCLI_VERSION}"],
        check=True,
    )
    return str(aws)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every task (default 3)")
    parser.add_argument(
        "--pg-size-mb",
        type=int,
        default=2048,
        help="PostgreSQL data set at full size: pgbench scale 100 + 650,000 documents per 2048",
    )
    parser.add_argument(
        "--mariadb-size-mb",
        type=int,
        default=1024,
        help="MariaDB data set at full size: 8 sysbench tables, 500,000 rows each per 1024",
    )
    parser.add_argument(
        "--fraction",
        type=int,
        default=8,
        help="the small size is 1/FRACTION of the full one (1: the full size only)",
    )
    parser.add_argument(
        "--engines", default="postgresql,mariadb", help="comma-separated: postgresql, mariadb"
    )
    parser.add_argument("--skip-restore", action="store_true", help="backups only")
    parser.add_argument("--skip-operator", action="store_true")
    parser.add_argument("--skip-progress", action="store_true")
    parser.add_argument("--operator-backups", type=int, default=1000)
    parser.add_argument(
        "--operator-work-seconds",
        type=float,
        default=30.0,
        help="how long each stand-in worker runs (reporting progress as the worker does)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="for the final table on an idle machine: before every run, wait until other work "
        "takes less than 0.3 CPU",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep the servers' data (and the generated data sets) here between invocations",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument(
        "--no-install", action="store_true", help="do not install awscli; skip the peers without"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds on tiny data: every code path, one size, one round, 5 operator Backups",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds = 1
        args.pg_size_mb = 16
        args.mariadb_size_mb = 16
        args.fraction = 1
        args.operator_backups = 5
        args.operator_work_seconds = 2.5
        args.no_install = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engines = {e.strip().lower() for e in args.engines.split(",") if e.strip()}
    started = time.monotonic()
    aws = ensure_awscli(install=not args.no_install)
    if aws is None:
        log("awscli is not installed: the peer pipelines are skipped (make bench installs it)")
    with ExitStack() as stack:
        if args.data_dir is not None:
            root = args.data_dir.resolve()
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(tempfile.mkdtemp(prefix="lifeboat-bench-"))
            root.chmod(0o755)  # PostgreSQL runs as its own user below it
            stack.callback(shutil.rmtree, root, True)
        work = root / "work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        s3 = S3Server.start()
        stack.callback(s3.stop)
        s3.client().create_bucket(Bucket=BUCKET)
        full: list[Scenario] = []
        small: list[Scenario] = []
        servers: dict[str, object] = {}
        if "postgresql" in engines:
            pg = Postgres.start(root / "postgresql")
            stack.callback(pg.stop)
            servers["postgresql"] = pg
            for size, label, into in sizes(args.pg_size_mb, args.fraction, full, small):
                dataset = data.PgDataset.for_size(max(size, 8), dbname=f"bench_{size}mb")
                log(f"PostgreSQL data set {dataset} ...")
                data.ensure(
                    root / "postgresql" / f"{dataset.dbname}.dataset",
                    dataset.key(),
                    lambda d=dataset: data.generate_postgres(pg, d),
                )
                into.append(
                    postgres_scenario(
                        pg,
                        dataset.dbname,
                        label,
                        data.postgres_size(pg, dataset.dbname),
                        work,
                        s3,
                        aws,
                    )
                )
        if "mariadb" in engines:
            maria = MariaDB.start(root / "mariadb")
            stack.callback(maria.stop)
            servers["mariadb"] = maria
            for size, label, into in sizes(args.mariadb_size_mb, args.fraction, full, small):
                mset = data.MariaDataset.for_size(max(size, 8), dbname=f"sbtest_{size}mb")
                log(f"MariaDB data set {mset} ...")
                data.ensure(
                    root / "mariadb" / f"{mset.dbname}.dataset",
                    mset.key(),
                    lambda d=mset: data.generate_mariadb(maria, d),
                )
                into.append(
                    mariadb_scenario(
                        maria,
                        mset.dbname,
                        label,
                        data.mariadb_size(maria, mset.dbname),
                        work,
                        s3,
                        aws,
                    )
                )
        scenarios = [*small, *full]
        if args.skip_restore:
            for scenario in scenarios:
                for key in ("limit-restore", "lifeboat-restore"):
                    scenario.tasks.pop(key, None)
        for scenario in scenarios:
            log(f"setting up {scenario.name}: a dump file, the backup the restores read ...")
            set_up(scenario)
        results = run_rounds(scenarios, args, s3)
        table = Table(scenarios, results)
        sections = [
            f"Lifeboat benchmark: {args.rounds} round(s), "
            f"PostgreSQL {args.pg_size_mb} MB and MariaDB {args.mariadb_size_mb} MB data sets"
            + (f" and 1/{args.fraction} of them" if args.fraction > 1 else ""),
            machine_line(),
            table.render(),
            render_targets(table.targets(full, small)),
        ]
        extra: dict[str, object] = {}
        if not args.skip_progress and "postgresql" in servers and full:
            from benchmarks.progress_bench import measure_progress

            log("progress: a real backup reporting to a Backup's status ...")
            report = measure_progress(servers["postgresql"], full[0], s3)  # type: ignore[arg-type]
            sections.append(report.render())
            extra["progress"] = report.to_json()
        if not args.skip_operator:
            from benchmarks.operator_bench import measure_operator

            log(f"operator: {args.operator_backups} Backups at once ...")
            op = measure_operator(args.operator_backups, args.operator_work_seconds)
            sections.append(op.render())
            extra["operator"] = op.to_json()
        sections.append(f"\n(total run time {(time.monotonic() - started) / 60:.1f} min)")
        print("\n".join(sections), flush=True)
        if args.json is not None:
            args.json.write_text(
                json.dumps({"results": [r.to_json() for r in results], **extra}, indent=2)
            )
    return 0


def sizes(
    full_mb: int, fraction: int, full: list[Scenario], small: list[Scenario]
) -> list[tuple[int, str, list[Scenario]]]:
    """The full size and, unless FRACTION is 1, the small one."""
    out = [(full_mb, "full", full)]
    if fraction > 1:
        out.append((full_mb // fraction, f"1/{fraction}", small))
    return out


def run_rounds(scenarios: list[Scenario], args: argparse.Namespace, s3: S3Server) -> list[Result]:
    results: list[Result] = []
    for round_number in range(args.rounds):
        for scenario in scenarios:
            keys = [k for k in ORDER if k in scenario.tasks]
            shift = round_number % len(keys)
            for key in keys[shift:] + keys[:shift]:
                task = scenario.tasks[key]
                if args.quiet:
                    wait_for_quiet(0.3, 300, log)
                if task.prepare is not None:
                    task.prepare()
                scenario.settle()
                try:
                    measured = run_measured(
                        task.commands,
                        task.env,
                        stdin=task.stdin,
                        server_pids=scenario.server_pids,
                        s3_pid=s3.process.pid,
                    )
                except CommandFailed as exc:
                    raise SystemExit(f"{scenario.name}: {task.label} failed: {exc}") from None
                info = task.collect() if task.collect is not None else {}
                if task.cleanup is not None:
                    task.cleanup()
                results.append(Result(scenario.name, key, round_number, measured, info))
                log(
                    f"round {round_number + 1}/{args.rounds} {scenario.name:<18} "
                    f"{task.label:<62} {measured.wall:7.2f} s"
                    f"  (noise {measured.other_cpu:.1f} CPU-s)"
                )
    return results


def machine_line() -> str:
    import os
    import platform

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    tools = []
    for argv in (["pg_dump", "--version"], ["mariadb-dump", "--version"]):
        with suppress(OSError):
            tools.append(subprocess.run(argv, capture_output=True, text=True).stdout.strip())
    return (
        f"machine: {os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB, {platform.platform()}; "
        f"Python {platform.python_version()}; " + "; ".join(tools)
    )


if __name__ == "__main__":
    raise SystemExit(main())
