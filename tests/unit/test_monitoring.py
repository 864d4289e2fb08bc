"""Monitoring as shipped in the chart: the metrics Service and ServiceMonitor, the PrometheusRule
and the Grafana dashboard, rendered by Helm's own engine and checked by Prometheus' own
`promtool` (Debian's `prometheus` package; `make system-deps` installs it).

- every alert expression and every dashboard query parses (`promtool check rules`), and names
  only metrics the operator's registry serves (or Prometheus' own `up`);
- the alerts fire, and only fire, for the series they are about (`promtool test rules`, with the
  thresholds the chart's values set);
- the objects point at each other: Service -> Pod port, ServiceMonitor -> Service.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lifeboat.cli import operator as operator_cli
from lifeboat.controller.metrics import REGISTRY, metric_names, parse_address
from tests.unit.test_chart import CHART, find, operator_parser, render

DASHBOARD = CHART / "files" / "grafana" / "lifeboat.json"
ENABLED = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "grafanaDashboard": {"enabled": True},
    }
}
PROMETHEUS_OWN = {"up"}
# PromQL's words that are not metric names (functions, aggregations, operators, modifiers).
PROMQL_WORDS = {
    "abs", "absent", "and", "avg", "bool", "by", "count", "group_left", "group_right",
    "histogram_quantile", "ignoring", "increase", "max", "min", "offset", "on", "or", "rate",
    "sum", "time", "unless", "vector", "without", "humanize", "humanizeDuration",
}  # fmt: skip


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; make system-deps)")
    return found


def exported() -> set[str]:
    return set(metric_names(REGISTRY))


def metric_references(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once label matchers, grouping
    label lists, ranges, strings and numbers are taken out, minus PromQL's own words."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]", w)}


def rendered_rules(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    (rule,) = find(render(overrides or ENABLED), "PrometheusRule")
    spec: dict[str, Any] = rule["spec"]
    return spec


def rules_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"]]


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


# -- the chart's objects ------------------------------------------------------------------------


def test_by_default_the_operator_serves_metrics_behind_a_service_and_nothing_else_is_rendered() -> (
    None
):
    documents = render({})
    (deployment,) = find(documents, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-address=:8000" in container["args"]
    assert "--log-format=text" in container["args"]
    assert {"name": "metrics", "containerPort": 8000, "protocol": "TCP"} in container["ports"]
    (service,) = [
        s for s in find(documents, "Service") if s["metadata"]["name"].endswith("-metrics")
    ]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8000, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    for kind in ("ServiceMonitor", "PrometheusRule", "ConfigMap"):
        assert find(documents, kind) == [], kind
    # The flag the chart passes is one the operator accepts.
    args = operator_parser().parse_args(["-A", "--metrics-address=:8000", "--log-format=text"])
    assert operator_cli.operator_config(args).metrics_address == ":8000"
    assert parse_address(":8000") == ("0.0.0.0", 8000)  # noqa: S104 - what a Pod serves on


def test_metrics_off_removes_the_flag_port_and_service() -> None:
    documents = render({"metrics": {"enabled": False}, "operator": {"logFormat": "json"}})
    (deployment,) = find(documents, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert not any(arg.startswith("--metrics-address") for arg in container["args"])
    assert "--log-format=json" in container["args"]
    assert all(port["name"] != "metrics" for port in container["ports"])
    assert not [s for s in find(documents, "Service") if s["metadata"]["name"].endswith("-metrics")]


def test_a_service_monitor_without_metrics_is_refused_with_the_reason() -> None:
    with pytest.raises(Exception, match=r"metrics\.serviceMonitor\.enabled needs metrics\.enabled"):
        render({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})


def test_service_monitor_rule_and_dashboard_when_enabled() -> None:
    documents = render(ENABLED)
    (monitor,) = find(documents, "ServiceMonitor")
    (service,) = [
        s for s in find(documents, "Service") if s["metadata"]["name"].endswith("-metrics")
    ]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["lifeboat-system"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["honorLabels"]) == (
        "metrics",
        "/metrics",
        True,
    )
    (rule,) = find(documents, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prom"
    names = [r["alert"] for r in rules_of(rule["spec"])]
    assert names == [
        "LifeboatBackupMissing",
        "LifeboatBackupFailed",
        "LifeboatRestoreFailed",
        "LifeboatBackupUnverified",
        "LifeboatOperatorDown",
        "LifeboatNotOneLeader",
        "LifeboatStoreUnreachable",
        "LifeboatReconcileErrors",
    ]
    down = next(r for r in rules_of(rule["spec"]) if r["alert"] == "LifeboatOperatorDown")
    assert f'job="{service["metadata"]["name"]}"' in down["expr"]  # the ServiceMonitor's job
    (dashboard,) = [c for c in find(documents, "ConfigMap") if "lifeboat.json" in c["data"]]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["lifeboat.json"]) == json.loads(DASHBOARD.read_text())


# -- the alert rules ------------------------------------------------------------------------------


def test_every_alert_parses_and_its_templates_render(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rendered_rules()))
    checked = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


def test_alerts_read_only_metrics_the_operator_exports() -> None:
    rules = rules_of(rendered_rules())
    names = exported()
    for rule in rules:
        references = metric_references(rule["expr"])
        assert references, rule["alert"]
        assert references <= names | PROMETHEUS_OWN, (rule["alert"], references - names)


def test_the_reference_finder_sees_metric_names() -> None:
    """The check above would pass vacuously if it found nothing, or missed a bad name."""
    assert metric_references('sum by (kind) (increase(lifeboat_nope_total{a="b"}[15m])) > 3') == {
        "lifeboat_nope_total"
    }
    assert metric_references("time() - max by (namespace) (x_seconds) > 26 * 3600") == {"x_seconds"}


FAIL = {"namespace": "shop", "engine": "postgresql", "database": "pg:5432/shop"}


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def alert(severity: str, **labels: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": severity, **labels}}


def test_alerts_fire_for_what_they_are_about_and_nothing_else(tmp_path: Path) -> None:
    """promtool's rule unit tests with the chart's default thresholds (26 hours without a
    backup, 6 hours for a failed restore). Annotations are checked by `check rules` above; here
    only whether, when and with which labels each alert fires."""
    spec = rendered_rules()
    for rule in rules_of(spec):
        rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    other = {**FAIL, "database": "pg:5432/other"}
    never = {**FAIL, "database": "pg:5432/never"}
    store = {"namespace": "shop", "store": "backups"}
    up = {"job": "lifeboat-metrics", "namespace": "lifeboat-system"}
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {  # last success at t=0 (the epoch) and at 2h: 26 hours later only the first fires
                "interval": "1m",
                "input_series": [
                    series("lifeboat_backup_last_success_timestamp_seconds", FAIL, "0+0x1800"),
                    series("lifeboat_backup_last_success_timestamp_seconds", other, "7200+0x1800"),
                ],
                "alert_rule_test": [
                    {"eval_time": "26h10m", "alertname": "LifeboatBackupMissing", "exp_alerts": []},
                    {
                        "eval_time": "26h20m",
                        "alertname": "LifeboatBackupMissing",
                        "exp_alerts": [alert("critical", **FAIL)],
                    },
                ],
            },
            {  # failed after its last success; succeeded after a failure; never succeeded
                "interval": "1m",
                "input_series": [
                    series(
                        "lifeboat_backup_last_failure_timestamp_seconds",
                        {**FAIL, "reason": "AuthenticationFailed"},
                        "200+0x10",
                    ),
                    series("lifeboat_backup_last_success_timestamp_seconds", FAIL, "100+0x10"),
                    series(
                        "lifeboat_backup_last_failure_timestamp_seconds",
                        {**other, "reason": "DeadlineExceeded"},
                        "100+0x10",
                    ),
                    series("lifeboat_backup_last_success_timestamp_seconds", other, "200+0x10"),
                    series(
                        "lifeboat_backup_last_failure_timestamp_seconds",
                        {**never, "reason": "BucketNotFound"},
                        "100+0x10",
                    ),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "LifeboatBackupFailed",
                        "exp_alerts": [
                            alert("warning", **FAIL, reason="AuthenticationFailed"),
                            alert("warning", **never, reason="BucketNotFound"),
                        ],
                    }
                ],
            },
            {  # a restore failed at 10h; evaluated at 11h it fires, at 17h (6h later) it is over
                "interval": "1h",
                "input_series": [
                    series(
                        "lifeboat_restore_last_failure_timestamp_seconds",
                        {**FAIL, "reason": "ChecksumMismatch"},
                        "36000+0x20",
                    ),
                    series(
                        "lifeboat_restore_last_failure_timestamp_seconds",
                        {**other, "reason": "ChecksumMismatch"},
                        "36000+0x20",
                    ),
                    series("lifeboat_restore_last_success_timestamp_seconds", other, "39600+0x20"),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "11h",
                        "alertname": "LifeboatRestoreFailed",
                        "exp_alerts": [alert("critical", **FAIL, reason="ChecksumMismatch")],
                    },
                    {"eval_time": "17h", "alertname": "LifeboatRestoreFailed", "exp_alerts": []},
                ],
            },
            {  # verified 9 days ago (fires: 8 days), 1 day ago (does not); drills failed only
                "interval": "1m",
                "input_series": [
                    series("lifeboat_backup_last_verified_timestamp_seconds", FAIL, "0+0x13000"),
                    series(
                        "lifeboat_backup_last_verified_timestamp_seconds", other, "691200+0x13000"
                    ),
                    series(
                        "lifeboat_drill_last_failure_timestamp_seconds",
                        {**never, "reason": "DrillCheckFailed"},
                        "60+0x13000",
                    ),
                    series(
                        "lifeboat_drill_last_failure_timestamp_seconds",
                        {**other, "reason": "RestoreFailed"},
                        "60+0x13000",
                    ),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "30m",
                        "alertname": "LifeboatBackupUnverified",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "216h",
                        "alertname": "LifeboatBackupUnverified",
                        "exp_alerts": [
                            alert("warning", **FAIL),
                            alert("warning", **never, reason="DrillCheckFailed"),
                        ],
                    },
                ],
            },
            {  # the operator's target down, a store unreachable, errors that keep coming
                "interval": "1m",
                "input_series": [
                    series("up", up, "1 1 0x20"),
                    series("lifeboat_store_ready", store, "0x30"),
                    series("lifeboat_store_ready", {**store, "store": "fine"}, "1x30"),
                    series("lifeboat_reconcile_errors_total", {"kind": "backup"}, "0+1x40"),
                ],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "LifeboatOperatorDown", "exp_alerts": []},
                    {
                        "eval_time": "8m",
                        "alertname": "LifeboatOperatorDown",
                        "exp_alerts": [alert("critical")],
                    },
                    {"eval_time": "10m", "alertname": "LifeboatStoreUnreachable", "exp_alerts": []},
                    {
                        "eval_time": "16m",
                        "alertname": "LifeboatStoreUnreachable",
                        "exp_alerts": [alert("warning", **store)],
                    },
                    {
                        "eval_time": "35m",
                        "alertname": "LifeboatReconcileErrors",
                        "exp_alerts": [alert("warning", kind="backup")],
                    },
                ],
            },
            {  # a leader and a standby; then none leads; then two lead
                "interval": "1m",
                "input_series": [
                    series("lifeboat_leader", {**up, "pod": "a"}, "1x10 0x10 1x10"),
                    series("lifeboat_leader", {**up, "pod": "b"}, "0x10 0x10 1x10"),
                    series("lifeboat_leader", {**up, "namespace": "elsewhere"}, "1x30"),
                ],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "LifeboatNotOneLeader", "exp_alerts": []},
                    {"eval_time": "14m", "alertname": "LifeboatNotOneLeader", "exp_alerts": []},
                    {
                        "eval_time": "17m",
                        "alertname": "LifeboatNotOneLeader",
                        "exp_alerts": [alert("critical")],
                    },
                    {
                        "eval_time": "28m",
                        "alertname": "LifeboatNotOneLeader",
                        "exp_alerts": [alert("critical")],
                    },
                ],
            },
            {  # no operator scraped at all
                "interval": "1m",
                "input_series": [],
                "alert_rule_test": [
                    {
                        "eval_time": "6m",
                        "alertname": "LifeboatOperatorDown",
                        "exp_alerts": [alert("critical")],
                    }
                ],
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    tested = run_promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_thresholds_come_from_the_values() -> None:
    spec = rendered_rules(
        {
            "metrics": {
                "prometheusRule": {
                    "enabled": True,
                    "backupMaxAgeHours": 50,
                    "restoreFailedWindowHours": 2,
                    "verifiedBackupMaxAgeDays": 3,
                    "operatorJob": "my-scrape",
                    "severity": {"backupFailed": "critical"},
                }
            }
        }
    )
    rules = {rule["alert"]: rule for rule in rules_of(spec)}
    assert "> 50 * 3600" in rules["LifeboatBackupMissing"]["expr"]
    assert "50 hours" in rules["LifeboatBackupMissing"]["annotations"]["summary"]
    assert "time() - 2 * 3600" in rules["LifeboatRestoreFailed"]["expr"]
    assert "> 3 * 86400" in rules["LifeboatBackupUnverified"]["expr"]
    assert "3 days" in rules["LifeboatBackupUnverified"]["annotations"]["summary"]
    assert 'job="my-scrape"' in rules["LifeboatOperatorDown"]["expr"]
    assert rules["LifeboatBackupFailed"]["labels"]["severity"] == "critical"
    assert rules["LifeboatRestoreFailed"]["labels"]["severity"] == "critical"
    assert "{{ $labels.database }}" in rules["LifeboatBackupMissing"]["annotations"]["summary"]


# -- the dashboard --------------------------------------------------------------------------------


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def as_prometheus(expr: str) -> str:
    """A Grafana query as Prometheus would get it: variables replaced."""
    return expr.replace("$__rate_interval", "5m").replace("$namespace", ".*").replace("$job", ".*")


def test_dashboard_queries_parse_and_read_only_exported_metrics(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) > 20
    names = exported()
    used: set[str] = set()
    for title, expr in queries:
        references = metric_references(as_prometheus(expr))
        assert references, title
        assert references <= names | PROMETHEUS_OWN, (title, references - names)
        used |= references
    # Every Lifeboat metric is on the dashboard somewhere.
    assert {n for n in names if n.startswith("lifeboat_")} - used <= {
        "lifeboat_build_info",
        "lifeboat_backup_duration_seconds_count",
        "lifeboat_backup_duration_seconds_sum",
        "lifeboat_backup_artifact_bytes_count",
        "lifeboat_restore_duration_seconds_count",
        "lifeboat_restore_duration_seconds_sum",
    }
    recording = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": as_prometheus(expr)}
                    for i, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(recording))
    checked = run_promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_variables_are_fed_by_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            metric = re.fullmatch(r"label_values\((\w+), \w+\)", variable["query"])
            assert metric is not None, variable
            assert metric.group(1) in exported(), variable
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
