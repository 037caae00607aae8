"""What the user asked for, validated before any API call.

`Options` holds the parsed flags; `validate()` rejects every bad value with a message that
names the flag. Nothing here talks to a network.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from .errors import BadFlag

RELEASE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAMESPACE_RE = RELEASE_RE
PROJECT_RE = re.compile(r"^([a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
INSTANCE_RE = re.compile(r"^[a-z][a-z0-9-]{0,96}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
LOCATION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+(-[a-z])?$")
GSA_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
DBUSER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
DBNAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
CLUSTER_RE = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
GKE_CONTEXT_RE = re.compile(r"^gke_(?P<project>[^_]+)_(?P<location>[^_]+)_(?P<cluster>.+)$")



def fit_name(name: str, limit: int = 63) -> str:
    """The chart's `mlflow.fit`: a name too long for its limit is cut and ends in "-" and the
    first 8 hex digits of the sha256 of the whole name."""
    if len(name) <= limit:
        return name
    return f"{name[:limit - 9].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def component_name(fullname: str, suffix: str, limit: int = 63) -> str:
    """The chart's `mlflow.componentName`: "<fullname>-<suffix>", or when that is too long the
    full name cut, 8 hex digits of the sha256 of the whole name, and the suffix."""
    name = f"{fullname}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{fullname[:limit - len(suffix) - 10].rstrip('-')}-{digest}-{suffix}"


DATABASES = ("incluster", "cloudsql", "external")
DB_AUTHS = ("password", "iam")
IDENTITIES = ("gsa", "direct")
IP_TYPES = ("public", "private", "psc")


@dataclass
class Options:
    release: str = "mlflow"
    namespace: str = "mlflow"
    kube_context: str = ""
    kubeconfig: str = ""
    project: str = ""
    region: str = ""
    cluster: str = ""
    location: str = ""
    bucket: str = ""  # gs://NAME[/PATH] as given
    create_bucket: bool = False
    database: str = "incluster"
    cloudsql_instance: str = ""
    db_auth: str = "password"
    # Empty: derived from the namespace and release (see default_db_names), so two releases
    # on one Cloud SQL instance never share a database or a user.
    database_name: str = ""
    db_user: str = ""
    ip_type: str = ""
    external_uri: str = ""
    identity: str = "gsa"
    gsa: str = ""
    local: bool = False
    values_files: list[str] = field(default_factory=list)
    set_values: list[str] = field(default_factory=list)
    # --set-json, --set-string, --set-file as (flag, item), in the order given.
    set_typed: list[tuple[str, str]] = field(default_factory=list)
    chart: str = ""
    version: str = ""
    # Helm's --timeout; empty: long enough for the migration (steps/release.py
    # upgrade_timeout) for install and upgrade, 10m for helm test.
    timeout: str = ""
    skip_tests: bool = False
    yes: bool = False
    dry_run: bool = False
    output: str = "text"
    debug: bool = False
    helm_bin: str = "helm"
    # Use a database, user, service account or bucket that exists and is not in this
    # release's install record (another release's, or made by hand).
    adopt: bool = False
    # The Options fields the user passed (flag or environment); None: all of them (callers
    # that build Options themselves). A re-run takes the others from the install record.
    given: set[str] | None = None
    # The account an install record names when --gsa was never passed (commands.from_record).
    recorded_gsa: str = ""
    # The user's -f/--set layer taken from the install record (no -f/--set given).
    recorded_values: dict | None = None
    # The user layer this run applied (written to the record).
    applied_values: dict | None = None

    # Derived by validate().
    bucket_name: str = ""
    bucket_path: str = ""
    instance_project: str = ""
    instance_region: str = ""
    instance_name: str = ""

    # Naming values the user passes with -f/--set (read by chart_names()).
    name_values: dict = field(default_factory=dict)

    @property
    def helm_sets(self) -> list[tuple[str, str]]:
        """Every --set* item as Helm gets it, as (flag, item)."""
        return [*(("--set", item) for item in self.set_values), *self.set_typed]

    @property
    def fullname(self) -> str:
        """The chart's `mlflow.fullname` (with the user's fullnameOverride/nameOverride)."""
        override = self.name_values.get("fullnameOverride")
        if override:
            return fit_name(str(override))
        chart = self.name_values.get("nameOverride") or "mlflow"
        return fit_name(self.release if chart in self.release else f"{self.release}-{chart}")

    @property
    def ksa_name(self) -> str:
        """The Kubernetes ServiceAccount MLflow's pods run as (`mlflow.serviceAccountName`)."""
        return self.name_values.get("serviceAccount.name") or self.fullname

    @property
    def uses_gcp(self) -> bool:
        return not self.local and (self.database == "cloudsql" or bool(self.bucket_name))

    @property
    def db_secret_name(self) -> str:
        return f"{self.fullname[:59].rstrip('-')}-db"

    @property
    def gsa_name(self) -> str:
        return self.gsa or self.recorded_gsa or default_gsa_name(self.namespace, self.release)

    @property
    def gsa_email(self) -> str:
        if "@" in self.gsa_name:
            return self.gsa_name
        return f"{self.gsa_name}@{self.project}.iam.gserviceaccount.com"

    @property
    def gsa_project(self) -> str:
        """The project the service account lives in: the one its email names
        (NAME@PROJECT.iam.gserviceaccount.com), which need not be --project."""
        domain = self.gsa_email.split("@", 1)[1]
        if domain.endswith(".iam.gserviceaccount.com"):
            return domain.removesuffix(".iam.gserviceaccount.com")
        return self.project

    @property
    def gsa_creatable(self) -> bool:
        """Only user-managed accounts (NAME@PROJECT.iam.gserviceaccount.com) can be created;
        Google-managed ones (the Compute Engine or App Engine default) exist or do not."""
        return self.gsa_email.endswith(".iam.gserviceaccount.com")

    @property
    def needs_gsa(self) -> bool:
        """A Google service account is used (direct identity falls back for IAM DB auth)."""
        if not self.uses_gcp:
            return False
        return self.identity == "gsa" or self.iam_db_auth

    @property
    def iam_db_auth(self) -> bool:
        return self.database == "cloudsql" and self.db_auth == "iam"


