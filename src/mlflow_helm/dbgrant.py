"""The one-time grant that lets a Cloud SQL IAM database user use MLflow's database.

Why: Cloud SQL creates IAM users with no privileges. On PostgreSQL a database made through
the Admin API is owned by `cloudsqlsuperuser`, and since PostgreSQL 15 the `public` schema
grants CREATE to nobody but its owner, so `mlflow db upgrade` as the IAM user fails with
"permission denied for schema public". On MySQL a new IAM user has no privileges on any
database until granted ("Log in using IAM database authentication"), so the migration fails
with "access denied".

How: the Admin API cannot issue SQL, and the instance's private IP is reachable from the
cluster, not from the operator's machine. So, for the few seconds it takes, the CLI
1. creates a temporary built-in user `mlflow-helm-grant` with a random password that meets
   the instance's password policy (Cloud SQL makes built-in users members of
   `cloudsqlsuperuser`, which may grant on the database);
2. puts the password in a Secret and runs the chart's grant Job (templates/job-db-grant.yaml,
   rendered by `helm template` with the release's own values): the migration Job's pod, with
   the Cloud SQL Auth Proxy as a native sidecar, running db.py `grant` (the statements, with
   lock and statement timeouts, are in charts/mlflow/files/db.py). The release's
   ServiceAccount is created first when it does not exist yet, marked for Helm to adopt;
3. waits for the Job, and reports the pod's log when it fails;
4. deletes the Job (and its pod), the Secret and the temporary user, whatever happened: on
   an error, and after Ctrl-C or SIGTERM too (interrupt.py: the deletions run as cleanup).
A ConfigMap records the grant (steps/cloudsql.py), so a re-run does none of this.
Grants are idempotent; running them twice is harmless. Nothing here prints the password.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from . import interrupt
from .errors import UserError

GRANT_USER = "mlflow-helm-grant"
PASSWORD_KEY = "password"
ROLE_LABEL = "mlflow-helm/role"
# Helm adopts an object that carries these (Helm 3.2 and later, both majors): the release's
# ServiceAccount, made before the release so that the grant Job can run as it.
HELM_OWNED = ("app.kubernetes.io/managed-by", "Helm")


def grant_secret_name(opts) -> str:
    return f"{opts.fullname[:52].rstrip('-')}-db-grant"


@contextlib.contextmanager
def temporary_admin(ctx) -> Iterator[str]:
    """A built-in user that exists only while the grant runs; yields its password."""
    from .gcp import not_found
    from .steps.cloudsql import new_password

    project, instance = ctx.instance_project, ctx.opts.instance_name
    policy = (ctx.facts.instance.get("settings") or {}).get("passwordValidationPolicy")
    password = new_password(policy=policy, user=GRANT_USER)
    hosts = {u.get("name"): u.get("host") for u in ctx.sql.list_users(project, instance)}
    host = hosts.get(GRANT_USER)
    interrupt.check()
    # From here on the user may exist (an interrupted wait leaves the operation running on
    # the instance), so it is deleted whatever happens next.
    try:
        if GRANT_USER in hosts:  # left over by a crashed run: take it over, new password
            ctx.sql.set_password(project, instance, GRANT_USER, password, host)
        else:
            ctx.sql.create_user(project, instance, GRANT_USER, "BUILT_IN", password)
            host = "%" if ctx.facts.engine == "mysql" else None
        yield password
    finally:
        # Cleanup, after a signal too: waits for an operation still running on the instance
        # (users.delete answers 409 until it is done), then deletes.
        with interrupt.shielded():
            try:
                ctx.sql.delete_user(project, instance, GRANT_USER, host)
                ctx.say(f"  deleted the temporary database user {GRANT_USER}")
            except Exception as exc:
                if not_found(exc):  # never created: the signal came first
                    pass
                elif interrupt.CANCELLED.is_set():  # say so; the signal's report follows
                    ctx.say(f"  warning: could not delete the temporary database user "
                            f"{GRANT_USER} ({exc}); the next run removes it")
                else:
                    raise


def render_grant(ctx, secret: str) -> tuple[dict, dict | None]:
    """The chart's grant Job and ServiceAccount, rendered with the release's values (so the
    image, pull secrets, scheduling and proxy settings are the release's)."""
    import yaml

    from .steps.release import chart_ref
    from .values import compute_values, deep_merge

    opts = ctx.opts
    values = deep_merge(compute_values(ctx), {"database": {"cloudsql": {"grant": {
        "secretName": secret, "adminUser": GRANT_USER}}}})
    files, sets = opts.values_files, opts.helm_sets
    if opts.recorded_values is not None:  # a re-run: the recorded layer, as for the release
        values, files, sets = deep_merge(values, opts.recorded_values), [], []
    chart, version = chart_ref(opts)
    out = ctx.helm.template(opts.release, chart, values, namespace=opts.namespace,
                            values_files=files, set_values=sets,
                            version=version if opts.chart else "")
    docs = [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]
    job = next((d for d in docs if d.get("kind") == "Job" and
                (d["metadata"].get("labels") or {}).get(ROLE_LABEL) == "db-grant"), None)
    if job is None:
        raise UserError(f"chart {chart} has no grant Job (templates/job-db-grant.yaml)",
                        "use a chart version that has one, or grant by hand")
    account = next((d for d in docs if d.get("kind") == "ServiceAccount"), None)
    return job, account


def ensure_service_account(ctx, job: dict, account: dict | None) -> None:
    """The Job runs as the release's ServiceAccount (its Workload Identity reaches Cloud SQL).
    On a first install it does not exist yet: made here as the chart renders it, with the
    marks Helm adopts it by. With serviceAccount.create=false it must exist already."""
    ns = ctx.opts.namespace
    name = job["spec"]["template"]["spec"].get("serviceAccountName", "default")
    if ctx.kube.get_service_account(ns, name) is not None:
        return
    if account is None or account["metadata"]["name"] != name:
        raise UserError(f"ServiceAccount {ns}/{name} does not exist (serviceAccount.create is "
                        "false)", "create it, annotated iam.gke.io/gcp-service-account, "
                                  "then re-run")
    body = {k: v for k, v in account.items() if k != "status"}
    meta = body["metadata"]
    meta["labels"] = {**(meta.get("labels") or {}), HELM_OWNED[0]: HELM_OWNED[1]}
    meta["annotations"] = {**(meta.get("annotations") or {}),
                           "meta.helm.sh/release-name": ctx.opts.release,
                           "meta.helm.sh/release-namespace": ns}
    ctx.kube.create_service_account(ns, body)


def _outcome(job: dict) -> str | None:
    """"Complete", "Failed", or None while it runs (batch/v1 JobStatus.conditions)."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond["type"]
    return None


def wait_for_job(ctx, job: dict) -> None:
    ns, name = ctx.opts.namespace, job["metadata"]["name"]
    deadline = time.monotonic() + int(job["spec"].get("activeDeadlineSeconds") or 300) + 60
    delay, reported = 0.2, time.monotonic()
    while True:
        current = ctx.kube.get_job(ns, name)
        outcome = _outcome(current or {})
        if outcome == "Complete":
            return
        if outcome == "Failed" or current is None or time.monotonic() > deadline:
            log = ctx.kube.job_logs(ns, name, "grant").strip()
            why = "did not finish in time" if outcome is None else "failed"
            raise UserError(
                f"the grant Job {ns}/{name} {why}" + (f":\n{log}" if log else ""),
                f"its pod's events say more (kubectl -n {ns} describe job {name}, while it "
                "runs); re-run once fixed: the temporary user and Secret were removed")
        if time.monotonic() - reported >= ctx.apis.retry.report_every:
            ctx.say(f"  … waiting for the grant Job {ns}/{name}")
            reported = time.monotonic()
        interrupt.sleep(delay)
        delay = min(delay * 2, 2.0)


def run_grant(ctx) -> None:
    opts = ctx.opts
    ns, owner = opts.namespace, ctx.iam_db_user
    secret = grant_secret_name(opts)
    job, account = render_grant(ctx, secret)  # before any change: a chart error stops here
    name = job["metadata"]["name"]
    ctx.say(f"  granting {owner} the use of database {opts.database_name} (Job {ns}/{name})")
    labels = {"app.kubernetes.io/instance": opts.release, ROLE_LABEL: "db-grant"}
    with temporary_admin(ctx) as password:
        try:
            ensure_service_account(ctx, job, account)
            ctx.kube.put_secret(ns, secret, {PASSWORD_KEY: password}, labels)
            if not ctx.kube.create_job(ns, job):  # left over by a crashed run
                ctx.kube.delete_job(ns, name)
                _create_after_delete(ctx, job)
            wait_for_job(ctx, job)
        finally:
            with interrupt.shielded():
                ctx.kube.delete_job(ns, name)
                ctx.kube.delete_secret(ns, secret)


def _create_after_delete(ctx, job: dict) -> None:
    """A deleted Job lingers while its pods are removed: retry the create for a while."""
    deadline = time.monotonic() + 60
    while not ctx.kube.create_job(ctx.opts.namespace, job):
        if time.monotonic() > deadline:
            raise UserError(f"an earlier grant Job {job['metadata']['name']} is still being "
                            "deleted", "re-run in a minute")
        interrupt.sleep(1)
