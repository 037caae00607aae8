"""A `helm` stand-in for the calls that need a live cluster: upgrade --install, test, status, get,
history, rollback, uninstall. It records each call (argv, values on stdin) as a JSON line,
keeps release state (and the kept revisions) in a JSON file, and proves every upgrade is one
the real Helm accepts. With Helm 4, the same argv (flags included) and values run through the
real `helm upgrade --dry-run=client` against the fake Kubernetes API; Helm 3's dry run needs
API discovery the fake does not serve, so there the chart is rendered with `helm template` and
the same values. Everything else (version, template, lint, package, push) is the real Helm.

`test` runs the release's test hooks as the real major does (see `run_tests`): delete
policies are honoured and the pods kept next to the state file, so `--logs` fails where the real
Helm's does.

Environment: REAL_HELM (path), HELM_RECORD (jsonl log), HELM_STATE (json state file),
HELM_TEST_RESULT (pass | fail | silent: what the test pod does, see `test_pod_log`),
HELM_MIGRATION_RESULT (fail: the migration Job fails, see `fail_migration`),
HELM_UPGRADE_SECONDS (an upgrade takes this long, as one waiting for pods does; SIGINT or
SIGTERM in that time cancels it as Helm does, see `slow_upgrade`). Each recorded call carries
the stand-in's pid and its start on the system's monotonic clock (`t`, comparable with
time.monotonic() in the tests and the fakes).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

LIVE = {"upgrade", "test", "status", "uninstall", "get", "install", "history", "rollback"}


def write_stand_in(helm: Path) -> Path:
    """Write the `helm` executable the CLI is pointed at (HELM_BIN): the commands that need a
    cluster run this recorder, the rest the real Helm at $REAL_HELM.

    The real Helm runs under this script's name (`exec -a`): Helm gives plugins
    HELM_BIN=os.Args[0] (pkg/cli/environment.go, Helm 3.17.3 and 4.1.4), so
    `<stand-in> mlflow-gcp install` reaches this stand-in again for the live calls."""
    helm.parent.mkdir(parents=True, exist_ok=True)
    helm.write_text(
        "#!/bin/bash\n"
        f'case "$1" in {"|".join(sorted(LIVE))}) '
        f'exec "{sys.executable}" "{Path(__file__).resolve()}" "$@";; esac\n'
        'exec -a "$0" "$REAL_HELM" "$@"\n')
    helm.chmod(0o755)
    return helm


def flag_values(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]


USER_VALUE_FLAGS = ("--values", "--set", "--set-string", "--set-json", "--set-file")


def user_value_args(argv: list[str]) -> list[str]:
    """The -f/--set* arguments of a Helm command line, in order."""
    return [x for i, a in enumerate(argv[:-1]) if a in USER_VALUE_FLAGS for x in (a, argv[i + 1])]


def supplied_values(real: str, argv: list[str], stdin: str, defaults: Path | None = None) -> dict:
    """What `helm get values` would return after this upgrade: the user-supplied values as
    the real Helm merges them (-f in order, then --set-json, --set, --set-string,
    --set-file), read back by rendering a chart with no defaults whose one template is
    `toJson .Values`. No model of strvals of our own. With `defaults` (a chart's values.yaml)
    as that chart's own values: `helm get values --all`, coalesced by the real Helm too."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "values-dump"
        (chart / "templates").mkdir(parents=True)
        if defaults is not None and defaults.exists():
            shutil.copy(defaults, chart / "values.yaml")
        (chart / "Chart.yaml").write_text("apiVersion: v2\nname: values-dump\nversion: 0.1.0\n")
        (chart / "templates" / "values.yaml").write_text("{{ toJson .Values }}\n")
        out = subprocess.run([real, "template", "dump", str(chart), *user_value_args(argv)],
                             input=stdin.encode(), capture_output=True, check=True).stdout
    text = out.decode().split("values.yaml\n", 1)[1]
    return json.loads(text)


def fail_migration(argv: list[str], ns: str, name: str, docs: list[dict], helm4: bool) -> int:
    """HELM_MIGRATION_RESULT=fail: the upgrade's migration Job fails and Helm rolls back.

    The rendered migration Job is created in the fake Kubernetes API, whose job runner (the
    test's) fails it; Helm's --wait-for-jobs sees it failed, the rollback (--atomic /
    --rollback-on-failure) deletes it with its pods a moment later, and Helm exits 1 with its
    own words: "job is failed: NS/NAME" (Helm 3.17.3 pkg/kube/ready.go) or "resource
    Job/NS/NAME not ready. status: Failed, message: ..." (Helm 4.1.4 pkg/kube/statuswait.go,
    the condition's message as the Job controller writes it), inside "release NAME failed, and
    has been rolled back due to atomic being set" / "... rollback-on-failure being set"
    (pkg/action/upgrade.go). The release state stays as it was: the rollback restored it."""
    import urllib.error
    import urllib.request

    job = next(d for d in docs if d.get("kind") == "Job" and
               d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "migrate")
    job_name = job["metadata"]["name"]
    kubeconfig = (flag_values(argv, "--kubeconfig") or [os.environ["KUBECONFIG"]])[0]
    server = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    base = f"{server}/apis/batch/v1/namespaces/{ns}/jobs"

    def call(method: str, url: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            url, json.dumps(body).encode() if body is not None else None, method=method,
            headers={"Content-Type": "application/json", "Authorization": "Bearer fake-token"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    # The release's ServiceAccount first, as Helm applies it: the Job's pod runs as it.
    for account in (d for d in docs if d.get("kind") == "ServiceAccount"):
        try:
            call("POST", f"{server}/api/v1/namespaces/{ns}/serviceaccounts", account)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise
    call("POST", base, job)
    deadline = time.monotonic() + float(os.environ.get("HELM_MIGRATION_FAIL_WAIT", "10"))
    while not call("GET", f"{base}/{job_name}").get("status", {}).get("failed"):
        if time.monotonic() > deadline:
            print("helm_recorder: the migration Job did not fail", file=sys.stderr)
            return 2
        time.sleep(0.05)
    time.sleep(float(os.environ.get("HELM_MIGRATION_FAILED_FOR", "2.5")))  # Helm notices
    call("DELETE", f"{base}/{job_name}", {"kind": "DeleteOptions", "apiVersion": "v1",
                                          "propagationPolicy": "Background"})
    if helm4:
        why = (f"rollback-on-failure being set: resource Job/{ns}/{job_name} not ready. "
               "status: Failed, message: Job has reached the specified backoff limit")
    else:
        why = f"atomic being set: job is failed: {ns}/{job_name}"
    print(f"Error: UPGRADE FAILED: release {name} failed, and has been rolled back due to {why}",
          file=sys.stderr)
    return 1


def major(real: str) -> int:
    version = subprocess.run([real, "version", "--template", "{{ .Version }}"],
                             capture_output=True, text=True, check=True).stdout
    return int(version.lstrip("v").split(".")[0])


def hook_events(doc: dict) -> list[str]:
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    return [e.strip() for e in annotations.get("helm.sh/hook", "").split(",") if e.strip()]


def test_hooks(docs: list[dict]) -> list[dict]:
    """The release's `helm.sh/hook: test` objects as Helm records them: name, kind, weight
    and delete policies (Helm 3.17.3 pkg/release/hook.go, pkg/releaseutil/manifest_sorter.go;
    the same in Helm 4.1.4 pkg/release/v1)."""
    hooks = []
    for doc in docs:
        if "test" not in hook_events(doc):
            continue
        annotations = doc["metadata"].get("annotations") or {}
        policies = [p.strip() for p in
                    annotations.get("helm.sh/hook-delete-policy", "").split(",") if p.strip()]
        hooks.append({"name": doc["metadata"]["name"], "kind": doc["kind"],
                      "weight": int(annotations.get("helm.sh/hook-weight", "0") or 0),
                      "delete_policies": policies})
    return hooks


def test_pod_log(release: str, ns: str, result: str) -> str:
    """What the chart's own test pod prints (charts/mlflow/files/helm_test.py) for
    HELM_TEST_RESULT: pass, fail (the artifact check fails), silent (the pod exits 0 without
    printing a check, as a replaced command or an unrelated image would)."""
    if result == "silent":
        return ""
    ok = result == "pass"
    lines = [f"MLflow helm test against http://{release}.{ns}.svc.cluster.local:5000",
             "ok    health [0.01s]", "ok    version (3.17.2) [0.02s]",
             f"ok    host check (Host {release}.{ns}.svc.cluster.local:5000 accepted) [0.03s]",
             "ok    create experiment (helm-test-4f1c2a9b7e3d, id 1) [0.05s]",
             "ok    create run (9b2e6f0c1d4a4e6f8a7b3c5d2e1f0a9b) [0.04s]",
             "ok    log param and metric [0.06s]", "ok    read run back [0.02s]"]
    if ok:
        lines += ["ok    artifact upload, download, delete (57 bytes) [0.21s]",
                  "ok    clean up [0.04s]", "helm test passed"]
    else:
        lines += ["FAIL  artifact upload, download, delete: upload of "
                  "1/9b2e6f0c1d4a4e6f8a7b3c5d2e1f0a9b/artifacts/helm-test/hello.txt returned "
                  "HTTP 500: Internal Server Error. The "
                  "server could not use its artifact store gs://acme-mlflow-artifacts: check "
                  "that the GCS bucket exists and the server's Google service account may "
                  "write to it", "helm test FAILED"]
    return "\n".join(lines) + "\n"


def run_tests(argv: list[str], ns: str, state: dict, pods: dict, helm_major: int) -> int:
    """`helm test RELEASE [--logs]` as each major runs it, with the test pods kept in
    `pods` (a file next to the state) so delete policies carry from one run to the next.

    Both majors (Helm 3.17.3 pkg/action/hooks.go execHook; Helm 4.1.4 pkg/action/hooks.go
    execHookWithDelayedShutdown) run the test hooks in (weight, name) order, give a hook
    without a policy `before-hook-creation`, delete by that policy before creating, and on a
    failure stop and delete the failed hook if it says `hook-failed`. The difference is
    when: Helm 3 deletes `hook-succeeded`/`hook-failed` hooks inside the run, before
    cmd/helm/release_testing.go calls GetPodLogs for `--logs`, so those logs fail with the
    API server's NotFound ("unable to get pod logs for X: pods "X" not found") and that
    error replaces the run's; Helm 4 returns the deletions as a shutdown function that
    pkg/cmd/release_testing.go defers until after GetPodLogs, and joins a logs error to
    the run's (errors.Join).
    """
    name = argv[1]
    release = state.get(f"{ns}/{name}")
    if release is None:
        print("Error: release: not found", file=sys.stderr)
        return 1
    result = os.environ.get("HELM_TEST_RESULT", "pass")
    hooks = sorted(release.get("test_hooks", []), key=lambda h: (h["weight"], h["name"]))
    ran: list[dict] = []
    run_error = ""
    deferred: list[tuple[dict, str]] = []  # Helm 4: (hook, policy) deleted after the logs

    def delete(hook: dict, policy: str) -> None:
        if policy in (hook["delete_policies"] or ["before-hook-creation"]):
            pods.pop(f"{ns}/{hook['name']}", None)

    for hook in hooks:
        delete(hook, "before-hook-creation")
        key = f"{ns}/{hook['name']}"
        ran.append(hook)
        if key in pods:  # no before-hook-creation and the last run's object is still there
            hook["phase"] = "Failed"
            run_error = (f"warning: Hook test {hook['name']} failed: pods \"{hook['name']}\" "
                         "already exists")
            break
        ok = result != "fail"
        pods[key] = {"phase": "Succeeded" if ok else "Failed",
                     "log": test_pod_log(name, ns, result)}
        hook["phase"] = pods[key]["phase"]
        if not ok:
            # Helm 3: go-multierror from pkg/kube/client.go waitForPodSuccess; Helm 4: the
            # status watcher's message (pkg/kube/statuswait.go wait, pod_status_reader.go).
            run_error = (f"1 error occurred:\n\t* pod {hook['name']} failed\n"
                         if helm_major < 4 else
                         f"resource Pod/{ns}/{hook['name']} not ready. status: Failed, "
                         f"message: pod {hook['name']} failed")
            if helm_major < 4:
                delete(hook, "hook-failed")
            else:
                deferred.append((hook, "hook-failed"))
                deferred += [(h, "hook-succeeded") for h in ran[:-1]]
            break
    else:
        for hook in reversed(ran):
            if helm_major < 4:
                delete(hook, "hook-succeeded")
            else:
                deferred.append((hook, "hook-succeeded"))

    out = [f"NAME: {name}", "LAST DEPLOYED: Thu Jan  1 00:00:00 2026", f"NAMESPACE: {ns}",
           "STATUS: deployed", f"REVISION: {release['revision']}"]
    if not ran:
        out.append("TEST SUITE: None")
    for hook in ran:
        out += [f"TEST SUITE:     {hook['name']}", "Last Started:   Thu Jan  1 00:00:01 2026",
                "Last Completed: Thu Jan  1 00:00:09 2026", f"Phase:          {hook['phase']}"]
    error = run_error
    if "--logs" in argv:
        out.append("")
        for hook in hooks:
            pod = pods.get(f"{ns}/{hook['name']}")
            if pod is None:
                logs_error = (f"unable to get pod logs for {hook['name']}: "
                              f"pods \"{hook['name']}\" not found")
                error = logs_error if helm_major < 4 else "\n".join(
                    e for e in (run_error, logs_error) if e)
                break
            out += [f"POD LOGS: {hook['name']}", pod["log"]]
    for hook, policy in deferred:
        delete(hook, policy)
    sys.stdout.write("\n".join(out) + "\n")
    if error:
        sys.stderr.write(f"Error: {error}\n")
        return 1
    return 0


def main() -> int:
    argv = sys.argv[1:]
    real = os.environ["REAL_HELM"]
    if not argv or argv[0] not in LIVE:
        os.execv(real, [real, *argv])
    stdin = sys.stdin.read() if "-" in flag_values(argv, "--values") else ""
    record = Path(os.environ["HELM_RECORD"])
    state_path = Path(os.environ["HELM_STATE"])
    with open(str(state_path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        # The cluster's test pods, apart from Helm's releases: Helm leaves hook objects
        # behind on uninstall, so they outlive the release.
        pods_path = pods_file(state_path)
        pods = json.loads(pods_path.read_text()) if pods_path.exists() else {}
        with record.open("a") as log:
            log.write(json.dumps({"argv": argv, "stdin": stdin, "pid": os.getpid(),
                                  "t": time.monotonic()}) + "\n")
        if argv[0] == "upgrade" and os.environ.get("HELM_UPGRADE_SECONDS"):
            slow_upgrade(argv[1], float(os.environ["HELM_UPGRADE_SECONDS"]))
        code = handle(argv, stdin, state, pods, real)
        state_path.write_text(json.dumps(state))
        pods_path.write_text(json.dumps(pods))
    return code


def slow_upgrade(release: str, seconds: float) -> None:
    """Wait as `helm upgrade --wait` does; a signal meanwhile cancels it as Helm does: its
    install and upgrade commands catch SIGINT and SIGTERM, print "Release NAME has been
    cancelled." and cancel the action's context (Helm 3.17.3 cmd/helm/upgrade.go, 4.1.4
    pkg/cmd/upgrade.go), and the action fails with "context canceled"; with --atomic /
    --rollback-on-failure a first install is removed, so here the state is left as it was."""
    def cancel(_signum, _frame):
        print(f"Release {release} has been cancelled.")
        sys.stderr.write("Error: UPGRADE FAILED: context canceled\n")
        sys.stdout.flush()
        os._exit(1)

    signal.signal(signal.SIGINT, cancel)
    signal.signal(signal.SIGTERM, cancel)
    time.sleep(seconds)


def pods_file(state_path: Path) -> Path:
    """Where the stand-in keeps the test pods ("ns/name": phase and log) next to HELM_STATE."""
    return Path(str(state_path) + ".pods")


def handle(argv: list[str], stdin: str, state: dict, pods: dict, real: str) -> int:
    ns = (flag_values(argv, "--namespace") or ["default"])[0]
    cmd = argv[0]
    if cmd == "get":
        release = state.get(f"{ns}/{argv[2]}")
        if release is None:
            print("Error: release: not found", file=sys.stderr)
            return 1
        revisions = [release, *release.get("history", [])]
        wanted = flag_values(argv, "--revision")
        if wanted:
            found = [r for r in revisions if str(r["revision"]) == wanted[0]]
            if not found:
                print("Error: release: not found", file=sys.stderr)
                return 1
            release = found[0]
        if argv[1] == "metadata":
            print(json.dumps({k: release[k] for k in ("name", "chart", "version", "appVersion",
                                                       "namespace", "revision", "status")}))
        elif "--all" in argv:
            print(json.dumps(release.get("computed", release["values"])))
        else:
            print(json.dumps(release["values"]))
        return 0
    if cmd == "history":
        release = state.get(f"{ns}/{argv[1]}")
        if release is None:
            print("Error: release: not found", file=sys.stderr)
            return 1
        # Helm 3.17.3 cmd/helm/history.go and 4.1.4 pkg/cmd/history.go: releaseInfo, oldest
        # first, chart as NAME-VERSION.
        entries = sorted([release, *release.get("history", [])], key=lambda r: r["revision"])
        print(json.dumps([{"revision": r["revision"], "updated": "2026-01-01T00:00:00Z",
                           "status": r["status"], "chart": f"{r['chart']}-{r['version']}",
                           "app_version": r["appVersion"],
                           "description": r.get("description", "Upgrade complete")}
                          for r in entries]))
        return 0
    if cmd == "rollback":
        key = f"{ns}/{argv[1]}"
        release = state.get(key)
        if release is None:
            print("Error: release: not found", file=sys.stderr)
            return 1
        older = release.pop("history", [])
        target_rev = int(argv[2]) if len(argv) > 2 and argv[2].isdigit() else \
            release["revision"] - 1
        target = next((r for r in older if r["revision"] == target_rev), None)
        if target is None:
            print(f'Error: release has no {target_rev} version', file=sys.stderr)
            return 1
        # pkg/action/rollback.go (both majors): a new revision, a copy of the target's
        # chart and values, "Rollback to N"; the deployed one becomes superseded.
        release["status"] = "superseded"
        state[key] = {**target, "revision": release["revision"] + 1, "status": "deployed",
                      "description": f"Rollback to {target_rev}",
                      "history": [*older, release]}
        print("Rollback was a success! Happy Helming!")
        return 0
    if cmd == "upgrade":
        name, chart = argv[1], argv[2]
        helm4 = major(real) >= 4
        if helm4:
            check = [real, *argv, "--dry-run=client", "--disable-openapi-validation"]
        else:
            check = [real, "template", name, chart, "--namespace", ns, *user_value_args(argv)]
            for v in flag_values(argv, "--version"):
                check += ["--version", v]
        checked = subprocess.run(check, input=stdin.encode(), capture_output=True)
        if checked.returncode:
            sys.stderr.write(checked.stderr.decode())
            return 1
        out = checked.stdout
        if helm4:
            # Helm 4's release JSON keeps hooks apart from the manifest; `helm template`
            # (Helm 3 here) prints them inline, annotated.
            rendered = json.loads(out[out.index(b"{"):])
            manifest = rendered.get("manifest", "")
            hooks = [h.get("manifest", "") for h in rendered.get("hooks") or []]
        else:
            manifest, hooks = out.decode(), []
        docs = [d for text in (manifest, *hooks) for d in yaml.safe_load_all(text) if d]
        if os.environ.get("HELM_MIGRATION_RESULT") == "fail":
            return fail_migration(argv, ns, name, docs, helm4)
        values = supplied_values(real, argv, stdin)
        meta = yaml.safe_load((Path(chart) / "Chart.yaml").read_text()) if Path(
            chart).is_dir() else {"name": "mlflow", "version": "0.0.0", "appVersion": ""}
        key = f"{ns}/{name}"
        previous = state.get(key)
        revision = (previous or {}).get("revision", 0) + 1
        history = []
        if previous is not None:
            history = previous.pop("history", [])
            previous["status"] = "superseded"
            history.append(previous)
        state[key] = {"name": name, "chart": meta["name"], "version": str(meta["version"]),
                      "appVersion": str(meta.get("appVersion", "")), "namespace": ns,
                      "revision": revision, "status": "deployed", "values": values,
                      "computed": supplied_values(real, argv, stdin,
                                                  Path(chart) / "values.yaml"),
                      "description": "Install complete" if revision == 1
                      else "Upgrade complete",
                      "manifest_objects": sum(1 for d in docs if not hook_events(d)),
                      "test_hooks": test_hooks(docs),
                      "history": history[-9:]}  # --history-max 10
        print(json.dumps({"name": name, "namespace": ns, "version": revision,
                          "info": {"status": "deployed"}}))
        return 0
    if cmd == "test":
        return run_tests(argv, ns, state, pods, major(real))
    if cmd == "status":
        release = state.get(f"{ns}/{argv[1]}")
        if release is None:
            print("Error: release: not found", file=sys.stderr)
            return 1
        print(json.dumps({"name": argv[1], "namespace": ns, "version": release["revision"],
                          "info": {"status": release["status"]}}))
        return 0
    if cmd == "uninstall":
        if state.pop(f"{ns}/{argv[1]}", None) is None:
            print(f"Error: uninstall: Release not loaded: {argv[1]}: release: not found",
                  file=sys.stderr)
            return 1
        print(f'release "{argv[1]}" uninstalled')
        return 0
    print(f"helm_recorder: unsupported {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    # Run as a script, this directory is first on sys.path, and its http.py would stand in for
    # the standard library's http (urllib.request imports http.client).
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    sys.exit(main())
