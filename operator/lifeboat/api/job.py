"""Tuning for the Jobs that run backups and restores: their pod's annotations and labels,
scheduling (nodeSelector, affinity, tolerations, priority), resources, deadlines and cleanup.

Two models, one set of fields. `JobTemplateOptions` is what the operator can also set for every
Job it creates (the chart's `worker.job` values, `lifeboat operator --job-defaults`);
`JobOptions` (a Backup's or Restore's `spec.job`) adds what belongs to one object: the image, the
service account, the deadline and the retries. Where both set a field the object's value wins,
whole; `podAnnotations` and `podLabels` merge key by key, the object's keys winning
(`JobOptions.over`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Final, Self, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator

from lifeboat.api.common import (
    QUANTITY_PATTERN,
    CelRule,
    Matches,
    ObjectName,
    SpecModel,
    cel,
    invalid,
)

# -- labels and annotations -------------------------------------------------------------------

LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
"""A label value: at most 63 characters (empty allowed)."""

_NAME_PART = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_PREFIX_PART = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_ANNOTATIONS_BYTES: Final = 256 * 1024
"""What the API server allows for all of an object's annotations together."""


def qualified_name_problem(key: str) -> str | None:
    """Why `key` is not a Kubernetes label or annotation key (`prefix/name` or `name`), or
    None when it is one."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "the prefix before '/' is empty"
    if slash and (len(prefix) > 253 or not _PREFIX_PART.fullmatch(prefix)):
        return "the prefix before '/' must be a DNS subdomain (lowercase, at most 253 characters)"
    if not name or len(name) > 63 or not _NAME_PART.fullmatch(name):
        return (
            "the name must be 1-63 letters, digits, '-', '_' or '.', starting and ending with "
            "a letter or digit"
        )
    return None


V = TypeVar("V")


def _qualified_keys(what: str) -> Callable[[dict[str, V]], dict[str, V]]:
    def check(value: dict[str, V]) -> dict[str, V]:
        for key in value:
            problem = qualified_name_problem(key)
            if problem is not None:
                raise invalid("key", f"{key!r} is not a valid {what} key: {problem}")
        return value

    return check


def _annotations_size(value: dict[str, str]) -> dict[str, str]:
    size = sum(len(k.encode()) + len(v.encode()) for k, v in value.items())
    if size > MAX_ANNOTATIONS_BYTES:
        raise invalid("size", f"annotations total {size} bytes; Kubernetes allows 256 KiB")
    return value


LabelValue = Annotated[
    str,
    Field(max_length=63),
    Matches(
        LABEL_VALUE_PATTERN,
        "a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with "
        "a letter or digit",
    ),
]
PodLabels = Annotated[
    dict[str, LabelValue], Field(max_length=64), AfterValidator(_qualified_keys("label"))
]
PodAnnotations = Annotated[
    dict[str, Annotated[str, Field(max_length=16384)]],
    Field(max_length=64),
    AfterValidator(_qualified_keys("annotation")),
    AfterValidator(_annotations_size),
]

NodeSelectorLabels = Annotated[
    dict[str, LabelValue], Field(max_length=64), AfterValidator(_qualified_keys("node label"))
]

# -- resources --------------------------------------------------------------------------------


_SUFFIXES: Final = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    **{f"{prefix}i": Decimal(1024) ** power for power, prefix in enumerate("KMGTPE", 1)},
    **{prefix: Decimal(1000) ** power for power, prefix in enumerate("kMGTPE", 1)},
}
MAX_QUANTITY: Final = Decimal(2**63 - 1) / 1000
"""Above this, Kubernetes' arithmetic in thousandths (a quantity's MilliValue, a 64-bit
integer) overflows: 8 PiB of memory, or 9.2 million billion cores. No node comes near."""


def quantity_value(value: int | str) -> Decimal:
    """A Kubernetes quantity (500m, 2, 1.5Gi, 1e3) as a number of units (cores, bytes)."""
    if isinstance(value, int):
        return Decimal(value)
    match = re.fullmatch(r"([0-9.]+)(?:([eE][-+]?[0-9]+)|([KMGTPE]i|[numkMGTPE])?)", value)
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    number, exponent, suffix = match.groups()
    if exponent is not None:
        return Decimal(number + exponent)
    return Decimal(number) * _SUFFIXES[suffix or ""]


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise invalid("quantity", "must not be negative")
    elif not re.fullmatch(QUANTITY_PATTERN, value):
        raise invalid(
            "quantity",
            f"{value!r} is not a Kubernetes quantity: use for example 500m or 2 (cpu), "
            "512Mi or 4Gi (memory)",
        )
    if quantity_value(value) > MAX_QUANTITY:
        raise invalid(
            "quantity",
            f"{value!r} is beyond any node (Kubernetes' arithmetic overflows above 8Pi); use "
            "for example 2 (cpu) or 4Gi (memory)",
        )
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "minimum": 0,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


class ResourceQuantities(SpecModel):
    """cpu and memory amounts, as in a Pod's resources."""

    cpu: Quantity | None = None
    """CPU, for example 500m (half a core) or 2. Compression runs on it: zstd at full speed
    uses about one core."""

    memory: Quantity | None = None
    """Memory, for example 512Mi or 2Gi. Dumps are streamed, so the worker's memory does not
    grow with the size of the database; pg_dump's and mariadb-dump's grows with the number of
    tables."""


