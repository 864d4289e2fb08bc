"""Jobs for backups, restores, storage cleanup and store checks, built as plain dicts from the
API models.

Pure functions: the same Backup gives the same Job, byte for byte, which is what lets the
controller create it again after a restart and adopt the one that already exists. Storage comes
in resolved (a `StorageBackend`: a Backup's inline storage, or its BackupStore's settings, or what
its status.storage recorded): the controller resolves a storeRef, the builders never read one.

What the Job gets: the `lifeboat` console script as `command`, the worker's arguments in `args`
(no secret among them: DATABASE_URL has no password), credentials as `secretKeyRef` env vars, the
database's or the backup volume's PersistentVolumeClaim mounted when one is used, a restricted
security context, and the curated tuning from `spec.job` over the operator's defaults (its
`worker.job` values). The worker logs its progress as JSON lines on stderr, one every
`PROGRESS_INTERVAL_SECONDS`, so `kubectl logs job/...` shows stage, bytes, rate and ETA; its
last line stays the error line the controller reads from the termination message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

from lifeboat.api import (
    API_VERSION,
    BACKUP_KIND,
    BACKUP_PLURAL,
    RESTORE_KIND,
    RESTORE_PLURAL,
    STORE_KIND,
    Backup,
    BackupStore,
    CaBundleRef,
    DatabaseSpec,
    EncryptionSpec,
    Engine,
    JobOptions,
    Restore,
    StorageBackend,
)
from lifeboat.api.job import JobTemplateOptions, ResourceQuantities, ResourceRequirements
from lifeboat.builders.naming import (
    backup_location_path,
    child_labels,
    child_name,
    owner_reference,
)
from lifeboat.contract import (
    ENV_AWS_ACCESS_KEY_ID,
    ENV_AWS_DEFAULT_REGION,
    ENV_AWS_ENDPOINT_URL,
    ENV_AWS_REGION,
    ENV_AWS_SECRET_ACCESS_KEY,
    ENV_DB_PASSWORD,
    ENV_DB_TLS_CA_FILE,
    ENV_DB_TLS_CERT_FILE,
    ENV_DB_TLS_KEY_FILE,
    ENV_DB_TLS_MODE,
    ENV_ENCRYPTION_KEY,
    ENV_ENCRYPTION_KEY_SOURCE,
    ENV_S3_ADDRESSING_STYLE,
    ENV_S3_CA_BUNDLE,
    ENV_S3_SSE,
    ENV_S3_SSE_KMS_KEY_ID,
    ENV_STATUS_TARGET,
    ENV_STORAGE_TIMEOUT,
    NON_RETRIABLE_EXIT_CODES,
    Object,
)

DATABASE_MOUNT = "/var/lib/lifeboat/database"
BACKUPS_MOUNT = "/var/lib/lifeboat/backups"
DATABASE_CA_MOUNT = "/var/run/lifeboat/database-tls/ca"
DATABASE_CLIENT_CERT_MOUNT = "/var/run/lifeboat/database-tls/client"
STORAGE_CA_MOUNT = "/var/run/lifeboat/storage-tls/ca"
CA_FILE = "ca.crt"
PUBLIC_FILE_MODE: Final = 0o444
"""CA bundles are public: any user in the Pod may read them."""
PRIVATE_FILE_MODE: Final = 0o440
"""A client key: owner root, group the Pod's fsGroup (the worker's group), nobody else. libpq
accepts a key owned by root only up to 0640."""
CONTAINER_NAME = "worker"
PROGRESS_INTERVAL_SECONDS: Final = 10
"""How often a Job's worker logs a progress line (plus one per stage and the last): enough to
follow a long backup with `kubectl logs -f`, few enough for log stores."""
PROGRESS_ARGS: Final = ("--progress", "json", "--progress-interval", str(PROGRESS_INTERVAL_SECONDS))
ISTIO_INJECT_ANNOTATION: Final = "sidecar.istio.io/inject"


def default_job_template() -> JobTemplateOptions:
    """The operator's Job defaults when it is given none (`--job-defaults`), and the chart's
    `worker.job` defaults (a test keeps the two equal).

    - No Istio sidecar: an injected sidecar keeps running after the worker exits, so the Job
      never completes. Where the mesh must carry the Job's traffic (STRICT mTLS), set the
      annotation to "true" with native sidecars (Kubernetes 1.29+, Istio 1.19+), which end
      with the pod.
    - Resources: the worker streams (about 100 MiB for a backup to S3), pg_dump and
      mariadb-dump grow with the number of tables; no CPU limit, which would only throttle
      compression.
    """
    return JobTemplateOptions(
        pod_annotations={ISTIO_INJECT_ANNOTATION: "false"},
        resources=ResourceRequirements(
            requests=ResourceQuantities(cpu="100m", memory="256Mi"),
            limits=ResourceQuantities(memory="1Gi"),
        ),
    )


@dataclass(frozen=True)
class JobDefaults:
    """What the operator uses where `spec.job` says nothing (set by its flags / Helm values)."""

    image: str = "ghcr.io/lifeboat-dev/lifeboat:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    service_account_name: str = "lifeboat-worker"
    command: tuple[str, ...] = ("lifeboat",)
    backup_backoff_limit: int = 2
    restore_backoff_limit: int = 0
    active_deadline_seconds: int | None = 6 * 3600
    """The Jobs' activeDeadlineSeconds where `spec.job` sets none: a worker that hangs (a lock
    it never gets, a storage that never answers) fails with DeadlineExceeded instead of running
    forever. None: no deadline."""
    template: JobTemplateOptions = field(default_factory=default_job_template)
    """Pod annotations and labels, scheduling, resources, priority and TTL for every Job: what a
    `spec.job` leaves unset comes from here (`JobOptions.over`)."""
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Mounts:
    env: list[Object] = field(default_factory=list)
    volumes: list[Object] = field(default_factory=list)
    mounts: list[Object] = field(default_factory=list)

    def __add__(self, other: _Mounts) -> _Mounts:
        return _Mounts(
            self.env + other.env, self.volumes + other.volumes, self.mounts + other.mounts
        )


def _secret_env(name: str, secret: str, key: str) -> Object:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def database_url(database: DatabaseSpec) -> str:
    """DATABASE_URL as the worker sees it inside the Job: never with a password."""
    if database.engine is Engine.SQLITE:
        return f"sqlite:///{DATABASE_MOUNT}/{(database.path or '').lstrip('/')}"
    user = quote(database.user or "", safe="")
    name = quote(database.name or "", safe="")
    host = database.host or ""
    if ":" in host:  # an IPv6 address, bracketed in a URL
        host = f"[{host}]"
    return f"{database.engine.value}://{user}@{host}:{database.effective_port}/{name}"


def database_label(database: DatabaseSpec) -> str:
    """The database as a column shows it: its name, or a SQLite file's path on its claim."""
    if database.engine is Engine.SQLITE:
        return database.path or ""
    return database.name or ""


