"""One function per command; the click layer calls exactly one of them.

Each returns a Result: the change records and what else the user needs; output.py prints
it as text or JSON.
"""

from __future__ import annotations

import contextlib
import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from . import interrupt
from . import record as records
from .changes import CREATE, DELETE, UNCHANGED, UPDATE, Change, summary
from .context import Context
from .errors import BadFlag, HelmFailed, NotInstalled, UserError
from .preflight import preflight
from .steps.base import Step
from .steps.cloudsql import (
    DatabaseGrantStep,
    DatabaseStep,
    DatabaseUserStep,
    InstanceFlagsStep,
)
from .steps.google import (
    BucketIamStep,
    BucketStep,
    ProjectIamStep,
    ServiceAccountStep,
    WorkloadIdentityStep,
)
from .steps.kubernetes import ExternalSecretStep, NamespaceStep
from .steps.release import BackupStep, ReleaseStep
from .values import compute_values, deep_merge

# Every step, in the order plans are shown, and what each must wait for: a step starts as soon
# as the steps it needs are done (or disabled), so unrelated work never waits. A Cloud SQL
# instance runs one operation at a time; SqlAdmin queues ours, so the database and the user
# need not wait for each other here.
NEEDS: dict[type[Step], tuple[type[Step], ...]] = {
    NamespaceStep: (),
    ServiceAccountStep: (),
    BucketStep: (),
    InstanceFlagsStep: (),
    DatabaseStep: (),
    BucketIamStep: (BucketStep, ServiceAccountStep),
    WorkloadIdentityStep: (ServiceAccountStep,),
    ProjectIamStep: (ServiceAccountStep,),
    # Its password Secret lives in the namespace; an IAM user needs the IAM flag and the account.
    DatabaseUserStep: (NamespaceStep, InstanceFlagsStep, ServiceAccountStep),
    ExternalSecretStep: (NamespaceStep,),
    # A Job in the namespace whose proxy logs in with the release's Workload Identity (its
    # binding and roles), granting the IAM user; records the grant in a ConfigMap.
    DatabaseGrantStep: (DatabaseStep, DatabaseUserStep, ProjectIamStep, WorkloadIdentityStep,
                        NamespaceStep),
    # Before the release: the upgrade's migration Job must find the backup taken.
    BackupStep: (),
}
NEEDS[ReleaseStep] = tuple(NEEDS)  # the chart goes in once everything it uses exists
STEPS: list[type[Step]] = list(NEEDS)
# The chart's test pod prints "ok    <check> (<detail>) [<seconds>s]" or "FAIL  <check>: <reason>".
TEST_LINE = re.compile(r"^(ok|FAIL)\s+(.*?)(?:\s+\[[0-9.]+s\])?$")
# What `helm test --logs` prints around the pod's log (Helm 3.17.3 cmd/helm/status.go and
# pkg/action/release_testing.go GetPodLogs; the same in Helm 4.1.4 pkg/cmd, pkg/action).
TEST_SUITE = re.compile(r"^TEST SUITE:\s+(?!None$)(\S+)$", re.MULTILINE)  # or "TEST SUITE: None"
POD_LOGS = re.compile(r"^POD LOGS: (\S+)$", re.MULTILINE)
LOGS_GONE = re.compile(r"unable to get pod logs for (\S+): ")


STATE = {"create": "absent", "update": "drifted", "unchanged": "present", "delete": "present"}


