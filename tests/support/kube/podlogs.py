"""Container logs, written by the Job runner (the kubelet stand-in) and served as `pods/log`."""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
import threading


@dataclasses.dataclass
class _Container:
    runs: list[pathlib.Path] = dataclasses.field(default_factory=list)
    running: bool = False


class PodLogs:
    """A thread-safe registry of log files, one per container run (restarts keep `previous`)."""

    def __init__(self, directory: pathlib.Path | None = None) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._containers: dict[tuple[str, str, str], _Container] = {}
        self._counter = 0

    def _dir(self) -> pathlib.Path:
        if self._directory is None:
            self._directory = pathlib.Path(tempfile.mkdtemp(prefix="kube-pod-logs-"))
        return self._directory

    def start(self, namespace: str, pod: str, container: str) -> pathlib.Path:
        """A new (empty) log file for a new run of the container."""
        with self._lock:
            self._counter += 1
            path = self._dir() / f"{namespace}_{pod}_{container}_{self._counter}.log"
            path.touch()
            entry = self._containers.setdefault((namespace, pod, container), _Container())
            entry.runs.append(path)
            entry.running = True
            return path

    def finish(self, namespace: str, pod: str, container: str) -> None:
        with self._lock:
            entry = self._containers.get((namespace, pod, container))
            if entry is not None:
                entry.running = False

    def path(
        self, namespace: str, pod: str, container: str, previous: bool = False
    ) -> pathlib.Path | None:
        with self._lock:
            entry = self._containers.get((namespace, pod, container))
            if entry is None or len(entry.runs) < (2 if previous else 1):
                return None
            return entry.runs[-2] if previous else entry.runs[-1]

    def running(self, namespace: str, pod: str, container: str) -> bool:
        with self._lock:
            entry = self._containers.get((namespace, pod, container))
            return bool(entry and entry.running)

    def read(self, namespace: str, pod: str, container: str, previous: bool = False) -> str | None:
        path = self.path(namespace, pod, container, previous)
        return None if path is None else path.read_text(encoding="utf-8", errors="replace")

    def clear(self) -> None:
        with self._lock:
            for entry in self._containers.values():
                for path in entry.runs:
                    path.unlink(missing_ok=True)
            self._containers.clear()
