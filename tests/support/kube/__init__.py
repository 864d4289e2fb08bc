"""A Kubernetes API test server (on kmock) and a Job controller/kubelet stand-in.

See `fixtures.py` for the pytest fixtures and TESTING.md for why this exists.
"""

from .jobs import Image, JobRunner
from .scheduling import Node
from .server import KubeServer

__all__ = ["Image", "JobRunner", "KubeServer", "Node"]
