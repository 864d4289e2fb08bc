"""The Job controller and the kubelet, played by a test fixture.

`JobRunner` watches `batch/v1` Jobs through the API, creates a Pod per attempt (owned by
the Job, labelled as the Job controller labels them), resolves the container's environment
through the API as the kubelet does (`value`, `secretKeyRef`, `configMapKeyRef`,
`fieldRef`, `envFrom`), runs the container's command as a local subprocess, captures its
output as the container log (served as `pods/log`), and writes Pod and Job status the way
Kubernetes >= 1.31 does (`SuccessCriteriaMet` then `Complete`; `FailureTarget` then
`Failed` with `BackoffLimitExceeded`, `DeadlineExceeded` or `PodFailurePolicy`).

Pods that do not start, as in a cluster: a Pod the API server refuses (a ResourceQuota) is
a FailedCreate Warning Event on the Job and no Pod, tried again until the Job goes or its
deadline passes; a Pod the runner's one node cannot take (`node`: labels, taints, cordon) stays
unscheduled (`PodScheduled=False`, `Unschedulable`, FailedScheduling Events) until the node
changes; a Pod whose claim cannot attach or mount (`fail_volume`) stays in ContainerCreating
with FailedAttachVolume/FailedMount Events; an image that cannot be pulled (`fail_image_pull`)
stays in ImagePullBackOff.

It runs in its own thread with its own event loop and talks to the API over HTTP only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp

from . import scheduling
from .loops import start_loop_thread, stop_loop_thread
from .podlogs import PodLogs
from .recorder import EventRecorder
from .scheduling import Node

logger = logging.getLogger(__name__)

VENV_BIN = pathlib.Path(sys.executable).parent
PASSTHROUGH_ENV = (
    "HOME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "TZ",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "COVERAGE_PROCESS_START",
    "PYTHONDONTWRITEBYTECODE",
)
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# Who posts which Warning Event in a cluster (the kubelet posts the rest: FailedMount, Failed).
_EVENT_SOURCES = {
    "FailedCreate": "job-controller",
    "FailedScheduling": "default-scheduler",
    "FailedAttachVolume": "attachdetach-controller",
}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class Image:
    """What running a container image means locally.

    `entrypoint`/`cmd` play the image's ENTRYPOINT/CMD (used when the container has no
    `command`/`args`); `executables` maps a command name (argv[0]) to a local path;
    `pull_error` makes the image unpullable (`ErrImagePull`, then `ImagePullBackOff`).
    """

    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    executables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    pull_error: bool = False


class ContainerConfigError(Exception):
    """The kubelet cannot build the container's config (a missing Secret or key)."""

    reason = "CreateContainerConfigError"


class MountError(ContainerConfigError):
    """A volume cannot be mounted: the pod stays in ContainerCreating, and the kubelet posts
    FailedMount Warning Events on it."""

    reason = "ContainerCreating"
    event_reason = "FailedMount"


class AttachError(MountError):
    """A volume cannot be attached to the node: the attach/detach controller posts
    FailedAttachVolume Warning Events on the Pod, which stays in ContainerCreating."""

    event_reason = "FailedAttachVolume"


class PodRefused(Exception):
    """The API server refused to create a Job's Pod (403: a quota, a policy)."""

    def __init__(self, message: str, *, terminating: bool) -> None:
        super().__init__(message)
        self.terminating = terminating


