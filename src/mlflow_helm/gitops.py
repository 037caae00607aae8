"""GitOps rendering: the Secrets the chart would generate come from the CLI instead.

The chart generates the in-cluster PostgreSQL password, the basic-auth admin password and Flask
key, and the AI Gateway passphrase when no `existingSecret` names them, and keeps them across
upgrades with `lookup`. `helm template` (what Argo CD and Flux's kustomize path run) has no
cluster, so every render would generate new ones. `mlflow-helm render` therefore points the
chart at Secrets with the chart's own names (`existingSecret`), so the manifests are the same on
every render and hold no secret, and either creates those Secrets once (`--create-secrets`:
missing ones are generated, existing ones never change) or says which must exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .changes import CREATE, UNCHANGED, UPDATE, Change
from .options import Options, component_name
from .steps.cloudsql import new_password
from .steps.release import user_layer, user_values
from .values import deep_merge


@dataclass(frozen=True)
class GeneratedSecret:
    """One Secret the chart would generate: its name, what it is for, and key -> length."""

    value: str  # the chart value that names it (`…existingSecret`)
    name: str
    purpose: str
    keys: dict[str, int]


def _get(values: dict, dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set_values(opts: Options) -> dict:
    """The user's simple `--set a.b=c` pairs as a values document (enough to see which
    Secrets the user names or turns on; Helm itself applies the real --set)."""
    out: dict = {}
    for item in opts.set_values:
        for pair in item.split(","):
            key, sep, raw = pair.partition("=")
            if not sep:
                continue
            value: Any = {"true": True, "false": False}.get(raw.strip(), raw.strip())
            node = out
            parts = key.strip().split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
    return out


def generated_secrets(opts: Options, computed: dict) -> list[GeneratedSecret]:
    """The Secrets the chart would generate with these values (none the user names)."""
    layer = user_layer(opts)
    if layer is None:  # list syntax in --set*: the plain pairs, enough to see Secrets
        layer = deep_merge(user_values(opts), _set_values(opts))
    values = deep_merge(computed, layer)
    full = opts.fullname
    found = []
    database = _get(values, "database.type") or "incluster"
    if database == "incluster" and not _get(values, "postgresql.auth.existingSecret"):
        found.append(GeneratedSecret(
            "postgresql.auth.existingSecret", component_name(full, "postgresql", 52),
            "in-cluster PostgreSQL password",
            {_get(values, "postgresql.auth.secretKey") or "password": 32}))
    if _get(values, "auth.enabled") is True and not _get(values, "auth.existingSecret"):
        found.append(GeneratedSecret(
            "auth.existingSecret", component_name(full, "auth"),
            "basic-auth admin password and Flask session key",
            {_get(values, "auth.passwordKey") or "admin-password": 24,
             _get(values, "auth.secretKeyKey") or "flask-secret-key": 48}))
    if _get(values, "server.cryptoKek.enabled") is not False and not _get(
            values, "server.cryptoKek.existingSecret"):
        found.append(GeneratedSecret(
            "server.cryptoKek.existingSecret", component_name(full, "crypto"),
            "AI Gateway encryption passphrase",
            {_get(values, "server.cryptoKek.secretKey") or "passphrase": 48}))
    return found


def secret_values(secrets: list[GeneratedSecret]) -> dict:
    """The values that point the chart at these Secrets."""
    out: dict = {}
    for secret in secrets:
        node = out
        parts = secret.value.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = secret.name
    return out


def ensure_secrets(kube, opts: Options, secrets: list[GeneratedSecret]) -> list[Change]:
    """Create each missing Secret with generated values; add only missing keys to one that
    exists. A value that exists is never changed (a new database password or passphrase would
    lock the data out)."""
    changes = []
    labels = {"app.kubernetes.io/instance": opts.release, "app.kubernetes.io/part-of": "mlflow"}
    if secrets and kube.get_namespace(opts.namespace) is None:
        # The GitOps tool would create it (CreateNamespace=true); the Secrets need it first.
        kube.create_namespace(opts.namespace)
        changes.append(Change(CREATE, "namespace", opts.namespace))
    for secret in secrets:
        where = f"{opts.namespace}/{secret.name}"
        current = kube.get_secret(opts.namespace, secret.name)
        missing = {k: n for k, n in secret.keys.items() if k not in (current or {})}
        if not missing:
            changes.append(Change(UNCHANGED, "secret", where, f"{secret.purpose} (kept)"))
            continue
        data = dict(current or {})
        data.update({key: new_password(length) for key, length in missing.items()})
        kube.put_secret(opts.namespace, secret.name, data, labels)
        action = CREATE if current is None else UPDATE
        detail = secret.purpose + ("" if current is None else
                                   f" (added {', '.join(sorted(missing))}; not shown)")
        changes.append(Change(action, "secret", where, detail))
    return changes
