"""The table: medians over the rounds, ratios taken within each round (runs of one round ran
minutes apart, so drift on a shared machine cancels out), and the targets of issue 10 checked
against them."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from benchmarks.measure import Measured
from benchmarks.scenarios import (
    LIFEBOAT_DIR,
    LIFEBOAT_RESTORE,
    LIFEBOAT_S3,
    LIMIT_BACKUP,
    LIMIT_RESTORE,
    PEER,
    Scenario,
)

MIB = 2**20
ORDER = (LIMIT_BACKUP, LIFEBOAT_S3, LIFEBOAT_DIR, PEER, LIMIT_RESTORE, LIFEBOAT_RESTORE)
LIFEBOAT_TASKS = (LIFEBOAT_S3, LIFEBOAT_DIR, LIFEBOAT_RESTORE)
LIMIT_OF = {
    LIFEBOAT_S3: LIMIT_BACKUP,
    LIFEBOAT_DIR: LIMIT_BACKUP,
    PEER: LIMIT_BACKUP,
    LIFEBOAT_RESTORE: LIMIT_RESTORE,
}


@dataclass
class Result:
    scenario: str
    task: str
    round: int
    measured: Measured
    info: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "task": self.task,
            "round": self.round,
            **asdict(self.measured),
            **self.info,
        }


@dataclass
class Target:
    what: str
    measured: str
    met: bool | None
    """None: not measured in this run."""


def _median(values: Iterable[float]) -> float | None:
    listed = list(values)
    return statistics.median(listed) if listed else None


class Table:
    def __init__(self, scenarios: list[Scenario], results: list[Result]) -> None:
        self.scenarios = scenarios
        self.results = results

    def of(self, scenario: Scenario, task: str) -> list[Result]:
        return [r for r in self.results if r.scenario == scenario.name and r.task == task]

    def wall(self, scenario: Scenario, task: str) -> float | None:
        return _median(r.measured.wall for r in self.of(scenario, task))

    def per_round(
        self, scenario: Scenario, task: str, other: str, fn: Callable[[float, float], float]
    ) -> float | None:
        """Median over rounds of fn(task's time, other's time in the same round)."""
        theirs = {r.round: r.measured.wall for r in self.of(scenario, other)}
        return _median(
            fn(r.measured.wall, theirs[r.round])
            for r in self.of(scenario, task)
            if r.round in theirs
        )

    def vs_limit(self, scenario: Scenario, task: str) -> float | None:
        limit = LIMIT_OF.get(task)
        if limit is None:
            return None
        return self.per_round(scenario, task, limit, lambda mine, lim: mine / lim)

    def peer_speedup(self, scenario: Scenario, task: str) -> float | None:
        if task not in (LIFEBOAT_S3, LIFEBOAT_DIR):
            return None
        return self.per_round(scenario, task, PEER, lambda mine, peer: peer / mine)

    def artifact(self, scenario: Scenario, task: str) -> float | None:
        return _median(
            r.info["artifact_bytes"] for r in self.of(scenario, task) if "artifact_bytes" in r.info
        )

    def raw(self, scenario: Scenario) -> float | None:
        return _median(
            r.info["raw_bytes"]
            for task in (LIFEBOAT_S3, LIFEBOAT_DIR)
            for r in self.of(scenario, task)
            if "raw_bytes" in r.info
        )

    def peak_rss(self, scenario: Scenario, task: str) -> float | None:
        values = [r.measured.peak_rss_mib for r in self.of(scenario, task)]
        return max(values) if values else None

    def render(self) -> str:
        lines: list[str] = []
        header = (
            f"{'run':<66} {'median s':>8} {'min-max s':>11} {'x limit':>7} {'peer/x':>6} "
            f"{'artifact MiB':>12} {'peak RSS MiB':>12} {'CPU s: client+db+S3':>20} {'noise':>6}"
        )
        for scenario in self.scenarios:
            raw = self.raw(scenario)
            rounds = len({r.round for r in self.results if r.scenario == scenario.name})
            lines.append("")
            lines.append(
                f"{scenario.name}: {scenario.db_bytes / MIB:,.0f} MiB database"
                + (f", {raw / MIB:,.0f} MiB dump stream" if raw else "")
                + f", {rounds} round(s)"
            )
            lines.append(header)
            lines.append("-" * len(header))
            for task in ORDER:
                runs = self.of(scenario, task)
                if not runs:
                    continue
                label = next(t.label for k, t in scenario.tasks.items() if k == task)
                walls = [r.measured.wall for r in runs]
                ratio = self.vs_limit(scenario, task)
                speedup = self.peer_speedup(scenario, task)
                art = self.artifact(scenario, task)
                rss = self.peak_rss(scenario, task)
                cpu = [
                    _median(getattr(r.measured, f) for r in runs)
                    for f in ("client_cpu", "server_cpu", "s3_cpu")
                ]
                noise = _median(r.measured.other_cpu for r in runs)
                lines.append(
                    f"{label:<66} {statistics.median(walls):>8.2f} "
                    f"{min(walls):>5.1f}-{max(walls):<5.1f} "
                    f"{_fmt(ratio, '.2f', 'x') if task in LIMIT_OF else '1.00x':>7} "
                    f"{_fmt(speedup, '.1f', 'x'):>6} "
                    f"{_fmt(art and art / MIB, ',.1f'):>12} "
                    f"{_fmt(rss, '.0f') if task in LIFEBOAT_TASKS else '':>12} "
                    f"{'+'.join(f'{c or 0:.1f}' for c in cpu):>20} {noise or 0:>6.1f}"
                )
            for note in scenario.notes:
                lines.append(f"  note: {note}")
        return "\n".join(lines)

    def targets(self, full: list[Scenario], small: list[Scenario]) -> list[Target]:
        out: list[Target] = []
        for scenario in full:
            e = scenario.engine
            for task, where in ((LIFEBOAT_S3, "S3"), (LIFEBOAT_DIR, "a directory")):
                ratio = self.vs_limit(scenario, task)
                out.append(
                    Target(
                        f"{e}: backup to {where} <= 1.3x the dump limit",
                        _fmt(ratio, ".2f", "x"),
                        None if ratio is None else ratio <= 1.3,
                    )
                )
                speed = self.peer_speedup(scenario, task)
                out.append(
                    Target(
                        f"{e}: backup to {where} >= 2x faster than the peer pipeline",
                        _fmt(speed, ".2f", "x"),
                        None if speed is None else speed >= 2.0,
                    )
                )
            mine, peer = self.artifact(scenario, LIFEBOAT_S3), self.artifact(scenario, PEER)
            out.append(
                Target(
                    f"{e}: artifact no larger than the peer's",
                    f"{_fmt(mine and mine / MIB, ',.1f')} vs "
                    f"{_fmt(peer and peer / MIB, ',.1f')} MiB",
                    None if mine is None or peer is None else mine <= peer,
                )
            )
            ratio = self.vs_limit(scenario, LIFEBOAT_RESTORE)
            out.append(
                Target(
                    f"{e}: restore from S3 <= 1.1x the restore limit",
                    _fmt(ratio, ".2f", "x"),
                    None if ratio is None else ratio <= 1.1,
                )
            )
        for big in full:
            for little in small:
                if little.engine != big.engine:
                    continue
                for task in (LIFEBOAT_S3, LIFEBOAT_DIR, LIFEBOAT_RESTORE):
                    a, b = self.peak_rss(little, task), self.peak_rss(big, task)
                    if a is None or b is None:
                        continue
                    spread = abs(b - a) / max(a, b)
                    out.append(
                        Target(
                            f"{big.engine}: worker peak RSS ({task}) <= 200 MiB, "
                            "within 10% between sizes",
                            f"{a:.0f} / {b:.0f} MiB ({spread:.0%})",
                            max(a, b) <= 200 and spread <= 0.10,
                        )
                    )
        return out


def render_targets(targets: list[Target]) -> str:
    lines = ["", "Targets (issue 10), at the full size:"]
    for t in targets:
        verdict = "n/a " if t.met is None else ("MET " if t.met else "MISS")
        lines.append(f"  [{verdict}] {t.what}: {t.measured}")
    return "\n".join(lines)


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"