def _ca_bundle_mounts(
    volume: str,
    mount_path: str,
    env_name: str,
    secret: CaBundleRef | None,
    config_map: CaBundleRef | None,
) -> _Mounts:
    """A CA bundle from a Secret or a ConfigMap key, mounted read-only as `mount_path`/ca.crt,
    its path (never its content) in `env_name`."""
    ref = secret or config_map
    if ref is None:
        return _Mounts()
    items = [{"key": ref.key, "path": CA_FILE}]
    source: Object = (
        {"secret": {"secretName": ref.name, "items": items, "defaultMode": PUBLIC_FILE_MODE}}
        if secret is not None
        else {"configMap": {"name": ref.name, "items": items, "defaultMode": PUBLIC_FILE_MODE}}
    )
    return _Mounts(
        env=[{"name": env_name, "value": f"{mount_path}/{CA_FILE}"}],
        volumes=[{"name": volume, **source}],
        mounts=[{"name": volume, "mountPath": mount_path, "readOnly": True}],
    )


def _database_tls_mounts(database: DatabaseSpec) -> _Mounts:
    """TLS to the database: the mode, the CA bundle and the client certificate as files; the
    worker gets their paths (LIFEBOAT_DB_TLS_*), the key stays in its read-only volume."""
    tls = database.tls
    if tls is None:
        return _Mounts()
    mounts = _Mounts(env=[{"name": ENV_DB_TLS_MODE, "value": tls.mode.worker_mode}])
    mounts += _ca_bundle_mounts(
        "database-tls-ca",
        DATABASE_CA_MOUNT,
        ENV_DB_TLS_CA_FILE,
        tls.ca_secret_ref,
        tls.ca_config_map_ref,
    )
    if tls.client_cert_secret_ref is not None:
        mounts += _Mounts(
            env=[
                {"name": ENV_DB_TLS_CERT_FILE, "value": f"{DATABASE_CLIENT_CERT_MOUNT}/tls.crt"},
                {"name": ENV_DB_TLS_KEY_FILE, "value": f"{DATABASE_CLIENT_CERT_MOUNT}/tls.key"},
            ],
            volumes=[
                {
                    "name": "database-tls-client",
                    "secret": {
                        "secretName": tls.client_cert_secret_ref.name,
                        "items": [
                            {"key": "tls.crt", "path": "tls.crt"},
                            {"key": "tls.key", "path": "tls.key"},
                        ],
                        "defaultMode": PRIVATE_FILE_MODE,
                    },
                }
            ],
            mounts=[
                {
                    "name": "database-tls-client",
                    "mountPath": DATABASE_CLIENT_CERT_MOUNT,
                    "readOnly": True,
                }
            ],
        )
    return mounts