@dataclass
class Result:
    command: str
    release: str
    namespace: str
    project: str = ""
    dry_run: bool = False
    changes: list[Change] = field(default_factory=list)
    values: dict = field(default_factory=dict)
    tests: dict | None = None
    notes: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    manifests: str = ""
    elapsed: float = 0.0
    # Recorded settings this run changes: (flag, recorded, new).
    settings: list[tuple] = field(default_factory=list)
    # The install record's settings as flags (empty without a record).
    recorded: list[str] = field(default_factory=list)
    # The plan was printed before applying (on_plan): the text output then sums up.
    shown: bool = False
    # Set when a signal stopped the run (see interrupted()).
    interrupted: dict | None = None

    def _change_json(self, change: Change) -> dict[str, Any]:
        out = change.to_json()
        if self.command == "status":
            out["state"] = STATE[change.action]
        return out

    def to_json(self) -> dict[str, Any]:
        out = {
            "schemaVersion": 1,
            "command": self.command,
            "release": self.release,
            "namespace": self.namespace,
            "project": self.project or None,
            "dryRun": self.dry_run,
            "changes": [self._change_json(c) for c in self.changes],
            "summary": summary(self.changes),
            "values": self.values,
            "tests": self.tests,
            "notes": self.notes,
            "nextSteps": self.next_steps,
            "settingChanges": [{"flag": f, "recorded": old, "new": new}
                               for f, old, new in self.settings],
            "recordedSettings": self.recorded,
            "elapsedSeconds": round(self.elapsed, 2),
        }
        if self.manifests:
            out["manifests"] = self.manifests
        if self.interrupted is not None:
            out["interrupted"] = {k: [c.to_json() for c in v] if isinstance(v, list) else v
                                  for k, v in self.interrupted.items()}
        return out


def _steps(ctx: Context) -> list[Step]:
    return [step for step in (cls(ctx) for cls in STEPS) if step.enabled()]


def plan_all(ctx: Context, steps: list[Step]) -> list[tuple[Step, list[Change]]]:
    """Every step's plan, all read at once; in STEPS order."""
    with ThreadPoolExecutor(max_workers=max(1, len(steps))) as pool:
        plans = list(pool.map(lambda s: s.plan(), steps))
    return list(zip(steps, plans, strict=True))


def apply_all(ctx: Context, planned: list[tuple[Step, list[Change]]],
              progress: dict | None = None) -> None:
    """Run each step once the steps it needs are done. After a failure or a signal nothing
    new starts; the steps already running finish (after a signal, at their next request or
    wait: interrupt.py), then the first error is raised, or Interrupted. `progress` gets the
    names of the steps done and of those stopped half way."""
    progress = progress if progress is not None else {}
    progress.setdefault("done", [])
    progress.setdefault("stopped", [])
    changes = dict(planned)
    enabled = {type(step) for step, _ in planned}
    waiting = [step for step, _ in planned]
    done: set[type[Step]] = set()
    running: dict[Future, Step] = {}
    errors: list[BaseException] = []

    def run(step: Step) -> float:
        began = time.monotonic()
        step.run(changes[step])
        ctx.after_apply(step.name)
        return time.monotonic() - began

    with ThreadPoolExecutor(max_workers=max(1, len(waiting))) as pool:
        while waiting or running:
            ready = [] if errors or interrupt.CANCELLED.is_set() else [
                step for step in waiting
                if all(need in done or need not in enabled for need in NEEDS[type(step)])]
            for step in ready:
                waiting.remove(step)
                running[pool.submit(run, step)] = step
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                step = running.pop(future)
                if future.exception() is not None:
                    errors.append(future.exception())
                    progress["stopped"].append(step.name)
                    continue
                done.add(type(step))
                progress["done"].append(step.name)
                if any(c.action != UNCHANGED for c in changes[step]):
                    ctx.say(f"done  {step.name} ({future.result():.1f}s)")
    if interrupt.CANCELLED.is_set():
        raise interrupt.Interrupted(interrupt.signum())
    if errors:
        raise errors[0]


def resume_command(ctx: Context) -> str:
    """What re-runs this install: the install record keeps the settings and the -f/--set
    layer, so the release, namespace and what reaches the cluster are enough."""
    import os
    import shlex

    o = ctx.opts
    parts = ["mlflow-helm", "install", o.release, "-n", o.namespace]
    # Passed as flags (from the environment, a re-run in it gets them again).
    if o.kube_context and o.kube_context != os.environ.get("HELM_KUBECONTEXT", ""):
        parts += ["--kube-context", o.kube_context]
    if o.kubeconfig and o.kubeconfig != os.environ.get("KUBECONFIG", ""):
        parts += ["--kubeconfig", o.kubeconfig]
    if o.skip_tests:
        parts.append("--skip-tests")
    return shlex.join(parts)


