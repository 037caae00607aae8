"""Publish the chart to an OCI registry: package, sign, push, then prove it by pulling it back.

`publish()` is the one function the `publish` command calls. Helm does the work; this module
decides the order, refuses what would destroy a published version, and turns Helm's errors
into messages with a fix.

Why not pyhelm3 here: `pyhelm3.Command.run()` returns stdout only, and `helm push`/`helm pull`
print the reference and the digest on stderr; a registry login also needs the token on stdin
with a registry config of our own. So this module runs Helm through `subprocess` directly.

Published versions are immutable: an OCI tag can be overwritten (`helm push` of an existing
version succeeds silently and moves the tag), and users who pinned a version would get other
bytes. So `publish()` looks the version up first and refuses to push it again. OCI has no
conditional tag write, so two publishers racing on one version can still both push; releases
from one CI workflow per tag do not race.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .changes import CREATE, Change
from .errors import BadFlag, HelmFailed, UserError

#: The user name Artifact Registry expects with an OAuth 2.0 access token as password.
GCP_TOKEN_USER = "oauth2accesstoken"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

# Semantic Versioning 2.0.0, as Helm requires for a chart version.
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# oci://HOST[:PORT][/PATH]: a repository prefix, never a tag or a digest (Helm adds
# /NAME:VERSION itself).
REGISTRY_RE = re.compile(r"^oci://(?P<host>[A-Za-z0-9.-]+(?::\d+)?)(?P<path>(?:/[a-z0-9._/-]+)?)$")
DIGEST_RE = re.compile(r"^Digest:\s*(sha256:[0-9a-f]{64})\s*$", re.MULTILINE)
# How Helm (oras) says a tag or repository does not exist, across Helm 3 and Helm 4.
NOT_FOUND_RE = re.compile(r": not found|manifest unknown|name unknown|repository name not known",
                          re.IGNORECASE)
UNREACHABLE_RE = re.compile(
    r"connection refused|no such host|i/o timeout|network is unreachable|"
    r"context deadline exceeded|connection reset|no route to host|TLS handshake timeout",
    re.IGNORECASE)
HTTP_TO_HTTPS_RE = re.compile(r"server gave HTTP response to HTTPS client", re.IGNORECASE)
AUTH_RE = re.compile(r"unauthorized|denied|authentication required|\b401\b|\b403\b",
                     re.IGNORECASE)


def is_artifact_registry(host: str) -> bool:
    """Google Artifact Registry hosts (`LOCATION-docker.pkg.dev`) take an ADC token."""
    return host.split(":", 1)[0].lower().endswith("-docker.pkg.dev")


def adc_access_token() -> str:
    """An OAuth 2.0 access token from Application Default Credentials (kept in memory only)."""
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests

    hint = ("run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS, "
            "or run where a service account is attached (Workload Identity, CI with OIDC)")
    try:
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.GoogleAuthError as exc:
        raise UserError(f"no Application Default Credentials for Artifact Registry: {exc}",
                        hint) from exc
    if not credentials.token:
        raise UserError("Application Default Credentials gave no access token", hint)
    return str(credentials.token)


@dataclass
class PublishResult:
    """What was (or, on a dry run, would be) published."""

    reference: str  # oci://HOST/PATH/NAME:VERSION
    chart: str
    version: str
    app_version: str
    signed: bool
    digest: str = ""  # sha256:…, empty on a dry run
    archive: str = ""  # the packaged .tgz when kept (destination=…)
    provenance: str = ""  # its .prov when signed and kept
    dry_run: bool = False
    changes: list[Change] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "changes"}
        out["changes"] = [c.to_json() for c in self.changes]
        return out


@dataclass
class _Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


class _Helm:
    """Helm as a subprocess: argv only, secrets on stdin, and output redacted of them."""

    def __init__(self, executable: str, env: dict[str, str]) -> None:
        self.executable = executable
        self.env = env
        self.secrets: list[str] = []

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def run(self, *args: str, stdin: str | None = None) -> _Run:
        try:
            proc = subprocess.run(
                [self.executable, *args], input=stdin, capture_output=True, text=True,
                env=self.env, timeout=600,
                # With no input Helm must not wait on the caller's terminal.
                stdin=None if stdin is not None else subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise UserError(f"cannot run Helm at {self.executable!r}",
                            "install Helm 3.17+ or 4, or set HELM_BIN") from exc
        except subprocess.TimeoutExpired as exc:
            raise HelmFailed(f"`helm {args[0]}` did not finish in 10 minutes",
                             "check the registry address and the network") from exc
        return _Run(proc.returncode, self.redact(proc.stdout), self.redact(proc.stderr))

    def major(self) -> int:
        res = self.run("version", "--template", "{{.Version}}")
        match = re.match(r"v?(\d+)\.(\d+)", res.stdout.strip())
        if res.returncode or not match:
            raise UserError(f"cannot tell Helm's version: {res.output}",
                            "install Helm 3.17+ or 4, or set HELM_BIN")
        major, minor = int(match[1]), int(match[2])
        if (major, minor) < (3, 17):
            raise UserError(f"Helm {res.stdout.strip()} is too old", "use Helm 3.17 or later")
        return major


def _registry_error(action: str, host: str, res: _Run, plain_http: bool) -> UserError:
    """Helm's failure talking to a registry, as one message with the fix."""
    text = re.sub(r"^Error:\s*", "", res.output, flags=re.MULTILINE)
    if HTTP_TO_HTTPS_RE.search(text):
        return HelmFailed(f"{action}: {host} speaks plain HTTP: {text}",
                          "pass --plain-http for a registry without TLS (loopback tests only)")
    if UNREACHABLE_RE.search(text):
        fix = "check the registry address and that it is up"
        if not plain_http:
            fix += "; a plain-HTTP registry also needs --plain-http"
        return HelmFailed(f"{action}: cannot reach registry {host}: {text}", fix)
    if AUTH_RE.search(text):
        fix = (f"log in first: `helm registry login {host}` (Artifact Registry: publish logs in "
               "with Application Default Credentials; check roles/artifactregistry.writer)")
        return HelmFailed(f"{action}: {host} refused the credentials: {text}", fix)
    return HelmFailed(f"{action} failed: {text}", "see Helm's message above")


