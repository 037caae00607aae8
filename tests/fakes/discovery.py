"""Requests checked against Google's own discovery documents, as the real front end checks them.

The Google fake is written by the same hands as the code it tests, so on its own it accepts
whatever the code sends. Every request it receives is first matched against the discovery
document of the API version the code calls (the copies shipped in google-api-python-client,
`googleapiclient/discovery_cache/documents/<api>.<version>.json`, the same files the code
builds its clients from): the method must exist for that HTTP verb and path, query
parameters must be declared (the API's or the document's global ones), required ones
present, and the request body must fit the method's request schema: known fields only,
JSON types as the schema says, enum values from the enum. What fails gets the answer
Google's front end gives, 400 INVALID_ARGUMENT with a google.rpc.BadRequest detail
("Invalid JSON payload received. Unknown name \"x\" at 'user': Cannot find field." for an
unknown field; "Invalid value at 'user.type' (TYPE_ENUM), \"X\"" for an enum value), the
shape documented at https://cloud.google.com/apis/design/errors#http_mapping.

Not checked: `pattern` on path parameters (googleapiclient checks them before sending) and
`format` beyond JSON type (an int64 travels as a string or a number; both are accepted, as
the proto3 JSON mapping says).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

VERSIONS = {"sqladmin": "v1", "iam": "v1", "cloudresourcemanager": "v1", "container": "v1",
            "serviceusage": "v1"}


@dataclass(frozen=True)
class Method:
    api: str
    id: str  # e.g. sqladmin.users.delete
    http_method: str
    regex: re.Pattern
    params: dict  # name -> parameter description (the method's and the document's)
    request: str  # the request body's schema name, or ""


@cache
def document(api: str) -> dict:
    from googleapiclient.discovery_cache import get_static_doc

    doc = get_static_doc(api, VERSIONS[api])
    if doc is None:
        raise RuntimeError(f"no discovery document for {api} {VERSIONS[api]}")
    return json.loads(doc)


def _template_regex(template: str) -> re.Pattern:
    """`v1/projects/{project}/users` or `v1/{+name}` as a regex over the request path."""
    out, pos = "", 0
    for m in re.finditer(r"\{(\+?)([^}]+)\}", template):
        out += re.escape(template[pos:m.start()])
        out += ".+" if m.group(1) else "[^/]+"
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]))


def _methods(resources: dict):
    for resource in resources.values():
        yield from resource.get("methods", {}).values()
        yield from _methods(resource.get("resources", {}))


@cache
def methods(api: str) -> tuple[Method, ...]:
    doc = document(api)
    found = []
    for m in _methods(doc.get("resources", {})):
        template = m.get("flatPath") or m["path"]
        params = {**doc.get("parameters", {}), **m.get("parameters", {})}
        found.append(Method(api, m["id"], m["httpMethod"],
                            _template_regex(doc.get("servicePath", "") + template), params,
                            (m.get("request") or {}).get("$ref", "")))
    # Literal paths before templated ones: `.../serviceAccounts/x:getIamPolicy` must not match
    # the `{+name}` of serviceAccounts.get.
    return tuple(sorted(found, key=lambda x: -len(x.regex.pattern.replace("[^/]+", ""))))


def find(api: str, http_method: str, path: str) -> Method | None:
    for method in methods(api):
        if method.http_method == http_method and method.regex.fullmatch(path):
            return method
    return None


def bad_request(message: str, field: str = "") -> dict:
    violation: dict[str, Any] = {"description": message}
    if field:
        violation["field"] = field
    return {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT",
                      "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                   "fieldViolations": [violation]}]}}


def check(api: str, http_method: str, path: str, query: dict[str, list[str]],
          body: Any) -> tuple[Method | None, dict | None]:
    """The discovery method a request calls, and the 400 body to answer if it is invalid
    (None when it is valid). (None, None): the API has no such method (the caller's 404)."""
    if api not in VERSIONS:
        return None, None
    method = find(api, http_method, path)
    if method is None:
        return None, None
    for name, values in query.items():
        param = method.params.get(name)
        if param is None or param.get("location") not in ("query", None):
            return method, bad_request(f"Invalid JSON payload received. Unknown name "
                                       f'"{name}": Cannot bind query parameter. Field '
                                       f"'{name}' could not be found in request message.")
        if len(values) > 1 and not param.get("repeated"):
            return method, bad_request(f"Invalid value for query parameter {name}: "
                                       "it is not repeated")
        if "enum" in param and any(v not in param["enum"] for v in values):
            return method, bad_request(f'Invalid value at \'{name}\', "{values[0]}"', name)
    for name, param in method.params.items():
        if param.get("required") and param.get("location") == "query" and name not in query:
            return method, bad_request(f"Required parameter {name} is missing", name)
    if method.request:
        problem = _check_value(api, {"$ref": method.request}, body,
                               _snake(method.request))
        if problem:
            return method, bad_request(*problem)
    elif body not in (None, {}, b""):
        return method, bad_request("Invalid JSON payload received. This method takes no body.")
    return method, None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _check_value(api: str, schema: dict, value: Any, at: str) -> tuple[str, str] | None:
    schemas = document(api)["schemas"]
    if "$ref" in schema:
        schema = schemas[schema["$ref"]]
    kind = schema.get("type")
    if value is None:
        return None  # JSON null is the default value
    if kind == "object":
        if not isinstance(value, dict):
            return (f"Invalid JSON payload received. Expected an object at '{at}'.", at)
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                problem = _check_value(api, props[key], item, f"{at}.{_snake(key)}")
            elif extra is not None:
                problem = _check_value(api, extra, item, f"{at}[{key}]")
            else:
                return (f'Invalid JSON payload received. Unknown name "{key}" at \'{at}\': '
                        "Cannot find field.", at)
            if problem:
                return problem
        return None
    if kind == "array":
        if not isinstance(value, list):
            return (f"Invalid JSON payload received. Expected a list at '{at}'.", at)
        for i, item in enumerate(value):
            problem = _check_value(api, schema.get("items", {}), item, f"{at}[{i}]")
            if problem:
                return problem
        return None
    if kind == "string":
        if schema.get("format") in ("int64", "uint64") and isinstance(value, int) \
                and not isinstance(value, bool):
            return None
        if not isinstance(value, str):
            return (f"Invalid value at '{at}' ({kind}), {json.dumps(value)}", at)
        if "enum" in schema and value not in schema["enum"]:
            return (f"Invalid value at '{at}', \"{value}\"", at)
        return None
    if kind == "integer":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and re.fullmatch(r"-?\d+", value))
        return None if ok else (f"Invalid value at '{at}' (TYPE_INT32), {json.dumps(value)}",
                                at)
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else (f"Invalid value at '{at}' (TYPE_DOUBLE), {json.dumps(value)}",
                                at)
    if kind == "boolean":
        return None if isinstance(value, bool) else (
            f"Invalid value at '{at}' (TYPE_BOOL), {json.dumps(value)}", at)
    if kind == "any" or kind is None:
        return None
    return None
