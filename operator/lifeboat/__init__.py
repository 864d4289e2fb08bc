"""Lifeboat: a Kubernetes operator that backs up and restores databases."""

__version__ = "0.1.0"
