"""The Helm release: `helm upgrade --install` with the computed values under the user's."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import yaml

from ..changes import CREATE, UNCHANGED, UPDATE, Change
from ..chart import bundled_chart, chart_app_version, chart_version
from ..errors import BadFlag
from ..options import split_pairs
from ..values import compute_values, deep_merge
from .base import Step


def chart_ref(opts) -> tuple[str, str]:
    """(chart reference, version): the bundled chart unless --chart says otherwise."""
    if opts.chart:
        return opts.chart, opts.version
    path = bundled_chart()
    return str(path), chart_version(path)


def _typed(value: str):
    """Helm's --set typing (helm/helm pkg/strvals/parser.go, typedVal): true/false/null,
    integers without a leading zero; everything else (floats included) stays a string."""
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    if value == "0":
        return 0
    if value and value[0] != "0":
        try:
            return int(value, 10)
        except ValueError:
            pass
    return value


def _put(out: dict, key: str, value) -> bool:
    """Set a dotted key as strvals does; False for list syntax (`a[0]`), not modelled."""
    if "[" in key:
        return False
    node = out
    keys = key.strip().split(".")
    for name in keys[:-1]:
        if not isinstance(node.get(name), dict):
            node[name] = {}
        node = node[name]
    node[keys[-1]] = value
    return True


def set_layer(set_values: list[str], typed=None) -> dict | None:
    """The --set items as Helm merges them (dotted keys; `\\,` escapes a comma); None when an
    item uses list syntax (`a[0]=x`) this does not model, so callers cannot compare.
    `typed` is a converter for every value (`str` for --set-string), else Helm's typing."""
    out: dict = {}
    for item in set_values:
        for part in split_pairs(item):
            key, _, raw = part.partition("=")
            if typed is None and "{" in raw:
                return None
            raw = raw.replace("\\,", ",")
            if not _put(out, key, typed(raw) if typed else _typed(raw)):
                return None
    return out


def parse_set_json(item: str) -> list[tuple[str, object]]:
    """--set-json as Helm parses it (pkg/strvals ParseJSON): KEY=JSON pairs separated by
    commas, or (Helm 4) one JSON object merged at the top, returned as key "". Raises
    ValueError naming what is wrong."""
    import json

    text = item.strip()
    if text.startswith("{"):
        value = json.loads(text)
        return [("", value)]
    decoder, pairs, pos = json.JSONDecoder(), [], 0
    while pos < len(item):
        eq = item.find("=", pos)
        if eq <= pos:
            raise ValueError(f"{item[pos:]!r} is not KEY=JSON")
        key = item[pos:eq]
        try:
            value, end = decoder.raw_decode(item, eq + 1)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the value of {key} is not JSON ({exc.msg})") from None
        pairs.append((key, value))
        if end < len(item) and item[end] != ",":
            raise ValueError(f"unexpected {item[end:]!r} after the JSON value of {key}")
        pos = end + 1
    return pairs


def typed_layers(set_typed: list[tuple[str, str]]) -> tuple[dict, dict] | None:
    """(under --set, over --set) layers of --set-json, --set-string and --set-file, in
    Helm's order (pkg/cli/values Options.MergeValues: -f, --set-json, --set, --set-string,
    --set-file, --set-literal); None when an item cannot be modelled."""
    under: dict = {}
    over: dict = {}
    for flag in ("--set-json", "--set-string", "--set-file"):
        for given, item in set_typed:
            if given != flag:
                continue
            if flag == "--set-json":
                for key, value in parse_set_json(item):
                    if key == "":
                        if not isinstance(value, dict):
                            return None
                        under = deep_merge(under, value)
                    elif not _put(under, key, value):
                        return None
            elif flag == "--set-string":
                layer = set_layer([item], typed=str)
                if layer is None:
                    return None
                over = deep_merge(over, layer)
            else:
                for part in split_pairs(item):
                    key, _, path = part.partition("=")
                    if not _put(over, key, Path(path).read_text()):
                        return None
    return under, over


