"""A `helm` stand-in for the calls that need a live cluster: upgrade --install, test,
status, get, uninstall. It records each call (argv, values on stdin) as a JSON line, keeps
release state in a JSON file, and proves every upgrade is one the real Helm accepts. With
Helm 4, the same argv (flags included) and values run through the real
`helm upgrade --dry-run=client` against the fake Kubernetes API; Helm 3's dry run needs API
discovery the fake does not serve, so there the chart is rendered with `helm template` and
the same values. Everything else (version, template, lint, package, push) is the real Helm.

Environment: REAL_HELM (path), HELM_RECORD (jsonl log), HELM_STATE (json state file),
HELM_TEST_RESULT (pass | fail).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

LIVE = {"upgrade", "test", "status", "uninstall", "get", "install"}


def write_stand_in(helm: Path) -> Path:
    """Write the `helm` executable the CLI is pointed at (HELM_BIN): the commands that need a
    cluster run this recorder, the rest the real Helm at $REAL_HELM."""
    helm.parent.mkdir(parents=True, exist_ok=True)
    helm.write_text(
        "#!/bin/sh\n"
        f'case "$1" in {"|".join(sorted(LIVE))}) '
        f'exec "{sys.executable}" "{Path(__file__).resolve()}" "$@";; esac\n'
        'exec "$REAL_HELM" "$@"\n')
    helm.chmod(0o755)
    return helm


def flag_values(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k),
                                                                              dict) else v
    return out


def apply_set(values: dict, item: str) -> dict:
    key, _, raw = item.partition("=")
    value = yaml.safe_load(raw) if raw else ""
    node = values
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return values


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
        with record.open("a") as log:
            log.write(json.dumps({"argv": argv, "stdin": stdin}) + "\n")
        code = handle(argv, stdin, state, real)
        state_path.write_text(json.dumps(state))
    return code


def handle(argv: list[str], stdin: str, state: dict, real: str) -> int:
    ns = (flag_values(argv, "--namespace") or ["default"])[0]
    cmd = argv[0]
    if cmd == "get":
        release = state.get(f"{ns}/{argv[2]}")
        if release is None:
            print("Error: release: not found", file=sys.stderr)
            return 1
        if argv[1] == "metadata":
            print(json.dumps({k: release[k] for k in ("name", "chart", "version", "appVersion",
                                                       "namespace", "revision", "status")}))
        else:
            print(json.dumps(release["values"]))
        return 0
    if cmd == "upgrade":
        name, chart = argv[1], argv[2]
        version = subprocess.run([real, "version", "--template", "{{ .Version }}"],
                                 capture_output=True, text=True, check=True).stdout
        if version.startswith("v4"):
            check = [real, *argv, "--dry-run=client", "--disable-openapi-validation"]
        else:
            check = [real, "template", name, chart, "--namespace", ns, "--values", "-"]
            for f in flag_values(argv, "--values"):
                if f != "-":
                    check += ["--values", f]
            for s in flag_values(argv, "--set"):
                check += ["--set", s]
            for v in flag_values(argv, "--version"):
                check += ["--version", v]
        checked = subprocess.run(check, input=stdin.encode(), capture_output=True)
        if checked.returncode:
            sys.stderr.write(checked.stderr.decode())
            return 1
        out = checked.stdout
        manifest = (json.loads(out[out.index(b"{"):]).get("manifest", "")
                    if version.startswith("v4") else out.decode())
        values = json.loads(stdin or "{}")
        for f in flag_values(argv, "--values"):
            if f != "-":
                values = deep_merge(values, yaml.safe_load(Path(f).read_text()) or {})
        for s in flag_values(argv, "--set"):
            values = apply_set(values, s)
        meta = yaml.safe_load((Path(chart) / "Chart.yaml").read_text()) if Path(
            chart).is_dir() else {"name": "mlflow", "version": "0.0.0", "appVersion": ""}
        key = f"{ns}/{name}"
        revision = state.get(key, {}).get("revision", 0) + 1
        state[key] = {"name": name, "chart": meta["name"], "version": str(meta["version"]),
                      "appVersion": str(meta.get("appVersion", "")), "namespace": ns,
                      "revision": revision, "status": "deployed", "values": values,
                      "manifest_objects": sum(1 for d in yaml.safe_load_all(manifest) if d)}
        print(json.dumps({"name": name, "namespace": ns, "version": revision,
                          "info": {"status": "deployed"}}))
        return 0
    if cmd == "test":
        release = state.get(f"{ns}/{argv[1]}")
        if release is None:
            print("Error: release: not found", file=sys.stderr)
            return 1
        ok = os.environ.get("HELM_TEST_RESULT", "pass") == "pass"
        lines = [f"NAME: {argv[1]}", f"NAMESPACE: {ns}", "STATUS: deployed", "TEST SUITE:",
                 "Last Started: now", f"Phase: {'Succeeded' if ok else 'Failed'}", "",
                 # What the chart's own test pod prints (charts/mlflow/files/helm_test.py).
                 f"POD LOGS: {argv[1]}-test",
                 f"MLflow helm test against http://{argv[1]}.{ns}.svc.cluster.local:5000",
                 "ok    health [0.01s]", "ok    version (3.17.2) [0.02s]",
                 f"ok    host check (Host {argv[1]}.{ns}.svc.cluster.local:5000 accepted) [0.03s]",
                 "ok    create experiment (helm-test-4f1c2a9b7e3d, id 1) [0.05s]",
                 "ok    create run (9b2e6f0c1d4a4e6f8a7b3c5d2e1f0a9b) [0.04s]",
                 "ok    log param and metric [0.06s]", "ok    read run back [0.02s]",
                 "ok    artifact upload, download, delete (57 bytes) [0.21s]" if ok else
                 "FAIL  artifact upload, download, delete: upload of "
                 "1/9b2e6f0c1d4a4e6f8a7b3c5d2e1f0a9b/artifacts/helm-test/hello.txt returned "
                 "HTTP 500: Internal Server Error. The "
                 "server could not use its artifact store gs://acme-mlflow-artifacts: check that "
                 "the GCS bucket exists and the server's Google service account may write to it",
                 "ok    clean up [0.04s]" if ok else "helm test FAILED"]
        if ok:
            lines.append("helm test passed")
        sys.stdout.write("\n".join(lines) + "\n")
        if ok:
            return 0
        sys.stderr.write(f"Error: 1 error occurred:\n\t* pod {argv[1]}-test failed\n")
        return 1
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
    sys.exit(main())