def _database_mounts(database: DatabaseSpec) -> _Mounts:
    if database.engine is Engine.SQLITE:
        return _Mounts(
            volumes=[
                {
                    "name": "database",
                    "persistentVolumeClaim": {"claimName": database.persistent_volume_claim},
                }
            ],
            mounts=[{"name": "database", "mountPath": DATABASE_MOUNT}],
        )
    env = []
    if database.password_secret_ref is not None:
        ref = database.password_secret_ref
        env.append(_secret_env(ENV_DB_PASSWORD, ref.name, ref.key))
    return _Mounts(env=env) + _database_tls_mounts(database)


def storage_url(storage: StorageBackend, location: str) -> str:
    """BACKUP_URL for a backup directory `location` (relative) inside `storage`; `location` ''
    is the storage's own root (the prefix or the volume's path)."""
    if storage.s3 is not None:
        return f"s3://{storage.s3.bucket}/{storage.s3.key_prefix}{location}"
    assert storage.volume is not None
    base = storage.volume.path.strip("/")
    inside = f"{base}/{location}" if base else location
    return f"file://{BACKUPS_MOUNT}/{inside}"


def store_uri(storage: StorageBackend) -> str:
    """Where a store's backups go, for people (a BackupStore's status.uri): s3://bucket/prefix/
    or pvc://claim/path/. Never a credential, never the Job's mount path."""
    if storage.s3 is not None:
        return f"s3://{storage.s3.bucket}/{storage.s3.key_prefix}"
    assert storage.volume is not None
    path = storage.volume.path.strip("/")
    return f"pvc://{storage.volume.persistent_volume_claim}/{f'{path}/' if path else ''}"


def _storage_mounts(storage: StorageBackend) -> _Mounts:
    if storage.s3 is not None:
        s3 = storage.s3
        env: list[Object] = []
        if s3.credentials_secret_ref is not None:
            ref = s3.credentials_secret_ref
            env.append(_secret_env(ENV_AWS_ACCESS_KEY_ID, ref.name, ref.access_key_id_key))
            env.append(_secret_env(ENV_AWS_SECRET_ACCESS_KEY, ref.name, ref.secret_access_key_key))
        if s3.endpoint:
            env.append({"name": ENV_AWS_ENDPOINT_URL, "value": s3.endpoint})
        if s3.region:
            env.append({"name": ENV_AWS_REGION, "value": s3.region})
            env.append({"name": ENV_AWS_DEFAULT_REGION, "value": s3.region})
        if s3.force_path_style:
            env.append({"name": ENV_S3_ADDRESSING_STYLE, "value": "path"})
        sse = s3.server_side_encryption
        if sse is not None:
            env.append({"name": ENV_S3_SSE, "value": sse.type.value})
            if sse.kms_key_id:
                env.append({"name": ENV_S3_SSE_KMS_KEY_ID, "value": sse.kms_key_id})
        if s3.timeout_seconds is not None:
            env.append({"name": ENV_STORAGE_TIMEOUT, "value": str(s3.timeout_seconds)})
        return _Mounts(env=env) + _ca_bundle_mounts(
            "storage-tls-ca",
            STORAGE_CA_MOUNT,
            ENV_S3_CA_BUNDLE,
            s3.ca_secret_ref,
            s3.ca_config_map_ref,
        )
    assert storage.volume is not None
    return _Mounts(
        volumes=[
            {
                "name": "backups",
                "persistentVolumeClaim": {"claimName": storage.volume.persistent_volume_claim},
            }
        ],
        mounts=[{"name": "backups", "mountPath": BACKUPS_MOUNT}],
    )


def _encryption_mounts(encryption: EncryptionSpec | None) -> _Mounts:
    """The client-side encryption key, for the backup and restore Jobs only (a cleanup or a
    store check never needs it): from its Secret through secretKeyRef, never a literal, with a
    plain description of where it comes from for the worker's error messages."""
    if encryption is None:
        return _Mounts()
    ref = encryption.key_secret_ref
    return _Mounts(
        env=[
            _secret_env(ENV_ENCRYPTION_KEY, ref.name, ref.key),
            {
                "name": ENV_ENCRYPTION_KEY_SOURCE,
                "value": f"Secret {ref.name}, key {ref.key}: encryption.keySecretRef",
            },
        ]
    )


