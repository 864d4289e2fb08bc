"""The Helm chart: values and their schema, CRD copies, RBAC against what the code calls, and
every rendered object against Kubernetes' own schemas.

There is no helm binary here: the chart is rendered and linted by Helm's own Go engine through
helm-python-sdk (without it those tests skip). The RBAC rules live in plain YAML
(charts/lifeboat/files/rbac/), included verbatim by templates/rbac.yaml, so they are checked as
Helm will emit them; the permissions they must grant are derived from the code: the Kubernetes
client calls in lifeboat.kube.objects that the controller and the worker import, and the
resources the operator's kopf handlers watch and patch. Rendered objects are validated against
the JSON schemas of the oldest Kubernetes the chart supports and the newest
(tests/support/kubernetes_schemas.py), for default and non-default values; values.schema.json
must refuse wrong types and unknown keys, and charts/lifeboat/README.md must document every
value.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from lifeboat.api import (
    BACKUP_PLURAL,
    DRILL_PLURAL,
    GROUP,
    RESTORE_PLURAL,
    SCHEDULE_PLURAL,
    STORE_PLURAL,
    Backup,
)
from lifeboat.api.job import JobTemplateOptions
from lifeboat.builders.jobs import JobDefaults, build_backup_job, default_job_template
from lifeboat.builders.naming import owner_reference
from lifeboat.cli import operator as operator_cli
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.operator import register
from lifeboat.controller.tenancy import JobPolicy
from lifeboat.controller.transitions import StartLimits
from lifeboat.worker.errors import UsageError
from tests.support.chart_schema import job_values_schema
from tests.support.kubernetes_schemas import KUBERNETES_VERSIONS, kubernetes_errors

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "lifeboat"
TEMPLATES = CHART / "templates"
RBAC_FILES = CHART / "files" / "rbac"
PACKAGE = ROOT / "operator" / "lifeboat"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

Permission = tuple[str, str, str]  # (apiGroup, resource, verb)
LEASES_GET, LEASES_CREATE, LEASES_UPDATE = (
    ("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")
)
LEADER_ELECTION: set[Permission] = {LEASES_GET, LEASES_CREATE, LEASES_UPDATE}
CUSTOM = (BACKUP_PLURAL, RESTORE_PLURAL, DRILL_PLURAL)
"""The kinds the worker reports on (its Backup's, Restore's or RestoreDrill's status)."""
OPERATOR_CUSTOM = (*CUSTOM, STORE_PLURAL, SCHEDULE_PLURAL)
"""The kinds the operator reads, lists and writes the status of, and owns Jobs by."""


def client_methods(plurals: tuple[str, ...]) -> dict[str, list[Permission]]:
    """What each Kubernetes client method called in lifeboat/kube/objects.py needs. The
    custom-object calls take the plural as an argument: `plurals` are the kinds a layer uses."""
    return {
        "create_namespaced_job": [("batch", "jobs", "create")],
        "read_namespaced_job": [("batch", "jobs", "get")],
        "delete_namespaced_job": [("batch", "jobs", "delete")],
        "list_namespaced_pod": [("", "pods", "list")],
        "list_namespaced_event": [("", "events", "list")],
        "get_namespaced_custom_object": [(GROUP, plural, "get") for plural in plurals],
        "list_namespaced_custom_object": [(GROUP, plural, "list") for plural in plurals],
        "patch_namespaced_custom_object_status": [
            (GROUP, f"{plural}/status", "patch") for plural in plurals
        ],
        # Only Backups are created, deleted and patched outside status: a schedule's slots,
        # its retention, its release of them (ownerReferences) when it is deleted, and the
        # numbers its drills count (an annotation); and its RestoreDrills are created.
        "create_namespaced_custom_object": [
            (GROUP, BACKUP_PLURAL, "create"),
            (GROUP, DRILL_PLURAL, "create"),
        ],
        "delete_namespaced_custom_object": [(GROUP, BACKUP_PLURAL, "delete")],
        "patch_namespaced_custom_object": [(GROUP, BACKUP_PLURAL, "patch")],
        # Leader election (lifeboat.kube.leases): granted by files/rbac/leader-election.yaml,
        # in the release's namespace only.
        "read_namespaced_lease": [LEASES_GET],
        "create_namespaced_lease": [LEASES_CREATE],
        "replace_namespaced_lease": [LEASES_UPDATE],
    }


# What kopf itself does, whatever the handlers are: resource scanning (it watches the CRDs), the
# namespace observer (it lists namespaces when watching named ones), and Events (kopf.event).
KOPF_FRAMEWORK: list[Permission] = [
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
]
KOPF_EVENTS: list[Permission] = [("", "events", "create")]
CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces"}
# Granted though unused today (the "spare" grants of files/rbac/: Lifeboat and kopf 1.45 patch
# and never update, and kopf only creates core Events). Anything else unused fails the test.
OPERATOR_SPARES: set[Permission] = {
    *((GROUP, plural, "update") for plural in OPERATOR_CUSTOM),
    *(
        (GROUP, f"{plural}/status", verb)
        for plural in OPERATOR_CUSTOM
        for verb in ("get", "update")
    ),
    ("batch", "jobs", "patch"),
    ("", "pods", "get"),
    ("", "pods", "watch"),
    ("", "events", "patch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "get"),
    ("", "namespaces", "get"),
}
# The most the worker may ever have: it reports on its own Backup or Restore, nothing else.
WORKER_CEILING: set[Permission] = {(GROUP, f"{plural}/status", "patch") for plural in CUSTOM}
"""Merge patches of its object's status, nothing else: no read, not even of that object."""


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# -- Chart.yaml and values.yaml ---------------------------------------------------------------


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(CHART / "values.yaml")
    return loaded


def test_chart_metadata() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "lifeboat"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert chart["appVersion"] == PYPROJECT["project"]["version"]


def test_defaults_agree_with_the_operator_and_the_jobs(values: dict[str, Any]) -> None:
    """The chart's defaults are the code's defaults: the same image, the same service account,
    the same user as the Jobs."""
    repository, _, tag = JobDefaults().image.rpartition(":")
    assert values["image"]["repository"] == repository
    assert tag == load_yaml(CHART / "Chart.yaml")["appVersion"]
    assert values["worker"]["serviceAccount"]["name"] == JobDefaults().service_account_name
    assert values["image"]["pullPolicy"] == JobDefaults().image_pull_policy
    given = {k: v for k, v in values["worker"]["job"].items() if v not in (None, {}, [])}
    assert given == default_job_template().to_api_dict(), "worker.job is the operator's default"
    pod = values["podSecurityContext"]
    assert (pod["runAsNonRoot"], pod["runAsUser"], pod["runAsGroup"]) == (True, 10001, 10001)
    container = values["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]


def test_time_limits_are_a_flag_and_a_value_with_one_default(values: dict[str, Any]) -> None:
    """How long a Pod may fail to start, and the Jobs' deadline: the chart's values, the flags'
    defaults and OperatorConfig's defaults are the same numbers."""
    args = operator_parser().parse_args(["--all-namespaces"])
    config = OperatorConfig()
    limits = values["operator"]
    assert limits["resyncSeconds"] == args.resync_seconds == config.resync_seconds
    assert limits["stuckPodSeconds"] == args.stuck_pod_seconds == config.stuck_pod_seconds
    assert (
        limits["unschedulableSeconds"] == args.unschedulable_seconds == config.unschedulable_seconds
    )
    assert limits["volumeMountSeconds"] == args.volume_mount_seconds == config.volume_mount_seconds
    assert limits["backupWaitSeconds"] == args.backup_wait_seconds == config.backup_wait_seconds
    assert limits["storeWaitSeconds"] == args.store_wait_seconds == config.store_wait_seconds
    assert limits["storeCheckSeconds"] == args.store_check_seconds == config.store_check_seconds
    assert (
        limits["scheduleCheckSeconds"]
        == args.schedule_check_seconds
        == config.schedule_check_seconds
    )
    deadline = values["worker"]["activeDeadlineSeconds"]
    assert deadline == args.job_active_deadline_seconds == JobDefaults().active_deadline_seconds


def template_texts() -> dict[str, str]:
    """The templates, and the files they render with `tpl` (the alert rules)."""
    paths = [*TEMPLATES.iterdir(), *(CHART / "files" / "prometheus").glob("*.yaml")]
    return {path.name: path.read_text(encoding="utf-8") for path in paths}


def value_references() -> set[str]:
    """Every `.Values.a.b` path the templates use (also as `$.Values.a.b`)."""
    return {
        match
        for text in template_texts().values()
        for match in re.findall(r"\.Values\.([A-Za-z0-9_.]*[A-Za-z0-9_])", text)
    }


def leaf_paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaf_paths(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def test_every_value_the_templates_use_is_in_values_yaml(values: dict[str, Any]) -> None:
    references = value_references()
    assert len(references) > 10, "the regex found almost nothing: is it still right?"
    missing = []
    for reference in sorted(references):
        node: Any = values
        for key in reference.split("."):
            if not isinstance(node, dict) or key not in node:
                missing.append(reference)
                break
            node = node[key]
    assert missing == [], "add these to values.yaml (with a comment)"


def test_every_value_in_values_yaml_is_used(values: dict[str, Any]) -> None:
    """A value no template reads would silently do nothing."""
    references = value_references()
    unused = [
        path
        for path in leaf_paths(values)
        if not any(
            path == ref or path.startswith(f"{ref}.") or ref.startswith(f"{path}.")
            for ref in references
        )
    ]
    assert unused == []


# -- CRDs -------------------------------------------------------------------------------------


def test_chart_crds_are_byte_identical_copies_of_crds() -> None:
    sources = {path.name: path.read_bytes() for path in (ROOT / "crds").glob("*.yaml")}
    copies = {path.name: path.read_bytes() for path in (CHART / "crds").glob("*.yaml")}
    assert sources, "crds/ is empty"
    stale = sorted(
        name for name in sources.keys() | copies.keys() if sources.get(name) != copies.get(name)
    )
    assert stale == [], f"copy crds/ into charts/lifeboat/crds (differs: {stale})"


# -- RBAC: what the code needs ----------------------------------------------------------------


def _module_calls(tree: ast.Module) -> dict[str, set[str]]:
    """For each top-level function of lifeboat.kube.objects: the client methods it calls,
    directly or through the module's other functions."""
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    direct: dict[str, set[str]] = {}
    local: dict[str, set[str]] = {}
    for name, function in functions.items():
        attributes = {
            node.func.attr
            for node in ast.walk(function)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        }
        direct[name] = {a for a in attributes if re.fullmatch(r"[a-z]+_namespaced_\w+", a)}
        local[name] = {
            node.func.id
            for node in ast.walk(function)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in functions
        }
    resolved: dict[str, set[str]] = {}
    for name in functions:
        seen, todo, methods = set(), [name], set()
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                methods |= direct[current]
                todo.extend(local[current])
        resolved[name] = methods
    return resolved


KUBE_MODULES = ("objects", "leases")
"""The modules of lifeboat.kube the operator and the worker call the API through."""


def kube_calls_of(layer: str) -> set[str]:
    """The client methods behind every lifeboat.kube.objects or lifeboat.kube.leases function
    that `layer` imports."""
    needed: set[str] = set()
    for module in KUBE_MODULES:
        source = (PACKAGE / "kube" / f"{module}.py").read_text(encoding="utf-8")
        calls = _module_calls(ast.parse(source))
        imported: set[str] = set()
        for path in (PACKAGE / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module == f"lifeboat.kube.{module}":
                    imported |= {alias.name for alias in node.names}
        needed |= set().union(*(calls[name] for name in imported if name in calls))
    return needed


def permissions_of(methods: set[str], plurals: tuple[str, ...]) -> set[Permission]:
    table = client_methods(plurals)
    unknown = sorted(methods - table.keys())
    assert unknown == [], f"add {unknown} to client_methods here and to files/rbac/"
    return {permission for method in methods for permission in table[method]}


def kopf_handler_permissions() -> set[Permission]:
    """What the registered kopf handlers make kopf do: list and watch every resource they are
    for; patch those whose handlers keep state (finalizer, progress and diff-base annotations).
    Reads kopf's registries (private names, pinned by constraints.txt)."""
    registry = kopf.OperatorRegistry()
    register(registry, OperatorConfig())
    needed: set[Permission] = set()
    for store, patches in ((registry._changing, True), (registry._watching, False)):
        for handler in store.get_all_handlers():
            selector = handler.selector
            resource = selector.plural or selector.any_name
            needed |= {(selector.group, resource, verb) for verb in ("list", "watch")}
            if patches:
                needed.add((selector.group, resource, "patch"))
    for handler in registry._spawning.get_all_handlers():
        selector = handler.selector
        needed |= {
            (selector.group, selector.plural or selector.any_name, v) for v in ("list", "watch")
        }
    return needed


def operator_needs() -> set[Permission]:
    needed = permissions_of(kube_calls_of("controller"), OPERATOR_CUSTOM)
    needed |= kopf_handler_permissions()
    needed |= set(KOPF_FRAMEWORK)
    controller = "\n".join(
        p.read_text(encoding="utf-8") for p in (PACKAGE / "controller").glob("*.py")
    )
    if "kopf.event(" in controller:
        needed |= set(KOPF_EVENTS)
    # Children carry blockOwnerDeletion: their creator must be able to update the owner's
    # finalizers where OwnerReferencesPermissionEnforcement is on.
    if owner_reference("v", "K", "n", "u").get("blockOwnerDeletion"):
        needed |= {(GROUP, f"{plural}/finalizers", "update") for plural in OPERATOR_CUSTOM}
    return needed


def worker_needs() -> set[Permission]:
    return permissions_of(kube_calls_of("worker"), CUSTOM)


def test_the_code_tables_cover_real_calls() -> None:
    """The derivation finds the calls it should: guards against a regex or AST walk that quietly
    finds nothing."""
    assert {"create_namespaced_job", "list_namespaced_pod"} <= kube_calls_of("controller")
    assert {"read_namespaced_lease", "replace_namespaced_lease"} <= kube_calls_of("controller")
    assert kube_calls_of("worker") == {"patch_namespaced_custom_object_status"}
    assert ("batch", "jobs", "watch") in kopf_handler_permissions()
    assert (GROUP, BACKUP_PLURAL, "patch") in kopf_handler_permissions()


def test_the_api_is_called_only_through_kube_objects() -> None:
    """What the derivation relies on: no other module calls the Kubernetes API directly, and
    kube.objects' and kube.leases' functions are imported by name (so the layers' imports say
    what they call).

    kube.resources is the kubectl plugin's client: it runs with the user's own credentials, not
    the operator's, and an import-linter contract keeps the operator and the worker off it."""
    api_call = re.compile(r"_namespaced_|_for_all_namespaces|_cluster_custom_object")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE / "kube" and path.stem in (*KUBE_MODULES, "resources"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and api_call.search(node.attr):
                offenders.append(f"{path.relative_to(PACKAGE)}: {node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "lifeboat.kube":
                imported = {f"lifeboat.kube.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported = {alias.name for alias in node.names}
            else:
                continue
            if imported & {f"lifeboat.kube.{module}" for module in KUBE_MODULES}:
                offenders.append(f"{path.relative_to(PACKAGE)}: imports the module, not names")
    assert offenders == [], "call the API through functions of lifeboat.kube.objects"


# -- RBAC: what the chart grants --------------------------------------------------------------


def rules(name: str) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = load_yaml(RBAC_FILES / f"{name}.yaml")
    return loaded


def granted(rule_list: list[dict[str, Any]]) -> set[Permission]:
    return {
        (group, resource, verb)
        for rule in rule_list
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rbac_template_includes_each_rule_file_in_its_cluster_role() -> None:
    """Statically: each ClusterRole's rules are its file, verbatim (rendering proves it too)."""
    documents = (TEMPLATES / "rbac.yaml").read_text(encoding="utf-8").split("\n---\n")
    for name in ("operator-cluster", "operator", "worker"):
        [role] = [
            doc
            for doc in documents
            if f"kind: ClusterRole\nmetadata:\n  name: {{{{ $fullname }}}}-{name}\n" in doc
        ]
        include = f'rules:\n  {{{{- .Files.Get "files/rbac/{name}.yaml" | trim | nindent 2 }}}}'
        assert include in role, f"ClusterRole <fullname>-{name} must include its rule file"


def test_no_wildcards_and_no_secrets() -> None:
    for name in ("operator-cluster", "operator", "worker", "leader-election"):
        for group, resource, verb in granted(rules(name)):
            assert "*" not in (group, resource, verb), name
            assert resource != "secrets", f"{name} must not read Secrets: the kubelet does"


def operator_grants() -> set[Permission]:
    return (
        granted(rules("operator"))
        | granted(rules("operator-cluster"))
        | granted(rules("leader-election"))
    )


def test_operator_is_granted_everything_its_code_and_kopf_use() -> None:
    grants = operator_grants()
    missing = sorted(operator_needs() - grants)
    assert missing == [], "add these to charts/lifeboat/files/rbac/operator*.yaml"


def test_operator_is_granted_nothing_unexplained() -> None:
    grants = operator_grants()
    unexplained = sorted(grants - operator_needs() - OPERATOR_SPARES)
    assert unexplained == [], "remove them, or mark them spare in OPERATOR_SPARES and files/rbac/"


def test_cluster_scoped_resources_are_granted_cluster_wide() -> None:
    """A RoleBinding (how operator.yaml is bound per namespace) cannot grant them."""
    namespaced = {resource for _, resource, _ in granted(rules("operator"))}
    assert not namespaced & CLUSTER_SCOPED
    cluster = {resource for _, resource, _ in granted(rules("operator-cluster"))}
    assert cluster == CLUSTER_SCOPED


def test_leases_are_granted_only_by_the_leader_election_role() -> None:
    """The Lease is in the release's namespace: a Role there, not the per-watched-namespace or
    cluster-wide roles, and nothing else in that Role."""
    assert granted(rules("leader-election")) == LEADER_ELECTION
    assert operator_needs() >= LEADER_ELECTION, "the code no longer uses leases: drop the Role"
    for name in ("operator", "operator-cluster", "worker"):
        assert not {resource for _, resource, _ in granted(rules(name))} & {"leases"}, name


def test_worker_is_granted_what_it_uses_and_no_more() -> None:
    grants = granted(rules("worker"))
    assert worker_needs() <= grants
    assert grants <= WORKER_CEILING


# -- the Deployment ---------------------------------------------------------------------------


def operator_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lifeboat")
    commands = parser.add_subparsers()
    operator_cli.register(commands)
    sub: argparse.ArgumentParser = commands.choices["operator"]
    return sub


def test_deployment_passes_only_flags_lifeboat_operator_accepts() -> None:
    text = (TEMPLATES / "deployment.yaml").read_text(encoding="utf-8")
    args = text[text.index("args:") : text.index("ports:")]
    flags = set(re.findall(r"- (--[a-z-]+)", args))
    known = {option for action in operator_parser()._actions for option in action.option_strings}
    assert flags, "no flags found in the Deployment's args"
    assert flags <= known, f"lifeboat operator has no {sorted(flags - known)}"
    for required in ("--worker-image", "--worker-service-account", "--liveness"):
        assert required in flags
    assert {"--all-namespaces", "--namespace"} <= flags


def test_deployment_runs_one_operator_without_leader_election_on_a_read_only_root() -> None:
    text = (TEMPLATES / "deployment.yaml").read_text(encoding="utf-8")
    without = text[text.index("{{- else }}") : text.index("{{- end }}\n  selector:")]
    assert "replicas: 1\n" in without
    assert "type: Recreate" in without
    assert 'command: ["lifeboat"]' in text
    assert re.search(r"- name: tmp\n\s+mountPath: /tmp\n", text)
    assert re.search(r"- name: tmp\n\s+emptyDir: {}\n", text)
    assert "--liveness=http://0.0.0.0:{{ .Values.livenessProbe.port }}/healthz" in text
    assert "containerPort: {{ .Values.livenessProbe.port }}" in text


# -- rendered by Helm's engine, when helm-python-sdk is installed -----------------------------


def render(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    helm = pytest.importorskip(
        "helm_python", reason="helm-python-sdk is not installed: the chart is not rendered"
    )
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(
            values=overrides, name="lifeboat", namespace="lifeboat-system", is_install=True
        )
    documents = []
    for name, text in manifests.items():
        if name.endswith("NOTES.txt"):
            continue
        documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def find(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def test_rendered_chart_lints_clean() -> None:
    helm = pytest.importorskip(
        "helm_python", reason="helm-python-sdk is not installed: the chart is not linted"
    )
    report = helm.lint(str(CHART), strict=True, namespace="lifeboat-system")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert (problems, report["errors"]) == ([], [])


@pytest.mark.parametrize(
    ("overrides", "watched", "worker_namespaces"),
    [
        ({}, ["lifeboat-system"], ["lifeboat-system"]),
        (
            {"operator": {"watchNamespaces": ["shop", "billing"]}},
            ["shop", "billing"],
            ["shop", "billing"],
        ),
        ({"operator": {"allNamespaces": True}}, None, []),
        (
            {
                "operator": {"allNamespaces": True},
                "worker": {"serviceAccount": {"namespaces": ["shop"]}},
            },
            None,
            ["shop"],
        ),
    ],
    ids=["release-namespace", "two-namespaces", "all-namespaces", "all-namespaces-with-worker"],
)
def test_rendered_chart(
    overrides: dict[str, Any], watched: list[str] | None, worker_namespaces: list[str]
) -> None:
    documents = render(overrides)
    for doc in documents:
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "lifeboat", doc["kind"]

    [deployment] = find(documents, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = operator_parser().parse_args(container["args"][1:])
    assert container["command"] == ["lifeboat"]
    assert container["args"][0] == "operator"
    assert args.all_namespaces is (watched is None)
    assert args.namespace == (watched or [])
    assert args.worker_image == container["image"] == JobDefaults().image
    assert args.worker_service_account == JobDefaults().service_account_name
    assert args.liveness == "http://0.0.0.0:8080/healthz"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["ports"][0]["containerPort"] == 8080
    assert args.readiness == "http://0.0.0.0:8081/readyz"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "readyz"}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["readyz"] == 8081
    assert operator_cli.operator_config(args).job_defaults == JobDefaults(
        image=args.worker_image, active_deadline_seconds=21600
    ), "the chart's defaults are the operator's own"

    roles = {doc["metadata"]["name"]: doc["rules"] for doc in find(documents, "ClusterRole")}
    assert roles.keys() == {
        "lifeboat-operator-cluster",
        "lifeboat-operator",
        "lifeboat-worker",
        "lifeboat-view",
        "lifeboat-edit",
    }
    assert roles["lifeboat-operator-cluster"] == rules("operator-cluster")
    assert roles["lifeboat-operator"] == rules("operator")
    assert roles["lifeboat-worker"] == rules("worker")
    cluster_bindings = {d["roleRef"]["name"] for d in find(documents, "ClusterRoleBinding")}
    role_bindings = [
        (d["metadata"]["namespace"], d["roleRef"]["name"]) for d in find(documents, "RoleBinding")
    ]
    if watched is None:
        assert cluster_bindings == {"lifeboat-operator-cluster", "lifeboat-operator"}
    else:
        assert cluster_bindings == {"lifeboat-operator-cluster"}
        assert [ns for ns, role in role_bindings if role == "lifeboat-operator"] == watched
    assert [ns for ns, role in role_bindings if role == "lifeboat-worker"] == worker_namespaces
    worker_accounts = [
        d["metadata"]["namespace"]
        for d in find(documents, "ServiceAccount")
        if d["metadata"]["name"] == "lifeboat-worker"
    ]
    assert worker_accounts == worker_namespaces


@pytest.mark.parametrize(
    ("overrides", "namespaces"),
    [
        ({}, ["lifeboat-system"]),
        ({"operator": {"watchNamespaces": ["shop", "billing"]}}, ["shop", "billing"]),
        (
            {
                "operator": {"allNamespaces": True},
                "worker": {"serviceAccount": {"namespaces": ["shop", "billing"]}},
            },
            ["shop", "billing"],
        ),
    ],
    ids=["release-namespace", "watched-namespaces", "all-namespaces"],
)
def test_rendered_worker_role_patches_only_status_and_only_in_its_own_namespace(
    overrides: dict[str, Any], namespaces: list[str]
) -> None:
    """The worker's ServiceAccount gets `patch` on backups/status, restores/status and
    restoredrills/status and nothing else, through one RoleBinding per namespace naming that
    namespace's own ServiceAccount: never cluster-wide, never another namespace's account."""
    documents = render(overrides)
    roles = {doc["metadata"]["name"]: doc for doc in find(documents, "ClusterRole")}
    assert roles["lifeboat-worker"]["rules"] == [
        {
            "apiGroups": [GROUP],
            "resources": ["backups/status", "restores/status", "restoredrills/status"],
            "verbs": ["patch"],
        }
    ]
    assert granted(roles["lifeboat-worker"]["rules"]) == WORKER_CEILING
    # The only Role is the operator's, for its leader election Lease.
    assert [doc["metadata"]["name"] for doc in find(documents, "Role")] == [
        "lifeboat-leader-election"
    ]
    worker_cluster_bindings = [
        doc
        for doc in find(documents, "ClusterRoleBinding")
        if doc["roleRef"]["name"] == "lifeboat-worker"
    ]
    assert worker_cluster_bindings == []
    bindings = [
        doc for doc in find(documents, "RoleBinding") if doc["roleRef"]["name"] == "lifeboat-worker"
    ]
    assert [doc["metadata"]["namespace"] for doc in bindings] == namespaces
    for doc in bindings:
        assert doc["roleRef"]["kind"] == "ClusterRole"  # its rules, bound in this namespace only
        assert doc["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "lifeboat-worker",
                "namespace": doc["metadata"]["namespace"],
            }
        ]
    other_grants = [
        doc["metadata"]["name"]
        for doc in find(documents, "ClusterRoleBinding") + find(documents, "RoleBinding")
        if any(s.get("name") == "lifeboat-worker" for s in doc.get("subjects", []))
        and doc["roleRef"]["name"] != "lifeboat-worker"
    ]
    assert other_grants == []


def test_rendered_chart_passes_the_allow_lists_to_the_operator() -> None:
    for overrides, policy in (
        ({}, JobPolicy()),
        (
            {
                "worker": {
                    "allowedImages": ["registry.example/lifeboat:*", "ghcr.io/x/y@sha256:*"],
                    "allowedServiceAccounts": ["shop/backup-irsa", "lifeboat-*"],
                }
            },
            JobPolicy(
                allowed_images=("registry.example/lifeboat:*", "ghcr.io/x/y@sha256:*"),
                allowed_service_accounts=("shop/backup-irsa", "lifeboat-*"),
            ),
        ),
    ):
        [deployment] = find(render(overrides), "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        args = operator_parser().parse_args(container["args"][1:])
        assert operator_cli.operator_config(args).job_policy == policy


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"worker": {"allowedImages": "registry.example/*"}}, "/worker/allowedImages"),
        ({"worker": {"allowedImages": ["a b"]}}, "/worker/allowedImages/0"),
        (
            {"worker": {"allowedServiceAccounts": ["Shop/Backup"]}},
            "/worker/allowedServiceAccounts/0",
        ),
        ({"worker": {"allowedServiceAccounts": ["a/b/c"]}}, "/worker/allowedServiceAccounts/0"),
    ],
)
def test_values_schema_refuses_malformed_allow_lists(
    overrides: dict[str, Any], expected: str
) -> None:
    error = render_error(overrides)
    assert "don't meet the specifications of the schema" in error
    assert expected in error, error


@pytest.mark.parametrize(
    ("flags", "environ", "expected"),
    [
        ([], {}, JobPolicy()),
        (
            ["--allowed-images=a/b:*,c/d:1", "--allowed-images=e/f:*"],
            {},
            JobPolicy(allowed_images=("a/b:*", "c/d:1", "e/f:*")),
        ),
        (
            [],
            {"LIFEBOAT_ALLOWED_IMAGES": "a/b:*", "LIFEBOAT_ALLOWED_SERVICE_ACCOUNTS": "shop/x,y"},
            JobPolicy(allowed_images=("a/b:*",), allowed_service_accounts=("shop/x", "y")),
        ),
        (
            ["--allowed-service-accounts=z"],
            {"LIFEBOAT_ALLOWED_SERVICE_ACCOUNTS": "shop/x"},
            JobPolicy(allowed_service_accounts=("z",)),
        ),
    ],
)
def test_allow_lists_from_flags_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    environ: dict[str, str],
    expected: JobPolicy,
) -> None:
    for name in ("LIFEBOAT_ALLOWED_IMAGES", "LIFEBOAT_ALLOWED_SERVICE_ACCOUNTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    args = operator_parser().parse_args(["--all-namespaces", *flags])
    assert operator_cli.operator_config(args).job_policy == expected


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--allowed-images=a b", "--allowed-images: 'a b' is not an image or a glob"),
        ("--allowed-service-accounts=Admin", "--allowed-service-accounts: 'Admin' is not NAME"),
        ("--allowed-service-accounts=a/b/c", "--allowed-service-accounts: 'a/b/c' is not NAME"),
    ],
)
def test_a_malformed_allow_list_entry_stops_the_operator_naming_it(
    flag: str, expected: str
) -> None:
    args = operator_parser().parse_args(["--all-namespaces", flag])
    with pytest.raises(UsageError, match=re.escape(expected)):
        operator_cli.operator_config(args)


def test_rendered_chart_passes_the_time_limits_to_the_operator() -> None:
    overrides = {
        "operator": {"stuckPodSeconds": 30, "unschedulableSeconds": 900, "volumeMountSeconds": 45},
        "worker": {"activeDeadlineSeconds": 86400},
    }
    for values, deadline in ((overrides, 86400), ({"worker": {"activeDeadlineSeconds": 0}}, None)):
        [deployment] = find(render(values), "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        args = operator_parser().parse_args(container["args"][1:])
        config = operator_cli.operator_config(args)
        assert config.job_defaults.active_deadline_seconds == deadline
        if values is overrides:
            assert config.start_limits == StartLimits(30, 900, 45)
        else:
            assert config.start_limits == OperatorConfig().start_limits


# -- values.schema.json -------------------------------------------------------------------------


def render_error(overrides: dict[str, Any]) -> str:
    """What Helm says when it refuses to render with `overrides` ('' when it renders)."""
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
    try:
        render(overrides)
    except helm.HelmValuesError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"operator": {"resyncSeconds": "abc"}}, "/operator/resyncSeconds': got string"),
        ({"operator": {"resyncSeconds": 0}}, "/operator/resyncSeconds"),
        ({"operator": {"resyncSecond": 5}}, "'resyncSecond' not allowed"),
        ({"operater": {}}, "'operater' not allowed"),
        ({"operator": {"allNamespaces": "yes"}}, "/operator/allNamespaces"),
        ({"operator": {"watchNamespaces": "shop"}}, "/operator/watchNamespaces"),
        ({"operator": {"logFormat": "xml"}}, "/operator/logFormat"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"imagePullSecrets": ["regcred"]}, "/imagePullSecrets/0"),
        ({"worker": {"activeDeadlineSeconds": -1}}, "/worker/activeDeadlineSeconds"),
        ({"worker": {"serviceAccount": {"name": "Lifeboat_Worker"}}}, "/worker/serviceAccount"),
        ({"worker": {"job": {"podLabel": {"a": "b"}}}}, "'podLabel' not allowed"),
        ({"worker": {"job": {"podLabels": {"team": "db ops"}}}}, "/worker/job/podLabels/team"),
        ({"worker": {"job": {"tolerations": [{"operator": "Maybe"}]}}}, "/worker/job/tolerations"),
        ({"worker": {"job": {"resources": {"limits": {"memory": "lots"}}}}}, "memory"),
        ({"worker": {"job": {"ttlSecondsAfterFinished": -5}}}, "ttlSecondsAfterFinished"),
        ({"worker": {"job": {"priorityClassName": "High"}}}, "priorityClassName"),
        (
            {"worker": {"job": {"affinity": {"nodeAffinity": {"required": {}}}}}},
            "'required' not allowed",
        ),
        ({"readinessProbe": {"port": 70000}}, "/readinessProbe/port"),
        ({"rbac": {"userRoles": "true"}}, "/rbac/userRoles"),
        ({"metrics": {"port": "8000"}}, "/metrics/port"),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else None,
)
def test_values_schema_refuses_wrong_types_and_unknown_keys(
    overrides: dict[str, Any], expected: str
) -> None:
    error = render_error(overrides)
    assert "don't meet the specifications of the schema" in error, f"rendered with {overrides}"
    assert expected in error, error


def test_values_schema_accepts_the_documented_forms() -> None:
    assert render_error(NON_DEFAULT_VALUES) == ""
    assert render_error({"worker": {"job": {"priorityClassName": None, "affinity": {}}}}) == ""


def test_values_schema_of_worker_job_is_generated_from_spec_job() -> None:
    """worker.job takes what spec.job takes for the pod: its schema is the model's."""
    committed = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert committed["properties"]["worker"]["properties"]["job"] == job_values_schema(), (
        "run: .venv/bin/python -m tests.support.chart_schema"
    )
    fields = {field.alias for field in JobTemplateOptions.model_fields.values()}
    assert set(job_values_schema()["properties"]) == fields


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}" if path else name)


def schema_path(value_path: str, nodes: dict[str, dict[str, Any]]) -> str:
    """The path of the schema node that describes a value: the value's own, or that of the
    free-form object it is in (map keys may contain dots: sidecar.istio.io/inject)."""
    parts = value_path.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in nodes:
            return ".".join(parts[:n])
    return ""


def test_every_value_in_values_yaml_is_in_the_schema_with_a_description(
    values: dict[str, Any],
) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    nodes = dict(schema_nodes(schema))
    undescribed = [path for path, node in nodes.items() if path and not node.get("description")]
    assert undescribed == []
    missing = []
    for path in leaf_paths(values):
        node_path = schema_path(path, nodes)
        # a value inside a free-form object (podAnnotations' keys, podSecurityContext's fields)
        # is described by that object's node, which has no properties of its own
        if node_path != path and "properties" in nodes[node_path]:
            missing.append(path)
    assert missing == [], "describe these in values.schema.json"


# -- the chart's README -------------------------------------------------------------------------


def documented_values() -> set[str]:
    """The keys in the first column of charts/lifeboat/README.md's value tables."""
    text = (CHART / "README.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", text, flags=re.MULTILINE))


