"""The one way the chart tests render the chart (Apache Airflow's helm-tests style).

`render_chart(helm, values)` runs `helm template RELEASE charts/mlflow --namespace NAMESPACE
--values -` with the values on stdin and returns the rendered objects. A failed render raises
`RenderError` carrying Helm's stderr. Every object that comes out is validated strictly (no
unknown fields) against the Kubernetes schemas of each minor version the chart supports, from
1.29 (Chart.yaml's kubeVersion: native sidecars) to the newest kubernetes-validate ships.

Renders and validations are cached: each distinct (helm, values, show_only, kube_version) is
rendered once per worker, each distinct object validated once per Kubernetes version.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jmespath
import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import all_versions
from packaging.version import Version
from referencing import Registry, Resource

from .crd_schema import SchemaValidationError, has_schema, validate_custom_resource

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "mlflow"

RELEASE = "prod"
NAMESPACE = "mlops"
FULLNAME = f"{RELEASE}-mlflow"

MIN_KUBE_MINOR = Version("1.29")
SCHEMA_ROOT = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"

# Every minor kubernetes-validate ships schemas for, from the chart's minimum on.
# (all_versions() lists each version twice: its plain and its strict schema directory.)
KUBE_VERSIONS: tuple[str, ...] = tuple(
    sorted({v for v in all_versions() if Version(v) >= MIN_KUBE_MINOR}, key=Version)
)

# Custom resources: kubernetes-validate only knows the built-in API; these are validated against
# their real CRD schemas (crd_schema.py, crds/), with the ObjectMeta of the newest minor.
CRD_DEFINITIONS = SCHEMA_ROOT / f"v{KUBE_VERSIONS[-1]}-local-strict" / "_definitions.json"

# The custom resource APIs the chart can render, as `--api-versions` takes them: a render test
# that enables one passes them (`api_versions=CRD_APIS`) the way a cluster with the CRDs, or
# Argo CD, gives them to Helm; without them the chart refuses (see test_crd_capabilities.py).
CRD_APIS: tuple[str, ...] = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.googleapis.com/v1/PodMonitoring",
    "gateway.networking.k8s.io/v1/HTTPRoute",
    "networking.istio.io/v1/VirtualService",
    "cloud.google.com/v1/BackendConfig",
    "networking.gke.io/v1/HealthCheckPolicy",
    "networking.gke.io/v1/GCPBackendPolicy",
)


class RenderError(Exception):
    """`helm template` failed; the message is Helm's stderr."""

    def __init__(self, stderr: str, returncode: int) -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.returncode = returncode


# ------------------------------------------------------------------------------ validation ---


@functools.cache
def _definitions(kube_version: str) -> Resource:
    path = SCHEMA_ROOT / f"v{kube_version}-local-strict" / "_definitions.json"
    return Resource.from_contents(json.loads(path.read_text()))


def _schema_file(kube_version: str, kind: str, api_version: str) -> Path:
    # Same file naming as kubernetes_validate.validate: apps/v1 -> apps-v1,
    # networking.k8s.io/v1 -> networking-v1, v1 -> v1.
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return SCHEMA_ROOT / f"v{kube_version}-local-strict" / f"{kind.lower()}-{api}.json"