def interrupted(ctx: Context, result: Result, planned, progress: dict,
                exc: interrupt.Interrupted) -> None:
    """After a signal: what was applied, what was stopped half way, what never started; the
    same in the install record (`lastRun`), written as cleanup. The record was written
    before the first change (save_record), so a re-run resumes from it and converges."""
    done, stopped = set(progress.get("done", ())), set(progress.get("stopped", ()))
    report: dict[str, Any] = {"signal": exc.name, "applied": [], "stopped": [],
                              "notStarted": []}
    for step, changes in planned:
        todo = [c for c in changes if c.action != UNCHANGED]
        key = ("applied" if step.name in done else "stopped" if step.name in stopped
               else "notStarted")
        report[key] += todo
    if progress.get("testing"):
        report["stopped"].append(Change(UPDATE, "helm test", ctx.opts.release,
                                        step="release"))
    report["resume"] = resume_command(ctx)
    report["recorded"] = ctx.record is not None
    result.interrupted = report
    exc.result = result
    if ctx.record is None:
        return
    ctx.record.last_run = {
        "result": "interrupted", "signal": exc.name,
        "applied": sorted(done), "stopped": sorted(stopped),
        "notStarted": sorted(s.name for s, _ in planned
                             if s.name not in done | stopped)}
    with interrupt.shielded(15), contextlib.suppress(Exception):
        records.save(ctx.kube, ctx.opts.namespace, ctx.opts.release, ctx.record)


def reach(ctx: Context) -> list[str]:
    o = ctx.opts
    return [
        f"kubectl -n {o.namespace} port-forward svc/{o.fullname} 5000:5000",
        "open http://localhost:5000  (export MLFLOW_TRACKING_URI=http://localhost:5000)",
        f"in the cluster: http://{o.fullname}.{o.namespace}.svc.cluster.local:5000",
    ]


def _new_result(ctx: Context, command: str) -> Result:
    return Result(command, ctx.opts.release, ctx.opts.namespace, ctx.opts.project,
                  dry_run=ctx.opts.dry_run)


def from_record(ctx: Context) -> list[tuple]:
    """Read the release's install record; fill the settings the user did not pass from it,
    re-check the options, and return the passed settings that differ from it."""
    from .options import validate
    from .steps.release import chart_names

    opts = ctx.opts
    ctx.record = records.load(ctx.kube, opts.namespace, opts.release)
    changed = records.merge_settings(opts, ctx.record)
    if ctx.record is not None and not opts.gsa:
        # A release recorded before the default account name was per release keeps the
        # account it runs as: the name comes from the record, not from today's default.
        recorded = [r["name"] for r in ctx.record.resources
                    if r["kind"] == "google service account"]
        if recorded:
            opts.recorded_gsa = recorded[0]
    if ctx.record is not None:
        for derived in ("bucket_name", "bucket_path", "instance_project", "instance_region",
                        "instance_name"):
            setattr(opts, derived, "")
        opts.name_values = chart_names(opts)
        validate(opts)
    return changed


FOREIGN = ("cloud sql database", "cloud sql user", "cloud sql iam user")


def _default_account(ctx: Context, change: Change) -> bool:
    """The default-named Google service account exists but is not this release's: someone
    made it by hand or another release records it. Using it would add our Workload Identity
    binding to an account we do not own, so it needs --adopt (a --gsa the user named is that
    choice made explicitly)."""
    given = ctx.opts.given
    return change.kind == "google service account" and given is not None and \
        "gsa" not in given and not ctx.opts.gsa and not ctx.opts.recorded_gsa