def test_chart_readme_documents_every_value(values: dict[str, Any]) -> None:
    documented = documented_values()
    assert len(documented) > 20, "the README's tables were not found"
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    nodes = dict(schema_nodes(schema))
    # a free-form object (worker.job.podAnnotations) is documented as itself, not per key
    undocumented = [
        path for path in leaf_paths(values) if schema_path(path, nodes) not in documented
    ]
    assert undocumented == [], "document these in charts/lifeboat/README.md"
    unknown = sorted(key for key in documented if key not in nodes)
    assert unknown == [], "the README documents values the chart does not have"


# -- rendered objects against Kubernetes' schemas ---------------------------------------------

NON_DEFAULT_VALUES: dict[str, Any] = {
    "fullnameOverride": "backups",
    "image": {"repository": "registry.local/lifeboat", "tag": "0.1.0-pg18", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "operator": {"watchNamespaces": ["shop", "billing"], "resyncSeconds": 5, "logFormat": "json"},
    "worker": {
        "image": {"repository": "mirror.local/lifeboat"},
        "activeDeadlineSeconds": 0,
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/b"}},
        "job": {
            "podAnnotations": {"sidecar.istio.io/inject": "false", "example.com/team": "db"},
            "podLabels": {"team": "db"},
            "resources": {
                "requests": {"cpu": "250m", "memory": "512Mi"},
                "limits": {"memory": "2Gi"},
            },
            "nodeSelector": {"node-pool": "backups"},
            "tolerations": [{"key": "backups", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "podAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 50,
                            "podAffinityTerm": {
                                "labelSelector": {"matchLabels": {"app": "postgres"}},
                                "topologyKey": "topology.kubernetes.io/zone",
                            },
                        }
                    ]
                }
            },
            "priorityClassName": "backups",
            "ttlSecondsAfterFinished": 86400,
        },
    },
    "rbac": {"userRoles": True},
    "replicaCount": 2,
    "leaderElection": {"leaseDurationSeconds": 30, "renewDeadlineSeconds": 20},
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
    "readinessProbe": {"port": 9091},
    "livenessProbe": {"port": 9090},
    "resources": {"requests": {"cpu": "20m"}, "limits": {"cpu": 1, "memory": "256Mi"}},
    "podAnnotations": {"example.com/scrape": "no"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "infra", "operator": "Exists"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "infra", "operator": "In", "values": ["yes"]}]}
                ]
            }
        }
    },
}
# Kinds of the prometheus-operator's CRDs, not Kubernetes': no Kubernetes schema has them.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="defaults"),
        pytest.param(NON_DEFAULT_VALUES, id="non-defaults"),
        pytest.param(
            {
                "operator": {"allNamespaces": True},
                "rbac": {"create": False, "userRoles": False},
                "leaderElection": {"enabled": False},
            },
            id="all-namespaces-no-rbac-no-leader-election",
        ),
    ],
)
def test_rendered_objects_are_valid_kubernetes_objects(
    overrides: dict[str, Any], kubernetes_version: str
) -> None:
    documents = render(overrides)
    checked = [d for d in documents if (d["apiVersion"], d["kind"]) not in CUSTOM_KINDS]
    assert checked
    errors = [e for doc in checked for e in kubernetes_errors(doc, kubernetes_version)]
    assert errors == []


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_the_chart_crds_are_valid_custom_resource_definitions(kubernetes_version: str) -> None:
    for path in sorted((CHART / "crds").glob("*.yaml")):
        assert kubernetes_errors(load_yaml(path), kubernetes_version) == [], path.name


