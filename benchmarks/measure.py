"""Running one command (or a pipeline of commands) and measuring it: wall time, CPU of the client
processes, of the database server and of the S3 server, CPU that other work on the machine took
meanwhile, and peak memory.

Memory: `peak_rss_mib` is the first process's own high-water mark (`VmHWM` of /proc/PID/status,
read every 20 ms while it runs; the mark only grows, so the last reading is its peak up to that
moment), which for `lifeboat` is the worker alone without its dump tool. `tree_rss_mib` is the
kernel's `ru_maxrss` from `wait4`: the largest resident set among the processes and the children
they reaped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.servers import tree_cpu_seconds

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all CPUs, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass
class Measured:
    wall: float
    client_cpu: float
    server_cpu: float
    s3_cpu: float
    other_cpu: float
    """CPU seconds the machine spent on anything else during the run: the noise."""
    peak_rss_mib: float
    tree_rss_mib: float
    extra: dict[str, object] = field(default_factory=dict)


class _HighWaterMark(threading.Thread):
    """Reads VmHWM of one process until it exits."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True, name=f"vmhwm-{pid}")
        self.pid = pid
        self.kib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        path = Path(f"/proc/{self.pid}/status")
        while not self.stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                for line in path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.kib = max(self.kib, int(line.split()[1]))
                        break
            self.stop.wait(0.02)


class CommandFailed(RuntimeError):
    pass


def run_measured(
    commands: Sequence[Sequence[str]],
    env: Mapping[str, str],
    *,
    stdin: Path | None = None,
    stdout: Path | None = None,
    server_pids: Sequence[int] = (),
    s3_pid: int | None = None,
    before: Callable[[], None] | None = None,
) -> Measured:
    """Run `commands` as a pipeline (each one's stdout into the next one's stdin), from `stdin`
    (else nothing) to `stdout` (else /dev/null), and measure it. Fails if any command fails."""
    if before is not None:
        before()
    full_env = {**os.environ, **env}
    server0 = sum(tree_cpu_seconds(pid) for pid in server_pids)
    s3_0 = tree_cpu_seconds(s3_pid) if s3_pid is not None else 0.0
    busy0 = machine_busy_seconds()
    processes: list[subprocess.Popen[bytes]] = []
    errors: list[tuple[str, bytes]] = []
    with contextlib.ExitStack() as files:
        first_in = files.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        last_out = (
            files.enter_context(stdout.open("wb"))
            if stdout
            else files.enter_context(open(os.devnull, "wb"))
        )
        started = time.perf_counter()
        previous: object = first_in
        for i, argv in enumerate(commands):
            last = i == len(commands) - 1
            proc = subprocess.Popen(
                list(argv),
                stdin=previous,  # type: ignore[arg-type]
                stdout=last_out if last else subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
            )
            if i > 0 and processes[-1].stdout is not None:
                processes[-1].stdout.close()  # the next process holds the pipe now
            processes.append(proc)
            previous = proc.stdout
        watcher = _HighWaterMark(processes[0].pid)
        watcher.start()
        stderr_readers = []
        for proc in processes:
            reader = threading.Thread(target=_drain, args=(proc, errors), daemon=True)
            reader.start()
            stderr_readers.append(reader)
        client_cpu = 0.0
        tree_rss_kib = 0
        codes = []
        for proc in processes:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            codes.append(proc.returncode)
            client_cpu += usage.ru_utime + usage.ru_stime
            tree_rss_kib = max(tree_rss_kib, usage.ru_maxrss)
        wall = time.perf_counter() - started
        watcher.stop.set()
        watcher.join()
        for reader in stderr_readers:
            reader.join(timeout=10)
    busy = machine_busy_seconds() - busy0
    server = sum(tree_cpu_seconds(pid) for pid in server_pids) - server0
    s3 = tree_cpu_seconds(s3_pid) - s3_0 if s3_pid is not None else 0.0
    if any(codes):
        detail = "; ".join(
            f"{name}: {text.decode(errors='replace')[-600:]}" for name, text in errors
        )
        argv_text = " | ".join(" ".join(c) for c in commands)
        raise CommandFailed(f"{argv_text} exited with {codes}: {detail}")
    return Measured(
        wall=wall,
        client_cpu=client_cpu,
        server_cpu=server,
        s3_cpu=s3,
        other_cpu=max(0.0, busy - client_cpu - server - s3),
        peak_rss_mib=watcher.kib / 1024,
        tree_rss_mib=tree_rss_kib / 1024,
    )


def _drain(proc: subprocess.Popen[bytes], errors: list[tuple[str, bytes]]) -> None:
    assert proc.stderr is not None
    data = proc.stderr.read()
    if data:
        errors.append((os.path.basename(str(proc.args[0])), data))  # type: ignore[index]


def wait_for_quiet(max_load: float, timeout: float, log: Callable[[str], None]) -> None:
    """Wait (up to `timeout` s) until other work on the machine is below `max_load` CPUs,
    measured over 2 s: for a final table on an idle machine."""
    deadline = time.monotonic() + timeout
    while True:
        busy0 = machine_busy_seconds()
        time.sleep(2)
        busy = (machine_busy_seconds() - busy0) / 2
        if busy <= max_load:
            return
        if time.monotonic() > deadline:
            log(f"  (the machine stayed busy: {busy:.1f} CPUs in use; measuring anyway)")
            return
