"""The install record: what this release is and what it owns, kept next to it in the cluster.

One Secret per release, `mlflow-helm.install.v1.RELEASE` in the release's namespace (as Helm
keeps its own release record in `sh.helm.release.v1.*` Secrets), labelled
`app.kubernetes.io/managed-by=mlflow-helm` and `mlflow-helm/record=install`. It is a Secret
rather than a ConfigMap because it keeps the user's `-f`/`--set` layer, which may hold a
value the user considers private; passwords and the external database URI are never in it
(those live in their own Secrets).

Key `record.json`:
  settings   the effective flags of the last apply (a re-run without a flag reuses them)
  userValues the user's `-f`/`--set` layer of the last apply
  resources  [{kind, name, origin: created|adopted, detail, at}]: created = this release
             made it (purge deletes it), adopted = it existed before (purge keeps it); `at`
             says where it lives ({project, instance} for a database or user, {bucket},
             {project} or {serviceAccount} for an IAM member, {namespace} for a Secret), so
             purge finds it whatever the flags say later
  lastRun    only after a run a signal stopped: which steps it applied, stopped half way
             and never started (the next apply resumes and drops it)

Re-runs take every setting the user did not pass from here; a setting passed with another
value is a change, shown as `~ --flag: old -> new` and confirmed before anything changes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .changes import CREATE, DELETE, Change
from .errors import BadFlag

SCHEMA = 1
DATA_KEY = "record.json"
LABELS = {"mlflow-helm/record": "install"}
# The settings a re-run reuses, as Options field -> flag.
SETTINGS = {
    "project": "--project", "region": "--region", "cluster": "--cluster",
    "location": "--location", "local": "--local", "database": "--database",
    "cloudsql_instance": "--cloudsql-instance", "db_auth": "--db-auth",
    "database_name": "--database-name", "db_user": "--db-user", "ip_type": "--ip-type",
    "bucket": "--bucket", "create_bucket": "--create-bucket", "identity": "--identity",
    "gsa": "--gsa", "chart": "--chart", "version": "--version",
}
# A change of one of these moves MLflow's data: never applied without a yes.
DATA_SETTINGS = ("local", "database", "cloudsql_instance", "database_name", "bucket")
# A passed switch that differs from the record drops these recorded settings.
SWITCHES = {
    "local": ("database", "cloudsql_instance", "db_auth", "database_name", "db_user",
              "ip_type", "bucket", "create_bucket", "identity", "gsa", "project", "region",
              "cluster", "location"),
    "database": ("cloudsql_instance", "db_auth", "database_name", "db_user", "ip_type"),
}
# The kinds of resource a record tracks (the plan's change kinds).
TRACKED = ("namespace", "google service account", "gcs bucket", "cloud sql database",
           "cloud sql user", "cloud sql iam user", "secret", "database owner")


def record_name(release: str) -> str:
    return f"mlflow-helm.install.v1.{release}"


@dataclass
class Record:
    settings: dict[str, Any] = field(default_factory=dict)
    user_values: dict = field(default_factory=dict)
    resources: list[dict] = field(default_factory=list)
    updated: str = ""
    # How the last run ended when it did not finish: {result: interrupted, signal, applied,
    # stopped, notStarted} (step names); the next apply writes the record without it.
    last_run: dict = field(default_factory=dict)

    def find(self, kind: str, name: str, at: dict | None = None) -> dict | None:
        """The recorded resource; with `at`, the one at that place (a record written before
        places were recorded matches any)."""
        for res in self.resources:
            if res["kind"] == kind and res["name"] == name and (
                    at is None or not res.get("at") or res["at"] == at):
                return res
        return None

    def origin(self, kind: str, name: str) -> str | None:
        res = self.find(kind, name)
        return res["origin"] if res else None

    def created(self, kind: str, name: str) -> bool:
        return self.origin(kind, name) == "created"

    def to_json(self) -> dict:
        out = {"schemaVersion": SCHEMA, "updated": self.updated, "settings": self.settings,
               "userValues": self.user_values, "resources": self.resources}
        if self.last_run:
            out["lastRun"] = self.last_run
        return out


def load(kube, namespace: str, release: str) -> Record | None:
    # A Secret read in a namespace that does not exist is a plain 404 (the API server does
    # not check the namespace on GET), so no namespace read is needed first.
    data = kube.get_secret(namespace, record_name(release))
    if not data or DATA_KEY not in data:
        return None
    doc = json.loads(data[DATA_KEY])
    return Record(settings=doc.get("settings") or {}, user_values=doc.get("userValues") or {},
                  resources=doc.get("resources") or [], updated=doc.get("updated", ""),
                  last_run=doc.get("lastRun") or {})


def save(kube, namespace: str, release: str, record: Record) -> None:
    record.updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kube.put_secret(namespace, record_name(release),
                    {DATA_KEY: json.dumps(record.to_json(), indent=1, sort_keys=True)},
                    labels={**LABELS, "mlflow-helm/release": release})


def delete(kube, namespace: str, release: str) -> bool:
    return kube.delete_secret(namespace, record_name(release))


def settings_of(opts) -> dict[str, Any]:
    return {name: getattr(opts, name) for name in SETTINGS}


def merge_settings(opts, record: Record | None) -> list[tuple[str, Any, Any]]:
    """Fill every setting the user did not pass from the record; return the passed ones that
    differ from it as (flag, recorded, new). `opts.given` None means every field was passed
    (callers that build Options themselves)."""
    if record is None:
        return []
    given = opts.given
    changed = []
    # Switching the data store by flag: the old store's details are not carried over.
    skip: set[str] = set()
    for switch, group in SWITCHES.items():
        if given is not None and switch in given and \
                record.settings.get(switch, getattr(opts, switch)) != getattr(opts, switch):
            skip |= set(group)
    for name, flag in SETTINGS.items():
        if name not in record.settings or (name in skip and name not in given):
            continue
        old = record.settings[name]
        if given is not None and name not in given:
            setattr(opts, name, old)
        elif not _same(name, old, getattr(opts, name)):
            changed.append((flag, old, getattr(opts, name)))
    user_flags = given is None or {"values_files", "set_values", "set_typed"} & given
    if not user_flags and record.user_values:
        opts.recorded_values = record.user_values
    return changed


def _same(name: str, old, new) -> bool:
    """`pg` and `PROJECT:REGION:pg` name one instance (the project is checked by preflight)."""
    if name == "cloudsql_instance" and old and new and (":" not in old or ":" not in new):
        return old.rsplit(":", 1)[-1] == new.rsplit(":", 1)[-1]
    return old == new


def recorded_flags(record: Record | None) -> list[str]:
    """The record's settings as the flags that would set them (defaults left out): what a
    re-run without flags applies, and the command line to write down for CI."""
    if record is None:
        return []
    from dataclasses import fields

    from .options import Options

    defaults = {f.name: f.default for f in fields(Options) if f.name in SETTINGS}
    out = []
    for name, flag in SETTINGS.items():
        value = record.settings.get(name)
        if value in (None, "", False) or value == defaults.get(name):
            continue
        out.append(flag if value is True else f"{flag} {value}")
    return out


def setting_lines(changed: list[tuple[str, Any, Any]]) -> list[str]:
    def show(value):
        return "(none)" if value in ("", None) else str(value).lower() if isinstance(
            value, bool) else str(value)

    return [f"~ {flag}: {show(old)} -> {show(new)}" for flag, old, new in changed]


def refuse_unconfirmed(changed, release: str, namespace: str) -> None:
    """Without a terminal and without --yes, a change of where the data lives is refused."""
    data = [flag for flag, _, _ in changed if flag in {SETTINGS[n] for n in DATA_SETTINGS}]
    if data:
        raise BadFlag(
            f"{', '.join(data)} differs from the install record of {namespace}/{release}: "
            "this moves MLflow's data store",
            "pass --yes to apply the change, or drop the flag to keep the recorded value "
            f"(`mlflow-helm plan {release} -n {namespace}` shows the record's settings)")


def update(record: Record | None, opts, planned: list[Change]) -> Record:
    """The record for this apply, written before it: what the plan creates is `created`,
    what was there already `adopted`; a resource recorded before keeps its origin."""
    out = Record(settings=settings_of(opts),
                 user_values=getattr(opts, "applied_values", None) or {},
                 resources=[dict(r) for r in (record.resources if record else [])])
    for change in planned:
        if change.action == DELETE:
            continue
        if change.kind not in TRACKED and not change.kind.startswith("iam binding"):
            continue
        at = change.data.get("at") or {}
        known = out.find(change.kind, change.name, at)
        if known is not None:
            if at and not known.get("at"):
                known["at"] = at
            continue
        origin = "created" if change.action == CREATE else "adopted"
        out.resources.append({"kind": change.kind, "name": change.name, "origin": origin,
                              "detail": change.detail, "at": at})
    return out
