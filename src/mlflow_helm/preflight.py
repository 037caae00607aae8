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
    # The pool is the cluster's own project's (PROJECT.svc.id.goog) or a fleet host project's:
    # read it, never assume it (discovery, container v1 WorkloadIdentityConfig.workloadPool).
    pool = (cluster.get("workloadIdentityConfig") or {}).get("workloadPool", "")
    if not pool:
        raise UserError(
            f"cluster {opts.cluster} does not have Workload Identity enabled",
            f"gcloud container clusters update {opts.cluster} --location {opts.location} "
            f"--workload-pool={opts.project}.svc.id.goog")
    if not pool.endswith(".svc.id.goog"):
        raise UserError(f"cluster {opts.cluster} has workload pool {pool}, which is not a "
                        "GKE pool (PROJECT.svc.id.goog)", "check the cluster's Workload "
                        "Identity settings")
    ctx.facts.workload_pool = pool
    check_node_pools(ctx, cluster)
    location = cluster.get("location") or opts.location
    ctx.facts.bucket_location = "-".join(location.split("-")[:2]).upper()


# GKE labels the nodes that run the GKE metadata server; pods that need Google credentials
# select them when some node pools do not ("Authenticate to Google Cloud APIs from GKE
# workloads": nodeSelector iam.gke.io/gke-metadata-server-enabled: "true"; Autopilot rejects
# that selector, all its nodes have the server).
WI_NODE_LABEL = "iam.gke.io/gke-metadata-server-enabled"


def check_node_pools(ctx: Context, cluster: dict) -> None:
    """Pools without the GKE metadata server can coexist with ones that have it: MLflow is then
    scheduled onto the latter (a warning says so). With none, nothing could log in."""
    opts = ctx.opts
    if (cluster.get("autopilot") or {}).get("enabled"):
        return
    without = []
    for node_pool in cluster.get("nodePools", []):
        mode = (node_pool.get("config", {}).get("workloadMetadataConfig") or {}).get("mode")
        if mode != "GKE_METADATA":
            without.append((node_pool.get("name", ""), mode or "unset"))
    if not without:
        return
    names = ", ".join(f"{name} (workloadMetadataConfig.mode={mode})" for name, mode in without)
    fix = (f"gcloud container node-pools update POOL --cluster {opts.cluster} --location "
           f"{opts.location} --workload-metadata=GKE_METADATA")
    if len(without) == len(cluster.get("nodePools", [])):
        raise UserError(f"no node pool of cluster {opts.cluster} runs the GKE metadata server, "
                        f"so no pod can use Workload Identity: {names}", fix)
    ctx.facts.wi_node_selector = True
    ctx.facts.notes.append(
        f"warning: node pool{'s' if len(without) > 1 else ''} {names} do not run the GKE "
        f"metadata server; MLflow's pods are scheduled onto the pools that do (nodeSelector "
        f'{WI_NODE_LABEL}: "true"). To use every pool: {fix}')


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


def pool_project_number(ctx: Context) -> None:
    """The number of the project that owns the workload pool, for principal:// members: the
    cluster's project, or the fleet host project for a fleet pool."""
    pool_project = ctx.facts.workload_pool.removesuffix(".svc.id.goog")
    if pool_project == ctx.opts.project:
        ctx.facts.pool_project_number = ctx.facts.project_number
    else:
        ctx.facts.pool_project_number = ctx.crm.project_number(pool_project)


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
    if opts.uses_gcp and opts.identity == "direct" and not opts.needs_gsa:
        pool_project_number(ctx)
    if opts.uses_gcp and opts.database == "cloudsql":
        check_connection_budget(ctx)
        if cluster:
            carry_cloudsql_backup(ctx)


def carry_cloudsql_backup(ctx: Context) -> None:
    """Keep naming the backup the deployed release's migration was allowed to migrate after.
    A re-run that takes no backup (same MLflow image) then renders the same migration Job and
    converges; the Job checks the backup was taken for its own MLflow version, so the old one
    can never let a newer version migrate."""
    current = ctx.helm.release(ctx.opts.release, ctx.opts.namespace)
    named = ((((current or {}).get("values") or {}).get("migrations") or {})
             .get("backup") or {}).get("cloudSql") or {}
    if named.get("backupId"):
        ctx.facts.cloudsql_backup = {"backupId": str(named["backupId"]),
                                     "mlflowVersion": str(named.get("mlflowVersion") or "")}


def check_connection_budget(ctx: Context) -> None:
    """The servers' most connections against the instance's max_connections (budget.py):
    over a safe share, a warning, and smaller sizing values unless the user chose them."""
    import yaml

    from . import budget
    from .chart import bundled_chart
    from .steps.release import user_layer
    from .values import compute_values, deep_merge

    opts, facts = ctx.opts, ctx.facts
    limit, source = budget.max_connections(facts.instance, facts.engine)
    if limit is None:
        return
    defaults = yaml.safe_load((bundled_chart() / "values.yaml").read_text()) or {}
    mine = (opts.recorded_values if opts.recorded_values is not None
            else user_layer(opts)) or {}
    final = deep_merge(deep_merge(defaults, compute_values(ctx)), mine)
    wanted, replicas, workers, per_worker = budget.demand(final)
    share = int(limit * budget.SHARE)
    if wanted + budget.RESERVED <= share:
        return
    name = opts.instance_name
    head = (f"warning: MLflow may open {wanted} connections to Cloud SQL instance {name} "
            f"({replicas} replica(s) x {workers} worker(s) x {per_worker} pool connections, "
            f"plus about {budget.RESERVED} for the migration Job), over "
            f"{int(budget.SHARE * 100)}% of its max_connections {limit} ({source})")
    chosen = [k for k in budget.SIZING_KEYS if budget._get(mine, k) is not None]
    smaller = None if chosen else budget.fit(final, limit)
    if smaller is None:
        facts.notes.append(
            f"{head}. Lower replicaCount, server.workers, server.threadLimit or "
            "database.pool.*, or raise the instance's max_connections flag (chart README, "
            "Sizing)" + (f"; you set {', '.join(chosen)}" if chosen else ""))
        return
    facts.pool_values = smaller
    pool = smaller["database"]["pool"]
    parts = [f"server.threadLimit={smaller['server']['threadLimit']}",
             f"database.pool.size={pool['size']}",
             f"database.pool.maxOverflow={pool['maxOverflow']}"]
    if "workers" in smaller["server"]:
        parts.insert(0, f"server.workers={smaller['server']['workers']}")
    facts.notes.append(f"{head}; so the chart gets {', '.join(parts)}. Set any of these with "
                       "-f/--set to choose yourself, or raise max_connections")