def _parse_registry(registry: str) -> tuple[str, str]:
    match = REGISTRY_RE.match(registry.rstrip("/"))
    if not match:
        raise BadFlag(
            f"--registry {registry!r} is not an OCI repository prefix",
            "give oci://HOST[/PATH] without the chart name, tag or digest, e.g. "
            "oci://ghcr.io/OWNER/charts or oci://LOCATION-docker.pkg.dev/PROJECT/REPOSITORY")
    return match["host"], match["path"]


def _read_chart(chart: Path) -> dict:
    chart_yaml = chart / "Chart.yaml"
    if not chart_yaml.is_file():
        raise BadFlag(f"--chart {chart} has no Chart.yaml", "point --chart at a chart directory")
    meta = yaml.safe_load(chart_yaml.read_text()) or {}
    if not meta.get("name") or not meta.get("version"):
        raise BadFlag(f"{chart_yaml} lacks name or version", "fix Chart.yaml")
    return meta


def publish(
    registry: str,
    *,
    chart: str | Path | None = None,
    version: str = "",
    sign: bool = False,
    key: str = "",
    keyring: str | Path = "",
    passphrase_file: str | Path = "",
    plain_http: bool = False,
    destination: str | Path = "",
    dry_run: bool = False,
    helm_bin: str = "helm",
    echo: Callable[[str], None] = print,
    access_token: Callable[[], str] = adc_access_token,
    needs_gcp_login: Callable[[str], bool] = is_artifact_registry,
) -> PublishResult:
    """Package `chart`, optionally sign it, push it to `registry`, then pull it back and check.

    registry: oci://HOST[/PATH]; the chart lands at oci://HOST/PATH/NAME:VERSION.
    chart: chart directory; default the chart bundled in this package.
    version: overrides Chart.yaml's version (appVersion stays).
    sign, key, keyring, passphrase_file: `helm package --sign` with a GnuPG secret keyring
        (legacy format: `gpg --export-secret-keys > secring.gpg`); the .prov is pushed too and
        the pull-back verifies it against the same keyring.
    plain_http: talk HTTP to the registry (a loopback test registry).
    destination: keep the .tgz (and .prov) in this directory; default a temporary one.
    dry_run: say what would be pushed where and contact nothing.
    helm_bin, echo, access_token, needs_gcp_login: injected adapters (Helm executable, output,
        ADC token source, "is this Artifact Registry" check), so tests swap endpoints.

    Raises UserError (BadFlag for flags, HelmFailed for registry/Helm failures) with a hint.
    """
    host, path = _parse_registry(registry)
    chart_dir = Path(chart) if chart else _bundled_chart()
    meta = _read_chart(chart_dir)
    name = str(meta["name"])
    if version and not SEMVER_RE.match(version):
        raise BadFlag(f"--version {version!r} is not a semantic version",
                      "use MAJOR.MINOR.PATCH[-PRERELEASE], e.g. 0.2.0 or 0.2.0-rc.1")
    version = version or str(meta["version"])
    app_version = str(meta.get("appVersion", ""))
    if sign:
        if not key:
            raise BadFlag("--sign needs --key", "name the GnuPG key (its user ID or e-mail)")
        if not keyring or not Path(keyring).is_file():
            raise BadFlag(f"--keyring {str(keyring)!r} is not a file",
                          "export the secret key: gpg --export-secret-keys KEY > secring.gpg")
        if passphrase_file and not Path(passphrase_file).is_file():
            # Not "-" (stdin) either: Helm runs with no terminal and no stdin here.
            raise BadFlag(f"--passphrase-file {passphrase_file} is not a file",
                          "give the file holding the key's passphrase")
    elif key or keyring or passphrase_file:
        raise BadFlag("--key/--keyring/--passphrase-file need --sign", "add --sign")

    repo = f"oci://{host}{path}"
    reference = f"{repo}/{name}:{version}"
    gcp = needs_gcp_login(host)
    detail = f"version {version}, appVersion {app_version}, " + (
        f"signed with key {key!r}" if sign else "unsigned")
    changes = [Change(CREATE, "chart", reference, detail, step="publish")]
    result = PublishResult(reference=reference, chart=name, version=version,
                           app_version=app_version, signed=sign, dry_run=dry_run,
                           changes=changes)
    if dry_run:
        echo(f"Would package {chart_dir} and push it (dry run: nothing contacted):")
        echo(changes[0].line())
        if gcp:
            echo(f"  after logging in to {host} as {GCP_TOKEN_USER} with an Application "
                 "Default Credentials token")
        return result

    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="mlflow-helm-publish-") as work:
        helm = _Helm(helm_bin, env)
        major = helm.major()
        http = ["--plain-http"] if plain_http else []
        login_dir = ""
        try:
            if gcp:
                login_dir = _login_artifact_registry(helm, host, access_token, major, plain_http)
            _refuse_existing(helm, repo, name, version, host, http, plain_http)
            _lint(helm, chart_dir)
            archive, prov = _package(helm, chart_dir, Path(destination or work), version, sign,
                                     key, str(keyring), str(passphrase_file), major)
            echo(f"Packaged {name} {version} (appVersion {app_version})"
                 + (f", signed with key {key!r}" if sign else "")
                 + f": {archive if destination else archive.name}")
            pushed = helm.run("push", str(archive), repo, *http)
            if pushed.returncode:
                raise _registry_error(f"helm push to {repo}", host, pushed, plain_http)
            digest = _digest(pushed, "helm push")
            echo(f"Pushed: {reference}")
            echo(f"Digest: {digest}")
            _check_pull_back(helm, repo, name, version, digest, Path(work) / "pulled", http,
                             plain_http, host, str(keyring) if sign else "")
            echo(f"Verified: pulled {reference} back, digest matches"
                 + (", signature verified" if sign else ""))
        finally:
            if login_dir:
                # The token expires within the hour anyway; leave no copy of it behind.
                helm.run("registry", "logout", host)
                shutil.rmtree(login_dir, ignore_errors=True)
        result.digest = digest
        if destination:
            result.archive = str(archive)
            result.provenance = str(prov) if prov else ""
    return result


