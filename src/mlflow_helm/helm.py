"""Helm through pyhelm3, extended with what pyhelm3 0.5.8 lacks.

`HelmCommand` subclasses `pyhelm3.Command` and reuses its `run()` for `test`, `package`,
`push`, `lint`, `get metadata`, and an upgrade that also passes the user's `-f`/`--set`
after our computed values (Helm merges left to right, so the user wins). `Helm` is the
synchronous face the steps use. pyhelm3 is imported lazily.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

from . import interrupt
from .errors import HelmFailed, UserError


def _command_class():
    import pyhelm3

    class HelmCommand(pyhelm3.Command):
        async def run(self, command: list, input: bytes | None = None) -> bytes:
            """pyhelm3 0.5.8's Command.run, minus the shell, plus signals.

            pyhelm3 starts `sh -c "helm …"`; dash (Debian's /bin/sh) keeps itself as
            Helm's parent, so its proc.terminate() on cancel reaches the shell and Helm runs
            on, orphaned. Here Helm is the child itself (asyncio.create_subprocess_exec,
            https://docs.python.org/3/library/asyncio-subprocess.html), tracked by
            interrupt.py: a signal sends it SIGTERM, which Helm's install and upgrade
            handle by cancelling the release ("Release X has been cancelled.", Helm
            3.17.3 cmd/helm/upgrade.go, 4.1.4 pkg/cmd/upgrade.go); it is reaped here and
            killed if it has not exited after HELM_GRACE seconds. The exit status and
            stderr become pyhelm3's errors as its run() makes them."""
            argv = [part if isinstance(part, (str, bytes)) else str(part)
                    for part in _global_flags(self, [self._executable, *command])]
            self._logger.info("running command: %s",
                              shlex.join(self._log_format(part) for part in argv))
            interrupt.check()
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if input is not None else None,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            interrupt.track(proc.pid, "helm")
            try:
                talk = asyncio.ensure_future(proc.communicate(input))
                stopped_at = None
                while not talk.done():
                    await asyncio.wait({talk}, timeout=0.1)
                    if interrupt.CANCELLED.is_set() and not talk.done():
                        stopped_at = stopped_at or asyncio.get_running_loop().time()
                        if asyncio.get_running_loop().time() - stopped_at > \
                                interrupt.HELM_GRACE:
                            with contextlib.suppress(ProcessLookupError):
                                proc.kill()
                stdout, stderr = await talk
            finally:
                interrupt.untrack(proc.pid)
            if interrupt.CANCELLED.is_set():
                raise interrupt.Interrupted(interrupt.signum())
            if proc.returncode == 0:
                return stdout
            raise _error_class(stderr.decode().lower())(proc.returncode, stdout, stderr)

        async def upgrade_install(
            self, release: str, chart: str, values: dict, *, namespace: str,
            values_files: list[str], set_values: list[str], rollback_flag: str,
            timeout: str, version: str = "", wait: bool = True,
        ) -> dict:
            command: list[Any] = [
                "upgrade", release, chart, "--install", "--namespace", namespace,
                "--history-max", self._history_max_revisions, "--output", "json",
                "--timeout", timeout, "--values", "-",
            ]
            command.extend(_user_values(values_files, set_values, version))
            if wait:
                command.extend(["--wait", "--wait-for-jobs"])
            command.append(rollback_flag)
            out = await self.run(command, json.dumps(values).encode())
            return json.loads(out[out.index(b"{"):])

        async def template_with(
            self, release: str, chart: str, values: dict, *, namespace: str,
            values_files: list[str], set_values: list[str], version: str = "",
        ) -> str:
            command: list[Any] = ["template", release, chart, "--namespace", namespace,
                                  "--values", "-"]
            command.extend(_user_values(values_files, set_values, version))
            return (await self.run(command, json.dumps(values).encode())).decode()

        async def test(self, release: str, *, namespace: str, timeout: str) -> str:
            return (await self.run(["test", release, "--namespace", namespace, "--logs",
                                    "--timeout", timeout])).decode()

        async def get_metadata(self, release: str, *, namespace: str) -> dict:
            return json.loads(await self.run(["get", "metadata", release, "--namespace",
                                              namespace, "--output", "json"]))

        async def lint(self, chart: str, *, strict: bool = True) -> str:
            command = ["lint", chart] + (["--strict"] if strict else [])
            return (await self.run(command)).decode()

        async def package(self, chart: str, destination: str) -> str:
            out = (await self.run(["package", chart, "--destination", destination])).decode()
            # "Successfully packaged chart and saved it to: /path/mlflow-0.1.0.tgz"
            return out.strip().rsplit(": ", 1)[-1]

        async def push(self, archive: str, remote: str, *, plain_http: bool = False) -> str:
            command = ["push", archive, remote] + (["--plain-http"] if plain_http else [])
            return (await self.run(command)).decode()

    return HelmCommand


def _global_flags(cmd, argv: list) -> list:
    """The connection flags pyhelm3's run() appends to every command."""
    if cmd._kubeconfig:
        argv += ["--kubeconfig", cmd._kubeconfig]
    if cmd._kubecontext:
        argv += ["--kube-context", cmd._kubecontext]
    if cmd._kubeapiserver:
        argv += ["--kube-apiserver", cmd._kubeapiserver]
    if cmd._kubetoken:
        argv += ["--kube-token", cmd._kubetoken]
    if cmd._insecure_skip_tls_verify:
        argv.append("--kube-insecure-skip-tls-verify")
    return argv


SUPPORTED = "3.17 or later, or 4"


def _error_class(stderr: str):
    """pyhelm3 0.5.8 Command.run's mapping of Helm's stderr to its error classes."""
    from pyhelm3 import errors
    from pyhelm3.command import CHART_NOT_FOUND, CONNECTION_ERROR

    if "context canceled" in stderr:
        return errors.CommandCancelledError
    if "etcdserver" in stderr:  # before "not found": etcd errors come with one
        return errors.ConnectionError
    if "release: not found" in stderr:
        return errors.ReleaseNotFoundError
    if "failed to render chart" in stderr or "execution error" in stderr:
        return errors.FailedToRenderChartError
    if "rendered manifests contain a resource that already exists" in stderr:
        return errors.ResourceAlreadyExistsError
    if "is invalid" in stderr:
        return errors.InvalidResourceError
    if CHART_NOT_FOUND.search(stderr) is not None:
        return errors.ChartNotFoundError
    if CONNECTION_ERROR.search(stderr) is not None:
        return errors.ConnectionError
    return errors.Error


def _user_values(values_files: list[str], set_values: list[tuple[str, str]],
                 version: str) -> list[str]:
    """The user's -f/--set* (after the computed values on stdin, so theirs win) and --version.
    Set items are (flag, item) pairs (Options.helm_sets), passed as given: Helm merges
    --set-json, --set, --set-string and --set-file in its own order."""
    args: list[str] = []
    for path in values_files:
        args += ["--values", path]
    for flag, item in set_values:
        args += [flag, item]
    if version:
        args += ["--version", version]
    return args


def _output(exc: Exception) -> str:
    out = getattr(exc, "stdout", b"") or b""
    err = getattr(exc, "stderr", b"") or b""
    return (out.decode(errors="replace") + err.decode(errors="replace")).strip()


class Helm:
    """Synchronous Helm; one per command, built from the options."""

    def __init__(self, executable: str = "helm", kube_context: str = "",
                 kubeconfig: str = "", timeout: str = "") -> None:
        self.executable = executable
        # Empty: 10m, for helm test and uninstall; install and upgrade pass their own
        # (steps/release.py upgrade_timeout).
        timeout = timeout or "10m"
        self.timeout = timeout
        self.command = _command_class()(
            executable=executable, kubecontext=kube_context or None,
            kubeconfig=Path(kubeconfig) if kubeconfig else None, default_timeout=timeout)
        self._major: int | None = None
        self.version_string = ""
        self._releases: dict[tuple[str, str], dict | None] = {}

    def _run(self, coro):
        return asyncio.run(coro)

    def major(self) -> int:
        """Helm's major version; Helm 3.17+ and Helm 4 are supported."""
        if self._major is None:
            import shutil

            if shutil.which(self.executable) is None:
                raise UserError(
                    f"Helm not found: {self.executable!r} is not "
                    + ("an executable file" if "/" in self.executable else "on PATH"),
                    f"install Helm {SUPPORTED} (https://helm.sh/docs/intro/install/), or "
                    "point --helm-bin / HELM_BIN at it")
            try:
                version = self.command.client_version()
            except Exception as exc:
                raise UserError(f"cannot run Helm at {self.executable!r}: {_output(exc)}",
                                f"install Helm {SUPPORTED}, or point --helm-bin / HELM_BIN "
                                "at one that runs") from exc
            self.version_string = str(version)
            if version.major < 3 or (version.major == 3 and version.minor < 17):
                raise UserError(f"Helm {version} at {self.executable} is too old",
                                f"install Helm {SUPPORTED} (https://helm.sh/docs/intro/install/)")
            self._major = version.major
        return self._major

    def _on_release(self, call, what: str) -> tuple[bool, Any]:
        """Run a call on one release: (False, None) when Helm says the release does not exist."""
        import pyhelm3.errors as herrors

        try:
            return True, self._run(call)
        except herrors.ReleaseNotFoundError:
            return False, None
        except herrors.Error as exc:
            # Helm's storage driver says exactly this for an absent release, on both majors
            # (pkg/storage/driver ErrReleaseNotFound; the string is in both binaries). Any
            # other "not found" (a missing executable, a kube context) is a failure.
            if "release: not found" in _output(exc):
                return False, None
            raise HelmFailed(f"{what} failed: {_output(exc)}") from exc

    def release(self, release: str, namespace: str) -> dict | None:
        """The deployed release's metadata and user values; None when absent. Read once per
        command until this command changes the release (several steps plan from it)."""
        key = (release, namespace)
        if key not in self._releases:
            self._releases[key] = self._read_release(release, namespace)
        return self._releases[key]

    def _read_release(self, release: str, namespace: str) -> dict | None:
        found, meta = self._on_release(self.command.get_metadata(release, namespace=namespace),
                                       f"helm get metadata {release}")
        if not found:
            return None
        values = self._run(self.command.get_values(release, namespace=namespace))
        return {**meta, "values": values}

    def upgrade_install(self, release: str, chart: str, values: dict, *, namespace: str,
                        values_files: list[str], set_values: list[str],
                        version: str = "", timeout: str = "") -> dict:
        import pyhelm3.errors as herrors

        # Helm 4 renamed --atomic; either way a failed upgrade rolls back.
        flag = "--rollback-on-failure" if self.major() >= 4 else "--atomic"
        self._releases.pop((release, namespace), None)
        try:
            return self._run(self.command.upgrade_install(
                release, chart, values, namespace=namespace, values_files=values_files,
                set_values=set_values, rollback_flag=flag, timeout=timeout or self.timeout,
                version=version))
        except herrors.Error as exc:
            raise HelmFailed(
                f"helm upgrade --install {release} failed:\n{_output(exc)}",
                f"inspect with `helm -n {namespace} status {release}` and "
                f"`kubectl -n {namespace} get events --sort-by=.lastTimestamp`") from exc

    def template(self, release: str, chart: str, values: dict, *, namespace: str,
                 values_files: list[str], set_values: list[str], version: str = "") -> str:
        import pyhelm3.errors as herrors

        try:
            return self._run(self.command.template_with(
                release, chart, values, namespace=namespace, values_files=values_files,
                set_values=set_values, version=version))
        except herrors.Error as exc:
            raise HelmFailed(f"helm template failed:\n{_output(exc)}",
                             "fix the value Helm names above") from exc

    def test(self, release: str, namespace: str) -> tuple[bool, str]:
        import pyhelm3.errors as herrors

        try:
            return True, self._run(self.command.test(release, namespace=namespace,
                                                     timeout=self.timeout))
        except herrors.Error as exc:
            return False, _output(exc)

    def history(self, release: str, namespace: str) -> list[dict]:
        """`helm history -o json`: one entry per kept revision, oldest first, with revision,
        status, chart (NAME-VERSION), app_version and description (Helm 3.17.3
        cmd/helm/history.go and 4.1.4 pkg/cmd/history.go, releaseInfo); [] when absent."""
        found, entries = self._on_release(
            self.command.history(release, namespace=namespace), f"helm history {release}")
        return sorted(entries or [], key=lambda e: int(e["revision"])) if found else []

    def values_at(self, release: str, namespace: str, revision: int) -> dict:
        """The computed values (chart defaults and user values) of one revision."""
        import pyhelm3.errors as herrors

        try:
            return self._run(self.command.get_values(release, computed=True,
                                                     namespace=namespace, revision=revision))
        except herrors.Error as exc:
            raise HelmFailed(f"helm get values {release} --revision {revision} failed: "
                             f"{_output(exc)}") from exc

    def rollback(self, release: str, namespace: str, revision: int, timeout: str) -> None:
        """`helm rollback` with --wait --wait-for-jobs, as install and upgrade wait."""
        import pyhelm3.errors as herrors

        self._releases.pop((release, namespace), None)
        try:
            self._run(self.command.rollback(release, revision, namespace=namespace,
                                            timeout=timeout, wait=True))
        except herrors.Error as exc:
            raise HelmFailed(f"helm rollback {release} {revision} failed: "
                             f"{_output(exc)}") from exc

    def uninstall(self, release: str, namespace: str) -> bool:
        self._releases.pop((release, namespace), None)
        found, _ = self._on_release(
            self.command.uninstall(release, namespace=namespace, wait=True),
            f"helm uninstall {release}")
        return found


def helm_from_env(flag: str = "") -> str:
    """--helm-bin > HELM_BIN (set by Helm for plugins) > `helm` on PATH."""
    return flag or os.environ.get("HELM_BIN") or "helm"
