"""The click layer: parse, validate, build the context, call one function, print.

Precedence: flag > environment (Helm's HELM_NAMESPACE, HELM_KUBECONTEXT, HELM_BIN,
HELM_DEBUG; CLOUDSDK_CORE_PROJECT) > default. KUBECONFIG and Helm's HELM_KUBE*
connection settings are read by kube.py and by Helm itself: both reach one cluster.
Heavy libraries load lazily so `--help` stays fast.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback

import click

from . import __version__
from .errors import UserError
from .options import Options, validate

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def cluster_options(fn):
    """Where: release, namespace, kube context, Helm binary, output."""
    decorators = [
        click.argument("release", default="mlflow", required=False),
        click.option("-n", "--namespace", default=None,
                     help="Namespace [default: mlflow]. Env MLFLOW_HELM_NAMESPACE, or "
                          "HELM_NAMESPACE (Helm's -n) unless it is Helm's own fallback: "
                          "`default` or the kube context's namespace."),
        click.option("--kube-context", envvar="HELM_KUBECONTEXT", default="",
                     help="Kube context (env HELM_KUBECONTEXT); default: the current one."),
        click.option("--kubeconfig", default="",
                     help="Kubeconfig file; default: KUBECONFIG (one or several files, "
                          "merged as kubectl and Helm merge them), else ~/.kube/config."),
        click.option("--helm-bin", envvar="HELM_BIN", default="helm",
                     help="Helm executable (env HELM_BIN, set by Helm)."),
        click.option("--timeout", default="",
                     help="Helm timeout. Install and upgrade: by default long enough for the "
                     "migration (migrations.activeDeadlineSeconds or waitTimeoutSeconds, the "
                     "larger, plus 60s); a shorter one is refused. helm test: 10m."),
        click.option("-o", "--output", type=HelmChoice(["text", "json"]), default="text",
                     show_default=True, help="json: one document, schema in docs/cli.md."),
        click.option("--debug", envvar="HELM_DEBUG", is_flag=True, default=False,
                     help="Show tracebacks and API calls (env HELM_DEBUG)."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


DEFAULT_NAMESPACE = "mlflow"


def resolve_namespace(flag: str | None, kube_context: str, kubeconfig: str) -> tuple[str, bool]:
    """One namespace rule for `mlflow-helm` and `helm mlflow-gcp`, so mixing them never makes
    two releases: -n, else MLFLOW_HELM_NAMESPACE, else HELM_NAMESPACE, else `mlflow`.
    Returns (namespace, whether it was chosen).

    Helm sets HELM_NAMESPACE for every plugin: to its -n when given (before or after the
    plugin's name; Helm strips it from the plugin's arguments), else to the kube context's
    namespace, else to `default` (pkg/cli EnvSettings.Namespace, both majors). Those two
    fallbacks cannot be told from a choice, so they count as no choice, as they would for
    the standalone CLI; MLFLOW_HELM_NAMESPACE picks either on purpose.
    """
    import os

    if flag:
        return flag, True
    chosen = os.environ.get("MLFLOW_HELM_NAMESPACE", "")
    if chosen:
        return chosen, True
    helm = os.environ.get("HELM_NAMESPACE", "")
    if helm and not _helm_fallback_namespace(helm, kube_context, kubeconfig):
        return helm, True
    return DEFAULT_NAMESPACE, False


def _helm_fallback_namespace(name: str, kube_context: str, kubeconfig: str) -> bool:
    """Whether `name` is what Helm puts in HELM_NAMESPACE when no -n was given."""
    if name == "default":
        return True
    from .kube import Kube

    try:
        from kubernetes import config

        contexts, active = config.list_kube_config_contexts(
            config_file=Kube(kube_context, kubeconfig).config_file)
    except Exception:  # no kubeconfig: Helm's fallback could only have been `default`
        return False
    wanted = kube_context or (active or {}).get("name", "")
    return any(c.get("name") == wanted and (c.get("context") or {}).get("namespace") == name
               for c in contexts or ())


def cloud_options(fn):
    """What: the Google Cloud resources and the chart."""
    decorators = [
        click.option("--project", envvar="CLOUDSDK_CORE_PROJECT", default="",
                     help="Google Cloud project (env CLOUDSDK_CORE_PROJECT; default: the "
                          "gke_ context's, else Application Default Credentials')."),
        click.option("--region", default="", help="Region for a new bucket "
                     "(default: the cluster's)."),
        click.option("--cluster", default="", help="GKE cluster (default: from a "
                     "gke_PROJECT_LOCATION_CLUSTER context)."),
        click.option("--location", default="", help="GKE cluster region or zone."),
        click.option("--local", is_flag=True, help="No Google Cloud at all: in-cluster "
                     "PostgreSQL and artifacts on a PVC (kind, minikube)."),
        click.option("--database", type=click.Choice(["incluster", "cloudsql", "external"]),
                     default="incluster", show_default=True, help="Where MLflow keeps its "
                     "metadata."),
        click.option("--cloudsql-instance", default="",
                     help="Cloud SQL instance: NAME or PROJECT:REGION:NAME."),
        click.option("--db-auth", type=click.Choice(["password", "iam"]), default="password",
                     show_default=True, help="Cloud SQL login: built-in user with a "
                     "generated password, or IAM database authentication."),
        click.option("--database-name", default="",
                     help="Cloud SQL database (default: mlflow_NAMESPACE_RELEASE)."),
        click.option("--db-user", default="",
                     help="Cloud SQL built-in user for --db-auth password (default: "
                          "mlflow_NAMESPACE_RELEASE, cut to 32 characters)."),
        click.option("--adopt", is_flag=True,
                     help="Use a database, user or service account that exists and is not "
                          "in this release's install record (another release's, or made by "
                          "hand); purge keeps what was adopted."),
        click.option("--ip-type", type=click.Choice(["public", "private", "psc"]), default=None,
                     help="Instance IP the proxy uses (default: private, else public, else "
                          "psc)."),
        click.option("--external-uri", envvar="MLFLOW_HELM_EXTERNAL_URI", default="",
                     help="--database external: SQLAlchemy URI (env MLFLOW_HELM_EXTERNAL_URI);"
                          " stored in a Secret, never printed."),
        click.option("--bucket", default="", help="Artifacts in GCS: gs://NAME[/PATH]."),
        click.option("--create-bucket", is_flag=True,
                     help="Create the bucket (uniform access, versioning) when missing."),
        click.option("--identity", type=click.Choice(["gsa", "direct"]), default="gsa",
                     show_default=True, help="gsa: a Google service account via Workload "
                     "Identity; direct: roles go to the Kubernetes ServiceAccount's principal."),
        click.option("--gsa", default="", help="Google service account name or email "
                     "(default: mlflow-NAMESPACE-RELEASE, cut to 30 characters)."),
        click.option("-f", "--values", "values_files", multiple=True,
                     type=click.Path(exists=True, dir_okay=False),
                     help="Values file layered over the computed values (repeatable)."),
        click.option("--set", "set_values", multiple=True,
                     help="Helm --set, layered over -f (repeatable)."),
        click.option("--set-string", "set_string", multiple=True,
                     help="Helm --set-string: values stay strings (repeatable)."),
        click.option("--set-json", "set_json", multiple=True,
                     help="Helm --set-json KEY=JSON (repeatable)."),
        click.option("--set-file", "set_file", multiple=True,
                     help="Helm --set-file KEY=PATH: the file's content (repeatable)."),
        click.option("--chart", default="", help="Chart: the bundled one by default, or an "
                     "oci:// reference."),
        click.option("--version", "chart_version", default="",
                     help="Chart version (with --chart)."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


class HelmChoice(click.Choice):
    """A choice that also takes Helm's `-o=json` (cobra accepts `=` after a short flag; click
    would read the value as "=json")."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.startswith("="):
            value = value[1:]
        return super().convert(value, param, ctx)


