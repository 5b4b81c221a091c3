"""The Kubernetes manifests of deploy/k8s: valid against the Kubernetes API schemas
(offline, with the schemas kubernetes-validate bundles), and wired to what the worker
reads: its settings, its web port and probes, its policy file, its secrets."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tactful.core.policy import load_policy, parse_policy
from tactful.service import settings as settings_module

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
DOCKERFILE = REPO / "deploy" / "Dockerfile"

# The oldest Kubernetes the manifests claim (README) and the newest whose schemas the
# pinned kubernetes-validate bundles.
K8S_VERSIONS = ("1.29.0", "1.37.0")

# The pod the resolved environment is worked out for.
POD_NAME = "tactful-0"
POD_NAMESPACE = "shop"

# Settings that are secrets: each must come from a Secret, never from a literal.
SECRET_VARIABLES = {
    "TACTFUL_SASL_USERNAME",
    "TACTFUL_SASL_PASSWORD",
    "TACTFUL_LINK_SECRET",
    "TACTFUL_ERASURE_KEY",
    "TACTFUL_ERASURE_KEY_PREVIOUS",
    "TACTFUL_ADMIN_TOKEN",
}
SECRET_LOOKING = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|_KEY_|USERNAME")

# Stand-ins for the Secret `tactful` an operator creates with kubectl (README).
FAKE_SECRET = {
    "sasl-username": "tactful",
    "sasl-password": "a-sasl-password",
    "link-secret": "a-link-secret-of-some-length",
    "erasure-key": "an-erasure-key-of-some-length",
    "admin-token": "an-admin-token-of-some-length",
}


# --- loading ------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert isinstance(doc, dict), path.name
                found.append((path.name, doc))
    return found


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        doc for _, doc in documents()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="module")
def statefulset() -> dict[str, Any]:
    return one("StatefulSet")


@pytest.fixture(scope="module")
def pod(statefulset: dict[str, Any]) -> dict[str, Any]:
    spec = statefulset["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["containers"]
    assert [c["name"] for c in containers] == ["tactful"]
    assert not pod.get("initContainers")
    return dict(containers[0])


@pytest.fixture(scope="module")
def env(container: dict[str, Any]) -> dict[str, str]:
    return resolved_env(container)


def configmaps() -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: dict(doc.get("data") or {})
        for _, doc in documents() if doc["kind"] == "ConfigMap"
    }


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, known: Mapping[str, str]) -> str:
    """Kubernetes' expansion of $(VAR) in an env value: a variable defined earlier is
    replaced, an unknown one is left as written, $$ is a literal $."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return known.get(m.group(1), m.group(0))
    return _REF.sub(sub, value)


def resolved_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it for POD_NAME, with
    FAKE_SECRET as the Secret: envFrom first, then env in order (env wins)."""
    maps = configmaps()
    result: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"unexpected envFrom {source}"
        result.update(maps[source["configMapRef"]["name"]])
    fields = {"metadata.name": POD_NAME, "metadata.namespace": POD_NAMESPACE}
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            result[name] = expand(str(item["value"]), result)
            continue
        ref = item["valueFrom"]
        if "fieldRef" in ref:
            result[name] = fields[ref["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            assert key["name"] == "tactful"
            if key["key"] in FAKE_SECRET:
                result[name] = FAKE_SECRET[key["key"]]
            else:
                assert key.get("optional"), f"{name}: unknown required secret key {key}"
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            result[name] = maps[key["name"]][key["key"]]
        else:
            raise AssertionError(f"{name}: unexpected valueFrom {ref}")
    return result


def set_variables(container: dict[str, Any]) -> set[str]:
    """Every variable the manifests put in the worker's environment."""
    names = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(configmaps()[source["configMapRef"]["name"]])
    return names


class _Recording(Mapping[str, str]):
    """An empty environment that records every name read from it."""

    def __init__(self) -> None:
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_the_worker_reads() -> set[str]:
    """The TACTFUL_* names settings.from_env reads, read off a run of it."""
    recording = _Recording()
    settings_module.from_env(recording)
    return {name for name in recording.read if name.startswith("TACTFUL_")}


def named_port(container: dict[str, Any], name: str) -> int:
    ports = [p for p in container.get("ports", []) if p.get("name") == name]
    assert len(ports) == 1, f"no single container port named {name!r}"
    return int(ports[0]["containerPort"])


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """volume name -> its mount (each volume mounted once)."""
    result: dict[str, dict[str, Any]] = {}
    for mount in container.get("volumeMounts", []):
        assert mount["name"] not in result, f"{mount['name']} mounted twice"
        result[mount["name"]] = mount
    return result


