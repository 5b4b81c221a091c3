"""Wiring of the deployment files: docker-compose.yml, deploy/Dockerfile,
Prometheus/Grafana provisioning and the local Kafka broker's pom."""

from __future__ import annotations

import json
import os
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
LOCAL_KAFKA = REPO / "deploy" / "local-kafka"

EXPECTED_SERVICES = {"kafka", "tactful", "prometheus", "grafana"}


# --- helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    services = compose.get("services")
    assert isinstance(services, dict)
    return services


def env_of(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment as a mapping (compose allows a list or a mapping)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [item.split("=", 1) if "=" in item else [item, None] for item in env]
        return {k: v for k, v in pairs}
    return {str(k): None if v is None else str(v) for k, v in env.items()}


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port."""
    result: dict[int, int] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            result[int(entry["target"])] = int(entry.get("published", entry["target"]))
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        container = int(parts[-1])
        host = int(parts[-2]) if len(parts) >= 2 else container
        result[container] = host
    return result


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source (host paths resolved against the repo root)."""
    result: dict[str, str] = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            source, target = str(entry.get("source", "")), str(entry["target"])
        else:
            source, target = str(entry).split(":")[:2]
        if source.startswith((".", "/")):
            source = str((REPO / source).resolve())
        result[target] = source
    return result


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    assert host and port.isdigit(), address
    return host, int(port)


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """'NAME://host:port,...' -> {NAME: (host, port)}."""
    result = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        result[name] = split_host_port(address)
    return result


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    instructions = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def exec_form(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        parsed = json.loads(value)
        assert isinstance(parsed, list)
        return [str(v) for v in parsed]
    return shlex.split(value)


def argv(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return shlex.split(str(value))


# --- docker-compose.yml -----------------------------------------------------


def test_compose_has_the_four_services(services: dict[str, Any]) -> None:
    assert set(services) >= EXPECTED_SERVICES


def test_kafka_is_a_single_kraft_node(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert str(kafka["image"]).split(":")[0] == "apache/kafka"
    env = env_of(kafka)
    assert set((env["KAFKA_PROCESS_ROLES"] or "").split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    controller_names = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert node_id and controller_names
    bound = listeners(env["KAFKA_LISTENERS"] or "")
    voters = (env["KAFKA_CONTROLLER_QUORUM_VOTERS"] or "").split(",")
    assert len(voters) == 1
    voter_id, _, voter_address = voters[0].partition("@")
    assert voter_id == node_id
    voter_host, voter_port = split_host_port(voter_address)
    assert voter_host == "kafka"
    assert bound[controller_names][1] == voter_port
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key


def test_tactful_builds_from_deploy_dockerfile(services: dict[str, Any]) -> None:
    build = services["tactful"]["build"]
    if isinstance(build, str):
        context, dockerfile = build, "Dockerfile"
    else:
        context, dockerfile = build.get("context", "."), build.get("dockerfile", "Dockerfile")
    assert (REPO / context).resolve() == REPO
    assert (REPO / context / dockerfile).resolve() == DOCKERFILE
    assert DOCKERFILE.is_file()


def test_tactful_runs_the_worker(services: dict[str, Any]) -> None:
    instructions = dockerfile_instructions()
    entrypoint = [exec_form(v) for k, v in instructions if k == "ENTRYPOINT"][-1]
    service = services["tactful"]
    if "entrypoint" in service:
        entrypoint = argv(service["entrypoint"])
    command = argv(service.get("command"))
    if not command:
        command = [exec_form(v) for k, v in instructions if k == "CMD"][-1]
    assert entrypoint + command == ["tactful", "worker"]


def test_tactful_bootstrap_points_at_the_kafka_listener(services: dict[str, Any]) -> None:
    env = env_of(services["tactful"])
    host, port = split_host_port(env["TACTFUL_BOOTSTRAP"] or "")
    assert host in services, f"{host} is not a compose service"
    assert host == "kafka"
    kafka_env = env_of(services[host])
    advertised = listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"] or "")
    matching = [name for name, address in advertised.items() if address == (host, port)]
    assert matching, f"kafka advertises no listener at {host}:{port}: {advertised}"
    bound = listeners(kafka_env["KAFKA_LISTENERS"] or "")
    assert bound[matching[0]][1] == port
    assert matching[0] != kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    depends = services["tactful"].get("depends_on", [])
    assert host in depends


def test_tactful_environment(services: dict[str, Any]) -> None:
    env = env_of(services["tactful"])
    assert env["TACTFUL_STORE"] == "rocksdb:///var/lib/tactful"
    assert env["TACTFUL_CLOCK"] == "wall"
    # Optional: either absent or passed through from the caller's shell.
    assert env.get("TACTFUL_POLICY") in (None, "${TACTFUL_POLICY}", "${TACTFUL_POLICY:-}")


def web_port(services: dict[str, Any]) -> int:
    raw = env_of(services["tactful"])["TACTFUL_WEB_PORT"]
    assert raw is not None and raw.isdigit()
    return int(raw)


def test_tactful_web_port_is_published_and_exposed(services: dict[str, Any]) -> None:
    port = web_port(services)
    assert port == 6066
    assert published_ports(services["tactful"]).get(port) == port
    exposed = {
        int(p.split("/")[0])
        for k, v in dockerfile_instructions()
        if k == "EXPOSE"
        for p in v.split()
    }
    assert port in exposed


def prometheus_config(services: dict[str, Any]) -> dict[str, Any]:
    service = services["prometheus"]
    config_path = "/etc/prometheus/prometheus.yml"
    for arg in argv(service.get("command")):
        if arg.startswith("--config.file="):
            config_path = arg.split("=", 1)[1]
    source = mounts(service).get(config_path)
    assert source, f"nothing mounted at {config_path}"
    assert Path(source) == REPO / "deploy" / "prometheus" / "prometheus.yml"
    data = yaml.safe_load(Path(source).read_text())
    assert isinstance(data, dict)
    return data


def test_prometheus_scrapes_tactful_metrics(services: dict[str, Any]) -> None:
    assert str(services["prometheus"]["image"]).split(":")[0] in {
        "prom/prometheus",
        "quay.io/prometheus/prometheus",
    }
    expected_target = f"tactful:{web_port(services)}"
    scraped = False
    for job in prometheus_config(services).get("scrape_configs", []):
        if job.get("metrics_path", "/metrics") != "/metrics":
            continue
        if job.get("scheme", "http") != "http":
            continue
        for static in job.get("static_configs", []):
            if expected_target in static.get("targets", []):
                scraped = True
    assert scraped, f"no job scrapes http://{expected_target}/metrics"


def prometheus_listen_port(services: dict[str, Any]) -> int:
    port = 9090
    for arg in argv(services["prometheus"].get("command")):
        if arg.startswith("--web.listen-address="):
            port = split_host_port(arg.split("=", 1)[1])[1]
    return port


def test_grafana_datasource_points_at_prometheus(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    assert str(grafana["image"]).split(":")[0] in {"grafana/grafana", "grafana/grafana-oss"}
    assert published_ports(grafana).get(3000) == 3000
    provisioning = mounts(grafana).get("/etc/grafana/provisioning")
    assert provisioning, "grafana provisioning directory is not mounted"
    assert Path(provisioning) == REPO / "deploy" / "grafana" / "provisioning"

    datasources = []
    for path in sorted((Path(provisioning) / "datasources").glob("*.y*ml")):
        data = yaml.safe_load(path.read_text()) or {}
        datasources.extend(data.get("datasources", []))
    prometheus = [ds for ds in datasources if ds.get("type") == "prometheus"]
    assert prometheus, "no prometheus datasource provisioned"
    url = urlsplit(prometheus[0]["url"])
    assert url.hostname in services
    assert url.hostname == "prometheus"
    assert url.port == prometheus_listen_port(services)


# --- deploy/Dockerfile ------------------------------------------------------


def test_dockerfile_installs_the_package() -> None:
    instructions = dockerfile_instructions()
    base = [v for k, v in instructions if k == "FROM"]
    assert base and base[0].split()[0] == "python:3.11-slim"
    copied = " ".join(v for k, v in instructions if k == "COPY")
    for needed in ("pyproject.toml", "README.md", "src"):
        assert re.search(rf"(^|\s|/){re.escape(needed)}(\s|/|$)", copied), needed
    runs = " ".join(v for k, v in instructions if k == "RUN")
    assert re.search(r"pip3? install\s+(\S+\s+)*[\"']?\.(\[rocksdb\])?[\"']?(\s|$)", runs), runs
    assert "rocksdb" in runs


def test_dockerfile_runs_as_non_root() -> None:
    users = [v for k, v in dockerfile_instructions() if k == "USER"]
    assert users, "no USER instruction"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


# --- deploy/local-kafka -----------------------------------------------------


def test_local_kafka_pom_pins_kafka_4() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(LOCAL_KAFKA / "pom.xml").getroot()
    props = {
        el.tag.split("}", 1)[1]: (el.text or "").strip()
        for el in root.findall("m:properties/*", ns)
    }

    def resolve(text: str) -> str:
        return re.sub(r"\$\{([^}]+)\}", lambda m: props[m.group(1)], text.strip())

    deps = {
        (d.findtext("m:groupId", "", ns), d.findtext("m:artifactId", "", ns)): resolve(
            d.findtext("m:version", "", ns)
        )
        for d in root.findall("m:dependencies/m:dependency", ns)
    }
    version = deps.get(("org.apache.kafka", "kafka_2.13"))
    assert version is not None, "kafka_2.13 is not a dependency"
    assert re.fullmatch(r"4\.\d+\.\d+", version), version
    # Kafka 4 logs through log4j2.
    assert ("org.apache.logging.log4j", "log4j-core") in deps


def test_local_kafka_server_properties_is_loopback_kraft() -> None:
    props = {}
    for raw in (LOCAL_KAFKA / "server.properties").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    assert set(props["process.roles"].split(",")) == {"broker", "controller"}
    for name, address in listeners(
        props["listeners"].replace("@PORT@", "9092").replace("@CONTROLLER_PORT@", "9093")
    ).items():
        assert address[0] == "127.0.0.1", name
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["log.cleaner.enable"] == "true"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_local_kafka_script_is_executable() -> None:
    script = LOCAL_KAFKA / "kafka.sh"
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()