def _bad(flag: str, value: str, why: str, hint: str = "") -> BadFlag:
    return BadFlag(f"{flag} {value!r}: {why}", hint)


def infer_from_context(opts: Options, context: str) -> None:
    """Fill --project, --location, --cluster from a `gke_PROJECT_LOCATION_CLUSTER` context."""
    match = GKE_CONTEXT_RE.match(context or "")
    if not match:
        return
    opts.project = opts.project or match["project"]
    opts.location = opts.location or match["location"]
    opts.cluster = opts.cluster or match["cluster"]


def default_db_names(namespace: str, release: str) -> tuple[str, str]:
    """(database, user) for a release that names neither: `mlflow_NAMESPACE_RELEASE`, cut
    to PostgreSQL's 63 and MySQL's 32 characters with a hash of the whole, so releases that
    share a Cloud SQL instance never share a database or a user."""
    import hashlib

    base = f"mlflow_{namespace}_{release}".replace("-", "_")
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]

    def cut(limit: int) -> str:
        return base if len(base) <= limit else f"{base[:limit - 9]}_{digest}"

    return cut(63), cut(32)


def default_gsa_name(namespace: str, release: str) -> str:
    """The Google service account of a release that names none: `mlflow-NAMESPACE-RELEASE`,
    cut to IAM's 30 characters with a hash of the whole (as the database names are), so two
    releases in one project never share an identity: purging one cannot delete the account
    the other's pods run as, and neither changes the other's Workload Identity bindings."""
    import hashlib

    base = f"mlflow-{namespace}-{release}"
    if len(base) <= 30:
        return base
    return f"{base[:21].rstrip('-')}-{hashlib.sha256(base.encode()).hexdigest()[:8]}"