def mark_ownership(ctx: Context, changes: list[Change], refuse: bool) -> None:
    """Say whose each existing resource is. A database or user that exists and is not in
    this release's record is another release's (or made by hand): using it, re-passwording
    it or owning it needs --adopt."""
    rec = ctx.record
    foreign = []
    for change in changes:
        if change.action == CREATE or change.kind not in records.TRACKED:
            continue
        origin = rec.origin(change.kind, change.name) if rec else None
        if origin:
            continue
        if (change.kind in FOREIGN or _default_account(ctx, change)) and not ctx.opts.adopt:
            foreign.append(change)
            change.detail = "; ".join(filter(None, [
                change.detail, "exists, not in this release's install record: --adopt "
                "to use it"]))
        elif change.kind in ("google service account", "gcs bucket", *FOREIGN):
            change.detail = "; ".join(filter(None, [
                change.detail, "exists, not this release's: adopted, kept on purge"]))
    if foreign and refuse:
        names = ", ".join(f"{c.kind} {c.name}" for c in foreign)
        raise BadFlag(
            f"{names} already exist(s) and are not in the install record of "
            f"{ctx.opts.namespace}/{ctx.opts.release} (another release's, or made by hand)",
            "pass --database-name/--db-user/--gsa for names of this release's own (the "
            "defaults, mlflow_NAMESPACE_RELEASE and mlflow-NAMESPACE-RELEASE, are per "
            "release), or --adopt to use them; purge never deletes what was adopted")


def do_plan(ctx: Context, command: str = "plan") -> tuple[Result, list]:
    start = getattr(ctx.say, "start", time.monotonic())  # as in _install
    changed = from_record(ctx)
    preflight(ctx)
    planned = plan_all(ctx, _steps(ctx))
    result = _new_result(ctx, command)
    result.project = ctx.opts.project
    result.settings = changed
    result.recorded = records.recorded_flags(ctx.record)
    result.changes = [c for _, changes in planned for c in changes]
    mark_ownership(ctx, result.changes, refuse=command == "install" and not ctx.opts.dry_run)
    result.values = compute_values(ctx)
    result.notes = list(ctx.facts.notes)
    result.elapsed = time.monotonic() - start
    return result, planned


def confirm_restart(ctx: Context, result: Result, confirm) -> None:
    """A flag change that restarts the Cloud SQL instance drops every connection to it (other
    applications' too): asked about on a terminal, refused without one, whatever the record
    says; --yes allows it."""
    flags = [c.name for c in result.changes if c.data.get("restart") and c.mutating]
    if not flags:
        return
    what = (f"setting {', '.join(flags)} restarts Cloud SQL instance "
            f"{ctx.facts.connection_name}: every connection to it drops for a minute or more")
    if confirm is not None:
        if not confirm(f"{what[0].upper()}{what[1:]}. Go on?"):
            raise UserError("aborted: nothing was changed",
                            "set the flag in a maintenance window, then re-run")
        return
    raise UserError(what, "pass --yes to allow the restart, or set the flag yourself in a "
                          "maintenance window (gcloud sql instances patch) and re-run")


def confirm_changes(ctx: Context, result: Result, confirm) -> None:
    """An existing release: a changed setting, or a change that updates or deletes
    something, is asked about on a terminal (`confirm`); --yes answers yes; without a
    terminal a change of where the data lives is refused."""
    opts = ctx.opts
    if opts.yes:
        return
    confirm_restart(ctx, result, confirm)
    if ctx.record is None:
        return
    touches = result.settings or any(c.action in (UPDATE, DELETE) for c in result.changes)
    if not touches:
        return
    if confirm is not None:
        if not confirm(f"Apply these changes to release {opts.namespace}/{opts.release}?"):
            raise UserError("aborted: nothing was changed", "pass --yes to skip the question")
        return
    records.refuse_unconfirmed(result.settings, opts.release, opts.namespace)


