"""The Helm release: `helm upgrade --install` with the computed values under the user's."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..changes import CREATE, UNCHANGED, UPDATE, Change
from ..chart import bundled_chart, chart_version
from ..errors import BadFlag
from ..values import compute_values, deep_merge
from .base import Step


def chart_ref(opts) -> tuple[str, str]:
    """(chart reference, version): the bundled chart unless --chart says otherwise."""
    if opts.chart:
        return opts.chart, opts.version
    path = bundled_chart()
    return str(path), chart_version(path)


def user_values(opts) -> dict:
    merged: dict = {}
    for path in opts.values_files:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BadFlag(f"-f {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise BadFlag(f"-f {path}: not a YAML mapping")
        merged = deep_merge(merged, data)
    return merged


NAMING_KEYS = ("fullnameOverride", "nameOverride", "serviceAccount.name")


def chart_names(opts) -> dict:
    """The user's naming values (-f files, then --set), which decide the ServiceAccount's
    name and so the Workload Identity subject."""
    merged = user_values(opts)
    found = {}
    for key in NAMING_KEYS:
        node = merged
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node:
            found[key] = str(node)
    for item in opts.set_values:
        for pair in item.split(","):
            key, _, value = pair.partition("=")
            if key.strip() in NAMING_KEYS and value:
                found[key.strip()] = value.strip()
    return found


class ReleaseStep(Step):
    name = "release"

    def plan(self) -> list[Change]:
        _, version = chart_ref(self.opts)
        values = compute_values(self.ctx)
        desired = deep_merge(values, user_values(self.opts))
        current = self.ctx.helm.release(self.opts.release, self.opts.namespace)
        kind = "helm release"
        name = f"{self.opts.namespace}/{self.opts.release}"
        if current is None:
            return [self.change(CREATE, kind, name, f"chart mlflow {version or 'latest'}",
                                values=values)]
        same = (current.get("status") == "deployed"
                and version and current.get("version") == version
                and not self.opts.set_values
                and (current.get("values") or {}) == desired)
        if same:
            return [self.change(UNCHANGED, kind, name,
                                f"revision {current.get('revision')}", values=values)]
        why = []
        if current.get("status") != "deployed":
            why.append(f"status {current.get('status')}")
        if not version or current.get("version") != version:
            why.append(f"chart {current.get('version')} -> {version or 'latest'}")
        if self.opts.set_values:
            why.append("--set given")
        elif (current.get("values") or {}) != desired:
            why.append("values changed")
        return [self.change(UPDATE, kind, name,
                            f"upgrade revision {current.get('revision')}: {', '.join(why)}",
                            values=values)]

    def apply(self, changes: list[Change]) -> None:
        from ..retry import ticking

        chart, version = chart_ref(self.opts)
        values = changes[0].data["values"]
        what = f"helm upgrade --install {self.opts.release}"
        self.ctx.say(f"  {what} (up to {self.opts.timeout})")
        with ticking(self.ctx.say, what, self.ctx.apis.retry.report_every * 3):
            self.ctx.helm.upgrade_install(
                self.opts.release, chart, values, namespace=self.opts.namespace,
                values_files=self.opts.values_files, set_values=self.opts.set_values,
                version=version if self.opts.chart else "")
