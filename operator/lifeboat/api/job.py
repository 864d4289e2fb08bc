"""Tuning for the Jobs that run backups and restores: resources, scheduling, deadlines."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator

from lifeboat.api.common import (
    QUANTITY_PATTERN,
    CelRule,
    ObjectName,
    SpecModel,
    cel,
    invalid,
)


class TolerationOperator(StrEnum):
    """How a toleration matches a taint's value."""

    EXISTS = "Exists"
    EQUAL = "Equal"


class TolerationEffect(StrEnum):
    """The taint effect a toleration matches."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


# -- Job tuning -------------------------------------------------------------------------------


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
    """Memory, for example 512Mi or 2Gi. Dumps are streamed, so memory does not grow with the
    size of the database."""


class ResourceRequirements(SpecModel):
    """Requests and limits for the Job's container."""

    requests: ResourceQuantities | None = None
    """What the scheduler reserves for the container."""

    limits: ResourceQuantities | None = None
    """The most the container may use: memory above the limit gets it OOM-killed (the Job
    then retries, up to backoffLimit)."""


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


class JobOptions(SpecModel):
    """Tuning for the Kubernetes Job that runs the backup or restore. Unset fields: the
    operator's defaults."""

    image: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """Container image for the Job, for example a mirror in a private registry. It must be
    a Lifeboat image of the operator's version. Unset: the operator's own image."""

    resources: ResourceRequirements | None = None
    """cpu and memory requests and limits for the Job's container."""

    node_selector: (
        Annotated[dict[str, Annotated[str, Field(max_length=63)]], Field(max_length=64)] | None
    ) = None
    """Node labels the Job's pod must run on, for example to stay near the database."""

    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    """Tolerations for the Job's pod, to run on tainted nodes."""

    service_account_name: ObjectName | None = None
    """ServiceAccount for the Job's pod, in the same namespace: use one bound to a cloud IAM
    role to reach S3 without an access key. Unset: the operator's worker ServiceAccount."""

    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Fail the Job (and this object) if it runs longer than this, retries included. Unset:
    no deadline."""

    backoff_limit: Annotated[int, Field(ge=0, le=100)] | None = None
    """How many times a failed pod is retried before the Job, and this object, fail. Each
    retry starts the backup or restore from the beginning."""

    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = None
    """Delete the finished Job (and its pod and logs) this many seconds after it ends. Unset:
    keep it until this object is deleted, so its logs stay readable."""
