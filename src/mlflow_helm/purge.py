"""Uninstall and purge, from the install record (record.py), never from the flags.

`inventory()` reads which of the release's resources really exist: every resource the record
lists (created by this release, or adopted: it existed before), and the objects the chart
leaves behind on `helm uninstall` (its PersistentVolumeClaims and the Secrets annotated
`helm.sh/resource-policy: keep`), found by the release's labels. Plain uninstall prints them
as "kept"; `--purge` deletes those this release created, and keeps:
- whatever was adopted (a service account, bucket, database or user that existed before),
  and every IAM member that was bound already;
- a bucket that still holds objects, and the artifacts volume, unless `--delete-artifacts`;
- the namespace (other things may live in it: `kubectl delete namespace` is the user's call).

Order, so the APIs accept each call: the Helm release first (nothing uses the data any
more); on Cloud SQL the database before its user (PostgreSQL refuses to drop a role that owns
objects, and Cloud SQL answers users.delete with that error); IAM members before the service
account they name; the Kubernetes side last. When a Google deletion fails, the password
Secrets and the record stay, so `--purge` can be run again and finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import record as records
from .changes import DELETE, UNCHANGED, Change
from .gcp import error_reason

# The chart's label for the release, and for its component (charts/mlflow/templates/
# _helpers.tpl: mlflow.selectorLabels, mlflow.componentSelectorLabels).
INSTANCE_LABEL = "app.kubernetes.io/instance"
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
KEEP = "helm.sh/resource-policy"

# Deletion order (see the module docstring); an IAM member's kind starts "iam binding".
ORDER = ("cloud sql database", "cloud sql user", "cloud sql iam user", "iam binding",
         "gcs bucket", "google service account", "database owner", "secret",
         "persistentvolumeclaim", "chart secret", "namespace", "install record")
GOOGLE = ("cloud sql database", "cloud sql user", "cloud sql iam user", "iam binding",
          "gcs bucket", "google service account")


@dataclass
class Item:
    """One resource that exists: deleted on purge (`run`), or kept (`why`)."""

    kind: str
    name: str
    origin: str  # created | adopted
    what: str = ""  # for people: "database volume", "database password"
    run: Callable[[], object] | None = None
    why: str = ""  # why purge keeps it ("" = purge deletes it)
    resource: dict | None = None  # the record's entry

    @property
    def google(self) -> bool:
        return self.kind.startswith(GOOGLE)

    def label(self) -> str:
        what = f" ({self.what})" if self.what else ""
        return f"{self.kind} {self.name}{what}"


def _order(item: Item) -> int:
    return next(i for i, prefix in enumerate(ORDER) if item.kind.startswith(prefix))


def _at(res: dict, opts) -> dict:
    """Where a recorded resource lives; records written before `at` existed say it in the
    detail ("on project P", "on gs://B", "on EMAIL", "on P:REGION:INSTANCE")."""
    if res.get("at"):
        return res["at"]
    where = (res.get("detail") or "").split(";")[0]
    where = where.removeprefix("new password ").removeprefix("on ").strip()
    kind = res["kind"]
    if kind.startswith("cloud sql"):
        parts = where.split(":")
        return {"project": ":".join(parts[:-2]) or opts.project, "instance": parts[-1]}
    if kind.startswith("iam binding"):
        if where.startswith("project "):
            return {"project": where.removeprefix("project ")}
        if where.startswith("gs://"):
            return {"bucket": where.removeprefix("gs://")}
        return {"project": opts.project, "serviceAccount": where}
    if kind == "gcs bucket":
        return {"bucket": res["name"].removeprefix("gs://")}
    if kind == "google service account":
        return {"project": res["name"].split("@", 1)[-1].split(".", 1)[0]}
    return {"namespace": opts.namespace}


def inventory(ctx, delete_artifacts: bool = False, strict: bool = True) -> list[Item]:
    """Every resource of the release that exists, in deletion order. `strict=False` (plain
    uninstall, which must work without Google credentials): a resource that cannot be read
    is listed as not checked instead of failing the command."""
    opts, rec = ctx.opts, ctx.record
    items: list[Item] = []
    reads: dict[tuple, object] = {}
    for res in (rec.resources if rec else []):
        try:
            item = _check(ctx, res, delete_artifacts, reads)
        except Exception as exc:
            if strict:
                raise
            item = Item(res["kind"], res["name"], res["origin"],
                        f"not checked: {error_reason(exc).splitlines()[0]}", resource=res)
        if item is not None:
            if item.origin != "created":
                item.why = "adopted: it existed before this release"
            items.append(item)
    items.extend(chart_leftovers(ctx, delete_artifacts))
    if rec is not None:
        ns, name = opts.namespace, records.record_name(opts.release)
        items.append(Item("install record", f"{ns}/{name}", "created",
                          run=lambda: records.delete(ctx.kube, ns, opts.release)))
    items.sort(key=_order)
    # A service account this release created that another release or principal still uses
    # keeps the roles it was granted (on the project, on the bucket): the other user of the
    # account relies on them. This release's own Workload Identity member on it goes.
    shared = {f"serviceAccount:{i.name}" for i in items
              if i.kind == "google service account" and i.origin == "created" and i.why}
    buckets = set()
    for item in items:
        if item.kind.startswith("iam binding ") and item.name in shared and not item.why:
            item.why = ("its service account is kept (still used by others), and keeps "
                        "what it was granted")
            buckets.add(_at(item.resource, ctx.opts).get("bucket"))
    for item in items:  # ... and a bucket it may write to stays with it
        if item.kind == "gcs bucket" and item.origin == "created" and not item.why \
                and item.name.removeprefix("gs://") in buckets:
            item.why = "its service account is kept (still used by others) and writes here"
    # The data the chart's Secrets open (database password, AI Gateway passphrase) stays
    # when the database stays.
    kept_db = [i for i in items if i.kind == "cloud sql database" and i.why]
    if kept_db or (rec and opts.database == "external"):
        for item in items:
            if item.kind == "chart secret" and not item.why:
                item.why = "the database it belongs to is kept"
    # While something this release created stays, so does the record that lists it (run()
    # saves it without what was deleted): the plan must not promise to delete it.
    if any(i.why and i.origin == "created" and i.resource is not None
           and i.kind != "namespace" for i in items):
        for item in items:
            if item.kind == "install record":
                item.why = ("stays, listing what this release created and purge kept, so "
                            "a later --purge finishes")
    return items


def _check(ctx, res: dict, delete_artifacts: bool, reads: dict) -> Item | None:
    """The recorded resource as it is now: None when it is gone."""
    from .gcp.policy import has_member

    def once(key: tuple, read):
        if key not in reads:
            reads[key] = read()
        return reads[key]

    opts = ctx.opts
    kind, name, origin = res["kind"], res["name"], res["origin"]
    at = _at(res, opts)
    item = Item(kind, name, origin, resource=res)
    if kind == "cloud sql database":
        if not ctx.sql.get_database(at["project"], at["instance"], name):
            return None
        item.what = f"on {at['instance']}"
        item.run = lambda: ctx.sql.delete_database(at["project"], at["instance"], name)
    elif kind in ("cloud sql user", "cloud sql iam user"):
        where = (at["project"], at["instance"])
        # name -> host: a MySQL user is deleted by name and host (discovery, sqladmin v1
        # users.delete `host`: "Host of the user in the instance").
        hosts = once(("users", *where), lambda: {u.get("name"): u.get("host")
                                                 for u in ctx.sql.list_users(*where)})
        if name not in hosts:
            return None
        item.what = f"on {at['instance']}"
        item.run = lambda: ctx.sql.delete_user(at["project"], at["instance"], name,
                                               hosts[name])
    elif kind.startswith("iam binding "):
        role = kind.removeprefix("iam binding ")
        if "bucket" in at:
            bucket = at["bucket"]
            if not once(("bucket", bucket), lambda: ctx.storage.get_bucket(bucket)):
                return None
            current = once(("bucket policy", bucket), lambda: ctx.storage.get_policy(bucket))
            item.what = f"on gs://{bucket}"
            item.run = lambda: ctx.storage.ensure_member(bucket, role, name, present=False)
        elif "serviceAccount" in at:
            project, email = at["project"], at["serviceAccount"]
            if not once(("sa", email), lambda: ctx.iam.get_service_account(project, email)):
                return None
            current = once(("sa policy", email), lambda: ctx.iam.get_policy(project, email))
            item.what = f"on {email}"
            item.run = lambda: ctx.iam.ensure_member(project, email, role, name,
                                                     present=False)
        else:
            project = at["project"]
            current = once(("project policy", project), lambda: ctx.crm.get_policy(project))
            item.what = f"on project {project}"
            item.run = lambda: ctx.crm.ensure_member(project, role, name, present=False)
        if not has_member(current, role, name):
            return None
    elif kind == "gcs bucket":
        bucket = at["bucket"]
        if not once(("bucket", bucket), lambda: ctx.storage.get_bucket(bucket)):
            return None
        if origin == "created":
            policy = once(("bucket policy", bucket), lambda: ctx.storage.get_policy(bucket))
            others = _other_members(ctx, policy, "bucket", bucket)
            if others:  # another release adopted it (--bucket gs://NAME --adopt)
                item.why = _used_by_others(others)
                item.run = None
                return item
        objects = ctx.storage.count_objects(bucket)
        count = f"{objects}{'+' if objects >= 1000 else ''}"
        if objects and not delete_artifacts:
            item.why = (f"holds {count} objects (MLflow's artifacts); --delete-artifacts "
                        "deletes them too")
        elif objects:
            item.what = f"and its {count} objects"

        def drop():
            if objects:
                ctx.storage.delete_objects(bucket)
            ctx.storage.delete_bucket(bucket)

        item.run = drop
    elif kind == "google service account":
        if not once(("sa", name), lambda: ctx.iam.get_service_account(at["project"], name)):
            return None
        item.run = lambda: ctx.iam.delete_service_account(at["project"], name)
        if origin == "created":
            policy = once(("sa policy", name), lambda: ctx.iam.get_policy(at["project"], name))
            others = _other_members(ctx, policy, "serviceAccount", name)
            if others:  # another release adopted it (--gsa NAME --adopt): it runs as it
                item.why = _used_by_others(others)
    elif kind == "database owner":
        ns, marker = at.get("namespace", opts.namespace), at.get("configmap")
        if not marker or ctx.kube.get_configmap(ns, marker) is None:
            return None
        item.kind, item.name, item.what = "configmap", f"{ns}/{marker}", "grant marker"
        item.run = lambda: ctx.kube.delete_configmap(ns, marker)
    elif kind == "secret":
        ns, _, secret = name.partition("/")
        if ctx.kube.get_secret(ns, secret) is None:
            return None
        item.what = "database password" if "password" in (res.get("detail") or "") \
            else "database URI"
        item.run = lambda: ctx.kube.delete_secret(ns, secret)
    elif kind == "namespace":
        if ctx.kube.get_namespace(name) is None:
            return None
        item.why = "may hold other things: `kubectl delete namespace " + name + "`"
    else:
        return None
    return item


def _used_by_others(others: list[str]) -> str:
    """Why purge keeps what this release created but others were granted on."""
    return (f"still granted to {', '.join(others)}: another release or someone else uses "
            "it; purge that release first, or remove the grant, then run --purge again")


def _other_members(ctx, policy: dict, where: str, name: str) -> list[str]:
    """Members of a policy this release did not add (its record's IAM members on `name`):
    a service account or bucket this release created that another principal was granted on
    later (another release that adopted it binds its Workload Identity member or its
    account there). The basic-role conveniences a bucket's policy always holds
    (projectOwner:, projectEditor:, projectViewer: on the legacy roles,
    https://cloud.google.com/storage/docs/access-control/iam#convenience-values) are not
    anyone's use of it."""
    own = {(r["kind"].removeprefix("iam binding "), r["name"])
           for r in (ctx.record.resources if ctx.record else [])
           if r["kind"].startswith("iam binding ")
           and _at(r, ctx.opts).get(where) == name}
    found = set()
    for binding in policy.get("bindings", []):
        for member in binding.get("members", []):
            if member.startswith(("projectOwner:", "projectEditor:", "projectViewer:")):
                continue
            if (binding.get("role"), member) not in own:
                found.add(member)
    return sorted(found)


def chart_leftovers(ctx, delete_artifacts: bool) -> list[Item]:
    """What `helm uninstall` leaves of the release: the StatefulSet's database claim
    (persistentVolumeClaimRetentionPolicy Retain), and the objects the chart annotates
    helm.sh/resource-policy: keep (the artifacts claim, generated Secrets). Found by the
    release's labels; a claim or Secret the user brought (existingClaim, existingSecret)
    carries none of them and is never touched."""
    opts = ctx.opts
    ns = opts.namespace
    chart = opts.name_values.get("nameOverride") or "mlflow"
    selector = f"{NAME_LABEL}={chart},{INSTANCE_LABEL}={opts.release}"
    items = []
    for claim in ctx.kube.list_labelled(ns, "persistentvolumeclaims", selector):
        database = claim["labels"].get(COMPONENT_LABEL) == "postgresql"
        item = Item("persistentvolumeclaim", f"{ns}/{claim['name']}", "created",
                    "database volume" if database else "artifacts volume",
                    run=lambda c=claim["name"]: ctx.kube.delete_object(
                        ns, "persistentvolumeclaims", c))
        if not database and not delete_artifacts:
            item.why = "MLflow's artifacts; --delete-artifacts deletes it too"
        items.append(item)
    for secret in ctx.kube.list_labelled(ns, "secrets", selector):
        if secret["annotations"].get(KEEP) != "keep":
            continue  # Helm deletes the rest with the release
        what = ("database password" if secret["labels"].get(COMPONENT_LABEL) == "postgresql"
                else "generated by the chart")
        items.append(Item("chart secret", f"{ns}/{secret['name']}", "created", what,
                          run=lambda s=secret["name"]: ctx.kube.delete_secret(ns, s)))
    return items


def kept_note(items: list[Item], purge: bool, has_record: bool) -> str:
    """What stays, one resource a line: after uninstall everything that exists; after purge
    what purge keeps, and why."""
    if purge:
        parts = [f"{i.label()}: {i.why}" for i in items if i.why]
        return "kept:\n  " + "\n  ".join(parts) if parts else ""
    parts = [i.label() + ("" if i.origin == "created" else " (adopted: purge keeps it)")
             for i in items if i.kind != "install record"]
    note = ("kept (a re-install reuses them; `--purge` deletes what this release created):"
            + "".join(f"\n  {p}" for p in parts or ["nothing else"]))
    if not has_record:
        note += ("\n  (there is no install record for this release, so nothing in Google "
                 "Cloud is known to be its own)")
    return note


def plan(items: list[Item]) -> list[Change]:
    return [Change(DELETE, i.kind, i.name, i.what, step="purge") for i in items
            if not i.why and i.run is not None]


def run(ctx, items: list[Item]) -> list[Change]:
    """Delete, in order; a failure keeps that resource (said in its detail) and, after a
    Google Cloud failure, the Secrets. While anything this release created is left (a
    failure, or a bucket that holds artifacts), the install record stays, listing what is
    left, so the next --purge finds it."""
    out: list[Change] = []
    failed_google = False
    left: list[dict] = []
    deleted: list[dict] = []
    for item in items:
        res = item.resource
        if item.kind == "install record" and (left or failed_google):
            if ctx.record is not None:
                ctx.record.resources = [r for r in ctx.record.resources
                                        if not any(r is d for d in deleted)]
                records.save(ctx.kube, ctx.opts.namespace, ctx.opts.release, ctx.record)
            continue
        if item.why or item.run is None:
            if res is not None and item.origin == "created" and item.kind != "namespace":
                left.append(res)
            continue
        change = Change(DELETE, item.kind, item.name, item.what, step="purge")
        out.append(change)
        if failed_google and not item.google and item.kind != "persistentvolumeclaim":
            change.action, change.detail = UNCHANGED, (
                "kept: a Google Cloud deletion failed; run --purge again")
            continue
        try:
            if item.run() is False:
                change.action, change.detail = UNCHANGED, "absent"
            if res is not None:
                deleted.append(res)
        except Exception as exc:
            change.action, change.detail = UNCHANGED, f"kept: {error_reason(exc)}"
            if res is not None:
                left.append(res)
            if item.google:
                failed_google = True
    return out