def volumes(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod.get("volumes", [])}


def is_under(path: str, directory: str) -> bool:
    return PurePosixPath(directory) in PurePosixPath(path).parents or path == directory


# --- schemas and kustomization ---------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version: str) -> None:
    docs = documents()
    assert {doc["kind"] for _, doc in docs} == {
        "StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget",
    }
    for filename, doc in docs:
        try:
            validated = kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{filename}: {doc['kind']} invalid for {version} at {where}: "
                        f"{exc.message}")
        # The schemas of that very version, not an older one's as a fallback.
        assert validated == version.rsplit(".", 1)[0], filename


def test_strict_validation_refuses_a_misspelt_field(statefulset: dict[str, Any]) -> None:
    broken = copy.deepcopy(statefulset)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessprobe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)
    broken = copy.deepcopy(statefulset)
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "6066"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_and_no_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {p.name for p in manifest_files()}
    # The Secret is created by the operator with kubectl; none is kept in the repository.
    assert all(doc["kind"] != "Secret" for _, doc in documents())
    assert "secretGenerator" not in kustomization
    images = {image["name"] for image in kustomization.get("images", [])}
    assert "tactful" in images


# --- the worker's command and environment ----------------------------------------


def test_the_container_runs_tactful_worker(container: dict[str, Any]) -> None:
    text = DOCKERFILE.read_text()
    entrypoint = re.findall(r"^ENTRYPOINT\s+(.+)$", text, re.MULTILINE)[-1]
    assert yaml.safe_load(entrypoint) == ["tactful"]
    assert "command" not in container
    assert container["args"] == ["worker"]


def test_every_tactful_variable_set_is_one_the_worker_reads(container: dict[str, Any]) -> None:
    read = variables_the_worker_reads()
    set_here = set_variables(container)
    tactful = {name for name in set_here if name.startswith("TACTFUL_")}
    assert tactful - read == set(), "not read by tactful.service.settings.from_env"
    # Only TACTFUL_* settings come from the ConfigMap, besides the pod's own names.
    assert set_here - tactful == {"POD_NAME", "POD_NAMESPACE"}
    assert {
        "TACTFUL_WEB_HOST", "TACTFUL_WEB_PORT", "TACTFUL_STORE", "TACTFUL_POLICY",
        "TACTFUL_ADVERTISED_URL", "TACTFUL_BOOTSTRAP",
    } | SECRET_VARIABLES <= tactful


def test_the_worker_accepts_the_resolved_environment(
    container: dict[str, Any], env: dict[str, str]
) -> None:
    settings = settings_module.from_env(env)
    assert settings.web_host == "0.0.0.0"
    assert settings.store.startswith("rocksdb://")
    assert settings.processing_guarantee == "at_least_once"
    assert settings.erasure_key == FAKE_SECRET["erasure-key"]
    assert settings.admin_token == FAKE_SECRET["admin-token"]
    # A worker off loopback refuses to start without an erasure key: it has one.
    assert not settings_module.only_loopback(settings.bootstrap)
    settings_module.erasure_keys(settings)


def test_the_container_port_is_the_web_port(
    statefulset: dict[str, Any], container: dict[str, Any], env: dict[str, str]
) -> None:
    port = named_port(container, "web")
    assert port == settings_module.from_env(env).web_port == int(env["TACTFUL_WEB_PORT"])
    service = one("Service", statefulset["spec"]["serviceName"])
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] in ("web", port)
    assert service_port["port"] == port


def test_the_advertised_url_is_the_pods_stable_name(
    statefulset: dict[str, Any], env: dict[str, str]
) -> None:
    settings = settings_module.from_env(env)
    url = urlsplit(settings_module.advertised_url(settings))
    service = statefulset["spec"]["serviceName"]
    assert url.scheme == "http"
    assert url.hostname == f"{POD_NAME}.{service}.{POD_NAMESPACE}.svc"
    assert url.port == settings.web_port


def test_the_probes_are_healthz_and_readyz_on_the_web_port(container: dict[str, Any]) -> None:
    paths = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }
    web = named_port(container, "web")
    for probe, path in paths.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in ("web", web), probe
        assert get.get("scheme", "HTTP") == "HTTP", probe


