"""Running a real kopf operator against the test API server, in its own thread and loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any

import kopf

from .server import KubeServer

LOGIN_HANDLER_ID = "kube-test-server-login"
PREFIX = "lifeboat.dev"


def operator_settings(settings: kopf.OperatorSettings | None = None) -> kopf.OperatorSettings:
    """Settings for tests: annotation-based storages with the `lifeboat.dev` prefix, short backoffs.

    kopf's default `status.kopf` progress storage would be pruned by a real API server
    (and by this one) because the CRD schema does not declare it.
    """
    settings = settings or kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{PREFIX}/kopf-finalizer"
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    settings.networking.request_timeout = 10
    settings.posting.level = logging.DEBUG
    settings.queueing.exit_timeout = 0.5  # do not wait 2s for handlers that are still retrying
    return settings


class OperatorThread:
    """A kopf operator running in a thread; `stop()` or use `run_operator()`."""

    def __init__(
        self,
        registry: kopf.OperatorRegistry,
        *,
        settings: kopf.OperatorSettings,
        clusterwide: bool,
        namespaces: Collection[str],
        memo: Any,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.clusterwide = clusterwide
        self.namespaces = namespaces
        self.memo = memo
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kopf-operator", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=self.registry,
                    settings=self.settings,
                    clusterwide=self.clusterwide,
                    namespaces=self.namespaces,
                    standalone=True,
                    memo=self.memo,
                    ready_flag=self.ready,
                    stop_flag=self.stopping,
                )
            )
        except BaseException as e:
            self.error = e
            self.ready.set()

    def start(self, timeout: float) -> None:
        self._thread.start()
        if not self.ready.wait(timeout) or self.error is not None:
            self.stop(timeout)
            raise RuntimeError(f"The operator did not start: {self.error!r}")

    def stop(self, timeout: float = 10) -> None:
        self.stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("The operator did not stop in time.")


def ensure_login(registry: kopf.OperatorRegistry, server: KubeServer) -> None:
    """An explicit `@kopf.on.login` for the test server (never the implicit, env-based one)."""
    if any(handler.id == LOGIN_HANDLER_ID for handler in registry._activities.get_all_handlers()):
        return

    def login(**_: Any) -> kopf.ConnectionInfo:
        connection: kopf.ConnectionInfo = server.kopf_login()
        return connection

    kopf.on.login(registry=registry, id=LOGIN_HANDLER_ID)(login)


@contextlib.contextmanager
def run_operator(
    registry: kopf.OperatorRegistry,
    server: KubeServer,
    *,
    clusterwide: bool = True,
    namespaces: Collection[str] = (),
    configure: Callable[[kopf.OperatorSettings], None] | None = None,
    memo: Any = None,
    login: bool = True,
    timeout: float = 10,
) -> Iterator[OperatorThread]:
    """Run the operator with this registry against the server for the duration of the block.

    With `login`, the registry gets an explicit `@kopf.on.login` for the server (added once;
    pass `login=False` if the registry's own login handler already points at the server).
    The registry's own `@kopf.on.startup` handlers run after `configure` and win.
    """
    if login:
        ensure_login(registry, server)
    settings = operator_settings()
    if configure is not None:
        configure(settings)
    operator = OperatorThread(
        registry, settings=settings, clusterwide=clusterwide, namespaces=namespaces, memo=memo
    )
    operator.start(timeout)
    try:
        yield operator
    finally:
        operator.stop(timeout)
    if operator.error is not None:
        raise RuntimeError(f"The operator failed: {operator.error!r}") from operator.error
