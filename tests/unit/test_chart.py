"""The Helm chart, checked without helm: values, CRD copies, and RBAC against what the code calls.

There is no helm binary here, so most checks read the chart's files. The RBAC rules live in
plain YAML (charts/lifeboat/files/rbac/), included verbatim by templates/rbac.yaml, so they are
checked as Helm will emit them. The permissions they must grant are derived from the code: the
Kubernetes client calls in lifeboat.kube.objects that the controller and the worker import, and
the resources the operator's kopf handlers watch and patch.

When the `helm_python` package (Helm's own Go engine, through helm-python-sdk) is installed, the
chart is also rendered for real and linted; without it those tests skip.
"""

from __future__ import annotations

import argparse
import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from lifeboat.api import BACKUP_PLURAL, GROUP, RESTORE_PLURAL, SCHEDULE_PLURAL, STORE_PLURAL
from lifeboat.builders.jobs import JobDefaults
from lifeboat.builders.naming import owner_reference
from lifeboat.cli import operator as operator_cli
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.operator import register
from lifeboat.controller.transitions import StartLimits

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "lifeboat"
TEMPLATES = CHART / "templates"
RBAC_FILES = CHART / "files" / "rbac"
PACKAGE = ROOT / "operator" / "lifeboat"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

Permission = tuple[str, str, str]  # (apiGroup, resource, verb)
CUSTOM = (BACKUP_PLURAL, RESTORE_PLURAL)
"""The kinds the worker reports on (its Backup's or Restore's status)."""
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
        # its retention, and its release of them (ownerReferences) when it is deleted.
        "create_namespaced_custom_object": [(GROUP, BACKUP_PLURAL, "create")],
        "delete_namespaced_custom_object": [(GROUP, BACKUP_PLURAL, "delete")],
        "patch_namespaced_custom_object": [(GROUP, BACKUP_PLURAL, "patch")],
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
WORKER_CEILING: set[Permission] = {
    (GROUP, resource, verb)
    for plural in CUSTOM
    for resource in (plural, f"{plural}/status")
    for verb in ("get", "patch")
}


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
    return {path.name: path.read_text(encoding="utf-8") for path in TEMPLATES.iterdir()}


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


def kube_calls_of(layer: str) -> set[str]:
    """The client methods behind every lifeboat.kube.objects function that `layer` imports."""
    objects = PACKAGE / "kube" / "objects.py"
    calls = _module_calls(ast.parse(objects.read_text(encoding="utf-8")))
    imported: set[str] = set()
    for path in (PACKAGE / layer).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "lifeboat.kube.objects":
                imported |= {alias.name for alias in node.names}
    return set().union(*(calls[name] for name in imported if name in calls))


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
    assert kube_calls_of("worker") == {"patch_namespaced_custom_object_status"}
    assert ("batch", "jobs", "watch") in kopf_handler_permissions()
    assert (GROUP, BACKUP_PLURAL, "patch") in kopf_handler_permissions()


def test_the_api_is_called_only_through_kube_objects() -> None:
    """What the derivation relies on: no other module calls the Kubernetes API directly, and
    kube.objects' functions are imported by name (so the layers' imports say what they call).

    kube.resources is the kubectl plugin's client: it runs with the user's own credentials, not
    the operator's, and an import-linter contract keeps the operator and the worker off it."""
    api_call = re.compile(r"_namespaced_|_for_all_namespaces|_cluster_custom_object")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path in (PACKAGE / "kube" / "objects.py", PACKAGE / "kube" / "resources.py"):
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
            if "lifeboat.kube.objects" in imported:
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
    for name in ("operator-cluster", "operator", "worker"):
        for group, resource, verb in granted(rules(name)):
            assert "*" not in (group, resource, verb), name
            assert resource != "secrets", f"{name} must not read Secrets: the kubelet does"


def test_operator_is_granted_everything_its_code_and_kopf_use() -> None:
    grants = granted(rules("operator")) | granted(rules("operator-cluster"))
    missing = sorted(operator_needs() - grants)
    assert missing == [], "add these to charts/lifeboat/files/rbac/operator*.yaml"


def test_operator_is_granted_nothing_unexplained() -> None:
    grants = granted(rules("operator")) | granted(rules("operator-cluster"))
    unexplained = sorted(grants - operator_needs() - OPERATOR_SPARES)
    assert unexplained == [], "remove them, or mark them spare in OPERATOR_SPARES and files/rbac/"


def test_cluster_scoped_resources_are_granted_cluster_wide() -> None:
    """A RoleBinding (how operator.yaml is bound per namespace) cannot grant them."""
    namespaced = {resource for _, resource, _ in granted(rules("operator"))}
    assert not namespaced & CLUSTER_SCOPED
    cluster = {resource for _, resource, _ in granted(rules("operator-cluster"))}
    assert cluster == CLUSTER_SCOPED


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


def test_deployment_runs_one_standalone_operator_on_a_read_only_root() -> None:
    text = (TEMPLATES / "deployment.yaml").read_text(encoding="utf-8")
    assert "replicas: 1\n" in text
    assert "type: Recreate" in text
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

    roles = {doc["metadata"]["name"]: doc["rules"] for doc in find(documents, "ClusterRole")}
    assert roles == {
        "lifeboat-operator-cluster": rules("operator-cluster"),
        "lifeboat-operator": rules("operator"),
        "lifeboat-worker": rules("worker"),
    }
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