def build_options(**kw) -> Options:
    namespace, namespace_given = resolve_namespace(kw["namespace"], kw["kube_context"],
                                                   kw["kubeconfig"])
    opts = Options(
        release=kw["release"], namespace=namespace, kube_context=kw["kube_context"],
        kubeconfig=kw["kubeconfig"], helm_bin=kw["helm_bin"], timeout=kw["timeout"],
        output=kw["output"], debug=kw["debug"],
    )
    for name in ("project", "region", "cluster", "location", "local", "database",
                 "cloudsql_instance", "db_auth", "database_name", "db_user", "external_uri",
                 "bucket",
                 "create_bucket", "identity", "gsa", "chart", "adopt"):
        if name in kw:
            setattr(opts, name, kw[name])
    if "ip_type" in kw:
        opts.ip_type = kw["ip_type"] or ""
    opts.values_files = list(kw.get("values_files", ()))
    opts.set_values = list(kw.get("set_values", ()))
    opts.set_typed = typed_sets()
    opts.version = kw.get("chart_version", "")
    opts.skip_tests = kw.get("skip_tests", False)
    opts.yes = kw.get("yes", False)
    opts.dry_run = kw.get("dry_run", False)
    opts.given = given_options()
    if namespace_given:
        opts.given.add("namespace")
    from .steps.release import chart_names

    validate(opts)  # first: chart_names reads the --set* items validate checks
    opts.name_values = chart_names(opts)
    return opts