def save_record(ctx: Context, planned) -> None:
    """Write the install record before anything else changes: every resource this run will
    create is recorded as created already, so a run that crashes or is interrupted half way
    leaves a record a re-run (or a purge) trusts. An identical re-run writes nothing."""
    opts = ctx.opts
    from .steps.release import user_layer

    changes = [c for _, cs in planned for c in cs]
    # The namespace step has read the namespace already; the record goes into it, so it is
    # created here, first, and the step is told it is done.
    for c in changes:
        if c.kind == "namespace" and c.action == CREATE and not c.data.get("done"):
            ctx.kube.create_namespace(opts.namespace)
            c.data["done"] = True
    if ctx.lock is not None and not ctx.lock.held:
        ctx.lock.acquire()  # the namespace exists now; nothing else has changed yet
    opts.applied_values = user_layer(opts) or {}
    new = records.update(ctx.record, opts, changes)
    if ctx.record is not None and new.to_json() | {"updated": ""} == \
            ctx.record.to_json() | {"updated": ""}:
        return
    records.save(ctx.kube, opts.namespace, opts.release, new)
    ctx.record = new


@contextlib.contextmanager
def locked(ctx: Context):
    """Hold the release's Lease for the whole run (lock.py); reads-only runs take none."""
    from .lock import Lock

    if ctx.opts.dry_run:
        yield
        return
    ctx.lock = Lock(ctx.kube, ctx.opts.namespace, ctx.opts.release, say=ctx.say)
    ctx.lock.acquire()  # False: no namespace yet; taken once the install creates it
    try:
        yield
    finally:
        ctx.lock.release()


def do_install(ctx: Context, on_plan=None, confirm=None) -> Result:
    ctx.helm.major()  # a missing or old Helm is said first: nothing else works without it
    with locked(ctx):
        return _install(ctx, on_plan, confirm)


def _install(ctx: Context, on_plan=None, confirm=None) -> Result:
    """Preflight, plan, apply (each step once the steps it needs are done), test.

    `on_plan` sees the plan before anything changes (the CLI prints it there); `confirm`
    asks a yes/no question on a terminal (None: no terminal).
    """
    # The progress lines' clock when there is one, so "Done in" is not less than the last
    # "[  n.s]" printed before it (they count from the CLI's start: credentials, preflight).
    start = getattr(ctx.say, "start", time.monotonic())
    result, planned = do_plan(ctx, "install")
    if ctx.opts.dry_run:
        return result
    if on_plan:
        on_plan(result)
    with interrupt.raising():  # the question waits on the terminal; nothing changed yet
        confirm_changes(ctx, result, confirm)
    progress: dict = {}
    try:
        save_record(ctx, planned)
        apply_all(ctx, planned, progress)
        if not ctx.opts.skip_tests:
            progress["testing"] = True
            result.tests = run_tests(ctx)
            progress["testing"] = False
    except interrupt.Interrupted as exc:
        interrupted(ctx, result, planned, progress, exc)
        raise
    if result.tests is not None and not result.tests["passed"]:
        raise HelmFailed("helm test failed" + _failed_checks(result.tests) + ":\n"
                         + result.tests["output"],
                         tests_hint(ctx, result.tests) + "; re-run the tests with "
                         f"`mlflow-helm test {ctx.opts.release} -n {ctx.opts.namespace}`")
    result.next_steps = reach(ctx)
    result.elapsed = time.monotonic() - start
    return result


def run_tests(ctx: Context) -> dict:
    from .retry import ticking

    what = f"helm test {ctx.opts.release}"
    ctx.say(f"  {what} (up to {ctx.helm.timeout})")
    with ticking(ctx.say, what, ctx.apis.retry.report_every * 3):
        passed, output = ctx.helm.test(ctx.opts.release, ctx.opts.namespace)
    checks = []
    for line in output.splitlines():
        match = TEST_LINE.match(line.strip())
        if match:
            name, _, reason = match[2].partition(": ")
            checks.append({"check": name.strip(), "ok": match[1] == "ok",
                           "reason": reason.strip()})
    # No check line read is a failure whatever Helm's exit code: the release has no test
    # pod, or the pod printed something other than the chart's checks.
    passed = passed and bool(checks) and all(c["ok"] for c in checks)
    return {"passed": passed, "checks": checks, "output": output,
            "pods": sorted(set(TEST_SUITE.findall(output)) | set(POD_LOGS.findall(output)))}