@functools.cache
def _validator(kube_version: str, kind: str, api_version: str) -> jsonschema.Validator:
    """One strict validator per (Kubernetes minor, kind, apiVersion), built once."""
    path = _schema_file(kube_version, kind, api_version)
    if not path.exists():
        raise SchemaValidationError(
            f"{kind} {api_version} does not exist in Kubernetes {kube_version} "
            f"(no schema {path.name}); a custom resource needs its CRD schema in "
            "tests/chart/crds/ (see its README)"
        )
    schema = json.loads(path.read_text())
    registry = Registry().with_resources(
        [(schema["$id"], Resource.from_contents(schema)),
         ("https://kubernetes.io/api/_definitions.json", _definitions(kube_version))]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _validate_json(obj_json: str) -> None:
    obj = json.loads(obj_json)
    kind = obj.get("kind")
    if has_schema(obj.get("apiVersion", ""), kind):
        validate_custom_resource(obj, CRD_DEFINITIONS)
        return
    name = (obj.get("metadata") or {}).get("name")
    for kube_version in KUBE_VERSIONS:
        validator = _validator(kube_version, kind, obj.get("apiVersion", ""))
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
        if errors:
            detail = "\n".join(
                f"  {'.'.join(str(p) for p in e.path) or '<root>'}: {e.message[:300]}"
                for e in errors[:10]
            )
            raise SchemaValidationError(
                f"{kind}/{name} is invalid for Kubernetes {kube_version} (strict):\n{detail}"
            )


def validate_object(obj: dict) -> None:
    """Strict Kubernetes schema validation for every supported minor (CRDs: their schema)."""
    _validate_json(json.dumps(obj, sort_keys=True))


# ------------------------------------------------------------------------------- rendering ---


def _freeze(values: dict | None) -> str:
    return json.dumps(values or {}, sort_keys=True)


@functools.cache
def _render_cached(
    helm: str,
    values_json: str,
    show_only: tuple[str, ...],
    kube_version: str | None,
    release: str,
    namespace: str,
    extra_args: tuple[str, ...],
) -> str:
    cmd = [helm, "template", release, str(CHART_DIR), "--namespace", namespace, "--values", "-"]
    for template in show_only:
        cmd += ["--show-only", template]
    if kube_version:
        cmd += ["--kube-version", kube_version]
    cmd += list(extra_args)
    # JSON is YAML: nulls, booleans and numbers reach Helm exactly as written in the test.
    proc = subprocess.run(cmd, input=values_json, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RenderError(proc.stderr, proc.returncode)
    return proc.stdout


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 5x faster on big manifests


@functools.cache
def _objects_cached(
    helm: str,
    values_json: str,
    show_only: tuple[str, ...],
    kube_version: str | None,
    release: str,
    namespace: str,
    extra_args: tuple[str, ...],
    validate: bool,
) -> tuple[dict[str, Any], ...]:
    manifest = _render_cached(helm, values_json, show_only, kube_version, release, namespace,
                              extra_args)
    objects = tuple(doc for doc in yaml.load_all(manifest, Loader=_Loader) if doc)
    if validate:
        for obj in objects:
            validate_object(obj)
    return objects


def render_chart(
    helm: str,
    values: dict | None = None,
    show_only: Iterable[str] = (),
    kube_version: str | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    extra_args: Iterable[str] = (),
    validate: bool = True,
    api_versions: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Render the chart; return its objects (each validated unless validate=False).

    api_versions: what the cluster serves besides the built-in API (`--api-versions`, as
    `group/version/Kind` or `group/version`); CRD_APIS for every custom resource the chart has.
    """
    flags = tuple(arg for api in api_versions for arg in ("--api-versions", api))
    objects = _objects_cached(
        helm, _freeze(values), tuple(show_only), kube_version, release, namespace,
        flags + tuple(extra_args), validate,
    )
    # Callers may mutate what they get; the cache must not see it.
    return copy.deepcopy(list(objects))


def render_error(helm: str, values: dict, **kwargs: Any) -> str:
    """Render values that must be rejected; return Helm's error output."""
    try:
        objects = render_chart(helm, values, validate=False, **kwargs)
    except RenderError as err:
        return err.stderr
    kinds = sorted({f"{o['kind']}/{o['metadata']['name']}" for o in objects})
    raise AssertionError(f"helm template accepted {values!r} and rendered {kinds}")


# --------------------------------------------------------------------------------- lookups ---


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def get_object(objects: list[dict], kind: str, name: str | None = None) -> dict:
    """The one object of `kind` (and `name`); fails listing what was rendered."""
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    if len(found) != 1:
        rendered = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)} in {rendered}")
    return found[0]


def kind_names(objects: list[dict]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def jp(expression: str, data: Any) -> Any:
    return jmespath.search(expression, data)


def container(pod_spec: dict, name: str, init: bool = False) -> dict:
    key = "initContainers" if init else "containers"
    found = [c for c in pod_spec.get(key) or [] if c["name"] == name]
    assert len(found) == 1, f"{key} {name!r} not in {[c['name'] for c in pod_spec.get(key) or []]}"
    return found[0]


def env_of(c: dict) -> dict[str, dict]:
    """Container env as name -> the env entry (value or valueFrom)."""
    return {e["name"]: e for e in c.get("env") or []}


def env_value(c: dict, name: str) -> str:
    entry = env_of(c).get(name)
    assert entry is not None, f"{name} not in env of {c['name']}: {sorted(env_of(c))}"
    assert "value" in entry, f"{name} of {c['name']} is not a plain value: {entry}"
    return entry["value"]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