# -- what non-default values do -----------------------------------------------------------------


def deployment_args(documents: list[dict[str, Any]]) -> argparse.Namespace:
    [deployment] = find(documents, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return operator_parser().parse_args(container["args"][1:])


def test_worker_job_values_reach_every_job_through_the_operator() -> None:
    """Chart values -> the operator's flags -> its JobDefaults -> the Jobs it builds."""
    documents = render(NON_DEFAULT_VALUES)
    config = operator_cli.operator_config(deployment_args(documents))
    defaults = config.job_defaults
    assert defaults.image == "mirror.local/lifeboat:0.1.0-pg18"
    assert defaults.image_pull_policy == "Always"
    assert defaults.active_deadline_seconds is None
    backup = Backup.model_validate(
        {
            "metadata": {"name": "db", "namespace": "shop", "uid": "0123456789abcdef"},
            "spec": {
                "database": {"engine": "sqlite", "persistentVolumeClaim": "data", "path": "a.db"},
                "storage": {"volume": {"persistentVolumeClaim": "backups"}},
                "job": {
                    "podLabels": {"team": "shop"},
                    "nodeSelector": {"kubernetes.io/hostname": "n7"},
                },
            },
        }
    )
    backend = backup.spec.storage.backend()
    assert backend is not None
    job = build_backup_job(backup, backend, defaults)
    template = job["spec"]["template"]
    pod = template["spec"]
    wanted = NON_DEFAULT_VALUES["worker"]["job"]
    assert template["metadata"]["annotations"] == wanted["podAnnotations"]
    assert template["metadata"]["labels"]["team"] == "shop"  # spec.job's label wins
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "n7"}  # spec.job's own
    assert pod["tolerations"] == wanted["tolerations"]
    assert pod["affinity"] == wanted["affinity"]
    assert pod["priorityClassName"] == "backups"
    assert pod["containers"][0]["resources"] == wanted["resources"]
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    assert "activeDeadlineSeconds" not in job["spec"]


