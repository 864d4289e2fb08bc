"""Pure functions from the API models to Kubernetes objects as plain dicts (Jobs, names, labels)."""