class ResourceRequirements(SpecModel):
    """Requests and limits for the Job's container."""

    requests: ResourceQuantities | None = None
    """What the scheduler reserves for the container."""

    limits: ResourceQuantities | None = None
    """The most the container may use: memory above the limit gets it OOM-killed (the Job
    then retries, up to backoffLimit)."""

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Self:
        """Kubernetes refuses a Job whose pod requests more than its limit: say so here, with
        the field named, instead of when the Job is created."""
        for resource in ("cpu", "memory"):
            request = getattr(self.requests, resource, None) if self.requests else None
            limit = getattr(self.limits, resource, None) if self.limits else None
            if (
                request is not None
                and limit is not None
                and quantity_value(request) > quantity_value(limit)
            ):
                raise invalid(
                    "requests_over_limits",
                    f"requests.{resource} {request} is more than limits.{resource} {limit}: "
                    "Kubernetes refuses such a pod; lower the request or raise the limit",
                )
        return self


# -- tolerations ------------------------------------------------------------------------------


class TolerationOperator(StrEnum):
    """How a toleration matches a taint's value."""

    EXISTS = "Exists"
    EQUAL = "Equal"


class TolerationEffect(StrEnum):
    """The taint effect a toleration matches."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


TOLERATION_RULES: Final = (
    CelRule(
        rule="!has(self.operator) || self.operator != 'Exists' || !has(self.value)"
        " || self.value == ''",
        message="operator Exists matches any value: remove value",
    ),
    CelRule(
        rule="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
        message="tolerationSeconds works only with effect NoExecute",
    ),
)


class Toleration(SpecModel):
    """Lets the Job's pod run on nodes with a matching taint (as in a Pod's tolerations)."""

    model_config = ConfigDict(json_schema_extra=cel(*TOLERATION_RULES))

    key: Annotated[str, Field(max_length=317)] | None = None
    """Taint key to match. Unset with operator Exists: tolerate every taint."""

    operator: TolerationOperator | None = None
    """Equal (the default): key and value must match. Exists: any value of key matches."""

    value: Annotated[str, Field(max_length=63)] | None = None
    """Taint value to match with operator Equal."""

    effect: TolerationEffect | None = None
    """Taint effect to match: NoSchedule, PreferNoSchedule or NoExecute. Unset: all effects."""

    toleration_seconds: int | None = None
    """With effect NoExecute: how long the pod stays on a node after the taint appears.
    Unset: forever."""

    @model_validator(mode="after")
    def _kubernetes_rules(self) -> Self:
        if self.operator is TolerationOperator.EXISTS and self.value:
            raise invalid("toleration", TOLERATION_RULES[0].message)
        if self.toleration_seconds is not None and self.effect is not TolerationEffect.NO_EXECUTE:
            raise invalid("toleration", TOLERATION_RULES[1].message)
        return self


# -- affinity ---------------------------------------------------------------------------------

SelectorValues = Annotated[list[Annotated[str, Field(max_length=63)]], Field(max_length=64)]
Weight = Annotated[int, Field(ge=1, le=100)]
TopologyKey = Annotated[str, Field(min_length=1, max_length=317)]
NamespaceNames = Annotated[list[Annotated[str, Field(max_length=63)]], Field(max_length=64)]


class NodeSelectorOperator(StrEnum):
    """How a node selector requirement compares a node's label with its values."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    GT = "Gt"
    LT = "Lt"


