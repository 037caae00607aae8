"""Quality: values.yaml and values.schema.json describe the same values API.

The schema is tightened here (`additionalProperties: false` on every object that lists its
properties) so that a key only one of the two files knows is caught, whatever the chart's schema
says; then values.yaml must validate and so must every `examples` entry of the schema.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest

from .render import CHART_DIR, load_yaml

SCHEMA_PATH = CHART_DIR / "values.schema.json"
VALUES = load_yaml(CHART_DIR / "values.yaml")
# Helm itself passes `global` to every chart; values.yaml need not spell it out.
HELM_PROVIDED = {"global"}


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def tighten(node: Any) -> Any:
    """Deep copy with additionalProperties: false on every object that has properties."""
    node = copy.deepcopy(node)

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            if isinstance(n.get("properties"), dict):
                n["additionalProperties"] = False
            for value in n.values():
                walk(value)
        elif isinstance(n, list):
            for value in n:
                walk(value)

    walk(node)
    return node


def documented_params() -> set[str]:
    """Values documented with readme-generator's `## @param NAME`."""
    text = (CHART_DIR / "values.yaml").read_text()
    return {line.split()[2] for line in text.splitlines()
            if line.strip().startswith("## @param ")}


# A value documented as a whole (`## @param server.resources [object]`) is one value of the API,
# even when the schema spells out its Kubernetes shape: neither side descends into it.
DOCUMENTED = documented_params()


def schema_paths(schema: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        paths.add(path)
        if path not in DOCUMENTED and isinstance(sub, dict) and "properties" in sub:
            paths |= schema_paths(sub, path + ".")
    return paths


def values_paths(values: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if path not in DOCUMENTED and isinstance(value, dict) and value:
            paths |= values_paths(value, path + ".")
    return paths


def values_paths_in_schema(values: dict, schema: dict, prefix: str = "") -> set[str]:
    """Every key of values.yaml, descending wherever the schema lists the object's properties
    (also inside values documented whole, such as server.resources)."""
    paths = set()
    props = schema.get("properties") or {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.add(path)
        sub = props.get(key)
        if isinstance(value, dict) and isinstance(sub, dict) and "properties" in sub:
            paths |= values_paths_in_schema(value, sub, path + ".")
    return paths


def all_schema_paths(schema: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, sub in (schema.get("properties") or {}).items():
        paths.add(f"{prefix}{key}")
        if isinstance(sub, dict) and "properties" in sub:
            paths |= all_schema_paths(sub, f"{prefix}{key}.")
    return paths


def examples(node: Any, path: str = "") -> list[tuple[str, dict, Any]]:
    found = []
    if isinstance(node, dict):
        for example in node.get("examples") or []:
            found.append((path, node, example))
        for key, sub in (node.get("properties") or {}).items():
            found += examples(sub, f"{path}.{key}" if path else key)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found += examples(node[key], f"{path}[{key}]")
    return found


EXAMPLES = examples(load_schema())


class TestValuesSchema:
    def test_schema_is_valid_json_schema(self):
        schema = load_schema()
        validator = jsonschema.validators.validator_for(schema)
        validator.check_schema(schema)

    def test_schema_is_strict_at_every_level(self):
        # The chart's own schema, not the tightened one: an unknown key must fail helm install.
        loose = []

        def walk(n: Any, path: str) -> None:
            if isinstance(n, dict):
                if "properties" in n and n.get("additionalProperties") is not False:
                    loose.append(path or "<root>")
                for key, sub in (n.get("properties") or {}).items():
                    walk(sub, f"{path}.{key}" if path else key)
                if isinstance(n.get("items"), dict):
                    walk(n["items"], f"{path}[]")

        walk(load_schema(), "")
        assert not loose, f"objects accepting unknown keys: {loose}"

    def test_every_value_is_in_the_schema(self):
        schema = load_schema()
        missing = values_paths_in_schema(VALUES, schema) - all_schema_paths(schema)
        assert not missing, f"in values.yaml, not in values.schema.json: {sorted(missing)}"

    def test_every_schema_key_is_in_values(self):
        schema = load_schema()
        missing = schema_paths(schema) - values_paths(VALUES) - HELM_PROVIDED
        assert not missing, f"in values.schema.json, not in values.yaml: {sorted(missing)}"

    def test_values_yaml_validates_against_tightened_schema(self):
        validator = jsonschema.Draft7Validator(tighten(load_schema()))
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}"
                  for e in validator.iter_errors(VALUES)]
        assert not errors, "\n".join(errors)

    def test_schema_has_examples(self):
        assert len(EXAMPLES) >= 5

    @pytest.mark.parametrize(("path", "subschema", "example"), EXAMPLES,
                             ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(EXAMPLES)])
    def test_examples_validate(self, path, subschema, example):
        validator = jsonschema.Draft7Validator(tighten(subschema))
        errors = [e.message for e in validator.iter_errors(example)]
        assert not errors, f"{path} example {example!r}: {errors}"

    def test_every_value_is_documented(self):
        # The README's table is generated from `## @param` lines: an undocumented value is
        # missing from it. Leaves are scalars, lists, empty maps, and maps documented whole.
        leaves = {p for p in values_paths(VALUES)
                  if p in DOCUMENTED or not (isinstance(_get(VALUES, p), dict) and _get(VALUES, p))}
        missing = leaves - DOCUMENTED
        assert not missing, f"values without ## @param: {sorted(missing)}"

    def test_every_param_exists(self):
        stale = {p for p in DOCUMENTED if p not in values_paths(VALUES)}
        assert not stale, f"## @param for values that do not exist: {sorted(stale)}"


def _get(values: dict, path: str) -> Any:
    for key in path.split("."):
        values = values[key]
    return values
