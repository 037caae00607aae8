"""Preflight: read-only checks before any change. Bad flags were rejected earlier."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .context import Context
from .errors import UserError
from .options import infer_from_context

MIN_KUBE = (1, 29)


def resolve_project(ctx: Context) -> None:
    """--project > CLOUDSDK_CORE_PROJECT (read by the CLI) > the kube context > ADC."""
    opts = ctx.opts
    if not opts.uses_gcp:
        return
    _, adc_project = ctx.apis.authenticate()
    opts.project = opts.project or adc_project
    if not opts.project:
        raise UserError("no Google Cloud project given",
                        "pass --project, set CLOUDSDK_CORE_PROJECT, or "
                        "`gcloud config set project PROJECT`")
    ctx.apis.project = opts.project


def check_kubernetes(ctx: Context) -> None:
    major, minor, git_version = ctx.kube.server_version()
    ctx.facts.kube_version = git_version
    if (major, minor) < MIN_KUBE:
        raise UserError(f"Kubernetes {git_version} is too old: the chart needs 1.29 or later "
                        "(native sidecars)", "upgrade the cluster")


def check_helm(ctx: Context) -> None:
    ctx.helm.major()
    ctx.facts.helm_version = ctx.helm.version_string


def check_cluster(ctx: Context) -> None:
    """The GKE cluster runs Workload Identity, and its node pools use the GKE metadata server."""
    opts = ctx.opts
    if not (opts.cluster and opts.location):
        raise UserError("cannot tell which GKE cluster this is",
                        "pass --cluster and --location, or use a gke_PROJECT_LOCATION_CLUSTER "
                        "kube context (`gcloud container clusters get-credentials`)")
    cluster = ctx.container.get_cluster(opts.project, opts.location, opts.cluster)
    if cluster is None:
        raise UserError(f"GKE cluster {opts.cluster} not found in {opts.project}/{opts.location}",
                        "check --cluster, --location and --project")
    pool = (cluster.get("workloadIdentityConfig") or {}).get("workloadPool", "")
    expected = f"{opts.project}.svc.id.goog"
    if pool != expected:
        raise UserError(
            f"cluster {opts.cluster} does not have Workload Identity enabled "
            f"(workloadPool={pool or 'none'})",
            f"gcloud container clusters update {opts.cluster} --location {opts.location} "
            f"--workload-pool={expected}")
    ctx.facts.workload_pool = pool
    for node_pool in cluster.get("nodePools", []):
        mode = (node_pool.get("config", {}).get("workloadMetadataConfig") or {}).get("mode")
        if mode != "GKE_METADATA":
            raise UserError(
                f"node pool {node_pool.get('name')} does not use the GKE metadata server "
                f"(workloadMetadataConfig.mode={mode or 'unset'})",
                f"gcloud container node-pools update {node_pool.get('name')} --cluster "
                f"{opts.cluster} --location {opts.location} --workload-metadata=GKE_METADATA")
    location = cluster.get("location") or opts.location
    ctx.facts.bucket_location = "-".join(location.split("-")[:2]).upper()


def check_instance(ctx: Context) -> None:
    opts = ctx.opts
    project = ctx.instance_project
    instance = ctx.sql.get_instance(project, opts.instance_name)
    if instance is None:
        raise UserError(f"Cloud SQL instance {opts.instance_name} not found in project {project}",
                        "check --cloudsql-instance (NAME or PROJECT:REGION:NAME) and --project")
    if opts.instance_region and instance.get("region") != opts.instance_region:
        raise UserError(f"Cloud SQL instance {opts.instance_name} is in {instance.get('region')},"
                        f" not {opts.instance_region}", "fix --cloudsql-instance")
    state = instance.get("state")
    if state != "RUNNABLE":
        raise UserError(f"Cloud SQL instance {opts.instance_name} is {state}, not RUNNABLE",
                        "start it (`gcloud sql instances patch NAME --activation-policy=ALWAYS`)")
    version = instance.get("databaseVersion", "")
    if version.startswith("POSTGRES"):
        ctx.facts.engine = "postgres"
    elif version.startswith("MYSQL"):
        ctx.facts.engine = "mysql"
    else:
        raise UserError(f"Cloud SQL instance {opts.instance_name} runs {version}",
                        "MLflow supports PostgreSQL and MySQL instances")
    ctx.facts.instance = instance
    ctx.facts.connection_name = instance.get("connectionName", "")
    types = {a.get("type") for a in instance.get("ipAddresses", [])}
    psc = (instance.get("settings", {}).get("ipConfiguration", {}).get("pscConfig", {})
           .get("pscEnabled"))
    available = {"private": "PRIVATE" in types, "public": "PRIMARY" in types, "psc": bool(psc)}
    if opts.ip_type:
        if not available[opts.ip_type]:
            offered = ", ".join(k for k, v in available.items() if v) or "none"
            raise UserError(f"--ip-type {opts.ip_type}: instance {opts.instance_name} has no "
                            f"{opts.ip_type} IP (it offers: {offered})", "pick one it offers")
        ctx.facts.ip_type = opts.ip_type
    else:
        # From GKE, the private IP is the shortest and safest path when the VPC has one.
        ctx.facts.ip_type = next((k for k in ("private", "public", "psc") if available[k]), "")
        if not ctx.facts.ip_type:
            raise UserError(f"instance {opts.instance_name} has no IP address to connect to",
                            "enable a public or private IP on the instance")


def needed_services(ctx: Context) -> list[str]:
    """The Google APIs this run calls (and, for Cloud SQL, the Auth Proxy calls at run time)."""
    opts = ctx.opts
    services = ["cloudresourcemanager.googleapis.com", "container.googleapis.com"]
    if opts.needs_gsa:
        services.append("iam.googleapis.com")
    if opts.database == "cloudsql":
        services.append("sqladmin.googleapis.com")
    if opts.bucket_name:
        services.append("storage.googleapis.com")
    return services


def check_project(ctx: Context) -> None:
    """The project exists and is visible (Resource Manager answers 403 for both a missing and
    a hidden project: gcp.denied says so), and every API the run calls is enabled in it."""
    project = ctx.opts.project
    ctx.facts.project_number = ctx.crm.project_number(project)
    ctx.apis.project_number = ctx.facts.project_number
    disabled = ctx.services.disabled(ctx.facts.project_number, needed_services(ctx))
    if disabled:
        raise UserError(
            f"{'these APIs are' if len(disabled) > 1 else 'this API is'} not enabled in "
            f"project {project}: {', '.join(disabled)}",
            f"gcloud services enable {' '.join(disabled)} --project {project}, wait a minute, "
            "then re-run")


def preflight(ctx: Context, cluster: bool = True) -> None:
    """Every read the plan needs, before the plan. The checks are independent reads, so they
    run at once; when several fail, the first in the order below is the one reported.

    `cluster=False` (render) skips the checks that need the Kubernetes API.
    """
    opts = ctx.opts
    if not opts.local:
        infer_from_context(opts, ctx.kube.current_context())
    checks = [check_helm]
    if cluster:
        checks.append(check_kubernetes)
    if opts.uses_gcp:
        resolve_project(ctx)
        # The project and its APIs first: when they are wrong, every other read fails too,
        # and this is the failure that says what to do.
        check_project(ctx)
        checks.append(check_cluster)
        if opts.identity == "direct" and opts.needs_gsa:
            ctx.facts.notes.append(
                "--identity direct: IAM database authentication logs in as a Google service "
                "account, so MLflow uses one (" + opts.gsa_email + ")")
        if opts.database == "cloudsql":
            checks.append(check_instance)
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = [pool.submit(check, ctx) for check in checks]
    for future in futures:
        future.result()
