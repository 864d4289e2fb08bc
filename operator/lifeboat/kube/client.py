"""Kubernetes API clients, configured explicitly: in-cluster, or from a kubeconfig file.

Never the process-global default configuration: the operator, the worker and the tests may each
talk to a different API server from one process.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config


def in_cluster() -> bool:
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        and Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists()
    )


def kubeconfig_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def make_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An ApiClient for the service account in a Pod, else for `kubeconfig` / $KUBECONFIG."""
    if kubeconfig is None and in_cluster():
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config(config_file=kubeconfig_path(kubeconfig))