def user_values(opts) -> dict:
    """The user's layer over the computed values: the -f files merged left to right (or,
    on a re-run without -f/--set, the layer the install record kept)."""
    if opts.recorded_values is not None:
        return opts.recorded_values
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
    layer = user_layer(opts)
    merged = user_values(opts) if layer is None else layer
    found = {}
    for key in NAMING_KEYS:
        node = merged
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node:
            found[key] = str(node)
    if layer is None:  # list syntax somewhere: the plain pairs still name things
        for item in opts.set_values:
            for pair in item.split(","):
                key, _, value = pair.partition("=")
                if key.strip() in NAMING_KEYS and value:
                    found[key.strip()] = value.strip()
    return found


def user_layer(opts) -> dict | None:
    """-f, --set-json, --set, --set-string, --set-file, as Helm layers them over our values;
    None when a --set* item cannot be modelled (then a re-run cannot prove it unchanged)."""
    if opts.recorded_values is not None:
        return opts.recorded_values
    sets = set_layer(opts.set_values)
    typed = typed_layers(opts.set_typed)
    if sets is None or typed is None:
        return None
    under, over = typed
    return deep_merge(deep_merge(deep_merge(user_values(opts), under), sets), over)


def check_schema(values: dict, chart: str) -> None:
    """The final values (chart defaults, ours, -f, --set) against the chart's
    values.schema.json, before any change: a typo'd key fails here, naming the field, not in
    `helm upgrade` after the cloud resources were made. Charts from a registry are checked
    by Helm itself."""
    import json

    import jsonschema

    path = Path(chart)
    if not (path / "values.schema.json").is_file():
        return
    schema = json.loads((path / "values.schema.json").read_text())
    final = deep_merge(chart_defaults(chart), values)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(final), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        field = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise BadFlag(f"values: {field}: {first.message}",
                      "fix the key or value in -f/--set (the chart's values.schema.json "
                      "lists every key)" + (f"; {len(errors) - 1} more problem(s)"
                                           if len(errors) > 1 else ""))


def mlflow_image(values: dict, defaults: dict, app_version: str) -> str:
    """The image MLflow runs with these values over the chart's `defaults`
    (templates/_helpers.tpl mlflow.image): REGISTRY/REPOSITORY, then @DIGEST, else :TAG,
    else :v<appVersion>-full."""
    image = deep_merge(defaults.get("image") or {}, values.get("image") or {})
    registry = ((values.get("global") or {}).get("imageRegistry") or image.get("registry")
                or "")
    ref = f"{registry}/{image.get('repository')}" if registry else str(image.get("repository"))
    if image.get("digest"):
        return f"{ref}@{image['digest']}"
    return f"{ref}:{image.get('tag') or f'v{app_version}-full'}"