def backup_url(backup: Backup, storage: StorageBackend) -> str:
    """Where this Backup's artifact and manifest live in `storage` (its resolved storage):
    unique per Backup object."""
    meta = backup.metadata
    location = backup_location_path(meta.namespace or "", meta.name or "", meta.uid or "")
    return storage_url(storage, location)


def _job(
    *,
    name: str,
    namespace: str,
    labels: dict[str, str],
    owner: Object | None,
    args: list[str],
    mounts: _Mounts,
    options: JobOptions | None,
    defaults: JobDefaults,
    backoff_limit: int,
    status_target: str | None = None,
) -> Object:
    options = (options or JobOptions()).over(defaults.template)
    env = [{"name": k, "value": v} for k, v in sorted(defaults.extra_env.items())]
    env += mounts.env
    if status_target is not None:
        # The worker writes the status of this object and refuses any other (see
        # lifeboat.worker.status_writer).
        env.append({"name": ENV_STATUS_TARGET, "value": status_target})
    container: Object = {
        "name": CONTAINER_NAME,
        "image": options.image or defaults.image,
        "imagePullPolicy": defaults.image_pull_policy,
        "command": list(defaults.command),
        "args": args,
        "env": env,
        "volumeMounts": [*mounts.mounts, {"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    resources = options.resources.to_api_dict() if options.resources is not None else {}
    if resources:
        container["resources"] = resources
    pod_spec: Object = {
        "restartPolicy": "Never",
        "serviceAccountName": options.service_account_name or defaults.service_account_name,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [*mounts.volumes, {"name": "tmp", "emptyDir": {}}],
    }
    if options.node_selector:
        pod_spec["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        pod_spec["tolerations"] = [t.to_api_dict() for t in options.tolerations]
    affinity = options.affinity.to_api_dict() if options.affinity is not None else {}
    if affinity:
        pod_spec["affinity"] = affinity
    if options.priority_class_name:
        pod_spec["priorityClassName"] = options.priority_class_name
    # Lifeboat's own labels win: the operator finds its Pods by them.
    pod_metadata: Object = {"labels": {**(options.pod_labels or {}), **labels}}
    if options.pod_annotations:
        pod_metadata["annotations"] = dict(options.pod_annotations)
    job_spec: Object = {
        "backoffLimit": options.backoff_limit
        if options.backoff_limit is not None
        else backoff_limit,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": [int(code) for code in NON_RETRIABLE_EXIT_CODES],
                    },
                }
            ]
        },
        "template": {"metadata": pod_metadata, "spec": pod_spec},
    }
    deadline = options.active_deadline_seconds or defaults.active_deadline_seconds
    if deadline:
        job_spec["activeDeadlineSeconds"] = deadline
    if options.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = options.ttl_seconds_after_finished
    metadata: Object = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def status_target(plural: str, namespace: str, name: str) -> str:
    """What --report-status and the Job's LIFEBOAT_STATUS_TARGET name: `plural/namespace/name`,
    the one object whose status the Job's worker writes."""
    return f"{plural}/{namespace}/{name}"


def backup_job_name(backup: Backup) -> str:
    return child_name(backup.metadata.name or "", backup.metadata.uid or "", "backup")


def build_backup_job(backup: Backup, storage: StorageBackend, defaults: JobDefaults) -> Object:
    """The one Job that runs `lifeboat backup` for this Backup, into `storage` (its resolved
    spec.storage)."""
    meta = backup.metadata
    name, namespace, uid = meta.name or "", meta.namespace or "", meta.uid or ""
    spec = backup.spec
    args = [
        "backup",
        database_url(spec.database),
        backup_url(backup, storage),
        "--compression",
        spec.compression.value,
        "--overwrite",  # a retry of this Job replaces its own earlier attempt, nothing else
        *PROGRESS_ARGS,
        "--report-status",
        status_target(BACKUP_PLURAL, namespace, name),
    ]
    return _job(
        name=backup_job_name(backup),
        namespace=namespace,
        labels=child_labels(BACKUP_KIND, name, "backup"),
        owner=owner_reference(API_VERSION, BACKUP_KIND, name, uid),
        args=args,
        mounts=_database_mounts(spec.database)
        + _storage_mounts(storage)
        + _encryption_mounts(storage.encryption),
        options=spec.job,
        defaults=defaults,
        backoff_limit=defaults.backup_backoff_limit,
        status_target=status_target(BACKUP_PLURAL, namespace, name),
    )