def test_bad_worker_job_the_schema_cannot_see_stops_the_operator_with_the_field_named() -> None:
    """JSON schema has no CEL: an In requirement without values renders, and the operator
    refuses to start with the field named (its container restarts with that message)."""
    bad = {
        "worker": {
            "job": {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "z", "operator": "In"}]}
                            ]
                        }
                    }
                }
            }
        }
    }
    args = deployment_args(render(bad))
    with pytest.raises(
        UsageError, match=r"--job-defaults\.affinity\.nodeAffinity\..*need at least one value"
    ):
        operator_cli.operator_config(args)


def test_image_pull_secrets_are_on_the_operator_pod_and_both_service_accounts() -> None:
    documents = render(NON_DEFAULT_VALUES)
    accounts = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d.get("imagePullSecrets")
        for d in find(documents, "ServiceAccount")
    }
    assert accounts == {
        ("lifeboat-system", "backups"): [{"name": "regcred"}],
        ("shop", "lifeboat-worker"): [{"name": "regcred"}],
        ("billing", "lifeboat-worker"): [{"name": "regcred"}],
    }
    [deployment] = find(documents, "Deployment")
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert all("imagePullSecrets" not in d for d in find(render({}), "ServiceAccount"))


def test_user_roles_read_and_edit_every_kind_and_aggregate_into_the_builtin_roles() -> None:
    roles = {d["metadata"]["name"]: d for d in find(render({}), "ClusterRole")}
    kinds = {BACKUP_PLURAL, RESTORE_PLURAL, SCHEDULE_PLURAL, STORE_PLURAL, DRILL_PLURAL}
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    view, edit = roles["lifeboat-view"], roles["lifeboat-edit"]
    assert granted(view["rules"]) == {
        (GROUP, k, v) for k in kinds for v in ("get", "list", "watch")
    }
    writes = ("create", "update", "patch", "delete", "deletecollection")
    assert granted(edit["rules"]) == granted(view["rules"]) | {
        (GROUP, k, v) for k in kinds for v in writes
    }
    assert {
        k for k, v in view["metadata"]["labels"].items() if k.startswith(aggregate) and v == "true"
    } == {
        f"{aggregate}view",
        f"{aggregate}edit",
        f"{aggregate}admin",
    }
    assert {
        k for k, v in edit["metadata"]["labels"].items() if k.startswith(aggregate) and v == "true"
    } == {
        f"{aggregate}edit",
        f"{aggregate}admin",
    }
    for role in (view, edit):  # status is the operator's and the worker's; no Secrets
        assert not any(
            "/" in r or r == "secrets" for rule in role["rules"] for r in rule["resources"]
        )
    no_roles = {
        d["metadata"]["name"] for d in find(render({"rbac": {"userRoles": False}}), "ClusterRole")
    }
    assert not {"lifeboat-view", "lifeboat-edit"} & no_roles