def typed_sets() -> list[tuple[str, str]]:
    """--set-json, --set-string and --set-file items as (flag, item), in command-line order."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return []
    return [(f"--{name.replace('_', '-')}", item)
            for name in ("set_json", "set_string", "set_file")
            for item in ctx.params.get(name) or ()]


def given_options() -> set[str]:
    """The Options fields the user passed by flag or environment (not click's defaults): a
    re-run takes the others from the install record."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return set()
    rename = {"chart_version": "version", "set_string": "set_typed", "set_json": "set_typed",
              "set_file": "set_typed"}
    given = {rename.get(name, name) for name in ctx.params
             if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                   ParameterSource.ENVIRONMENT)}
    given.discard("namespace")  # resolve_namespace says whether it was chosen
    return given


def build_context(opts: Options):
    """The one place adapters are built (tests build their own Context instead)."""
    from .context import Context
    from .gcp import GoogleApis
    from .helm import Helm
    from .kube import Kube
    from .output import Progress

    apis = GoogleApis.from_environment()
    progress = Progress()
    apis.progress = progress
    kube = Kube(opts.kube_context, opts.kubeconfig, apis.retry)
    helm = Helm(opts.helm_bin, opts.kube_context, opts.kubeconfig, opts.timeout)
    return Context(opts=opts, apis=apis, kube=kube, helm=helm, say=progress)