def _failed_checks(tests: dict) -> str:
    failed = [c["check"] for c in tests["checks"] if not c["ok"]]
    if failed:
        return f" ({', '.join(failed)})"
    return "" if tests["checks"] else " (the test pod printed no check line)"


def tests_hint(ctx: Context, tests: dict) -> str:
    """Where the test pod's log is, told from what Helm printed: the chart keeps its test pod
    (`before-hook-creation` only) until the next `helm test`, so on Helm 3 and 4 alike its
    log is above and stays readable with kubectl; a pod deleted by its delete policy before
    `--logs` read it (Helm 3 with `hook-succeeded`/`hook-failed`, e.g. a release installed by
    another chart) has no log to show."""
    ns, output = ctx.opts.namespace, tests["output"]
    server = f"`kubectl -n {ns} logs deploy/{ctx.opts.fullname}` shows the server's side"
    gone = LOGS_GONE.findall(output)
    if gone:
        return (f"Helm could not read the log of test pod {gone[0]}: its "
                "helm.sh/hook-delete-policy deleted it before `helm test --logs` read it "
                "(Helm 3 deletes hook-succeeded/hook-failed pods first); upgrade the release "
                f"to this chart, whose test pod is kept until the next test; {server}")
    if not tests["pods"]:
        return ("the release ran no test pod (`tests.enabled` is false in its values?): "
                f"enable the chart's tests or pass --skip-tests; {server}")
    logs = " and ".join(f"`kubectl -n {ns} logs {pod}`" for pod in tests["pods"])
    if not tests["checks"]:
        return (f"the test pod's output above has no `ok`/`FAIL` line, so nothing was "
                f"checked: is the test command overridden? {logs} shows it again; {server}")
    return (f"the test pod's log is above (POD LOGS); the pod is kept until the next test, "
            f"so {logs} shows it again; {server}")


def require_installed(ctx: Context, command: str) -> None:
    """`status` and `test` of a release that is not there say so and fail (exit 6), rather
    than report a plan or a Helm error."""
    opts = ctx.opts
    ctx.helm.major()
    if ctx.helm.release(opts.release, opts.namespace) is not None:
        return
    hint = (f"`mlflow-helm install {opts.release} -n {opts.namespace}` installs it; "
            "`helm list -A` lists the releases there are")
    if records.load(ctx.kube, opts.namespace, opts.release) is not None:
        hint = (f"its install record is still there (uninstalled without --purge): "
                f"`mlflow-helm install {opts.release} -n {opts.namespace}` reinstalls it with "
                "the recorded settings, `mlflow-helm uninstall --purge` deletes what it kept")
    raise NotInstalled(f"{command}: release {opts.release} is not installed in namespace "
                       f"{opts.namespace}", hint)


def do_test(ctx: Context) -> Result:
    require_installed(ctx, "test")
    result = _new_result(ctx, "test")
    result.tests = run_tests(ctx)
    if not result.tests["passed"]:
        raise HelmFailed(
            "helm test failed" + _failed_checks(result.tests) + ":\n" + result.tests["output"],
            tests_hint(ctx, result.tests) + "; `mlflow-helm status` shows drifted resources")
    return result


def do_status(ctx: Context) -> Result:
    """The plan's reads, told as state: create = absent, update = drifted, else present."""
    require_installed(ctx, "status")
    result, _ = do_plan(ctx, "status")
    result.next_steps = reach(ctx)
    return result