class _Api:
    """A minimal async client of the API server (JSON over HTTP)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        **params: str,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        async with self.session.request(
            method, path, data=data, params=params, headers={"Content-Type": content_type}
        ) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None)

    async def get(self, path: str, **params: str) -> Any:
        status, body = await self.request("GET", path, **params)
        if status == 404:
            return None
        if status >= 400:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return body

    async def merge_patch(self, path: str, patch: Any) -> Any:
        status, body = await self.request("PATCH", path, patch, "application/merge-patch+json")
        if status == 404:
            return None
        if status >= 400:
            raise RuntimeError(f"PATCH {path}: {status} {body}")
        return body

    async def watch(
        self, path: str, resource_version: str, **params: str
    ) -> AsyncIterator[dict[str, Any]]:
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "60",
            "resourceVersion": resource_version,
            **params,
        }
        async with self.session.get(
            path, params=params, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"watch {path}: {response.status} {await response.text()}")
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)


@dataclasses.dataclass
class _JobState:
    namespace: str
    name: str
    uid: str
    task: asyncio.Task[None] | None = None
    starts: int = 0
    processes: set[asyncio.subprocess.Process] = dataclasses.field(default_factory=set)


class JobRunner:
    """Plays the Job controller and the kubelet for the Jobs in the test API server.

    Options: `images` maps image names (with or without the tag) to an `Image`; `hold`
    keeps matching Jobs from starting (`release()` starts them); `extra_env` is added to
    every container's environment (e.g. `KUBECONFIG` of the test server, so a worker can
    write status back through the API as it would in-cluster); `volumes` maps
    PersistentVolumeClaim names to local directories (see `_mount_volumes`); `retry_delay`
    is the pause between attempts (the real controller backs off 10s, 20s, ...); `node` is the
    one node Pods are scheduled onto; `start_retry_interval` is how often a Pod that cannot be
    created, scheduled or mounted is tried again.
    """

    def __init__(
        self,
        server_url: str,
        *,
        token: str | None = None,
        images: Mapping[str, Image] | None = None,
        default_image: Image = Image(),
        extra_env: Mapping[str, str] | None = None,
        path: Sequence[str | pathlib.Path] = (VENV_BIN,),
        pod_logs: PodLogs | None = None,
        hold: Callable[[str, str], bool] | None = None,
        volumes: Mapping[str, pathlib.Path] | None = None,
        retry_delay: float = 0.0,
        config_retry_interval: float = 0.2,
        start_retry_interval: float = 0.25,
        node: Node | None = None,
        max_grace_seconds: float = 5.0,
        workdir: pathlib.Path | None = None,
    ) -> None:
        self.server_url = server_url
        self.token = token
        self.images: dict[str, Image] = dict(images or {})
        self.default_image = default_image
        self.extra_env = dict(extra_env or {})
        self.path = [str(p) for p in path]
        self.pod_logs = pod_logs if pod_logs is not None else PodLogs()
        self._hold_fn = hold
        self.volumes: dict[str, pathlib.Path] = dict(volumes or {})
        self._held: set[tuple[str, str]] = set()
        self._released: set[tuple[str, str]] = set()
        self.retry_delay = retry_delay
        self.config_retry_interval = config_retry_interval
        self.start_retry_interval = start_retry_interval
        self.node = node if node is not None else Node()
        self._volume_faults: dict[str, MountError] = {}
        self._recorder: EventRecorder | None = None
        self.max_grace_seconds = max_grace_seconds
        self._workdir = workdir
        self._own_workdir = workdir is None
        self._jobs: dict[tuple[str, str], _JobState] = {}
        self._starts: dict[tuple[str, str], int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._processes: dict[tuple[str, str], asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._jobs_listed = asyncio.Event()
        self._pods_listed = asyncio.Event()
        self._api: _Api | None = None
        self.errors: list[BaseException] = []

    # ------------------------------------------------------------------ public, thread-safe

    def start(self) -> JobRunner:
        if self._thread is not None:
            raise RuntimeError("The job runner is already started.")
        if self._workdir is None:
            self._workdir = pathlib.Path(tempfile.mkdtemp(prefix="job-runner-"))
        self._loop, self._thread = start_loop_thread("job-runner", self._astart)
        return self

    def stop(self) -> None:
        """Stop watching and kill every process still running."""
        if self._loop is None or self._thread is None:
            return
        try:
            stop_loop_thread(self._loop, self._thread, self._astop)
        finally:
            self._loop = self._thread = None
            if self._own_workdir and self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    def __enter__(self) -> JobRunner:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def hold(self, name: str, namespace: str = "default") -> None:
        """Keep this Job from starting until `release()` (as if its Pod could not be scheduled)."""
        self._held.add((namespace, name))

    def hold_when(self, predicate: Callable[[str, str], bool] | None) -> None:
        """Hold every Job for which `predicate(namespace, name)` is true, until `release()`."""
        self._hold_fn = predicate

    def release(self, name: str, namespace: str = "default") -> None:
        self._held.discard((namespace, name))
        self._released.add((namespace, name))
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._kick, namespace, name)

    def fail_image_pull(self, image: str) -> None:
        """Pods with this image never start: `ErrImagePull`, then `ImagePullBackOff`."""
        self.images[image] = Image(pull_error=True)

    def fail_volume(
        self, claim: str, reason: str = "FailedMount", message: str | None = None
    ) -> None:
        """Pods that mount this PersistentVolumeClaim stay in ContainerCreating with `reason`
        Warning Events (FailedMount from the kubelet, FailedAttachVolume from the attach/detach
        controller) until `fix_volume(claim)`."""
        if reason == "FailedAttachVolume":
            default = (
                f'Multi-Attach error for volume "pvc-{claim}" Volume is already exclusively '
                "attached to one node and can't be attached to another"
            )
            self._volume_faults[claim] = AttachError(message or default)
        elif reason == "FailedMount":
            default = (
                f'MountVolume.MountDevice failed for volume "pvc-{claim}" : rpc error: code = '
                "Internal desc = mount failed: exit status 32"
            )
            self._volume_faults[claim] = MountError(message or default)
        else:
            raise ValueError(
                f"fail_volume: reason must be FailedMount or FailedAttachVolume: {reason}"
            )

    def fix_volume(self, claim: str) -> None:
        self._volume_faults.pop(claim, None)

    def starts(self, name: str, namespace: str = "default") -> int:
        """How many processes were started for this Job (attempts that got to run)."""
        return self._starts.get((namespace, name), 0)

    def logs(self, pod: str, namespace: str = "default", container: str | None = None) -> str:
        if container is None:
            for ns, pod_name, cname in list(self.pod_logs._containers):
                if (ns, pod_name) == (namespace, pod):
                    container = cname
                    break
        return self.pod_logs.read(namespace, pod, container or "") or ""

    @property
    def running(self) -> int:
        """The number of live processes."""
        return sum(len(state.processes) for state in list(self._jobs.values()))

    # ------------------------------------------------------------------ the loop

    async def _astart(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        session = aiohttp.ClientSession(base_url=self.server_url, headers=headers)
        self._api = _Api(session)
        self._recorder = EventRecorder(self._api)
        self._jobs_listed, self._pods_listed = asyncio.Event(), asyncio.Event()
        self._watchers = [
            asyncio.create_task(
                self._watch("/apis/batch/v1/jobs", self._on_job, self._on_jobs_listed)
            ),
            asyncio.create_task(
                self._watch(
                    "/api/v1/pods", self._on_pod, self._on_pods_listed, labelSelector=JOB_NAME_LABEL
                )
            ),
        ]
        try:
            await asyncio.wait_for(
                asyncio.gather(self._jobs_listed.wait(), self._pods_listed.wait()), timeout=20
            )
        except TimeoutError:
            raise RuntimeError(
                f"The job runner cannot list Jobs and Pods at {self.server_url}"
            ) from None

    async def _astop(self) -> None:
        tasks = list(self._watchers)
        tasks += [s.task for s in self._jobs.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.max_grace_seconds + 5)
        for state in self._jobs.values():
            for process in list(state.processes):
                _kill_group(process, signal.SIGKILL)
        if self._api is not None:
            await self._api.session.close()

    def _kick(self, namespace: str, name: str) -> None:
        state = self._jobs.get((namespace, name))
        if state is not None and state.task is None:
            self._background(self._refresh(namespace, name))

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a task and keep a reference until it is done (asyncio keeps only weak ones)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, namespace: str, name: str) -> None:
        assert self._api is not None
        job = await self._api.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        if job is not None:
            self._on_job("MODIFIED", job)

    async def _watch(
        self,
        path: str,
        on_event: Callable[[str, dict[str, Any]], None],
        on_listed: Callable[[list[dict[str, Any]]], None],
        **params: str,
    ) -> None:
        """List, then watch from the list's resourceVersion; relist after 410 or failures."""
        assert self._api is not None
        resource_version: str | None = None
        while True:
            try:
                if resource_version is None:
                    listing = await self._api.get(path, **params)
                    on_listed(listing["items"])
                    resource_version = listing["metadata"]["resourceVersion"]
                async for event in self._api.watch(path, resource_version, **params):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        resource_version = None  # 410 Gone: relist
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        on_event(event["type"], obj)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the server went away or restarted: retry shortly
                logger.debug("Watching %s failed: %r", path, e)
                resource_version = None
                await asyncio.sleep(0.1)

    def _on_jobs_listed(self, jobs: list[dict[str, Any]]) -> None:
        seen = {(job["metadata"]["namespace"], job["metadata"]["name"]) for job in jobs}
        for key in [k for k in self._jobs if k not in seen]:
            self._forget(key)
        for job in jobs:
            self._on_job("ADDED", job)
        self._jobs_listed.set()

    def _on_pods_listed(self, pods: list[dict[str, Any]]) -> None:
        alive = {(pod["metadata"]["namespace"], pod["metadata"]["name"]) for pod in pods}
        for key in [k for k in self._processes if k not in alive]:
            self._on_pod("DELETED", {"metadata": {"namespace": key[0], "name": key[1]}})
        for pod in pods:
            self._on_pod("ADDED", pod)
        self._pods_listed.set()

    def _on_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        """A deleted Pod's container is killed, as the kubelet does."""
        meta = pod["metadata"]
        process = self._processes.get((meta["namespace"], meta["name"]))
        if process is not None and (event_type == "DELETED" or meta.get("deletionTimestamp")):
            self._background(_terminate(process, self.max_grace_seconds))

    def _on_job(self, event_type: str, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        key = (meta["namespace"], meta["name"])
        state = self._jobs.get(key)
        if state is not None and state.uid != meta["uid"]:
            self._forget(key)
            state = None
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            if state is not None:
                self._forget(key)
            return
        if state is None:
            state = _JobState(meta["namespace"], meta["name"], meta["uid"])
            self._jobs[key] = state
        if state.task is not None or _finished(job):
            return
        if (job.get("spec") or {}).get("suspend") or self._is_held(key):
            return
        state.task = asyncio.create_task(self._run_job(state, job), name=f"job {key}")

    def _is_held(self, key: tuple[str, str]) -> bool:
        if key in self._held:
            return True
        if self._hold_fn is not None and key not in self._released:
            return self._hold_fn(*key)
        return False

    def _forget(self, key: tuple[str, str]) -> None:
        state = self._jobs.pop(key, None)
        if state is not None and state.task is not None:
            state.task.cancel()

    # ------------------------------------------------------------------ one Job

    async def _run_job(self, state: _JobState, job: dict[str, Any]) -> None:
        spec = job["spec"]
        status: dict[str, Any] = dict(job.get("status") or {})
        status.setdefault("startTime", now())
        status.setdefault("failed", 0)
        status.setdefault("succeeded", 0)
        started_at = _parse_time(status["startTime"])
        deadline = spec.get("activeDeadlineSeconds")
        backoff_limit = spec.get("backoffLimit", 6)
        template = spec["template"]
        restart_on_failure = template["spec"].get("restartPolicy") == "OnFailure"
        job_path = f"/apis/batch/v1/namespaces/{state.namespace}/jobs/{state.name}"
        pod_name: str | None = None
        timeout: asyncio.Timeout | None = None
        if deadline:
            elapsed = (datetime.datetime.now(datetime.UTC) - started_at).total_seconds()
            timeout = asyncio.timeout(max(0.0, deadline - elapsed))
        try:
            async with timeout if timeout is not None else contextlib.nullcontext():
                while True:
                    pod = await self._create_pod_until_admitted(state, job, job_path, status)
                    pod_name = pod["metadata"]["name"]
                    status.update(active=1, ready=0, terminating=0, uncountedTerminatedPods={})
                    await self._patch_job_status(job_path, status)
                    exit_code, restarts = await self._run_pod(
                        state, pod, job_path, status, restart_on_failure, backoff_limit
                    )
                    status.update(active=0, ready=0)
                    if exit_code == 0:
                        status["succeeded"] += 1
                        await self._finish(
                            job_path,
                            status,
                            "SuccessCriteriaMet",
                            "Complete",
                            "CompletionsReached",
                            "Reached expected number of succeeded pods",
                        )
                        break
                    status["failed"] += 1
                    verdict = self._pod_failure_policy(spec, pod, exit_code)
                    if verdict is not None and verdict[0] == "FailJob":
                        await self._finish(
                            job_path,
                            status,
                            "FailureTarget",
                            "Failed",
                            "PodFailurePolicy",
                            verdict[1],
                        )
                        break
                    if verdict is not None and verdict[0] == "Ignore":
                        status["failed"] -= 1
                    elif status["failed"] + restarts > backoff_limit:
                        await self._finish(
                            job_path,
                            status,
                            "FailureTarget",
                            "Failed",
                            "BackoffLimitExceeded",
                            "Job has reached the specified backoff limit",
                        )
                        break
                    await asyncio.sleep(self.retry_delay)
        except TimeoutError:
            if timeout is None or not timeout.expired():
                raise  # an API call timed out, not the Job's deadline
            elapsed = (datetime.datetime.now(datetime.UTC) - started_at).total_seconds()
            logger.debug(
                "Job %s/%s exceeded its deadline after %.1fs", state.namespace, state.name, elapsed
            )
            if status.get("active"):
                status["failed"] += 1
            status.update(active=0, ready=0)
            if pod_name is not None:
                await self._patch_pod_status(
                    state.namespace,
                    pod_name,
                    {
                        "phase": "Failed",
                        "reason": "DeadlineExceeded",
                        "message": "Pod was active on the node longer than the specified deadline",
                    },
                )
            await self._finish(
                job_path,
                status,
                "FailureTarget",
                "Failed",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger.exception("The job runner failed on %s/%s", state.namespace, state.name)
            self.errors.append(e)
            return
        ttl = spec.get("ttlSecondsAfterFinished")
        if ttl is not None:
            await asyncio.sleep(ttl)
            assert self._api is not None
            await self._api.request("DELETE", job_path, {"propagationPolicy": "Background"})

    async def _finish(
        self,
        job_path: str,
        status: dict[str, Any],
        interim: str,
        final: str,
        reason: str,
        message: str,
    ) -> None:
        """Two writes, as the real controller does: the interim condition, then the final one."""
        ts = now()
        conditions = [
            c for c in status.get("conditions") or [] if c["type"] not in (interim, final)
        ]
        condition = {
            "status": "True",
            "reason": reason,
            "message": message,
            "lastProbeTime": ts,
            "lastTransitionTime": ts,
        }
        status["conditions"] = [*conditions, {"type": interim, **condition}]
        await self._patch_job_status(job_path, status)
        status["conditions"] = [*status["conditions"], {"type": final, **condition}]
        if final == "Complete":
            status["completionTime"] = ts
        await self._patch_job_status(job_path, status)

    async def _patch_job_status(self, job_path: str, status: dict[str, Any]) -> None:
        assert self._api is not None
        await self._api.merge_patch(f"{job_path}/status", {"status": status})

    @staticmethod
    def _pod_failure_policy(
        spec: Mapping[str, Any], pod: Mapping[str, Any], exit_code: int
    ) -> tuple[str, str] | None:
        policy = spec.get("podFailurePolicy") or {}
        container = pod["spec"]["containers"][0]["name"]
        for index, rule in enumerate(policy.get("rules") or []):
            codes = rule.get("onExitCodes")
            if codes is None:
                continue
            if codes.get("containerName") not in (None, container):
                continue
            inside = exit_code in codes.get("values", [])
            if inside == (codes.get("operator") == "In"):
                message = (
                    f"Container {container} for pod {pod['metadata']['namespace']}/"
                    f"{pod['metadata']['name']} failed with exit code {exit_code} matching "
                    f"{rule['action']} rule at index {index}"
                )
                return rule["action"], message
        return None

    async def _create_pod_until_admitted(
        self, state: _JobState, job: dict[str, Any], job_path: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """As the Job controller: a refused Pod is a FailedCreate Warning Event on the Job (none
        when the namespace is terminating) and another try later, until the Job is deleted or
        its deadline passes. The Job has a startTime and no active Pod meanwhile."""
        reported = False
        while True:
            try:
                return await self._create_pod(state, job)
            except PodRefused as refused:
                if not reported:
                    await self._patch_job_status(job_path, {**status, "active": 0})
                    reported = True
                if not refused.terminating:
                    await self._warn(job, "FailedCreate", f"Error creating: {refused}")
            await asyncio.sleep(self.start_retry_interval)

    async def _warn(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        """A Warning Event about `obj`, from the component that posts `reason` in a cluster."""
        assert self._recorder is not None
        component = _EVENT_SOURCES.get(reason, "kubelet")
        await self._recorder.warn(obj, reason, message, component)

    async def _create_pod(self, state: _JobState, job: dict[str, Any]) -> dict[str, Any]:
        assert self._api is not None
        template = job["spec"]["template"]
        template_meta = template.get("metadata") or {}
        pod_spec: dict[str, Any] = dict(template["spec"])
        if scheduling.problem(pod_spec, self.node) is None:
            pod_spec["nodeName"] = self.node.name  # scheduled at once, the common case
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{state.name}-",
                "labels": {
                    **template_meta.get("labels", {}),
                    JOB_NAME_LABEL: state.name,
                    "job-name": state.name,
                },
                "annotations": template_meta.get("annotations", {}),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": state.name,
                        "uid": state.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
        }
        status, pod = await self._api.request(
            "POST", f"/api/v1/namespaces/{state.namespace}/pods", body
        )
        if status == 403:
            causes = ((pod or {}).get("details") or {}).get("causes") or []
            terminating = any(c.get("reason") == "NamespaceTerminating" for c in causes)
            raise PodRefused((pod or {}).get("message", ""), terminating=terminating)
        if status != 201:
            raise RuntimeError(f"cannot create a pod for {state.namespace}/{state.name}: {pod}")
        return pod  # type: ignore[no-any-return]

    async def _schedule(self, pod: dict[str, Any]) -> None:
        """As the scheduler: while the node cannot take the Pod, `PodScheduled=False` with the
        reason and FailedScheduling Events; then bind it (pods/binding)."""
        assert self._api is not None
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        since = now()
        reported: str | None = None
        while (why := scheduling.problem(pod["spec"], self.node)) is not None:
            if why != reported:
                condition = {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": why,
                    "lastProbeTime": None,
                    "lastTransitionTime": since,
                }
                await self._patch_pod_status(
                    namespace, name, {"phase": "Pending", "conditions": [condition]}
                )
                reported = why
            await self._warn(pod, "FailedScheduling", why)
            await asyncio.sleep(self.start_retry_interval)
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node.name},
        }
        status, body = await self._api.request(
            "POST", f"/api/v1/namespaces/{namespace}/pods/{name}/binding", binding
        )
        if status not in (200, 201):
            raise RuntimeError(f"cannot bind pod {namespace}/{name}: {status} {body}")
        pod["spec"]["nodeName"] = self.node.name

    async def _patch_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        assert self._api is not None
        await self._api.merge_patch(
            f"/api/v1/namespaces/{namespace}/pods/{name}/status", {"status": status}
        )

    def _image(self, image: str) -> Image:
        if image in self.images:
            return self.images[image]
        repository = re.split(r"[@]", image)[0]
        if ":" in repository.rsplit("/", 1)[-1]:
            repository = repository.rsplit(":", 1)[0]
        return self.images.get(repository, self.default_image)

    async def _run_pod(
        self,
        state: _JobState,
        pod: dict[str, Any],
        job_path: str,
        job_status: dict[str, Any],
        restart_on_failure: bool,
        backoff_limit: int,
    ) -> tuple[int, int]:
        """Run the pod's first container to completion; return (exit code, restarts)."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        cname = container["name"]
        image = self._image(container["image"])
        base_status = {
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "qosClass": "BestEffort",
            "startTime": now(),
        }

        def waiting(reason: str, message: str) -> dict[str, Any]:
            return {
                **base_status,
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "True",
                        "lastTransitionTime": base_status["startTime"],
                    },
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "ContainersNotReady",
                        "lastTransitionTime": base_status["startTime"],
                    },
                ],
                "containerStatuses": [
                    {
                        "name": cname,
                        "image": container["image"],
                        "imageID": "",
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }
                ],
            }

        if not pod["spec"].get("nodeName"):
            await self._schedule(pod)
        if image.pull_error:
            await self._patch_pod_status(
                namespace,
                name,
                waiting(
                    "ErrImagePull",
                    f'failed to pull and unpack image "{container["image"]}": not found',
                ),
            )
            await asyncio.sleep(0.05)
            await self._patch_pod_status(
                namespace,
                name,
                waiting("ImagePullBackOff", f'Back-off pulling image "{container["image"]}"'),
            )
            await asyncio.Event().wait()  # forever: until the Job is deleted or its deadline

        while True:
            try:
                mounts = await self._mount_volumes(pod, container)
                env = await self._resolve_env(pod, container)
                break
            except ContainerConfigError as e:
                await self._patch_pod_status(namespace, name, waiting(e.reason, str(e)))
                if isinstance(e, MountError):
                    await self._warn(pod, e.event_reason, str(e))
                else:
                    await self._warn(pod, "Failed", f"Error: {e}")
                await asyncio.sleep(self.config_retry_interval)

        env = {key: _remap(value, mounts) for key, value in env.items()}
        argv = [_remap(arg, mounts) for arg in self._argv(container, image, env)]
        if container.get("workingDir"):
            container = {**container, "workingDir": _remap(container["workingDir"], mounts)}
        restarts = 0
        while True:
            exit_code, reason, message = await self._run_process(
                state, pod, container, image, argv, env, base_status, restarts, job_path, job_status
            )
            if exit_code == 0 or not restart_on_failure or restarts >= backoff_limit:
                break
            restarts += 1
            await asyncio.sleep(self.retry_delay)
        finished = now()
        terminated = {
            "exitCode": exit_code,
            "reason": reason,
            "finishedAt": finished,
            "startedAt": base_status["startTime"],
        }
        if message:
            terminated["message"] = message
        await self._patch_pod_status(
            namespace,
            name,
            {
                **base_status,
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "PodCompleted",
                        "lastTransitionTime": finished,
                    }
                ],
                "containerStatuses": [
                    {
                        "name": cname,
                        "image": container["image"],
                        "imageID": "",
                        "ready": False,
                        "started": False,
                        "restartCount": restarts,
                        "state": {"terminated": terminated},
                    }
                ],
            },
        )
        return exit_code, restarts

    async def _run_process(
        self,
        state: _JobState,
        pod: dict[str, Any],
        container: dict[str, Any],
        image: Image,
        argv: list[str],
        env: dict[str, str],
        base_status: dict[str, Any],
        restarts: int,
        job_path: str,
        job_status: dict[str, Any],
    ) -> tuple[int, str, str]:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        cname = container["name"]
        log_path = self.pod_logs.start(namespace, name, cname)
        executable = self._which(argv[0], image)
        if executable is None:
            message = (
                f'failed to create containerd task: exec: "{argv[0]}": executable file not '
                "found in $PATH"
            )
            log_path.write_text(message + "\n")
            self.pod_logs.finish(namespace, name, cname)
            return 128, "StartError", message
        workdir = container.get("workingDir")
        cwd = workdir if workdir and os.path.isdir(workdir) else str(self._workdir)
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                executable,
                *argv[1:],
                env=self._process_env(pod, image, env),
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        key = (namespace, state.name)
        self._starts[key] = self._starts.get(key, 0) + 1
        state.processes.add(process)
        self._processes[namespace, name] = process
        started = now()
        try:
            await self._patch_pod_status(
                namespace,
                name,
                {
                    **base_status,
                    "phase": "Running",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "True",
                            "lastTransitionTime": base_status["startTime"],
                        },
                        {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                        {
                            "type": "ContainersReady",
                            "status": "True",
                            "lastTransitionTime": started,
                        },
                        {"type": "Ready", "status": "True", "lastTransitionTime": started},
                    ],
                    "containerStatuses": [
                        {
                            "name": cname,
                            "image": container["image"],
                            "imageID": "",
                            "ready": True,
                            "started": True,
                            "restartCount": restarts,
                            "state": {"running": {"startedAt": started}},
                        }
                    ],
                },
            )
            job_status.update(ready=1)
            await self._patch_job_status(job_path, job_status)
            returncode = await process.wait()
        finally:
            if process.returncode is None:
                grace = min(
                    pod["spec"].get("terminationGracePeriodSeconds", 30), self.max_grace_seconds
                )
                await _terminate(process, grace)
            state.processes.discard(process)
            self._processes.pop((namespace, name), None)
            self.pod_logs.finish(namespace, name, cname)
        message = ""
        if returncode != 0 and container.get("terminationMessagePolicy") == (
            "FallbackToLogsOnError"
        ):
            message = _log_tail(log_path)
        if returncode < 0:
            return 128 - returncode, "Error", message
        return returncode, "Completed" if returncode == 0 else "Error", message

    def _which(self, command: str, image: Image) -> str | None:
        if command in image.executables:
            return image.executables[command]
        if os.sep in command:
            return command if os.access(command, os.X_OK) else None
        search = os.pathsep.join([*self.path, os.environ.get("PATH", os.defpath)])
        return shutil.which(command, path=search)

    def _argv(
        self, container: Mapping[str, Any], image: Image, env: Mapping[str, str]
    ) -> list[str]:
        command = container.get("command")
        args = container.get("args")
        if command:
            argv = list(command) + list(args or [])
        else:
            argv = list(image.entrypoint) + list(args if args is not None else image.cmd)
        if not argv:
            raise RuntimeError(
                f"container {container['name']!r} has no command and its image no entrypoint"
            )
        return [_expand(arg, env) for arg in argv]

    async def _mount_volumes(
        self, pod: Mapping[str, Any], container: Mapping[str, Any]
    ) -> dict[str, str]:
        """Local directories for the container's volumeMounts: mountPath → directory.

        There is no mount namespace: the runner rewrites mount paths found in the container's
        args, env values and workingDir to these directories instead. A PersistentVolumeClaim is
        one directory per claim for the runner's lifetime (`volumes` maps claims to directories
        of the test's choice); emptyDir is per pod; Secrets and ConfigMaps are written as files.
        """
        namespace, pod_name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        mounts: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise MountError(f'volume "{mount["name"]}" is not defined in the pod')
            directory = await self._volume_directory(namespace, pod_name, volume)
            if mount.get("subPath"):
                directory = directory / mount["subPath"]
                directory.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"].rstrip("/") or "/"] = str(directory)
        return mounts

    async def _volume_directory(
        self, namespace: str, pod_name: str, volume: Mapping[str, Any]
    ) -> pathlib.Path:
        if self._workdir is None:
            raise RuntimeError("The job runner is not started.")
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            fault = self._volume_faults.get(claim)
            if fault is not None:
                raise type(fault)(str(fault))
            path = self.volumes.get(claim) or self._workdir / "claims" / namespace / claim
        elif "emptyDir" in volume:
            path = self._workdir / "pods" / namespace / pod_name / volume["name"]
        elif "secret" in volume or "configMap" in volume:
            kind = "secretRef" if "secret" in volume else "configMapRef"
            source = volume.get("secret") or volume.get("configMap") or {}
            name = source.get("secretName") or source.get("name") or ""
            try:
                data = await self._read_data(kind, namespace, name, bool(source.get("optional")))
            except ContainerConfigError as e:
                message = f'MountVolume.SetUp failed for volume "{volume["name"]}" : {e}'
                raise MountError(message) from e
            path = self._workdir / "pods" / namespace / pod_name / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            items = source.get("items")
            for key, value in (data or {}).items():
                chosen = [i for i in items if i["key"] == key] if items else [{"path": key}]
                for item in chosen:
                    target = path / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(value)
                    # As the kubelet: the item's mode, else defaultMode, else 0644.
                    target.chmod(item.get("mode", source.get("defaultMode", 0o644)))
        else:
            raise MountError(f'volume "{volume["name"]}": unsupported by the test job runner')
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _process_env(
        self, pod: Mapping[str, Any], image: Image, env: Mapping[str, str]
    ) -> dict[str, str]:
        result = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        result["PATH"] = os.pathsep.join([*self.path, os.environ.get("PATH", os.defpath)])
        result["HOSTNAME"] = pod["metadata"]["name"]
        result.update(image.env)
        result.update(self.extra_env)
        result.update(env)
        return result

    async def _resolve_env(
        self, pod: Mapping[str, Any], container: Mapping[str, Any]
    ) -> dict[str, str]:
        """The container environment, resolved through the API as the kubelet resolves it."""
        assert self._api is not None
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind in ("secretRef", "configMapRef"):
                ref = source.get(kind)
                if ref is None:
                    continue
                data = await self._read_data(
                    kind, namespace, ref["name"], bool(ref.get("optional"))
                )
                for key, value in (data or {}).items():
                    env[prefix + key] = value
        for var in container.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = _expand(var.get("value", ""), env)
                continue
            source = var["valueFrom"]
            if "secretKeyRef" in source or "configMapKeyRef" in source:
                kind = "secretRef" if "secretKeyRef" in source else "configMapRef"
                ref = (
                    source["secretKeyRef"]
                    if "secretKeyRef" in source
                    else source["configMapKeyRef"]
                )
                optional = bool(ref.get("optional"))
                data = await self._read_data(kind, namespace, ref["name"], optional)
                if data is None:
                    continue
                if ref["key"] not in data:
                    if optional:
                        continue
                    what = "Secret" if kind == "secretRef" else "ConfigMap"
                    raise ContainerConfigError(
                        f"couldn't find key {ref['key']} in {what} {namespace}/{ref['name']}"
                    )
                env[name] = data[ref["key"]]
            elif "fieldRef" in source:
                env[name] = _field_ref(pod, source["fieldRef"]["fieldPath"])
            else:
                raise ContainerConfigError(f"unsupported valueFrom for {name}: {sorted(source)}")
        return env

    async def _read_data(
        self, kind: str, namespace: str, name: str, optional: bool
    ) -> dict[str, str] | None:
        assert self._api is not None
        plural = "secrets" if kind == "secretRef" else "configmaps"
        obj = await self._api.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(
                f'{"secret" if plural == "secrets" else "configmap"} "{name}" not found'
            )
        if plural == "secrets":
            return {
                k: base64.b64decode(v).decode("utf-8", errors="replace")
                for k, v in (obj.get("data") or {}).items()
            }
        return dict(obj.get("data") or {})


def _log_tail(path: pathlib.Path, lines: int = 80, limit: int = 2048) -> str:
    """What the kubelet puts in a failed container's termination message under
    `FallbackToLogsOnError`: the last 80 lines or 2048 bytes of its log, whichever is smaller."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    tail = b"\n".join(data.rstrip(b"\n").split(b"\n")[-lines:])[-limit:]
    return tail.decode("utf-8", "replace")


def _parse_time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _remap(value: str, mounts: Mapping[str, str]) -> str:
    """Rewrite container paths under a mountPath to the local directory of that mount."""
    if not mounts:
        return value
    # One pass, longest mount path first: a rewritten path must not be rewritten again.
    alternatives = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
    pattern = f"({alternatives})(?=/|$|[^\\w.-])"
    return re.sub(pattern, lambda match: mounts[match.group(1)], value)


def _finished(job: Mapping[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions
    )


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _expand(value: str, env: Mapping[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion (`$$` escapes)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, value)


def _field_ref(pod: Mapping[str, Any], path: str) -> str:
    meta = pod["metadata"]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    values = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": "local",
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
    }
    if path not in values:
        raise ContainerConfigError(f"unsupported fieldRef {path!r}")
    return str(values[path])


def _kill_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def _terminate(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the container's process group, then SIGKILL after the grace period."""
    _kill_group(process, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), timeout=grace)
    except TimeoutError:
        _kill_group(process, signal.SIGKILL)
        await process.wait()
