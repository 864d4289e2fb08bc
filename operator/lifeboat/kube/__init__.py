"""The only place that talks to the Kubernetes API: Jobs, status patches, Secrets, Events."""