def _bundled_chart() -> Path:
    from .chart import bundled_chart

    return bundled_chart()


def _login_artifact_registry(helm: _Helm, host: str, access_token: Callable[[], str],
                             major: int, plain_http: bool) -> str:
    """`helm registry login` with the ADC token on stdin, into a registry config of our own.

    Helm stores login credentials in its registry config file: pointing it at a private file
    (in memory-backed /dev/shm where there is one) removed after publishing keeps the token
    out of the user's ~/.config/helm and off disk.
    """
    token = access_token().strip()
    if not token:
        raise UserError("the Application Default Credentials token is empty",
                        "run `gcloud auth application-default login`")
    helm.secrets.append(token)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    login_dir = tempfile.mkdtemp(prefix="mlflow-helm-login-", dir=shm)
    helm.env["HELM_REGISTRY_CONFIG"] = os.path.join(login_dir, "config.json")
    args = ["registry", "login", host, "--username", GCP_TOKEN_USER, "--password-stdin"]
    # Helm 3's login has no --plain-http (it falls back to HTTP on loopback by itself).
    if plain_http and major >= 4:
        args.append("--plain-http")
    res = helm.run(*args, stdin=token)
    if res.returncode:
        shutil.rmtree(login_dir, ignore_errors=True)
        raise _registry_error(f"helm registry login {host}", host, res, plain_http)
    return login_dir


