"""`mlflow-helm rollback [RELEASE] [REVISION]`: `helm rollback` that cannot strand the server.

A migration cannot be undone: after MLflow N migrated the schema, the server of an older MLflow
refuses the database ("the tracking schema is newer than this image", charts/mlflow/files/
db.py) and its migration Job changes nothing. So a rollback to a revision whose MLflow is older
than the deployed one is refused before Helm is called, and the refusal names the backup the
chart's migration took before it migrated (its migration Job's log line `backup: ...`, or the
Cloud SQL backup the release names). Restore that backup, then roll back with
`--after-restore`. A rollback that keeps the MLflow version (values, replicas, a broken route),
or goes forward, runs straight away, with the waits and timeout of an upgrade.

The MLflow version of a revision is its image's tag (steps/release.py mlflow_version), else the
chart's appVersion as `helm history` reports it. MLflow's schema only moves forward with its
version, so an older version can at most know an older schema head.
"""

from __future__ import annotations

import re

from .changes import UPDATE, Change
from .context import Context
from .errors import BadFlag

SUPERSEDED_OR_DEPLOYED = ("superseded", "deployed")


def version_key(version: str) -> tuple | None:
    """A sortable form of an MLflow version (3.17.2 > 3.17.2rc1 > 3.16.0); None if unknown."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(.*)", version or "")
    if not match:
        return None
    major, minor, patch, rest = match.groups()
    return (int(major), int(minor), int(patch), 1 if not rest else 0, rest)


def revision_mlflow(ctx: Context, entry: dict) -> tuple[dict, str, str]:
    """(computed values, image, MLflow version) of one history entry."""
    from .steps.release import mlflow_image, mlflow_version

    opts = ctx.opts
    values = ctx.helm.values_at(opts.release, opts.namespace, int(entry["revision"]))
    app_version = str(entry.get("app_version") or "")
    image = mlflow_image(values, {}, app_version)
    return values, image, mlflow_version(image, app_version)


def pick_target(history: list[dict], revision: int | None) -> tuple[dict, dict]:
    """(deployed entry, target entry): the target is REVISION, else the newest revision before
    the deployed one that was deployed at some time (as `helm rollback` without one)."""
    deployed = next((e for e in reversed(history) if e.get("status") == "deployed"), None)
    kept = ", ".join(f"{e['revision']} ({e.get('status')}, MLflow {e.get('app_version')})"
                     for e in history)
    if deployed is None:
        raise BadFlag(f"no revision of the release is deployed (revisions: {kept})",
                      "run `mlflow-helm install` to deploy it; rollback needs a deployed "
                      "revision to compare with")
    if revision is None:
        earlier = [e for e in history if int(e["revision"]) < int(deployed["revision"])
                   and e.get("status") in SUPERSEDED_OR_DEPLOYED]
        if not earlier:
            raise BadFlag(f"revision {deployed['revision']} is the first one kept: there is "
                          "nothing to roll back to", f"revisions kept: {kept}")
        return deployed, earlier[-1]
    target = next((e for e in history if int(e["revision"]) == revision), None)
    if target is None:
        raise BadFlag(f"revision {revision} is not in the release's history",
                      f"revisions kept (helm history --max {len(history)}): {kept}")
    if int(target["revision"]) == int(deployed["revision"]):
        raise BadFlag(f"revision {revision} is the deployed one", "nothing to roll back")
    return deployed, target


def backup_named(ctx: Context, values: dict) -> str:
    """Where the backup taken before the deployed revision's migration is, as far as the
    cluster still says: the migration Job's own log line, else where such dumps go."""
    opts = ctx.opts
    backup = (values.get("migrations") or {}).get("backup") or {}
    database = values.get("database") or {}
    if database.get("type") == "cloudsql":
        named = backup.get("cloudSql") or {}
        instance = (database.get("cloudsql") or {}).get("instanceConnectionName", "")
        short = instance.split(":")[-1]
        if named.get("backupId"):
            return (f"Cloud SQL backup {named['backupId']} of instance {instance}, taken for "
                    f"MLflow {named.get('mlflowVersion')} (`gcloud sql backups restore "
                    f"{named['backupId']} --restore-instance {short}`)")
        return (f"the on-demand backup of Cloud SQL instance {instance} taken before that "
                f"upgrade (`gcloud sql backups list --instance {short}`)")
    if backup.get("enabled") is False:
        return ("no backup: the deployed revision migrated with migrations.backup.enabled="
                "false; restore one of your own")
    selector = (f"app.kubernetes.io/instance={opts.release},"
                "app.kubernetes.io/component=migrate")
    for job in ctx.kube.list_jobs(opts.namespace, selector):
        log = ctx.kube.job_logs(opts.namespace, job, "migrate", lines=400)
        found = re.findall(r"\[mlflow-db\] backup: (\S+), \d+ bytes, verified", log)
        if found:
            return f"{found[-1]} (from the log of job/{job})"
    artifacts = values.get("artifacts") or {}
    if (backup.get("destination") == "gcs"
            or (backup.get("destination", "auto") == "auto" and artifacts.get("type") == "gcs")):
        gcs = (values.get("backups") or {}).get("gcs") or {}
        bucket = gcs.get("bucket") or (artifacts.get("gcs") or {}).get("bucket", "")
        prefix = str(gcs.get("prefix", "mlflow-backups")).strip("/")
        where = f"gs://{bucket}/{prefix}/{opts.namespace}/{opts.release}/pre-migration/"
    else:
        where = "the backup volume (PersistentVolumeClaim *-backups), pre-migration/"
    return f"the newest dump in {where} (its name ends -from-<revision>.dump or .sql)"