GO_DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def duration_seconds(value: str) -> float:
    """A Go duration as Helm's --timeout takes it (time.ParseDuration), in seconds."""
    return sum(float(number) * DURATION_UNITS[unit]
               for number, unit in re.findall(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", value))


SET_KEY_RE = re.compile(r"^[A-Za-z0-9_.\[\]-]+$")


def split_pairs(item: str) -> list[str]:
    """A --set/--set-string/--set-file item's KEY=VALUE parts: strvals splits on commas, and
    `\\,` escapes one."""
    return re.split(r"(?<!\\),", item)


def check_set(item: str, flag: str = "--set") -> None:
    """Helm's --set syntax (strvals): KEY=VALUE[,KEY=VALUE]; a part without '=' or with an
    empty key is what Helm would refuse only after everything else was created."""
    for part in split_pairs(item):
        key, eq, _ = part.partition("=")
        if not eq or not key.strip() or not SET_KEY_RE.match(key.strip()):
            raise _bad(flag, item, f"{part!r} is not KEY=VALUE",
                       f"use {flag} key.path=value (repeat {flag}, or separate pairs with ',')")


def check_typed_set(flag: str, item: str) -> None:
    """--set-string KEY=VALUE[,…]; --set-json KEY=JSON[,…] (the JSON parsed here, as Helm's
    strvals.ParseJSON would); --set-file KEY=PATH[,…] (the file readable now)."""
    if flag == "--set-string":
        check_set(item, flag)
        return
    if flag == "--set-json":
        from .steps.release import parse_set_json

        try:
            parse_set_json(item)
        except ValueError as exc:
            raise _bad(flag, item, str(exc),
                       "use --set-json 'key.path=JSON', e.g. 'server.extraArgs=[\"--x\"]'"
                       ) from None
        return
    for part in split_pairs(item):
        key, eq, path = part.partition("=")
        if not eq or not key.strip() or not SET_KEY_RE.match(key.strip()):
            raise _bad(flag, item, f"{part!r} is not KEY=PATH",
                       "use --set-file key.path=FILE (the file's content becomes the value)")
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise _bad(flag, item, f"cannot read {path}: {exc.strerror}",
                       "give a readable file; its content becomes the value") from None


def validate(opts: Options) -> Options:
    """Check every flag; fill derived fields. Raises BadFlag naming the first bad flag."""
    if opts.timeout and not GO_DURATION_RE.match(opts.timeout):
        raise _bad("--timeout", opts.timeout, "not a duration with a unit",
                   "use Helm's units, e.g. 90s, 10m or 1h30m")
    for item in opts.set_values:
        check_set(item)
    for flag, item in opts.set_typed:
        check_typed_set(flag, item)
    if opts.version and not opts.chart:
        raise BadFlag(f"--version {opts.version!r} needs --chart",
                      "the bundled chart has one version; pass --chart oci://HOST/PATH/mlflow "
                      "to pick another")
    if opts.chart and "://" not in opts.chart:
        from pathlib import Path

        if not (Path(opts.chart) / "Chart.yaml").is_file() and not (
                Path(opts.chart).is_file() and opts.chart.endswith(".tgz")):
            raise _bad("--chart", opts.chart, "no chart there (no Chart.yaml, not a .tgz)",
                       "give a chart directory, a packaged .tgz or an oci:// reference")
    if opts.external_uri:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(opts.external_uri)
            ok = bool(parts.scheme) and "://" in opts.external_uri and bool(
                parts.hostname or parts.path.strip("/"))
        except ValueError:
            ok = False
        if not ok:
            # Never echo the value: it may carry a password.
            raise BadFlag("--external-uri is not a URL (value not shown)",
                          "give a SQLAlchemy URI, e.g. postgresql+psycopg2://user:pw@host/db")
    derived_db, derived_user = default_db_names(opts.namespace, opts.release)
    opts.database_name = opts.database_name or derived_db
    opts.db_user = opts.db_user or derived_user
    if not RELEASE_RE.match(opts.release) or len(opts.release) > 53:
        raise _bad("RELEASE", opts.release, "not a Helm release name",
                   "use lowercase letters, digits and '-', at most 53 characters")
    if not NAMESPACE_RE.match(opts.namespace) or len(opts.namespace) > 63:
        raise _bad("--namespace", opts.namespace, "not a Kubernetes namespace name",
                   "use lowercase letters, digits and '-', at most 63 characters")
    if opts.output not in ("text", "json"):
        raise _bad("--output", opts.output, "must be text or json")
    if opts.database not in DATABASES:
        raise _bad("--database", opts.database, f"must be one of {', '.join(DATABASES)}")
    if opts.db_auth not in DB_AUTHS:
        raise _bad("--db-auth", opts.db_auth, "must be password or iam")
    if opts.identity not in IDENTITIES:
        raise _bad("--identity", opts.identity, "must be gsa or direct")
    if opts.ip_type and opts.ip_type not in IP_TYPES:
        raise _bad("--ip-type", opts.ip_type, "must be public, private or psc")
    if not DBNAME_RE.match(opts.database_name):
        raise _bad("--database-name", opts.database_name, "not a database name",
                   "use letters, digits and '_', starting with a letter")

    if not DBUSER_RE.match(opts.db_user):
        raise _bad("--db-user", opts.db_user, "not a database user name",
                   "up to 32 lowercase letters, digits, '_' and '-'")
    if opts.local:
        conflicting = [
            flag for flag, value in (
                ("--bucket", opts.bucket), ("--cloudsql-instance", opts.cloudsql_instance),
                ("--gsa", opts.gsa), ("--create-bucket", opts.create_bucket),
                ("--external-uri", opts.external_uri),
            ) if value
        ]
        if opts.database != "incluster":
            conflicting.append("--database")
        if conflicting:
            raise BadFlag(f"--local cannot be combined with {', '.join(conflicting)}",
                          "--local uses in-cluster PostgreSQL and a PVC and no Google Cloud "
                          "at all; drop --local to use Google Cloud")
        return opts

    if opts.bucket:
        if not opts.bucket.startswith("gs://"):
            raise _bad("--bucket", opts.bucket, "must look like gs://NAME[/PATH]")
        name, _, path = opts.bucket[len("gs://"):].partition("/")
        if not BUCKET_RE.match(name) or name.startswith("goog") or ".." in name:
            raise _bad("--bucket", opts.bucket, f"{name!r} is not a valid bucket name",
                       "3-63 lowercase letters, digits, '-', '_' and '.'")
        opts.bucket_name, opts.bucket_path = name, path.strip("/")
    elif opts.create_bucket:
        raise BadFlag("--create-bucket needs --bucket gs://NAME")

    if opts.database == "cloudsql":
        if not opts.cloudsql_instance:
            raise BadFlag("--database cloudsql needs --cloudsql-instance",
                          "pass the instance name, or PROJECT:REGION:NAME")
        parts = opts.cloudsql_instance.split(":")
        if len(parts) == 1:
            opts.instance_name = parts[0]
        elif len(parts) == 3:
            opts.instance_project, opts.instance_region, opts.instance_name = parts
        elif len(parts) == 4:  # domain-scoped project: example.com:proj:region:name
            opts.instance_project = f"{parts[0]}:{parts[1]}"
            opts.instance_region, opts.instance_name = parts[2], parts[3]
        else:
            raise _bad("--cloudsql-instance", opts.cloudsql_instance,
                       "must be NAME or PROJECT:REGION:NAME")
        if not INSTANCE_RE.match(opts.instance_name):
            raise _bad("--cloudsql-instance", opts.cloudsql_instance,
                       f"{opts.instance_name!r} is not a Cloud SQL instance name")
        if opts.instance_project and not PROJECT_RE.match(opts.instance_project):
            raise _bad("--cloudsql-instance", opts.cloudsql_instance,
                       f"{opts.instance_project!r} is not a project id")
        if opts.instance_region and not REGION_RE.match(opts.instance_region):
            raise _bad("--cloudsql-instance", opts.cloudsql_instance,
                       f"{opts.instance_region!r} is not a region")
    elif opts.cloudsql_instance:
        raise BadFlag("--cloudsql-instance needs --database cloudsql")
    if opts.db_auth == "iam" and opts.database != "cloudsql":
        raise BadFlag("--db-auth iam needs --database cloudsql",
                      "IAM database authentication is a Cloud SQL feature")
    if opts.database == "external" and not opts.external_uri:
        raise BadFlag("--database external needs --external-uri (or MLFLOW_HELM_EXTERNAL_URI)",
                      "give the SQLAlchemy URI, e.g. postgresql+psycopg2://user:pw@host/db; "
                      "it is stored in a Kubernetes Secret, never printed")

    if opts.gsa:
        account = opts.gsa.split("@", 1)[0]
        if not GSA_RE.match(account):
            raise _bad("--gsa", opts.gsa, "not a service account name",
                       "6-30 lowercase letters, digits and '-', starting with a letter")
        if opts.identity == "direct":
            raise BadFlag("--gsa cannot be combined with --identity direct")
    if opts.project and not PROJECT_RE.match(opts.project):
        raise _bad("--project", opts.project, "not a Google Cloud project id",
                   "6-30 lowercase letters, digits and '-', starting with a letter")
    if opts.region and not REGION_RE.match(opts.region):
        raise _bad("--region", opts.region, "not a region (for example europe-west1)")
    if opts.location and not LOCATION_RE.match(opts.location):
        raise _bad("--location", opts.location, "not a region or zone")
    if opts.cluster and not CLUSTER_RE.match(opts.cluster):
        raise _bad("--cluster", opts.cluster, "not a GKE cluster name")
    return opts