def do_render(ctx: Context, create_secrets: bool = False) -> Result:
    """The manifests for GitOps: the same bytes on every run for the same inputs.

    The Secrets the chart would otherwise generate on each render (see gitops.py) are named
    instead; `create_secrets` creates the missing ones in the cluster first, else a note says
    which the manifests need.
    """
    from .gitops import ensure_secrets, generated_secrets, secret_values
    from .steps.release import chart_ref

    preflight(ctx, cluster=create_secrets)
    opts = ctx.opts
    result = _new_result(ctx, "render")
    computed = compute_values(ctx)
    secrets = generated_secrets(opts, computed)
    result.values = deep_merge(computed, secret_values(secrets))
    if create_secrets and secrets:
        result.changes = ensure_secrets(ctx.kube, opts, secrets)
    elif secrets:
        listed = "; ".join(f"{s.name} ({s.purpose}; keys {', '.join(s.keys)})" for s in secrets)
        result.notes.append(
            f"the manifests read Secrets that must exist in namespace {opts.namespace} before "
            f"they are applied: {listed}. `mlflow-helm render --create-secrets` creates the "
            "missing ones once (generated, never changed afterwards); or create them with your "
            "secret manager")
    if opts.database in ("cloudsql", "external") and not opts.local and not opts.iam_db_auth:
        result.notes.append(
            f"the database Secret {opts.namespace}/{opts.db_secret_name} is written by "
            "`mlflow-helm install`; with GitOps, run it once or create the Secret yourself")
    if opts.database == "cloudsql" and not ctx.facts.cloudsql_backup:
        result.notes.append(
            "the migration Job migrates a database that holds data only after an on-demand "
            "backup taken for its MLflow version: with GitOps, in the change that changes the "
            "image, run `gcloud sql backups create --instance INSTANCE` and set "
            "migrations.backup.cloudSql.backupId and mlflowVersion (chart README, Backups)")
    chart, version = chart_ref(opts)
    result.manifests = ctx.helm.template(
        opts.release, chart, result.values, namespace=opts.namespace,
        values_files=opts.values_files, set_values=opts.helm_sets,
        version=version if opts.chart else "")
    return result


def do_uninstall(ctx: Context, purge: bool, confirm, on_plan=None,
                 delete_artifacts: bool = False) -> Result:
    with locked(ctx):
        return _uninstall(ctx, purge, confirm, on_plan, delete_artifacts)


def _uninstall(ctx: Context, purge: bool, confirm, on_plan=None,
               delete_artifacts: bool = False) -> Result:
    """Remove the release. The install record says what else is its own: plain uninstall
    lists what is kept (what really exists); purge (confirmed) deletes what this release
    created and nothing it adopted (purge.py)."""
    from . import purge as purging

    opts = ctx.opts
    ctx.helm.major()
    from_record(ctx)
    if not opts.local:
        from .options import infer_from_context

        infer_from_context(opts, ctx.kube.current_context())
    result = _new_result(ctx, "uninstall")
    name = f"{opts.namespace}/{opts.release}"
    release = Change(DELETE, "helm release", name, step="release")
    installed = ctx.helm.release(opts.release, opts.namespace) is not None
    if not installed:
        release.action, release.detail = UNCHANGED, "not installed"
    result.changes.append(release)
    items = purging.inventory(ctx, delete_artifacts=delete_artifacts, strict=purge)
    if purge:
        planned = purging.plan(items)
        result.changes.extend(planned)
        note = purging.kept_note(items, True, ctx.record is not None)
        if ctx.record is None:
            note = "\n".join(filter(None, [note, (
                "no install record for this release: nothing in Google Cloud is known to be "
                "its own, so purge deletes none of it")]))
        if note:
            result.notes.append(note)
        if opts.dry_run:
            return result
        if on_plan:
            on_plan(result)
            result.shown = True
        if planned and not opts.yes and not confirm(
                f"Delete {'the release and ' if installed else ''}the {len(planned)} "
                "resource(s) listed above? Their data will be lost."):
            raise UserError("aborted: nothing was deleted", "pass --yes to skip the question")
    else:
        result.notes.append(purging.kept_note(items, False, ctx.record is not None))
        if opts.dry_run:
            return result
    if installed:
        ctx.helm.uninstall(opts.release, opts.namespace)
    if purge:
        result.changes[1:] = purging.run(ctx, items)
    return result