def handle_errors(fn):
    """User errors: message and hint, no traceback (unless --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False)
        from . import apilog

        apilog.enable(debug)
        if debug:
            logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        else:
            # pyhelm3 logs expected failures (a release lookup that finds none) as warnings.
            logging.getLogger("pyhelm3").setLevel(logging.ERROR)
        from . import interrupt

        try:
            with interrupt.handlers():
                return fn(*args, **kwargs)
        except interrupt.Interrupted as exc:
            from .output import print_interrupted

            print_interrupted(exc, kwargs.get("output", "text"), fn.__name__)
            sys.exit(exc.exit_code)
        except UserError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"Error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"  hint: {exc.hint}", err=True)
            if kwargs.get("output") == "json":
                # Machines get a document on stdout too, never an empty one.
                import json

                click.echo(json.dumps({"schemaVersion": 1, "error": {
                    "type": type(exc).__name__, "message": exc.message, "hint": exc.hint,
                    "exitCode": exc.exit_code}}, indent=2))
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
            click.echo("  hint: re-run with --debug for the traceback; it is safe to re-run "
                       "(every step is idempotent)", err=True)
            sys.exit(1)

    return wrapper


def emit(result, opts: Options) -> None:
    from .output import print_result

    print_result(result, opts.output)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="mlflow-helm")
def main() -> None:
    """MLflow on GKE in one command: Cloud SQL, GCS, Workload Identity and the Helm chart.

    Also runs as a Helm plugin: `helm mlflow-gcp COMMAND`.
    """


@main.command()
@cluster_options
@cloud_options
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--skip-tests", is_flag=True, help="Do not run `helm test` after installing.")
@click.option("-y", "--yes", is_flag=True,
              help="Answer yes: to a change of an existing release's settings or resources, "
                   "and to a flag change that restarts the Cloud SQL instance (without a "
                   "terminal those are refused unless --yes).")
@click.option("--wait", "helm_wait", is_flag=True,
              help="Always on: the release is installed with Helm's --wait --wait-for-jobs.")
@click.option("--atomic", "--rollback-on-failure", "helm_atomic", is_flag=True,
              help="Always on: a failed upgrade is rolled back (Helm 3 --atomic, Helm 4 "
                   "--rollback-on-failure).")
@handle_errors
def install(**kw) -> None:
    """Create what MLflow needs in Google Cloud and Kubernetes, install the chart, test it."""
    from .commands import do_install
    from .output import print_changes

    opts = build_options(**kw)
    # In text mode the plan is shown before anything changes; JSON gets one document.
    show = print_changes if opts.output == "text" else None
    # Only a terminal can answer; without one, --yes is the answer (CI).
    ask = ((lambda q: click.confirm(q, default=False, err=True))
           if sys.stdin.isatty() and opts.output == "text" else None)
    emit(do_install(build_context(opts), on_plan=show, confirm=ask), opts)


@main.command()
@cluster_options
@cloud_options
@handle_errors
def plan(**kw) -> None:
    """Show what install would change (same as install --dry-run)."""
    from .commands import do_plan

    opts = build_options(**kw, dry_run=True)
    result, _ = do_plan(build_context(opts))
    emit(result, opts)


@main.command()
@cluster_options
@cloud_options
@handle_errors
def status(**kw) -> None:
    """Each Google Cloud and Kubernetes resource and the release: present, absent, drifted."""
    from .commands import do_status

    opts = build_options(**kw, dry_run=True)
    emit(do_status(build_context(opts)), opts)


@main.command()
@cluster_options
@handle_errors
def test(**kw) -> None:
    """Run the chart's `helm test`; on failure, the failing pod's log and a hint."""
    from .commands import do_test

    opts = build_options(**kw)
    emit(do_test(build_context(opts)), opts)


@main.command()
@cluster_options
@click.argument("revision", type=click.IntRange(min=1), required=False)
@click.option("--after-restore", is_flag=True,
              help="Roll back to an older MLflow: you restored the backup taken before the "
                   "newer one migrated (the refusal names it), so the schema fits again.")
@click.option("--dry-run", is_flag=True, help="Say what the rollback would do; change nothing.")
@handle_errors
def rollback(revision: int | None, after_restore: bool, **kw) -> None:
    """Roll the release back to REVISION (default: the previous one), like `helm rollback`,
    but never to an MLflow older than the schema: that is refused, naming the backup.

    One argument of digits only is the REVISION of release `mlflow` (`rollback 3`)."""
    from .rollback import do_rollback

    if revision is None and kw["release"].isdigit():
        revision, kw["release"] = int(kw["release"]), "mlflow"
    opts = build_options(**kw)
    emit(do_rollback(build_context(opts), revision, after_restore), opts)


@main.command()
@cluster_options
@cloud_options
@click.option("--create-secrets", is_flag=True,
              help="Create the Secrets the manifests read (database password, basic-auth, AI "
                   "Gateway passphrase) when missing; existing ones are never changed.")
@handle_errors
def render(create_secrets: bool, **kw) -> None:
    """Print the manifests with the computed values (for GitOps): the same output on every
    run. Secrets the chart would generate are referenced, not rendered."""
    from .commands import do_render

    opts = build_options(**kw)
    emit(do_render(build_context(opts), create_secrets=create_secrets), opts)


@main.command()
@cluster_options
@cloud_options
@click.option("--purge", is_flag=True, help="Also delete what the install record says this "
              "release created: database, user, bucket (if empty), service account, the IAM "
              "members it added, its Secrets and database volume. Never what it adopted.")
@click.option("--delete-artifacts", is_flag=True, help="With --purge: also delete MLflow's "
              "artifacts (the objects in a bucket this release created, the artifacts "
              "volume).")
@click.option("-y", "--yes", is_flag=True, help="Answer yes to --purge's question (needed "
              "without a terminal).")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted.")
@handle_errors
def uninstall(purge: bool, delete_artifacts: bool, **kw) -> None:
    """Remove the release. Google resources and data are kept unless --purge."""
    from .commands import do_uninstall
    from .errors import BadFlag
    from .output import print_changes

    if delete_artifacts and not purge:
        raise BadFlag("--delete-artifacts needs --purge",
                      "uninstall --purge --delete-artifacts deletes the artifacts too")
    opts = build_options(**kw)
    show = (lambda r: print_changes(r, "Plan")) if opts.output == "text" else None
    result = do_uninstall(build_context(opts), purge,
                          lambda q: click.confirm(q, default=False, err=True), on_plan=show,
                          delete_artifacts=delete_artifacts)
    emit(result, opts)


@main.command()
@click.argument("registry")
@click.option("--chart", default="", help="Chart directory (default: the bundled chart).")
@click.option("--version", "chart_version", default="",
              help="Publish under this version (default: Chart.yaml's).")
@click.option("--sign", is_flag=True, help="Sign the package (helm package --sign).")
@click.option("--key", default="", help="GnuPG key name to sign with.")
@click.option("--keyring", default="", help="GnuPG secret keyring (gpg --export-secret-keys).")
@click.option("--passphrase-file", default="", help="File with the key's passphrase.")
@click.option("--plain-http", is_flag=True, help="Registry without TLS (local registries).")
@click.option("--destination", default="", help="Keep the .tgz (and .prov) here.")
@click.option("--dry-run", is_flag=True, help="Say what would be pushed where; contact nothing.")
@click.option("--helm-bin", envvar="HELM_BIN", default="helm")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("--debug", envvar="HELM_DEBUG", is_flag=True, default=False)
@handle_errors
def publish(registry: str, chart: str, chart_version: str, sign: bool, key: str, keyring: str,
            passphrase_file: str, plain_http: bool, destination: str, dry_run: bool,
            helm_bin: str, output: str, debug: bool) -> None:
    """Lint, package (and sign), push the chart to an OCI registry, pull it back and check.

    REGISTRY: oci://HOST[/PATH]; the chart lands at oci://HOST/PATH/mlflow:VERSION.
    See docs/publish.md.
    """
    import json

    from . import publish as publishing

    echo = (lambda m: click.echo(m, err=True)) if output == "json" else click.echo
    result = publishing.publish(
        registry, chart=chart or None, version=chart_version, sign=sign, key=key,
        keyring=keyring, passphrase_file=passphrase_file, plain_http=plain_http,
        destination=destination, dry_run=dry_run, helm_bin=helm_bin, echo=echo)
    if output == "json":
        click.echo(json.dumps({"schemaVersion": 1, "command": "publish", **result.to_json()},
                              indent=2))


if __name__ == "__main__":
    main()