class LabelSelectorOperator(StrEnum):
    """How a label selector requirement compares a pod's label with its values."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


_NEEDS_VALUES = CelRule(
    rule="!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
    message="operator In and NotIn need at least one value",
)
_NO_VALUES = CelRule(
    rule="!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values)"
    " || size(self.values) == 0",
    message="operator Exists and DoesNotExist take no values",
)
_ONE_INTEGER = CelRule(
    rule="!(self.operator in ['Gt', 'Lt']) || (has(self.values) && size(self.values) == 1"
    " && self.values[0].matches('^-?[0-9]+$'))",
    message="operator Gt and Lt need exactly one value, an integer",
)
NODE_REQUIREMENT_RULES: Final = (_NEEDS_VALUES, _NO_VALUES, _ONE_INTEGER)
LABEL_REQUIREMENT_RULES: Final = (_NEEDS_VALUES, _NO_VALUES)


def _check_requirement(operator: str, values: list[str] | None) -> None:
    """The CEL rules above, for the operator and the CLI (same words)."""
    if operator in ("In", "NotIn") and not values:
        raise invalid("requirement", _NEEDS_VALUES.message)
    if operator in ("Exists", "DoesNotExist") and values:
        raise invalid("requirement", _NO_VALUES.message)
    if operator in ("Gt", "Lt") and (
        values is None or len(values) != 1 or not re.fullmatch(r"-?[0-9]+", values[0])
    ):
        raise invalid("requirement", _ONE_INTEGER.message)


class NodeSelectorRequirement(SpecModel):
    """One condition on a node's labels (matchExpressions) or fields (matchFields)."""

    model_config = ConfigDict(json_schema_extra=cel(*NODE_REQUIREMENT_RULES))

    key: Annotated[str, Field(min_length=1, max_length=317)]
    """The node label the condition is about, for example topology.kubernetes.io/zone (in
    matchFields: metadata.name)."""

    operator: NodeSelectorOperator
    """In, NotIn: the label's value is (not) one of values. Exists, DoesNotExist: the node
    has (not) the label. Gt, Lt: the label's value, an integer, is greater (less) than the one
    value."""

    values: SelectorValues | None = None
    """The values to compare with: one or more for In and NotIn, none for Exists and
    DoesNotExist, exactly one integer for Gt and Lt."""

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> Self:
        _check_requirement(self.operator.value, self.values)
        return self


class NodeSelectorTerm(SpecModel):
    """Conditions that must all hold for a node to match (an empty term matches no node)."""

    match_expressions: Annotated[list[NodeSelectorRequirement], Field(max_length=16)] | None = None
    """Conditions on the node's labels."""

    match_fields: Annotated[list[NodeSelectorRequirement], Field(max_length=16)] | None = None
    """Conditions on the node's fields (only metadata.name is supported by Kubernetes)."""


class NodeSelector(SpecModel):
    """Nodes the pod may run on: those matching any one of the terms."""

    node_selector_terms: Annotated[list[NodeSelectorTerm], Field(min_length=1, max_length=16)]
    """The terms, ORed: a node that matches one of them is acceptable."""


