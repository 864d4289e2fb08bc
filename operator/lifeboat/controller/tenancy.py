"""Who may run what: the images and ServiceAccounts a Backup's or Restore's Job may use.

Whoever may create a Backup in a namespace could otherwise run any image as any ServiceAccount
of that namespace, with the namespace's Secrets handed to it (`spec.job.image`,
`spec.job.serviceAccountName`). So both are the operator's configuration: its worker image and
worker ServiceAccount (`--worker-image`, `--worker-service-account`), and an object may name
another only where the operator's allow-lists permit (`--allowed-images`,
`--allowed-service-accounts`; the chart's `worker.allowedImages` and
`worker.allowedServiceAccounts`). By default they are empty: no override but the configured
worker image and ServiceAccount themselves.

A refusal is decided here, purely, before any Job exists: the object ends `Failed` with
`ImageNotAllowed` or `ServiceAccountNotAllowed`, the message naming the field and the
allow-list, and no Job is created (a BackupSchedule stalls instead of creating Backups that
would fail).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

from lifeboat.api import JobOptions, Phase
from lifeboat.builders.jobs import JobDefaults
from lifeboat.controller.transitions import Verdict

IMAGE_NOT_ALLOWED: Final = "ImageNotAllowed"
SERVICE_ACCOUNT_NOT_ALLOWED: Final = "ServiceAccountNotAllowed"
IMAGES_FLAG: Final = "--allowed-images"
SERVICE_ACCOUNTS_FLAG: Final = "--allowed-service-accounts"
IMAGES_VALUE: Final = "worker.allowedImages"
SERVICE_ACCOUNTS_VALUE: Final = "worker.allowedServiceAccounts"


@dataclass(frozen=True)
class JobPolicy:
    """The operator's allow-lists for what `spec.job` may override.

    `allowed_images`: glob patterns (`*` and `?` match any characters, `/` and `:` included),
    for example `registry.example/lifeboat:*` for every tag of a mirror, or an exact reference.
    `allowed_service_accounts`: names or glob patterns, each either `NAME` (in any namespace) or
    `NAMESPACE/NAME` (only there), for example `shop/backup-irsa` or `*/lifeboat-irsa`."""

    allowed_images: tuple[str, ...] = ()
    allowed_service_accounts: tuple[str, ...] = ()


def image_allowed(image: str, defaults: JobDefaults, policy: JobPolicy) -> bool:
    return image == defaults.image or any(
        fnmatchcase(image, pattern) for pattern in policy.allowed_images
    )


def service_account_allowed(
    name: str, namespace: str, defaults: JobDefaults, policy: JobPolicy
) -> bool:
    if name == defaults.service_account_name:
        return True
    for pattern in policy.allowed_service_accounts:
        if "/" in pattern:
            if fnmatchcase(f"{namespace}/{name}", pattern):
                return True
        elif fnmatchcase(name, pattern):
            return True
    return False


CREATE_ANEW: Final = "then create a new object. No Job was created."


def _listed(patterns: tuple[str, ...]) -> str:
    return ", ".join(patterns) if patterns else "nothing (the default)"


def job_refusal(
    options: JobOptions | None,
    *,
    namespace: str,
    defaults: JobDefaults,
    policy: JobPolicy,
    field: str = "spec.job",
    then: str = CREATE_ANEW,
) -> Verdict | None:
    """The Failed verdict when `options` (an object's `spec.job`, found at `field`) names an
    image or a ServiceAccount the operator does not allow; None when the Job may be created.
    `then` ends the message: what to do next."""
    if options is None:
        return None
    if options.image is not None and not image_allowed(options.image, defaults, policy):
        return Verdict(
            Phase.FAILED,
            IMAGE_NOT_ALLOWED,
            f"{field}.image: {options.image} is not allowed here: the operator runs its worker "
            f"image {defaults.image} and the images its {IMAGES_FLAG} allow-list (Helm value "
            f"{IMAGES_VALUE}) matches: {_listed(policy.allowed_images)}. Remove {field}.image "
            f"or ask whoever runs the operator to allow the image; {then}",
        )
    account = options.service_account_name
    if account is not None and not service_account_allowed(account, namespace, defaults, policy):
        return Verdict(
            Phase.FAILED,
            SERVICE_ACCOUNT_NOT_ALLOWED,
            f"{field}.serviceAccountName: {account} is not allowed in namespace {namespace}: "
            f"the operator runs its Jobs as its worker ServiceAccount "
            f"{defaults.service_account_name} and the ServiceAccounts its "
            f"{SERVICE_ACCOUNTS_FLAG} allow-list (Helm value {SERVICE_ACCOUNTS_VALUE}) matches: "
            f"{_listed(policy.allowed_service_accounts)}. Remove {field}.serviceAccountName or "
            f"ask whoever runs the operator to allow it; {then}",
        )
    return None
