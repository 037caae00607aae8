"""Validate rendered custom resources against their real CRD schemas (`tests/chart/crds/`).

kubernetes-validate knows only the built-in API. For a custom resource the API server
validates against the CRD's `openAPIV3Schema` (a structural schema); the schemas of the CRDs
the chart renders are stored under `crds/` as `<group>_<version>_<Kind>.json`, copied from
the projects that publish them (see crds/README.md for source, commit and licence).

A structural schema is almost JSON Schema. What differs, and how it is turned into a
jsonschema validator here (Kubernetes: "Specifying a structural schema",
https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/):
- unknown fields: the API server prunes them, and rejects them under strict field
  validation (kubectl's default since 1.27). A typo in the chart would vanish silently, so an
  object schema with `properties` and neither `additionalProperties` nor
  `x-kubernetes-preserve-unknown-fields` gets `additionalProperties: false`;
- `x-kubernetes-int-or-string: true` means integer or string; `nullable: true` adds null;
- `metadata` is validated as the strict ObjectMeta of the Kubernetes schemas;
- `x-kubernetes-validations` (CEL rules) are not evaluated: a component test asserts the
  rules that matter to what the chart renders, citing them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CRD_DIR = Path(__file__).resolve().parent / "crds"

# The strict Kubernetes definitions of the newest minor kubernetes-validate ships hold the
# ObjectMeta the API server applies to every object, custom ones included.
_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META = {"$ref": f"{_DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}


class SchemaValidationError(AssertionError):
    pass


def schema_path(api_version: str, kind: str) -> Path:
    """crds/<group>_<version>_<Kind>.json for apiVersion <group>/<version>."""
    group, _, version = api_version.rpartition("/")
    return CRD_DIR / f"{group}_{version}_{kind}.json"


def has_schema(api_version: str, kind: str) -> bool:
    return "/" in api_version and "." in api_version.split("/")[0] and \
        schema_path(api_version, kind).exists()


def stored_kinds() -> set[tuple[str, str]]:
    """(apiVersion, kind) of every stored CRD schema."""
    kinds = set()
    for path in CRD_DIR.glob("*.json"):
        group, version, kind = path.stem.split("_")
        kinds.add((f"{group}/{version}", kind))
    return kinds


def _strict(node: Any) -> Any:
    """The structural schema as JSON Schema (see the module docstring)."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "$defs", "definitions"):
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        else:
            out[key] = _strict(value)
    if out.get("x-kubernetes-int-or-string") and "type" not in out:
        out["type"] = ["integer", "string"]
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def _definitions(definitions_path: Path) -> Resource:
    return Resource(contents=json.loads(definitions_path.read_text()), specification=DRAFT202012)


@functools.cache
def _validator(api_version: str, kind: str, definitions_path: Path) -> jsonschema.Validator:
    path = schema_path(api_version, kind)
    schema = _strict(json.loads(path.read_text()))
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"const": api_version}
    props["kind"] = {"const": kind}
    props["metadata"] = _OBJECT_META
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    schema["$id"] = f"https://crds.local/{path.name}"
    registry = Registry().with_resources([
        (schema["$id"], Resource(contents=schema, specification=DRAFT202012)),
        (_DEFINITIONS_ID, _definitions(definitions_path)),
    ])
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_custom_resource(obj: dict, definitions_path: Path) -> None:
    """Validate one custom resource against its stored CRD schema; raise on any error.

    `definitions_path` is a strict Kubernetes `_definitions.json` whose ObjectMeta applies.
    Every custom resource is namespaced here (all the chart renders are), so metadata needs a
    name and a namespace.
    """
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    meta = obj.get("metadata") or {}
    where = f"{kind}/{meta.get('name')}"
    if not has_schema(api_version, kind):
        raise SchemaValidationError(
            f"{where}: no CRD schema for {api_version} {kind} in {CRD_DIR.name}/ "
            f"(stored: {sorted(stored_kinds())}); add it as crds/README.md says")
    problems = []
    if not meta.get("name") or not meta.get("namespace"):
        problems.append("  metadata: needs name and namespace (a namespaced custom resource)")
    validator = _validator(api_version, kind, definitions_path)
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.path))[:10]:
        problems.append(f"  {'.'.join(str(p) for p in error.path) or '<root>'}: "
                        f"{error.message[:300]}")
    if problems:
        raise SchemaValidationError(
            f"{where} is invalid for its CRD schema ({schema_path(api_version, kind).name}):\n"
            + "\n".join(problems))