class PreferredSchedulingTerm(SpecModel):
    """A node preference and how much it counts."""

    weight: Weight
    """1-100: added to a node's score when it matches preference."""

    preference: NodeSelectorTerm
    """The nodes preferred."""


class NodeAffinity(SpecModel):
    """Which nodes the Job's pod runs on, by their labels: for example the zone of the database,
    or the node where a ReadWriteOnce volume of a SQLite database is attached."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    """Nodes the pod must run on: if none matches, the pod stays Pending (and the Backup or
    Restore fails with Unschedulable after --unschedulable-seconds)."""

    preferred_during_scheduling_ignored_during_execution: (
        Annotated[list[PreferredSchedulingTerm], Field(max_length=16)] | None
    ) = None
    """Nodes the scheduler prefers, if it can."""


class LabelSelectorRequirement(SpecModel):
    """One condition on a pod's (or namespace's) labels."""

    model_config = ConfigDict(json_schema_extra=cel(*LABEL_REQUIREMENT_RULES))

    key: Annotated[str, Field(min_length=1, max_length=317)]
    """The label the condition is about."""

    operator: LabelSelectorOperator
    """In, NotIn: the label's value is (not) one of values. Exists, DoesNotExist: the label is
    (not) there."""

    values: SelectorValues | None = None
    """The values to compare with: one or more for In and NotIn, none for Exists and
    DoesNotExist."""

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> Self:
        _check_requirement(self.operator.value, self.values)
        return self


class LabelSelector(SpecModel):
    """Pods (or namespaces) by their labels: every label and every condition must match."""

    match_labels: Annotated[dict[str, LabelValue], Field(max_length=64)] | None = None
    """Labels that must have exactly these values."""

    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=16)] | None = None
    """Conditions on labels."""


class PodAffinityTerm(SpecModel):
    """Pods to run near (or away from), and what "near" means."""

    label_selector: LabelSelector | None = None
    """The pods, by their labels, for example the database's pods."""

    namespace_selector: LabelSelector | None = None
    """Namespaces, by their labels, in which to look for those pods. Unset, with namespaces
    unset: the Job's own namespace."""

    namespaces: NamespaceNames | None = None
    """Namespaces in which to look for those pods, by name (added to namespaceSelector's)."""

    topology_key: TopologyKey
    """The node label that defines "near": kubernetes.io/hostname (the same node),
    topology.kubernetes.io/zone (the same zone)."""


class WeightedPodAffinityTerm(SpecModel):
    """A pod (anti-)affinity preference and how much it counts."""

    weight: Weight
    """1-100: added to a node's score when the term holds there."""

    pod_affinity_term: PodAffinityTerm
    """The pods and the topology."""


class PodAffinity(SpecModel):
    """Run the Job's pod near other pods, for example on the node or in the zone of the
    database it backs up."""

    required_during_scheduling_ignored_during_execution: (
        Annotated[list[PodAffinityTerm], Field(max_length=16)] | None
    ) = None
    """Terms that must all hold, or the pod stays Pending."""

    preferred_during_scheduling_ignored_during_execution: (
        Annotated[list[WeightedPodAffinityTerm], Field(max_length=16)] | None
    ) = None
    """Terms the scheduler tries to satisfy."""


class PodAntiAffinity(SpecModel):
    """Keep the Job's pod away from other pods, for example off the nodes of a busy primary."""

    required_during_scheduling_ignored_during_execution: (
        Annotated[list[PodAffinityTerm], Field(max_length=16)] | None
    ) = None
    """Terms that must all hold, or the pod stays Pending."""

    preferred_during_scheduling_ignored_during_execution: (
        Annotated[list[WeightedPodAffinityTerm], Field(max_length=16)] | None
    ) = None
    """Terms the scheduler tries to satisfy."""


class Affinity(SpecModel):
    """Scheduling rules for the Job's pod, as in a Pod's spec.affinity."""

    node_affinity: NodeAffinity | None = None
    """Which nodes, by their labels."""

    pod_affinity: PodAffinity | None = None
    """Near which pods."""

    pod_anti_affinity: PodAntiAffinity | None = None
    """Away from which pods."""


