"""Running the operator scenarios against a real cluster (kind, k3d) instead of the test server.

Set LIFEBOAT_E2E_KUBECONFIG to a cluster's kubeconfig (CRDs applied), LIFEBOAT_E2E_IMAGE to the
worker image the cluster can run, and LIFEBOAT_E2E_HOST_ADDRESS to the address at which its Pods
reach this machine. The database and S3 fixtures then listen on all interfaces and the specs the
tests write name that address; Jobs run the real image. Without these variables (CI, laptops
without a cluster) everything runs against the in-process test API server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class E2E:
    kubeconfig: str | None
    image: str | None
    host_address: str | None

    @property
    def enabled(self) -> bool:
        return self.kubeconfig is not None

    @property
    def bind_address(self) -> str:
        """Where test servers listen: all interfaces when a real cluster must reach them."""
        return "0.0.0.0" if self.enabled else "127.0.0.1"  # noqa: S104

    def reachable_host(self, host: str) -> str:
        """The host a Job's Pod uses to reach a test server running on this machine."""
        return self.host_address if self.enabled and self.host_address else host

    def reachable_url(self, url: str) -> str:
        parts = urlsplit(url)
        if not self.enabled or not self.host_address or parts.port is None:
            return url
        return urlunsplit(parts._replace(netloc=f"{self.host_address}:{parts.port}"))


def settings() -> E2E:
    kubeconfig = os.environ.get("LIFEBOAT_E2E_KUBECONFIG") or None
    if kubeconfig and not os.environ.get("LIFEBOAT_E2E_HOST_ADDRESS"):
        raise RuntimeError(
            "LIFEBOAT_E2E_KUBECONFIG is set: also set LIFEBOAT_E2E_HOST_ADDRESS (the address at "
            "which the cluster's Pods reach this machine, e.g. the kind network's gateway)"
        )
    return E2E(
        kubeconfig=kubeconfig,
        image=os.environ.get("LIFEBOAT_E2E_IMAGE") or None,
        host_address=os.environ.get("LIFEBOAT_E2E_HOST_ADDRESS") or None,
    )


E2E_SETTINGS = settings()
