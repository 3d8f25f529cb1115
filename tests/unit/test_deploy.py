"""deploy/: the Grafana dashboard only uses metric names and labels that s3ferry's registry really has."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from s3ferry.observe import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "s3ferry.json"
#: labels Prometheus itself attaches (scrape target, Pushgateway grouping) and the histogram's bucket label
TARGET_LABELS = {"job", "instance", "le"}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "summary": ("", "_sum", "_count", "_created"), "info": ("_info",),
            "unknown": ("",)}


def sample_names() -> dict[str, set[str]]:
    """Every sample name the registry can expose -> its label names (None of them for unlabelled ones)."""
    labels: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            labels[value._name] = set(value._labelnames)
    names: dict[str, set[str]] = {}
    for family in metrics.REGISTRY.collect():
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = labels.get(family.name, set())
        for sample in family.samples:  # whatever else it really exposes
            names.setdefault(sample.name, set(sample.labels))
    return names


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def expressions(dashboard: dict[str, Any]) -> list[str]:
    found = [node["expr"] for node in walk(dashboard.get("panels", [])) if isinstance(node.get("expr"), str)]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        found.append(query["query"] if isinstance(query, dict) else query)
    return found


def used_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(s3ferry_[A-Za-z0-9_:]+)", expr))


def used_labels(expr: str) -> set[str]:
    labels = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels.update(name.strip() for name in group.split(",") if name.strip())
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    for metric_label in re.findall(r"label_values\([^,]*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", expr):
        labels.add(metric_label)
    return labels


def test_the_registry_exposes_what_the_dashboard_is_built_on() -> None:
    names = sample_names()
    for expected in ("s3ferry_transferred_bytes_total", "s3ferry_files_total", "s3ferry_parts_total",
                     "s3ferry_retries_total", "s3ferry_transfer_duration_seconds_bucket",
                     "s3ferry_push_retry_queue_depth", "s3ferry_flow_last_success_timestamp_seconds",
                     "s3ferry_throughput_bytes_per_second", "s3ferry_resident_memory_bytes",
                     "s3ferry_disk_written_bytes"):
        assert expected in names
    assert names["s3ferry_transferred_bytes_total"] == {"direction", "flow"}


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "s3ferry" and dashboard["uid"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"type", "title", "gridPos"} <= set(panel)
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
    # Nothing hard-wired to one Prometheus: the data source is chosen on import.
    assert "${DS_PROMETHEUS}" in DASHBOARD.read_text()


def test_every_expression_uses_real_metric_names_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = sample_names()
    exprs = expressions(dashboard)
    assert len(exprs) >= 15
    covered: set[str] = set()
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for expr in exprs:
        used = used_names(expr)
        assert used, f"no s3ferry metric in {expr!r}"
        unknown = used - set(names)
        assert not unknown, f"{expr!r} uses {sorted(unknown)}, which s3ferry does not export"
        allowed = TARGET_LABELS.union(*(names[n] for n in used))
        bad = used_labels(expr) - allowed
        assert not bad, f"{expr!r} uses labels {sorted(bad)} that {sorted(used)} do not carry"
        for var in re.findall(r"\$([A-Za-z_]\w*)", expr):
            assert var.startswith("__") or var in variables, f"{expr!r}: unknown variable ${var}"
        covered |= used
    # The dashboard shows every metric s3ferry has (a new metric should get a panel).
    families = {n.removesuffix("_total") for n in names if not n.endswith("_created")}
    shown = {n.removesuffix("_total").removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
             for n in covered}
    missing = {f for f in families if f.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
               not in shown}
    assert not missing, f"metrics without a panel: {sorted(missing)}"


def test_readme_snippets_name_real_metrics() -> None:
    text = (DEPLOY / "README.md").read_text()
    names = set(sample_names()) | {family.name for family in metrics.REGISTRY.collect()}
    used = used_names(text)
    assert used and not used - names, sorted(used - names)
    assert "--metrics-port 9464" in text and "honor_labels: true" in text and "--pushgateway" in text