def test_secrets_come_only_from_secret_references(container: dict[str, Any]) -> None:
    env = {item["name"]: item for item in container.get("env", [])}
    for name in SECRET_VARIABLES:
        item = env[name]
        assert "value" not in item, name
        assert set(item["valueFrom"]) == {"secretKeyRef"}, name
        assert item["valueFrom"]["secretKeyRef"]["name"] == "tactful", name
    # The worker refuses to start without the erasure key off loopback: not optional.
    assert not env["TACTFUL_ERASURE_KEY"]["valueFrom"]["secretKeyRef"].get("optional")
    for name, item in env.items():
        if SECRET_LOOKING.search(name):
            assert "secretKeyRef" in item.get("valueFrom", {}), f"{name} is not from a Secret"
    for map_name, data in configmaps().items():
        for key in data:
            assert not SECRET_LOOKING.search(key), f"{key} in ConfigMap {map_name}"
    for source in container.get("envFrom", []):
        assert "secretRef" not in source


# --- policy, storage, security ---------------------------------------------------


def test_the_policy_configmap_is_the_packaged_default(
    container: dict[str, Any], pod: dict[str, Any], env: dict[str, str]
) -> None:
    mount = mounts(container)["policy"]
    assert mount.get("readOnly") is True
    volume = volumes(pod)["policy"]["configMap"]
    [item] = volume["items"]
    assert env["TACTFUL_POLICY"] == str(PurePosixPath(mount["mountPath"]) / item["path"])
    text = configmaps()[volume["name"]][item["key"]]
    packaged = (resources.files("tactful") / "policy" / "default.toml").read_bytes()
    assert text.encode() == packaged, (
        "deploy/k8s/configmap-policy.yaml differs from src/tactful/policy/default.toml: "
        "copy the file into it (indented under policy.toml: |)"
    )
    policy = parse_policy(text.encode(), "configmap-policy.yaml")
    assert policy == load_policy()


def test_the_store_is_on_the_persistent_volume(
    statefulset: dict[str, Any], container: dict[str, Any], pod: dict[str, Any],
    env: dict[str, str]
) -> None:
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    name = claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    assert name not in volumes(pod)
    mount = mounts(container)[name]
    assert not mount.get("readOnly")
    store = env["TACTFUL_STORE"]
    assert store.startswith("rocksdb:///")
    assert is_under(store[len("rocksdb://"):], mount["mountPath"])
    # The image's state directory, owned by its user.
    assert mount["mountPath"] == "/var/lib/tactful"
    assert 'VOLUME ["/var/lib/tactful"]' in DOCKERFILE.read_text()


def test_only_volumes_are_writable(container: dict[str, Any], pod: dict[str, Any]) -> None:
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    claims = {"data"}
    for name, mount in mounts(container).items():
        if mount.get("readOnly"):
            continue
        assert name in claims or "emptyDir" in volumes(pod)[name], name


def test_the_worker_runs_unprivileged(container: dict[str, Any], pod: dict[str, Any]) -> None:
    uid = int(re.findall(r"--uid (\d+)", DOCKERFILE.read_text())[0])
    pod_security = pod["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == uid
    assert pod_security["fsGroup"] == pod_security["runAsGroup"]
    assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security.get("privileged", False) is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert not security["capabilities"].get("add")
    assert pod["automountServiceAccountToken"] is False
    # No Service's TACTFUL_SERVICE_HOST or TACTFUL_PORT among the worker's variables.
    assert pod["enableServiceLinks"] is False


def test_resources_grace_period_and_scrape_annotations(
    statefulset: dict[str, Any], container: dict[str, Any], pod: dict[str, Any]
) -> None:
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    # Time to commit, close the RocksDB store and mark it clean (the default is 30 s).
    assert pod["terminationGracePeriodSeconds"] >= 60
    annotations = statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == named_port(container, "web")


def test_service_disruption_budget_and_affinity_select_the_workers(
    statefulset: dict[str, Any], pod: dict[str, Any]
) -> None:
    labels = statefulset["spec"]["template"]["metadata"]["labels"]

    def selects(selector: Mapping[str, str]) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    assert selects(statefulset["spec"]["selector"]["matchLabels"])
    service = one("Service", statefulset["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert selects(service["spec"]["selector"])
    budget = one("PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    assert selects(budget["spec"]["selector"]["matchLabels"])
    anti = pod["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    [preferred] = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"]["matchLabels"])


def test_workers_are_at_most_the_partitions(
    statefulset: dict[str, Any], env: dict[str, str]
) -> None:
    # A worker beyond the partition count would get no partition: it would only idle.
    assert 1 <= statefulset["spec"]["replicas"] <= settings_module.from_env(env).partitions
