"""The parts of built-in kinds' API strategies that an operator's objects run into.

Defaulting and validation of Jobs, Pods, Secrets, Namespaces and Events, plus the
`events.k8s.io/v1` ↔ `v1` Event conversion (both are one storage on a real server).
Only what a Lifeboat-like operator touches is modelled; everything else is stored as sent.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Mapping
from typing import Any

from .errors import FieldError

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"


def _qualified_name_errors(key: str, path: str) -> list[FieldError]:
    prefix, _, name = key.rpartition("/")
    errors = []
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        errors.append(
            FieldError("Invalid", path, key, "prefix part must be a lowercase RFC 1123 subdomain")
        )
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        errors.append(
            FieldError(
                "Invalid",
                path,
                key,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and "
                "must start and end with an alphanumeric character (e.g. 'MyName',  or "
                "'my.name',  or '123-abc', regex used for validation is "
                "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
                + ("" if len(name) <= 63 else "; must be no more than 63 characters"),
            )
        )
    return errors


def validate_metadata(
    meta: Mapping[str, Any], *, namespaced: bool, name_is_label: bool
) -> list[FieldError]:
    errors: list[FieldError] = []
    name = meta.get("name", "")
    if name_is_label:
        if len(name) > 63 or not DNS1123_LABEL.match(name):
            errors.append(
                FieldError(
                    "Invalid",
                    "metadata.name",
                    name,
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    "characters or '-', and must start and end with an alphanumeric character "
                    "(e.g. 'my-name',  or '123-abc', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                )
            )
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        errors.append(
            FieldError(
                "Invalid",
                "metadata.name",
                name,
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric "
                "character (e.g. 'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            )
        )
    for key, value in (meta.get("labels") or {}).items():
        path = "metadata.labels"
        errors.extend(_qualified_name_errors(key, path))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            detail = (
                "must be no more than 63 characters"
                if isinstance(value, str) and len(value) > 63
                else (
                    "a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character"
                )
            )
            errors.append(FieldError("Invalid", path, value, detail))
    annotations = meta.get("annotations") or {}
    for key, value in annotations.items():
        errors.extend(_qualified_name_errors(key, "metadata.annotations"))
        if not isinstance(value, str):
            errors.append(
                FieldError("Invalid", f"metadata.annotations[{key}]", value, "must be a string")
            )
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > 256 * 1024:
        errors.append(
            FieldError(
                "TooLong", "metadata.annotations", detail="may not be more than 262144 bytes"
            )
        )
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for field in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(field):
                errors.append(
                    FieldError(
                        "Invalid",
                        f"metadata.ownerReferences[{i}].{field}",
                        ref.get(field, ""),
                        f"{field} must not be empty",
                    )
                )
    if sum(1 for ref in meta.get("ownerReferences") or [] if ref.get("controller")) > 1:
        errors.append(
            FieldError(
                "Invalid",
                "metadata.ownerReferences",
                "array",
                "Only one reference can have Controller set to true",
            )
        )
    for i, finalizer in enumerate(meta.get("finalizers") or []):
        if "/" not in finalizer and finalizer not in ("kubernetes", "orphan", "foregroundDeletion"):
            errors.append(
                FieldError(
                    "Invalid",
                    f"metadata.finalizers[{i}]",
                    finalizer,
                    "name is neither a standard finalizer name nor is it fully qualified",
                )
            )
    return errors


def _default_container(container: dict[str, Any]) -> None:
    image = container.get("image", "")
    latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})


def _default_pod_spec(spec: dict[str, Any], restart_policy: str | None = "Always") -> None:
    if restart_policy is not None:
        spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for container in spec.get("containers") or []:
        _default_container(container)
    for container in spec.get("initContainers") or []:
        _default_container(container)


def _validate_pod_spec(spec: Any, path: str, restart_policies: tuple[str, ...]) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [FieldError("Required", path)]
    errors: list[FieldError] = []
    containers = spec.get("containers") or []
    if not containers:
        errors.append(FieldError("Required", f"{path}.containers"))
    seen: set[str] = set()
    for i, container in enumerate(containers):
        cpath = f"{path}.containers[{i}]"
        name = container.get("name")
        if not name:
            errors.append(FieldError("Required", f"{cpath}.name"))
        elif not DNS1123_LABEL.match(name) or len(name) > 63:
            errors.append(
                FieldError(
                    "Invalid",
                    f"{cpath}.name",
                    name,
                    "a lowercase RFC 1123 label must consist of lower case "
                    "alphanumeric characters or '-'",
                )
            )
        elif name in seen:
            errors.append(FieldError("Duplicate", f"{cpath}.name", name))
        seen.add(name or "")
        if not container.get("image"):
            errors.append(FieldError("Required", f"{cpath}.image"))
        env_names: set[str] = set()
        for j, env in enumerate(container.get("env") or []):
            if not env.get("name"):
                errors.append(FieldError("Required", f"{cpath}.env[{j}].name"))
            env_names.add(env.get("name", ""))
            source = env.get("valueFrom")
            if source is not None and "value" in env and env["value"]:
                errors.append(
                    FieldError(
                        "Invalid",
                        f"{cpath}.env[{j}].valueFrom",
                        "",
                        "may not be specified when `value` is not empty",
                    )
                )
            if source is not None:
                for kind in ("secretKeyRef", "configMapKeyRef"):
                    ref = source.get(kind)
                    if ref is not None and not ref.get("key"):
                        errors.append(
                            FieldError("Required", f"{cpath}.env[{j}].valueFrom.{kind}.key")
                        )
    policy = spec.get("restartPolicy")
    if policy not in restart_policies:
        supported = ", ".join(f'"{p}"' for p in restart_policies)
        if policy is None:
            errors.append(
                FieldError("Required", f"{path}.restartPolicy", detail=f"valid values: {supported}")
            )
        else:
            errors.append(
                FieldError(
                    "NotSupported", f"{path}.restartPolicy", policy, supported=restart_policies
                )
            )
    return errors


def default_job(job: dict[str, Any], uid: str) -> None:
    spec = job.setdefault("spec", {})
    name = job["metadata"]["name"]
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {CONTROLLER_UID: uid}}
        template = spec.setdefault("template", {})
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels.update(
            {CONTROLLER_UID: uid, JOB_NAME: name, "controller-uid": uid, "job-name": name}
        )
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    if isinstance(spec.get("template", {}).get("spec"), dict):
        _default_pod_spec(spec["template"]["spec"], restart_policy=None)


def validate_job(job: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    spec = job.get("spec") or {}
    errors: list[FieldError] = []
    if len(job["metadata"]["name"]) > 63:
        errors.append(
            FieldError(
                "Invalid",
                "metadata.name",
                job["metadata"]["name"],
                "must be no more than 63 characters",
            )
        )
    errors.extend(
        _validate_pod_spec(
            (spec.get("template") or {}).get("spec"), "spec.template.spec", ("OnFailure", "Never")
        )
    )
    for field, minimum in (
        ("backoffLimit", 0),
        ("parallelism", 0),
        ("completions", 0),
        ("activeDeadlineSeconds", 1),
        ("ttlSecondsAfterFinished", 0),
    ):
        value = spec.get(field)
        if value is not None and (not isinstance(value, int) or value < minimum):
            errors.append(
                FieldError(
                    "Invalid", f"spec.{field}", value, f"must be greater than or equal to {minimum}"
                )
            )
    policy = spec.get("podFailurePolicy")
    template_policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if policy is not None and template_policy != "Never":
        errors.append(
            FieldError(
                "Invalid",
                "spec.template.spec.restartPolicy",
                template_policy,
                'only "Never" is supported when podFailurePolicy is specified',
            )
        )
    if old is not None:
        old_spec = old.get("spec") or {}
        for field in ("template", "selector", "completions", "completionMode"):
            immutable = field != "template" or not old_spec.get("suspend")
            if immutable and spec.get(field) != old_spec.get(field):
                errors.append(
                    FieldError("Invalid", f"spec.{field}", spec.get(field), "field is immutable")
                )
    return errors


def default_pod(pod: dict[str, Any]) -> None:
    _default_pod_spec(pod.setdefault("spec", {}))


def initial_pod_status() -> dict[str, Any]:
    return {"phase": "Pending", "qosClass": "BestEffort"}


def validate_pod(pod: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    errors = _validate_pod_spec(pod.get("spec"), "spec", ("Always", "OnFailure", "Never"))
    if old is not None:
        new_spec = copy.deepcopy(pod.get("spec") or {})
        old_spec = copy.deepcopy(old.get("spec") or {})
        for spec in (new_spec, old_spec):
            for container in spec.get("containers") or []:
                container.pop("image", None)
            spec.pop("activeDeadlineSeconds", None)
            spec.pop("tolerations", None)
        if new_spec != old_spec:
            errors.append(
                FieldError(
                    "Forbidden",
                    "spec",
                    detail="pod updates may not change fields other than "
                    "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                    "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing "
                    "tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to "
                    "1 if it was previously negative)",
                )
            )
    return errors


def prepare_secret(secret: dict[str, Any]) -> list[FieldError]:
    """Fold `stringData` into `data` and check that `data` is base64, as the server does."""
    errors: list[FieldError] = []
    secret.setdefault("type", "Opaque")
    data = secret.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(value or "", validate=True)
        except (binascii.Error, TypeError):
            errors.append(
                FieldError(
                    "Invalid", f"data[{key}]", "<secret contents redacted>", "illegal base64 data"
                )
            )
    for key, value in (secret.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        secret["data"] = data
    return errors


def default_namespace(namespace: dict[str, Any]) -> None:
    name = namespace["metadata"]["name"]
    namespace["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    namespace["spec"] = {"finalizers": ["kubernetes"]}
    namespace["status"] = {"phase": "Active"}


# events.k8s.io/v1 field name → v1 field name (the storage is v1).
_EVENT_FIELDS = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}


def event_to_storage(event: Mapping[str, Any]) -> dict[str, Any]:
    converted = {_EVENT_FIELDS.get(k, k): copy.deepcopy(v) for k, v in event.items()}
    converted["apiVersion"] = "v1"
    return converted


def event_from_storage(event: Mapping[str, Any]) -> dict[str, Any]:
    reverse = {v: k for k, v in _EVENT_FIELDS.items()}
    converted = {reverse.get(k, k): copy.deepcopy(v) for k, v in event.items()}
    converted["apiVersion"] = "events.k8s.io/v1"
    return converted


def validate_events_v1(event: Mapping[str, Any]) -> list[FieldError]:
    """The stricter validation of `events.k8s.io/v1` creations."""
    errors = []
    for field in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
        if not event.get(field):
            errors.append(FieldError("Required", field))
    if event.get("type") not in ("Normal", "Warning"):
        errors.append(
            FieldError(
                "NotSupported", "type", event.get("type", ""), supported=("Normal", "Warning")
            )
        )
    if len(event.get("note") or "") > 1024:
        errors.append(FieldError("TooLong", "note", detail="may not be more than 1024 bytes"))
    return errors


def validate_core_event(event: Mapping[str, Any], namespace: str | None) -> list[FieldError]:
    errors = []
    involved = event.get("involvedObject") or {}
    if involved.get("namespace") and namespace and involved["namespace"] != namespace:
        errors.append(
            FieldError(
                "Invalid",
                "involvedObject.namespace",
                involved["namespace"],
                "does not match event.namespace",
            )
        )
    if event.get("type") and event["type"] not in ("Normal", "Warning"):
        errors.append(
            FieldError("NotSupported", "type", event["type"], supported=("Normal", "Warning"))
        )
    return errors