def cleanup_job_name(backup: Backup) -> str:
    return child_name(backup.metadata.name or "", backup.metadata.uid or "", "cleanup")


def build_cleanup_job(backup: Backup, storage: StorageBackend, defaults: JobDefaults) -> Object:
    """A Job that deletes this Backup's manifest and artifact from `storage`, where the backup
    was written (deletionPolicy Delete). It has no ownerReference: its owner is being deleted
    and must not take it along; the controller deletes it once it succeeded."""
    meta = backup.metadata
    name, namespace = meta.name or "", meta.namespace or ""
    return _job(
        name=cleanup_job_name(backup),
        namespace=namespace,
        labels=child_labels(BACKUP_KIND, name, "cleanup"),
        owner=None,
        args=["delete", backup_url(backup, storage)],
        mounts=_storage_mounts(storage),
        options=backup.spec.job,
        defaults=defaults,
        backoff_limit=defaults.backup_backoff_limit,
    )


def restore_job_name(restore: Restore) -> str:
    return child_name(restore.metadata.name or "", restore.metadata.uid or "", "restore")


def build_restore_job(
    restore: Restore,
    *,
    storage: StorageBackend,
    source_url: str,
    target: DatabaseSpec,
    defaults: JobDefaults,
) -> Object:
    """The one Job that runs `lifeboat restore` for this Restore."""
    meta = restore.metadata
    name, namespace, uid = meta.name or "", meta.namespace or "", meta.uid or ""
    spec = restore.spec
    args = ["restore", source_url, database_url(target)]
    if spec.keep_extra_objects:
        args.append("--keep-extra-objects")
    if not spec.verify_checksum_first:
        args.append("--no-verify-first")
    if spec.no_owner:
        args.append("--no-owner")
    if spec.no_privileges:
        args.append("--no-privileges")
    if spec.dry_run:
        args.append("--dry-run")
    target_ref = status_target(RESTORE_PLURAL, namespace, name)
    args += [*PROGRESS_ARGS, "--report-status", target_ref]
    return _job(
        name=restore_job_name(restore),
        namespace=namespace,
        labels=child_labels(RESTORE_KIND, name, "restore"),
        owner=owner_reference(API_VERSION, RESTORE_KIND, name, uid),
        args=args,
        mounts=_database_mounts(target)
        + _storage_mounts(storage)
        + _encryption_mounts(storage.encryption),
        options=spec.job,
        defaults=defaults,
        backoff_limit=defaults.restore_backoff_limit,
        status_target=target_ref,
    )


STORE_CHECK_DEADLINE_SECONDS = 300
"""A store check Job's activeDeadlineSeconds: the worker gives up on an unreachable endpoint
within about a minute (connect timeouts and retries); this bounds anything else."""
STORE_CHECK_TTL_SECONDS = 600
"""A finished store check Job is deleted after this long: its logs stay readable for a while
(kubectl logs job/<status.checkJobName>), and periodic checks do not pile up Jobs."""


def store_check_job_name(store: BackupStore, check: str) -> str:
    """`<store>-check-<hash>`: one name per store and per check (`check` identifies it, for
    example the generation and the previous check's time), so an operator restart adopts the
    Job of a check in flight instead of starting a second one."""
    meta = store.metadata
    return child_name(meta.name or "", f"{meta.uid or ''}/{check}", "check")


def build_store_check_job(store: BackupStore, job_name: str, defaults: JobDefaults) -> Object:
    """A short Job that runs `lifeboat check` against the store with the store's own settings
    and credentials (secretKeyRef, as a backup Job gets them): the operator never reads them.
    One attempt (the next check is the retry), a short deadline, deleted soon after it ends,
    owned by the store (deleting the store deletes its checks)."""
    meta = store.metadata
    name, namespace, uid = meta.name or "", meta.namespace or "", meta.uid or ""
    options = JobOptions(
        active_deadline_seconds=STORE_CHECK_DEADLINE_SECONDS,
        backoff_limit=0,
        ttl_seconds_after_finished=STORE_CHECK_TTL_SECONDS,
    )
    return _job(
        name=job_name,
        namespace=namespace,
        labels=child_labels(STORE_KIND, name, "check"),
        owner=owner_reference(API_VERSION, STORE_KIND, name, uid),
        args=["check", storage_url(store.spec, "")],
        mounts=_storage_mounts(store.spec),
        options=options,
        defaults=defaults,
        backoff_limit=0,
    )
