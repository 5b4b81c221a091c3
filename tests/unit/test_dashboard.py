"""The Grafana dashboard and the Prometheus alert rules: their structure, their wiring
in docker-compose.yml, and that every expression reads only what a worker exposes on
GET /metrics, with no id-like label kept, grouped by or filtered on.

The exposed names come from ``tactful.service.metrics.Metrics`` itself: a registry with
one count in every family, read back from its exposition.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tactful.service.metrics import Metrics, Tally, count

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "tactful.json"
DASHBOARD_PROVIDERS = REPO / "deploy" / "grafana" / "provisioning" / "dashboards"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = REPO / "docker-compose.yml"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
# A label that names a shopper, a session, a product or one record.
ID_LIKE = re.compile(r"(^|_)(id|ids|customer|session|sku|product|intent|decision|event|"
                     r"email|phone|user|ip|device)($|_)", re.IGNORECASE)


# --- what a worker exposes -----------------------------------------------------


def exposed() -> dict[str, set[str]]:
    """Every sample name of a worker's exposition, with its labels."""
    metrics = Metrics("1.0", "policy-1", lag=lambda: [("storefront", 0, 3)],
                      sizes=lambda: [("customers", 2)])
    tally: Tally = {}
    count(tally, "e", "storefront", "cart_add")
    count(tally, "d", "abandoned_cart", "email", "suppressed", "no_consent")
    count(tally, "i", "abandoned_cart", "email")
    count(tally, "c", "purchased")
    count(tally, "x", "invalid_json")
    metrics.add(tally, latency=0.01, lateness=[0.2])
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


EXPOSED = exposed()


def test_the_exposition_holds_every_family_of_the_spec() -> None:
    # The reference the other tests compare against is itself complete.
    assert {
        "tactful_events_consumed_total", "tactful_dead_letters_total", "tactful_decisions_total",
        "tactful_intents_total", "tactful_cancellations_total",
        "tactful_processing_latency_seconds_bucket", "tactful_timer_lateness_seconds_bucket",
        "tactful_consumer_lag", "tactful_state_keys", "tactful_build_info",
    } <= set(EXPOSED)
    assert EXPOSED["tactful_decisions_total"] == {"kind", "channel", "outcome", "reason"}


# --- a small PromQL reader -----------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<range>\[[^\]]*\])
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+\b)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|=~|!~|>=|<=|[-+*/%^(){},=<>])
  | (?P<space>\s+)