def test_the_operator_runs_non_root_on_a_read_only_root_with_both_probes() -> None:
    for overrides in ({}, NON_DEFAULT_VALUES):
        [deployment] = find(render(overrides), "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        args = operator_parser().parse_args(container["args"][1:])
        for probe, flag in (("livenessProbe", args.liveness), ("readinessProbe", args.readiness)):
            port_name = container[probe]["httpGet"]["port"]
            path = container[probe]["httpGet"]["path"]
            assert flag == f"http://0.0.0.0:{ports[port_name]}{path}", probe


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{", "--job-defaults is not JSON"),
        ("[]", "--job-defaults must be a JSON object"),
        ('{"image": "x"}', "--job-defaults.image: unknown field"),
        ('{"podLabels": {"a": "b c"}}', "--job-defaults.podLabels.a: 'b c' is not a label value"),
        ('{"resources": {"limits": {"memory": "lots"}}}', "--job-defaults.resources.limits.memory"),
    ],
)
def test_job_defaults_are_checked_as_spec_job_is(text: str, expected: str) -> None:
    with pytest.raises(UsageError) as refused:
        operator_cli.job_template(text)
    assert expected in str(refused.value)


def test_job_defaults_unset_empty_and_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert operator_cli.job_template(None) == default_job_template()
    assert operator_cli.job_template("{}") == JobTemplateOptions(), "{}: no defaults at all"
    assert operator_cli.job_template('{"nodeSelector": {}, "priorityClassName": null}') == (
        JobTemplateOptions()
    )
    monkeypatch.setenv("LIFEBOAT_JOB_DEFAULTS", '{"priorityClassName": "backups"}')
    args = operator_parser().parse_args(["--all-namespaces"])
    template = operator_cli.operator_config(args).job_defaults.template
    assert template.priority_class_name == "backups"