def mlflow_version(image: str, app_version: str) -> str:
    """The MLflow version an image runs: its tag's (v3.17.2-full, 3.17.2), else the chart's
    appVersion (the chart's default image is v<appVersion>-full); "" when neither says.
    The migration Job compares it with the MLflow it really runs (files/db.py)."""
    tag = image.rsplit("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
    match = re.match(r"v?(\d+\.\d+\.\d+(?:(?:rc|a|b|\.post|\.dev)\d+)?)(?:-|$)", tag)
    if match:
        return match.group(1)
    return "" if app_version.startswith("chart ") else app_version


def app_version_of(chart: str, version: str) -> str:
    """Chart.yaml's appVersion; a chart from a registry is not read here, so its version
    stands for it (a new chart version may bring a new MLflow)."""
    if "://" in chart:
        return f"chart {version or 'latest'}"
    return chart_app_version(Path(chart))


class BackupStep(Step):
    """An on-demand Cloud SQL backup before an upgrade that changes the MLflow image.

    A new MLflow version may migrate the schema, and its migrations cannot be undone: the
    way back is the backup taken just before (the chart README's upgrade runbook). The
    backup is taken, and checked SUCCESSFUL, before `helm upgrade` starts the migration Job;
    if it cannot be taken, the upgrade does not happen. A first install, or an upgrade that
    keeps the image (values, replicas, routes), takes none. The backup is Cloud SQL's:
    kept by its retention, restored with `gcloud sql backups restore ID
    --restore-instance INSTANCE`; purge never deletes it."""

    name = "backup"

    def enabled(self) -> bool:
        return self.opts.uses_gcp and self.opts.database == "cloudsql"

    def plan(self) -> list[Change]:
        current = self.ctx.helm.release(self.opts.release, self.opts.namespace)
        if current is None:
            return []
        chart, version = chart_ref(self.opts)
        defaults = chart_defaults(chart)
        desired = deep_merge(compute_values(self.ctx), user_layer(self.opts) or {})
        target = mlflow_image(desired, defaults, app_version_of(chart, version))
        # `helm get metadata -o json` names it appVersion (Helm 3.17.3 and 4.1.4,
        # pkg/cmd/get_metadata.go).
        running = mlflow_image(current.get("values") or {}, defaults,
                               str(current.get("appVersion") or ""))
        if running == target:
            return []
        return [self.change(CREATE, "cloud sql backup", self.opts.instance_name,
                            f"on demand, before the upgrade from {running} to {target} "
                            f"migrates {self.opts.database_name}", target=target,
                            mlflow=mlflow_version(target, app_version_of(chart, version)))]

    def apply(self, changes: list[Change]) -> None:
        instance = self.opts.instance_name
        description = (f"mlflow-helm: before upgrading {self.opts.namespace}/"
                       f"{self.opts.release} to {changes[0].data['target']}")
        backup_id = self.ctx.sql.backup(self.ctx.instance_project, instance, description)
        self.ctx.say(f"  backup {backup_id} of {instance} is SUCCESSFUL; to go back: "
                     f"`gcloud sql backups restore {backup_id} --restore-instance {instance}`")
        # The migration Job of the upgrade checks for this backup, taken for its MLflow.
        self.ctx.facts.cloudsql_backup = {"backupId": str(backup_id),
                                          "mlflowVersion": changes[0].data["mlflow"]}


def chart_defaults(chart: str) -> dict:
    """The chart's values.yaml (a copy: callers merge into it); for a chart from a registry,
    the bundled chart's (the same chart, another version)."""
    path = (Path(chart) if "://" not in chart else Path(bundled_chart())) / "values.yaml"
    return copy.deepcopy(_values_yaml(str(path), path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _values_yaml(path: str, _mtime_ns: int) -> dict:
    """Parsed once while the file is unchanged: the schema check, the timeout and the
    backup step of one command all read it."""
    return yaml.safe_load(Path(path).read_text()) or {}


# After the migration's own bound, Helm still waits for a new server pod to pass its probes.
UPGRADE_TIMEOUT_MARGIN_S = 60


def upgrade_timeout(opts, final: dict) -> str:
    """Helm's --timeout for install and upgrade: longer than the migration may take.

    With --wait-for-jobs Helm waits for the migration Job, and a failed or timed-out upgrade
    is rolled back (--atomic / --rollback-on-failure). A rollback while the Job still runs
    deletes it mid-migration and brings back a server that may not know the half-migrated
    schema. So Helm must wait longer than the Job can run (migrations.activeDeadlineSeconds)
    and than a new server pod waits for its schema (migrations.waitTimeoutSeconds): then the
    Job has finished or failed on its own before Helm gives up."""
    from ..options import duration_seconds

    migrations = final.get("migrations") or {}
    bound = max(int(migrations.get("activeDeadlineSeconds") or 0),
                int(migrations.get("waitTimeoutSeconds") or 0))
    needed = bound + UPGRADE_TIMEOUT_MARGIN_S
    default = f"{-(-needed // 60)}m"  # whole minutes, rounded up
    if not opts.timeout:
        return default
    if duration_seconds(opts.timeout) < needed:
        raise BadFlag(
            f"--timeout {opts.timeout} is shorter than the migration may take: Helm would roll "
            f"the release back while the migration Job still runs (migrations."
            f"activeDeadlineSeconds {migrations.get('activeDeadlineSeconds')}s, "
            f"waitTimeoutSeconds {migrations.get('waitTimeoutSeconds')}s, plus "
            f"{UPGRADE_TIMEOUT_MARGIN_S}s for the server to start)",
            f"drop --timeout (the default waits {default}), pass at least "
            f"--timeout {default}, or lower those values; nothing was changed")
    return opts.timeout


class ReleaseStep(Step):
    name = "release"

    def plan(self) -> list[Change]:
        chart, version = chart_ref(self.opts)
        values = compute_values(self.ctx)
        layer = user_layer(self.opts)
        desired = deep_merge(values, layer or {})
        check_schema(desired, chart)
        self.timeout = upgrade_timeout(self.opts, deep_merge(chart_defaults(chart), desired))
        current = self.ctx.helm.release(self.opts.release, self.opts.namespace)
        kind = "helm release"
        name = f"{self.opts.namespace}/{self.opts.release}"
        if current is None:
            self.render_check(chart, values)
            return [self.change(CREATE, kind, name, f"chart mlflow {version or 'latest'}",
                                values=values)]
        app_version = app_version_of(chart, version)
        # A chart rebuilt with another appVersion under the same version is another MLflow.
        same_app = "://" in chart or str(current.get("appVersion") or "") == app_version
        same = (current.get("status") == "deployed"
                and version and current.get("version") == version and same_app
                and layer is not None
                and (current.get("values") or {}) == desired)
        if same:
            return [self.change(UNCHANGED, kind, name,
                                f"revision {current.get('revision')}", values=values)]
        self.render_check(chart, values)
        why = []
        if current.get("status") != "deployed":
            why.append(f"status {current.get('status')}")
        if not version or current.get("version") != version:
            why.append(f"chart {current.get('version')} -> {version or 'latest'}")
        elif not same_app:
            why.append(f"MLflow {current.get('appVersion')} -> {app_version}")
        if layer is None:
            why.append("--set* with list syntax")
        elif (current.get("values") or {}) != desired:
            why.append("values changed")
        return [self.change(UPDATE, kind, name,
                            f"upgrade revision {current.get('revision')}: {', '.join(why)}",
                            values=values)]

    def _helm_args(self, values: dict) -> tuple[dict, list[str], list[tuple[str, str]]]:
        files, sets = self.opts.values_files, self.opts.helm_sets
        if self.opts.recorded_values is not None:  # a re-run: the recorded layer, on stdin
            return deep_merge(values, self.opts.recorded_values), [], []
        return values, files, sets

    def render_check(self, chart: str, values: dict) -> None:
        """Render the chart with the final values before anything changes, so the chart's
        own checks (_validate.tpl) fail the plan, not `helm upgrade` after the cloud side
        was made. A chart from a registry is rendered by `helm upgrade` only."""
        if "://" in chart:
            return
        from ..errors import HelmFailed

        values, files, sets = self._helm_args(values)
        try:
            self.ctx.helm.template(self.opts.release, chart, values,
                                   namespace=self.opts.namespace, values_files=files,
                                   set_values=sets)
        except HelmFailed as exc:
            raise BadFlag(f"the chart refuses these values:\n{exc.message}",
                          "fix the values named above (-f/--set or the flags that set them); "
                          "nothing was changed") from exc

    def apply(self, changes: list[Change]) -> None:
        from ..retry import ticking

        chart, version = chart_ref(self.opts)
        values = changes[0].data["values"]
        if self.ctx.facts.cloudsql_backup:  # the backup step of this run may have taken one
            values = deep_merge(values, {"migrations": {"backup": {
                "cloudSql": dict(self.ctx.facts.cloudsql_backup)}}})
        values, files, sets = self._helm_args(values)
        what = f"helm upgrade --install {self.opts.release}"
        self.ctx.say(f"  {what} (up to {self.timeout})")
        from ..errors import HelmFailed
        from ..migration_watch import MigrationWatch

        retry = self.ctx.apis.retry
        with ticking(self.ctx.say, what, retry.report_every * 3), MigrationWatch(
                self.ctx.kube, self.opts.namespace, self.opts.release,
                max(1.0, retry.poll_interval * 2)) as watch:
            try:
                self.ctx.helm.upgrade_install(
                    self.opts.release, chart, values, namespace=self.opts.namespace,
                    values_files=files, set_values=sets,
                    version=version if self.opts.chart else "", timeout=self.timeout)
            except HelmFailed as exc:
                if watch.failure is None:
                    watch.look()  # the Job may still be there (no rollback, or not yet)
                if watch.failure is None:
                    raise
                raise HelmFailed(exc.message + watch.report(), watch.hint()) from exc