def _refuse_existing(helm: _Helm, repo: str, name: str, version: str, host: str,
                     http: list[str], plain_http: bool) -> None:
    res = helm.run("show", "chart", f"{repo}/{name}", "--version", version, *http)
    if res.returncode == 0:
        raise UserError(
            f"{repo}/{name}:{version} is already published; refusing to overwrite it "
            "(users who pinned this version would silently get other bytes)",
            "bump `version` in Chart.yaml or pass --version with a new version")
    if not NOT_FOUND_RE.search(res.output):
        raise _registry_error(f"looking up {repo}/{name}:{version}", host, res, plain_http)


def _lint(helm: _Helm, chart: Path) -> None:
    """A chart that fails `helm lint --strict` is never published: a version is forever."""
    res = helm.run("lint", str(chart), "--strict")
    if res.returncode:
        raise HelmFailed(f"helm lint --strict {chart} failed:\n{res.output}",
                         "fix what Helm names above, then publish again")


def _package(helm: _Helm, chart: Path, dest: Path, version: str, sign: bool, key: str,
             keyring: str, passphrase_file: str, major: int) -> tuple[Path, Path | None]:
    dest.mkdir(parents=True, exist_ok=True)
    args = ["package", str(chart), "--destination", str(dest), "--version", version]
    if sign:
        args += ["--sign", "--key", key, "--keyring", keyring]
        if passphrase_file:
            args += ["--passphrase-file", passphrase_file]
    res = helm.run(*args)
    archive = dest / f"{_read_chart(chart)['name']}-{version}.tgz"
    prov = Path(f"{archive}.prov")
    if res.returncode:
        # Helm 3 leaves the unsigned archive behind when signing fails: never let it be pushed.
        archive.unlink(missing_ok=True)
        hint = "fix the chart or the flags Helm names above"
        if sign and "public key type" in res.output and major < 4:
            hint = ("Helm 3 signs only with RSA or DSA keys (not Ed25519/ECC): use an RSA key, "
                    "or Helm 4")
        elif sign:
            hint = ("check --key names a secret key in --keyring (gpg --export-secret-keys "
                    "KEY > secring.gpg) and its passphrase (--passphrase-file)")
        raise HelmFailed(f"helm package failed: {res.output}", hint)
    if not archive.is_file() or (sign and not prov.is_file()):
        raise HelmFailed(f"helm package did not produce {archive.name}"
                         + (" and its .prov" if sign else "") + f": {res.output}",
                         "report this with the Helm version")
    return archive, prov if sign else None


def _digest(res: _Run, what: str) -> str:
    digests = DIGEST_RE.findall(res.output)
    if not digests:
        raise HelmFailed(f"{what} printed no digest: {res.output}",
                         "report this with the Helm version")
    return digests[0]


def _check_pull_back(helm: _Helm, repo: str, name: str, version: str, digest: str,
                     into: Path, http: list[str], plain_http: bool, host: str,
                     keyring: str) -> None:
    into.mkdir(parents=True, exist_ok=True)
    args = ["pull", f"{repo}/{name}", "--version", version, "--destination", str(into), *http]
    if keyring:
        args += ["--verify", "--keyring", keyring]
    res = helm.run(*args)
    if res.returncode:
        raise _registry_error(f"pulling {repo}/{name}:{version} back", host, res, plain_http)
    pulled = _digest(res, "helm pull")
    if pulled != digest:
        raise HelmFailed(
            f"{repo}/{name}:{version} pulled back with digest {pulled}, pushed {digest}",
            "someone else pushed this version at the same time, or the registry rewrote it: "
            "inspect the registry before using this version")