def do_rollback(ctx: Context, revision: int | None, after_restore: bool):
    from .commands import _new_result, locked, require_installed
    from .steps.release import upgrade_timeout

    opts = ctx.opts
    require_installed(ctx, "rollback")
    history = ctx.helm.history(opts.release, opts.namespace)
    deployed, target = pick_target(history, revision)
    current_values, current_image, current = revision_mlflow(ctx, deployed)
    target_values, target_image, wanted = revision_mlflow(ctx, target)
    older = current_image != target_image and (
        version_key(wanted) is None or version_key(current) is None
        or version_key(wanted) < version_key(current))
    name = f"{opts.namespace}/{opts.release}"
    if older and not after_restore:
        said = (f"MLflow {wanted}" if version_key(wanted) else f"image {target_image}")
        raise BadFlag(
            f"rollback of {name} to revision {target['revision']} ({said}) refused: the "
            f"deployed revision {deployed['revision']} runs MLflow {current or current_image}, "
            f"whose migration may have moved the database's schema past what {said} knows. "
            "Its server and migration Job would refuse the database (\"the tracking schema is "
            "newer than this image\") and stop serving. The backup taken before that "
            f"migration: {backup_named(ctx, current_values)}",
            "restore that backup into the release's database (chart README, Backups), then "
            f"run `mlflow-helm rollback {opts.release} {target['revision']} -n {opts.namespace}"
            " --after-restore`; or roll forward with `mlflow-helm install`. Nothing was changed")
    timeout = upgrade_timeout(opts, target_values)
    result = _new_result(ctx, "rollback")
    detail = (f"revision {deployed['revision']} -> {target['revision']}: MLflow "
              f"{current or current_image} -> {wanted or target_image}")
    result.changes = [Change(UPDATE, "helm release", name, detail, step="release")]
    if opts.dry_run:
        return result
    with locked(ctx):
        ctx.say(f"  helm rollback {opts.release} {target['revision']} (up to {timeout})")
        ctx.helm.rollback(opts.release, opts.namespace, int(target["revision"]), timeout)
    return result