def test_a_malformed_probe_endpoint_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from lifeboat.cli import main

    assert main(["operator", "--all-namespaces", "--readiness", "0.0.0.0:8081/readyz"]) == 2
    assert "--readiness: expected http://HOST:PORT/PATH" in capsys.readouterr().err


# -- high availability: replicas and leader election -------------------------------------------


def test_two_replicas_render_with_leader_election_its_role_and_a_disruption_budget() -> None:
    """replicaCount: 2 -> two Pods that elect one leader with the Lease <fullname> in the
    release's namespace, a Role and RoleBinding granting exactly that, a rolling update (the new
    Pod stands by until the old one hands the Lease over), and a PodDisruptionBudget."""
    documents = render({"replicaCount": 2})
    [deployment] = find(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    args = deployment_args(documents)
    assert args.leader_elect is True
    election = operator_cli.election_config(args)
    assert election is not None
    assert (election.namespace, election.name) == ("lifeboat-system", "lifeboat")
    timing = election.timing
    assert (timing.lease_seconds, timing.renew_deadline_seconds, timing.retry_seconds) == (
        15,
        10,
        2,
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}

    [role] = find(documents, "Role")
    assert (role["metadata"]["name"], role["metadata"]["namespace"]) == (
        "lifeboat-leader-election",
        "lifeboat-system",
    )
    assert role["rules"] == rules("leader-election")
    [binding] = [d for d in find(documents, "RoleBinding") if d["roleRef"]["kind"] == "Role"]
    assert binding["metadata"]["namespace"] == "lifeboat-system"
    assert binding["roleRef"]["name"] == "lifeboat-leader-election"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "lifeboat", "namespace": "lifeboat-system"}
    ]
    [budget] = find(documents, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_one_replica_also_elects_so_a_rollout_hands_over_without_a_gap() -> None:
    documents = render({})
    [deployment] = find(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment_args(documents).leader_elect is True
    assert find(documents, "PodDisruptionBudget") == []


def test_without_leader_election_one_recreated_operator_and_no_lease_role() -> None:
    documents = render({"leaderElection": {"enabled": False}})
    [deployment] = find(documents, "Deployment")
    assert (deployment["spec"]["replicas"], deployment["spec"]["strategy"]) == (
        1,
        {"type": "Recreate"},
    )
    assert deployment_args(documents).leader_elect is False
    assert find(documents, "Role") == []


def test_two_replicas_without_leader_election_do_not_render() -> None:
    pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
    with pytest.raises(Exception, match=r"replicaCount above 1 needs leaderElection\.enabled"):
        render({"replicaCount": 2, "leaderElection": {"enabled": False}})


def test_the_chart_election_timings_are_accepted_by_the_operator(
    values: dict[str, Any],
) -> None:
    election = values["leaderElection"]
    args = operator_parser().parse_args(
        [
            "--namespace=x",
            "--leader-elect",
            f"--leader-election-lease-seconds={election['leaseDurationSeconds']}",
            f"--leader-election-renew-deadline-seconds={election['renewDeadlineSeconds']}",
            f"--leader-election-retry-seconds={election['retryPeriodSeconds']}",
        ]
    )
    config = operator_cli.election_config(args)
    assert config is not None
    defaults = operator_parser().parse_args(["--namespace=x", "--leader-elect"])
    default_config = operator_cli.election_config(defaults)
    assert default_config is not None
    assert config.timing == default_config.timing, "the chart's defaults are the operator's own"