# -- the options ------------------------------------------------------------------------------


class JobTemplateOptions(SpecModel):
    """What the Job and its pod get that the operator can also set for every Job (the Helm
    chart's worker.job values). Unset fields: the operator's defaults."""

    pod_annotations: PodAnnotations | None = None
    """Annotations for the Job's pod, merged with the operator's (this object's win key by key).
    For example sidecar.istio.io/inject: "false" (the chart's default): an injected Istio
    sidecar would keep the pod running after the backup ends, and the Job never finishes."""

    pod_labels: PodLabels | None = None
    """Labels for the Job's pod, merged with the operator's (this object's win key by key), for
    example to match a NetworkPolicy that lets it reach the database. Lifeboat's own labels
    (app.kubernetes.io/*, lifeboat.dev/*) cannot be overridden."""

    resources: ResourceRequirements | None = None
    """cpu and memory requests and limits for the Job's container. Set here, they replace the
    operator's default resources as a whole."""

    node_selector: NodeSelectorLabels | None = None
    """Node labels the Job's pod must run on, for example to stay near the database. Set here
    (even empty), it replaces the operator's."""

    affinity: Affinity | None = None
    """Node and pod affinity for the Job's pod, for example to run on the node where a SQLite
    database's ReadWriteOnce volume is attached. Set here, it replaces the operator's."""

    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    """Tolerations for the Job's pod, to run on tainted nodes. Set here (even empty), they
    replace the operator's."""

    priority_class_name: ObjectName | None = None
    """PriorityClass of the Job's pod: a higher priority lets a backup preempt less important
    pods when the cluster is full. Unset: the operator's, else the cluster's default."""

    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = None
    """Delete the finished Job (and its pod and logs) this many seconds after it ends. Unset:
    the operator's, else keep it until this object is deleted, so its logs stay readable. Keep
    it above a minute: the operator reads the Job's result when it ends."""


class JobOptions(JobTemplateOptions):
    """Tuning for the Kubernetes Job that runs the backup or restore. Unset fields: the
    operator's defaults (its worker.job values)."""

    image: (
        Annotated[
            str,
            Field(min_length=1, max_length=1024),
            Matches(r"^[^\s]+$", "an image reference: no spaces"),
        ]
        | None
    ) = None
    """Container image for the Job, for example a mirror in a private registry. It must be
    a Lifeboat image of the operator's version, and the operator must allow it (its
    --allowed-images, the chart's worker.allowedImages; by default only its own worker image):
    else this object fails with ImageNotAllowed and no Job is created. Unset: the operator's
    worker image."""

    service_account_name: ObjectName | None = None
    """ServiceAccount for the Job's pod, in the same namespace: use one bound to a cloud IAM
    role to reach S3 without an access key. The operator must allow it (its
    --allowed-service-accounts, the chart's worker.allowedServiceAccounts; by default only its
    worker ServiceAccount): else this object fails with ServiceAccountNotAllowed and no Job is
    created. Unset: the operator's worker ServiceAccount."""

    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Fail the Job (and this object) if it runs longer than this, retries included. Unset:
    the operator's default (6 hours unless it was started with another)."""

    backoff_limit: Annotated[int, Field(ge=0, le=100)] | None = None
    """How many times a failed pod is retried before the Job, and this object, fail. Each
    retry starts the backup or restore from the beginning."""

    def over(self, defaults: JobTemplateOptions) -> JobOptions:
        """These options with the operator's `defaults` filled in where they are unset;
        podAnnotations and podLabels merged, these winning key by key."""
        merged = {
            name: getattr(defaults, name)
            for name in JobTemplateOptions.model_fields
            if getattr(self, name) is None
        }
        for name in ("pod_annotations", "pod_labels"):
            mine, theirs = getattr(self, name), getattr(defaults, name)
            if mine is not None and theirs:
                merged[name] = {**theirs, **mine}
        return self.model_copy(update=merged)