""", re.VERBOSE)
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset"} | _LABEL_LISTS


def tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        assert m, f"cannot read {expr[pos:pos + 20]!r} in {expr!r}"
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup or "", m.group()))
    return out


def read(expr: str) -> tuple[set[str], set[str]]:
    """The metric names an expression selects, and every label it names (in matchers
    and in by/without/on/ignoring/group_* lists)."""
    toks = tokens(expr)
    metrics: set[str] = set()
    labels: set[str] = set()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and text in _LABEL_LISTS and following == "(":
            i += 2
            while toks[i][1] != ")":
                if toks[i][0] == "ident":
                    labels.add(toks[i][1])
                i += 1
        elif kind == "op" and text == "{":
            i += 1
            while toks[i][1] != "}":
                if toks[i][0] == "ident":
                    labels.add(toks[i][1])
                i += 1
        elif kind == "ident" and text not in _KEYWORDS and following not in (
                "(", "by", "without"):  # a function's or an aggregation's name
            metrics.add(text)
        i += 1
    return metrics, labels


def test_the_reader_finds_names_and_labels() -> None:
    # The checks below are only as good as this reader.
    got = read('sum by (customer_id) (rate(tactful_intents_total{session_id="s", '
               'kind=~"a|b"}[5m])) / on (job) group_left (sku) up and bool x_y offset 5m')
    assert got == ({"tactful_intents_total", "up", "x_y"},
                   {"customer_id", "session_id", "kind", "job", "sku"})
    assert {label for label in got[1] if ID_LIKE.search(label)} == {
        "customer_id", "session_id", "sku"}
    assert not any(ID_LIKE.search(label) for label in
                   ("topic", "type", "reason", "kind", "channel", "outcome", "le", "table",
                    "partition", "job", "instance", "version", "policy_version"))
    with pytest.raises(AssertionError):
        tokens("rate(x[5m]) $oops")


# --- the dashboard ---------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(panel["title"], target) for panel in dashboard["panels"]
            for target in panel["targets"]]


def test_dashboard_is_a_grafana_10_dashboard(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["title"] and dashboard["uid"]
    assert "id" not in dashboard or dashboard["id"] is None  # importable anywhere
    panels = dashboard["panels"]
    assert panels
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["title"] and panel["type"] == "timeseries", panel.get("title")
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert isinstance(target["expr"], str) and target["expr"].strip()


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_every_panel_reads_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = dashboard["templating"]["list"]
    sources = [v for v in variables if v["name"] == "datasource"]
    assert len(sources) == 1
    assert sources[0]["type"] == "datasource" and sources[0]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]


def test_dashboard_reads_only_exposed_names(dashboard: dict[str, Any]) -> None:
    for title, target in dashboard_targets(dashboard):
        metrics, labels = read(target["expr"])
        assert metrics, (title, target["expr"])
        assert metrics <= set(EXPOSED), (title, metrics - set(EXPOSED))
        known = set().union(*(EXPOSED[m] for m in metrics)) | TARGET_LABELS
        assert labels <= known, (title, labels - known)


def test_dashboard_never_groups_or_filters_on_an_id(dashboard: dict[str, Any]) -> None:
    for title, target in dashboard_targets(dashboard):
        _, labels = read(target["expr"])
        assert not [label for label in labels if ID_LIKE.search(label)], title
        legend = set(re.findall(r"{{\s*(\w+)\s*}}", target.get("legendFormat", "")))
        assert legend <= labels, (title, legend - labels)  # a legend names kept labels


def test_dashboard_has_the_operating_panels(dashboard: dict[str, Any]) -> None:
    exprs = [re.sub(r"\s+", " ", t["expr"]) for _, t in dashboard_targets(dashboard)]

    def reads(name: str, grouping: str | None = None) -> list[str]:
        return [e for e in exprs if name in read(e)[0]
                and (grouping is None or re.search(rf"\bby \({grouping}\)", e))]

    assert reads("tactful_events_consumed_total", "topic")
    assert reads("tactful_consumer_lag", "topic")
    assert reads("tactful_decisions_total", "outcome")
    assert [e for e in reads("tactful_decisions_total", "reason")
            if 'outcome="suppressed"' in e]
    assert reads("tactful_intents_total", "kind, channel")
    assert reads("tactful_dead_letters_total", "reason")
    for histogram in ("tactful_timer_lateness_seconds_bucket",
                      "tactful_processing_latency_seconds_bucket"):
        quantiles = {e.split(",")[0] for e in reads(histogram, "le")}
        assert {"histogram_quantile(0.5", "histogram_quantile(0.99"} <= quantiles, histogram
    for e in exprs:
        if "_total" in e:
            assert "rate(" in e, e  # counters are shown as rates
            assert "[$__rate_interval]" in e, e


def test_grafana_loads_the_dashboard_from_the_mounted_directory() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    mounted = {}
    for entry in compose["services"]["grafana"]["volumes"]:
        source, target = str(entry).split(":")[:2]
        mounted[target] = (REPO / source).resolve() if source.startswith(".") else source
    providers = [p for f in sorted(DASHBOARD_PROVIDERS.glob("*.y*ml"))
                 for p in (yaml.safe_load(f.read_text()) or {}).get("providers", [])]
    assert providers
    paths = [p["options"]["path"] for p in providers if p.get("type", "file") == "file"]
    assert any(mounted.get(path) == DASHBOARD.parent for path in paths), (paths, mounted)


# --- the alert rules --------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    found = [rule for group in data["groups"] for rule in group["rules"]]
    assert found
    return found


def test_alerts_cover_the_operating_faults(rules: list[dict[str, Any]]) -> None:
    by_name = {r["alert"]: r for r in rules}
    assert set(by_name) == {"TactfulWorkerDown", "TactfulConsumerLagGrowing",
                            "TactfulDeadLetters", "TactfulTimersLate", "TactfulNoIntents"}
    assert read(by_name["TactfulWorkerDown"]["expr"]) == ({"up"}, {"job"})
    assert 'job="tactful"' in by_name["TactfulWorkerDown"]["expr"]
    assert read(by_name["TactfulConsumerLagGrowing"]["expr"])[0] == {"tactful_consumer_lag"}
    assert read(by_name["TactfulDeadLetters"]["expr"])[0] == {"tactful_dead_letters_total"}
    assert read(by_name["TactfulTimersLate"]["expr"])[0] == {
        "tactful_timer_lateness_seconds_bucket"}
    assert read(by_name["TactfulNoIntents"]["expr"])[0] == {
        "tactful_events_consumed_total", "tactful_intents_total"}


def test_every_alert_waits_has_a_severity_and_says_what_it_means(
        rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip()


def test_alerts_read_only_exposed_names_and_no_id(rules: list[dict[str, Any]]) -> None:
    scraped = {**EXPOSED, "up": set()}  # `up`: Prometheus's own, per target
    for rule in rules:
        metrics, labels = read(rule["expr"])
        assert metrics and metrics <= set(scraped), (rule["alert"], metrics - set(scraped))
        known = set().union(*(scraped[m] for m in metrics)) | TARGET_LABELS
        assert labels <= known, (rule["alert"], labels - known)
        assert not [label for label in labels if ID_LIKE.search(label)], rule["alert"]
        for text in (*rule["annotations"].values(), *rule["labels"].values()):
            printed = set(re.findall(r"\$labels\.(\w+)", text))
            assert printed <= known, (rule["alert"], printed - known)
            assert not [label for label in printed if ID_LIKE.search(label)], rule["alert"]


def test_prometheus_loads_the_rules_beside_its_config() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert "alerts.yml" in config["rule_files"]
    assert (PROMETHEUS_CONFIG.parent / "alerts.yml") == ALERTS
    compose = yaml.safe_load(COMPOSE.read_text())
    volumes = [str(v) for v in compose["services"]["prometheus"]["volumes"]]
    # Mounted beside the config file, where the relative rule_files entry points.
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes
