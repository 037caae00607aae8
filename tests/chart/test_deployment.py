"""The MLflow server Deployment: arguments, environment, sidecar, security, rollout."""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json

import pytest

from .modes import (
    ARTIFACT_MODES,
    CLOUDSQL_MODES,
    CLOUDSQL_MYSQL_IAM,
    CLOUDSQL_MYSQL_PASSWORD,
    CLOUDSQL_PG_IAM,
    CLOUDSQL_PG_PASSWORD,
    DATABASE_MODES,
    EXTERNAL_MYSQL,
    EXTERNAL_PG,
    EXTERNAL_URI,
    GCS_DIRECT,
    GCS_SERVED,
    INSTANCE,
    merge,
)
from .render import (
    CRD_APIS,
    FULLNAME,
    NAMESPACE,
    RenderError,
    by_kind,
    container,
    env_of,
    env_value,
    get_object,
    jp,
    render_chart,
)

# MLflow 3.17.2's own defaults (mlflow.server.security_utils.get_default_allowed_hosts):
# setting --allowed-hosts replaces them, so the chart must repeat every one.
MLFLOW_DEFAULT_HOSTS = [
    "localhost", "127.0.0.1", "[::1]", "0.0.0.0",
    "localhost:*", "127.0.0.1:*", "[[]::1]:*", "0.0.0.0:*",
    "192.168.*", "10.*", *[f"172.{i}.*" for i in range(16, 32)], "fc00:*", "fd00:*",
]
SERVICE_HOSTS = [
    FULLNAME,
    f"{FULLNAME}.{NAMESPACE}",
    f"{FULLNAME}.{NAMESPACE}.svc",
    f"{FULLNAME}.{NAMESPACE}.svc.cluster.local",
]


def deployment(helm: str, values: dict | None = None) -> dict:
    # A cluster that serves every custom resource API the chart knows: tests that turn a route
    # on are about the server, not about refusing a missing CRD (test_crd_capabilities.py).
    return get_object(render_chart(helm, values, api_versions=CRD_APIS), "Deployment", FULLNAME)


def pod_spec(helm: str, values: dict | None = None) -> dict:
    return deployment(helm, values)["spec"]["template"]["spec"]


def server(helm: str, values: dict | None = None) -> dict:
    return container(pod_spec(helm, values), "mlflow")


def args_of(helm: str, values: dict | None = None) -> list[str]:
    return server(helm, values)["args"]


def arg_value(args: list[str], flag: str) -> str:
    found = [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]
    assert len(found) == 1, f"{flag}= expected once in {args}"
    return found[0]


def allowed_hosts(helm: str, values: dict | None = None) -> list[str]:
    return arg_value(args_of(helm, values), "--allowed-hosts").split(",")


def go_json(data: object) -> str:
    """Helm's toJson (Go's json.Marshal): sorted keys, no spaces, UTF-8, HTML-escaped."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


class TestDeployment:
    # ---------------------------------------------------------------- arguments ---

    def test_server_command_and_base_args(self, helm):
        c = server(helm)
        assert c["command"] == ["mlflow", "server"]
        assert c["args"][:3] == ["--host=0.0.0.0", "--port=5000", "--workers=2"]
        assert c["image"] == "ghcr.io/mlflow/mlflow:v3.17.2-full"

    def test_workers(self, helm):
        assert "--workers=3" in args_of(helm, {"server": {"workers": 3}})

    def test_pvc_artifacts_are_served_from_the_volume(self, helm):
        args = args_of(helm)
        assert "--serve-artifacts" in args
        assert arg_value(args, "--artifacts-destination") == "/mlflow/artifacts"
        mounts = jp("volumeMounts[?name=='artifacts'].mountPath", server(helm))
        assert mounts == ["/mlflow/artifacts"]
        claim = jp("volumes[?name=='artifacts'].persistentVolumeClaim.claimName", pod_spec(helm))
        assert claim == [f"{FULLNAME}-artifacts"]

    def test_gcs_served(self, helm):
        args = args_of(helm, GCS_SERVED)
        assert "--serve-artifacts" in args
        assert arg_value(args, "--artifacts-destination") == "gs://bucket/path"
        assert not any(a.startswith("--default-artifact-root") for a in args)
        assert "--no-serve-artifacts" not in args

    def test_gcs_without_path_and_with_slashes(self, helm):
        assert arg_value(args_of(helm, {"artifacts": {"type": "gcs", "gcs": {"bucket": "b-1"}}}),
                         "--artifacts-destination") == "gs://b-1"
        values = {"artifacts": {"type": "gcs", "gcs": {"bucket": "b-1", "path": "/a/b/"}}}
        assert arg_value(args_of(helm, values), "--artifacts-destination") == "gs://b-1/a/b"

    def test_gcs_direct(self, helm):
        args = args_of(helm, GCS_DIRECT)
        assert "--no-serve-artifacts" in args
        assert "--serve-artifacts" not in args
        assert arg_value(args, "--default-artifact-root") == "gs://bucket/path"
        assert not any(a.startswith("--artifacts-destination") for a in args)

    def test_gcs_has_no_artifact_volume(self, helm):
        spec = pod_spec(helm, GCS_SERVED)
        assert jp("volumes[?name=='artifacts']", spec) == []
        assert jp("containers[0].volumeMounts[?name=='artifacts']", spec) == []

    def test_allowed_hosts_keep_mlflow_defaults_and_add_service_names(self, helm):
        hosts = allowed_hosts(helm)
        missing = [h for h in MLFLOW_DEFAULT_HOSTS if h not in hosts]
        assert not missing, f"MLflow defaults dropped: {missing}"
        for name in SERVICE_HOSTS:
            assert name in hosts
            assert f"{name}:5000" in hosts
        assert "*" not in hosts
        assert len(hosts) == len(set(hosts)), "duplicates in --allowed-hosts"

    def test_allowed_hosts_follow_service_port(self, helm):
        hosts = allowed_hosts(helm, {"service": {"port": 8080}})
        assert f"{FULLNAME}.{NAMESPACE}.svc.cluster.local:8080" in hosts
        assert f"{FULLNAME}:8080" in hosts

    def test_allowed_hosts_add_route_hosts_and_extras(self, helm):
        values = {
            "ingress": {"enabled": True, "hosts": [
                {"host": "ing.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}]},
            "httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}],
                          "hostnames": ["route.example.com"]},
            "virtualService": {"enabled": True, "hosts": ["*", "vs.example.com"]},
            "server": {"allowedHosts": {"extra": ["*.corp.example.com", "extra.example.com"]}},
        }
        hosts = allowed_hosts(helm, values)
        for host in ["ing.example.com", "route.example.com", "vs.example.com",
                     "*.corp.example.com", "extra.example.com"]:
            assert host in hosts
        # The VirtualService's "*" host must not switch the check off.
        assert "*" not in hosts

    def test_allowed_hosts_ignore_disabled_routes(self, helm):
        values = {"httpRoute": {"hostnames": ["route.example.com"]},
                  "virtualService": {"hosts": ["vs.example.com"]}}
        hosts = allowed_hosts(helm, values)
        assert "route.example.com" not in hosts
        assert "vs.example.com" not in hosts
        assert "mlflow.example.com" not in hosts  # ingress.hosts default, ingress off

    @pytest.mark.parametrize(
        ("client", "host"),
        [("port-forward", "localhost:5000"), ("port-forward-ip", "127.0.0.1:5000"),
         ("in-cluster-fqdn", f"{FULLNAME}.{NAMESPACE}.svc.cluster.local:5000"),
         ("in-cluster-short", f"{FULLNAME}:5000"),
         ("in-cluster-ns", f"{FULLNAME}.{NAMESPACE}"),
         ("kubelet-or-pod-ip", "10.8.3.17:5000"),
         ("ingress", "mlflow.example.com"),
         ("extra-wildcard", "team.corp.example.com")],
    )
    def test_clients_pass_the_host_check(self, helm, client, host):
        # MLflow's check (security_utils.is_allowed_host_header): fnmatch for patterns with
        # "*", equality otherwise.
        values = {"ingress": {"enabled": True},
                  "server": {"allowedHosts": {"extra": ["*.corp.example.com"]}}}
        hosts = allowed_hosts(helm, values)
        assert any(fnmatch.fnmatch(host, h) if "*" in h else host == h for h in hosts), (
            f"{client}: Host {host} is refused")

    def test_other_hosts_are_refused(self, helm):
        hosts = allowed_hosts(helm)
        for host in ("evil.example.com", "mlflow.example.com", "34.1.2.3:5000"):
            assert not any(fnmatch.fnmatch(host, h) if "*" in h else host == h for h in hosts)

    def test_allowed_hosts_disabled(self, helm):
        args = args_of(helm, {"server": {"allowedHosts": {"enabled": False}}})
        assert "--allowed-hosts=*" in args

    def test_static_prefix_and_probes(self, helm):
        c = server(helm, {"server": {"staticPrefix": "/mlflow"}})
        assert "--static-prefix=/mlflow" in c["args"]
        for probe in ("startupProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/mlflow/health", "port": "http"}
        # Readiness waits for warm workers (files/sitecustomize.py answers this path).
        assert c["readinessProbe"]["httpGet"] == {"path": "/mlflow/health/ready", "port": "http"}
        assert env_value(c, "MLFLOW_HELM_READY_PATH") == "/mlflow/health/ready"

    def test_probes_on_health_by_default(self, helm):
        c = server(helm)
        assert not any(a.startswith("--static-prefix") for a in c["args"])
        for probe in ("startupProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
        assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 60

    def test_metrics(self, helm):
        c = server(helm, {"metrics": {"enabled": True}})
        path = arg_value(c["args"], "--expose-prometheus")
        # Written by every worker: must be a writable volume on a read-only root filesystem.
        assert jp(f"volumeMounts[?mountPath=='{path}'].name", c) == ["metrics"]
        assert not any(a.startswith("--expose-prometheus") for a in args_of(helm))

    def test_basic_auth(self, helm):
        values = {"auth": {"enabled": True}}
        c = server(helm, values)
        assert "--app-name=basic-auth" in c["args"]
        env = env_of(c)
        assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == "/etc/mlflow-auth/basic_auth.ini"
        assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{FULLNAME}-auth", "key": "admin-password"}
        assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{FULLNAME}-auth", "key": "flask-secret-key"}
        assert "--app-name=basic-auth" not in args_of(helm)

    def test_extra_args_and_env(self, helm):
        values = {"server": {"extraArgs": ["--gunicorn-opts=--timeout 60"],
                             "extraEnv": [{"name": "FOO", "value": "bar"}],
                             "extraEnvFrom": [{"configMapRef": {"name": "cm"}}]}}
        c = server(helm, values)
        assert c["args"][-1] == "--gunicorn-opts=--timeout 60"
        assert env_value(c, "FOO") == "bar"
        assert c["envFrom"] == [{"configMapRef": {"name": "cm"}}]

    def test_cors_uvicorn_and_telemetry(self, helm):
        values = {"server": {"corsAllowedOrigins": ["https://a.example.com",
                                                    "https://b.example.com"],
                             "uvicornOpts": "--timeout-keep-alive 30", "telemetry": True}}
        c = server(helm, values)
        assert arg_value(c["args"], "--cors-allowed-origins") == (
            "https://a.example.com,https://b.example.com")
        assert arg_value(c["args"], "--uvicorn-opts") == "--timeout-keep-alive 30"
        assert "MLFLOW_DISABLE_TELEMETRY" not in env_of(c)
        default = server(helm)
        assert env_value(default, "MLFLOW_DISABLE_TELEMETRY") == "true"
        assert not any(a.startswith(("--cors-allowed-origins", "--uvicorn-opts"))
                       for a in default["args"])

    def test_extra_volumes(self, helm):
        values = {"server": {
            "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
            "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corp",
                                   "readOnly": True}]}}
        spec = pod_spec(helm, values)
        assert {"name": "ca", "configMap": {"name": "corp-ca"}} in spec["volumes"]
        assert {"name": "ca", "mountPath": "/etc/ssl/corp", "readOnly": True} in container(
            spec, "mlflow")["volumeMounts"]

    def test_release_named_like_the_seed(self, helm):
        # The seed's objects were all called "mlflow": release "mlflow" keeps svc/mlflow.
        objects = render_chart(helm, release="mlflow")
        dep = get_object(objects, "Deployment", "mlflow")
        get_object(objects, "Service", "mlflow")
        # A Service named "mlflow" makes Kubernetes inject MLFLOW_PORT=tcp://... into pods
        # (service links), which `mlflow server` reads for --port: the flag must be explicit.
        assert "--port=5000" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--host=0.0.0.0" in dep["spec"]["template"]["spec"]["containers"][0]["args"]

    def test_fullname_override(self, helm):
        objects = render_chart(helm, {"fullnameOverride": "tracking"})
        get_object(objects, "Deployment", "tracking")
        get_object(objects, "StatefulSet", "tracking-postgresql")
        objects = render_chart(helm, {"nameOverride": "mlf"})
        dep = get_object(objects, "Deployment", "prod-mlf")
        assert dep["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "mlf"

    def test_job_execution_fits_in_the_memory_limit(self, helm):
        # DESIGN.md measured MLflow's job runner at ~1.8 GB, and 2 uvicorn workers with it at
        # 2.6 GB RSS (0.8 GB without). Turning jobExecution on with the default 2Gi limit would
        # OOM-kill the server in a loop: the chart must raise the limit or refuse the values.
        values = {"server": {"jobExecution": True}}
        try:
            c = server(helm, values)
        except RenderError as refused:
            assert "server.jobExecution" in refused.stderr, refused.stderr
            return
        assert env_value(c, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION") == "true"
        limit = c["resources"]["limits"]["memory"]
        units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
        number = limit.rstrip("KMGik")
        size = float(number) * units.get(limit[len(number):], 1)
        assert size >= 2.6e9, f"memory limit {limit} with the job runner on (measured 2.6 GB)"

    def test_iam_user_derived_without_setting_user(self, helm):
        # Only auth=iam and the service account set, as a user writes it: the default user must
        # not stay "mlflow" (the proxy would log in as a user that does not exist).
        values = {"database": {"type": "cloudsql", "cloudsql": {
            "instanceConnectionName": "my-project:europe-west1:pg", "auth": "iam"}},
            "serviceAccount": {"gcpServiceAccount": "mlflow-sa@my-project.iam.gserviceaccount.com"}}
        assert env_value(server(helm, values), "MLFLOW_BACKEND_STORE_URI") == (
            "postgresql+psycopg://mlflow-sa%40my-project.iam@127.0.0.1:5432/mlflowdb")

    def test_job_execution_off_by_default(self, helm):
        assert env_value(server(helm), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION") == "false"

    def test_thread_limit_off_by_default(self, helm):
        env = env_of(server(helm))
        assert "MLFLOW_HELM_THREAD_LIMIT" not in env

    def test_warm_workers_by_default(self, helm):
        spec = pod_spec(helm, {"server": {"workers": 3}})
        c = container(spec, "mlflow")
        assert env_value(c, "PYTHONPATH") == "/opt/mlflow-helm"  # loads sitecustomize.py
        assert env_value(c, "MLFLOW_HELM_WARMUP") == "true"
        assert env_value(c, "MLFLOW_HELM_WORKERS") == "3"  # readiness counts all of them
        assert env_value(c, "MLFLOW_HELM_WARM_DIR").startswith("/tmp/")  # the /tmp volume
        for init in spec["initContainers"]:
            assert "MLFLOW_HELM_WARMUP" not in env_of(init)

    def test_warm_workers_off(self, helm):
        c = server(helm, {"server": {"warmup": {"enabled": False}}})
        env = env_of(c)
        assert "MLFLOW_HELM_WARMUP" not in env and "PYTHONPATH" not in env
        assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}

    def test_thread_limit_through_sitecustomize(self, helm):
        spec = pod_spec(helm, {"server": {"threadLimit": 8},
                               "database": {"pool": {"size": 16, "maxOverflow": 4}}})
        c = container(spec, "mlflow")
        assert env_value(c, "MLFLOW_HELM_THREAD_LIMIT") == "8"
        # The scripts volume holds sitecustomize.py; Python imports it from PYTHONPATH.
        assert env_value(c, "PYTHONPATH") == "/opt/mlflow-helm"
        assert {"name": "scripts", "mountPath": "/opt/mlflow-helm", "readOnly": True} in c[
            "volumeMounts"]
        # Only the server: the schema wait and the migration Job run plain Python.
        for init in spec["initContainers"]:
            assert "MLFLOW_HELM_THREAD_LIMIT" not in env_of(init)

    # --------------------------------------------------------------- database env ---

    @pytest.mark.parametrize(
        ("values", "uri"),
        [
            ({}, f"postgresql+psycopg://mlflow@{FULLNAME}-postgresql.{NAMESPACE}"
                 ".svc.cluster.local:5432/mlflowdb"),
            (CLOUDSQL_PG_PASSWORD, "postgresql+psycopg://mlflow@127.0.0.1:5432/mlflowdb"),
            # IAM users of PostgreSQL are the email without ".gserviceaccount.com", URL-encoded.
            (CLOUDSQL_PG_IAM,
             "postgresql+psycopg://mlflow-sa%40my-project.iam@127.0.0.1:5432/mlflowdb"),
            (CLOUDSQL_MYSQL_PASSWORD,
             "mysql+pymysql://mlflow:$(MLFLOW_DB_PASSWORD)@127.0.0.1:3306/mlflowdb"
             "?charset=utf8mb4"),
            # MySQL IAM users are the part before "@", with no password.
            (CLOUDSQL_MYSQL_IAM,
             "mysql+pymysql://mlflow-sa@127.0.0.1:3306/mlflowdb?charset=utf8mb4"),
            (EXTERNAL_PG, "postgresql+psycopg://mlflow@db.example.com:5432/mlflowdb"),
            (EXTERNAL_MYSQL,
             "mysql+pymysql://mlflow:$(MLFLOW_DB_PASSWORD)@db.example.com:3307/mlflowdb"
             "?charset=utf8mb4"),
        ],
        ids=["incluster", "cloudsql-pg-password", "cloudsql-pg-iam", "cloudsql-mysql-password",
             "cloudsql-mysql-iam", "external-pg", "external-mysql"],
    )
    def test_backend_store_uri(self, helm, values, uri):
        spec = pod_spec(helm, values)
        # The server and the schema wait must talk to the same database.
        for c in (container(spec, "mlflow"), container(spec, "wait-for-schema", init=True)):
            assert env_value(c, "MLFLOW_BACKEND_STORE_URI") == uri

    def test_backend_store_uri_from_secret(self, helm):
        c = server(helm, EXTERNAL_URI)
        assert env_of(c)["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
            "name": "ext-db", "key": "uri"}
        assert "MLFLOW_DB_PASSWORD" not in env_of(c)
        assert "PGPASSWORD" not in env_of(c)

    @pytest.mark.parametrize(
        ("values", "secret"),
        [({}, {"name": f"{FULLNAME}-postgresql", "key": "password"}),
         ({"postgresql": {"auth": {"existingSecret": "pg", "secretKey": "pw"}}},
          {"name": "pg", "key": "pw"}),
         (CLOUDSQL_PG_PASSWORD, {"name": "mlflow-db", "key": "password"}),
         (EXTERNAL_PG, {"name": "ext-db", "key": "password"})],
        ids=["incluster", "incluster-existing", "cloudsql", "external"],
    )
    def test_postgres_password_from_secret(self, helm, values, secret):
        c = server(helm, values)
        env = c["env"]
        names = [e["name"] for e in env]
        assert env_of(c)["MLFLOW_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == secret
        assert env_value(c, "PGPASSWORD") == "$(MLFLOW_DB_PASSWORD)"
        # $(VAR) only expands variables defined earlier in the list.
        assert names.index("MLFLOW_DB_PASSWORD") < names.index("PGPASSWORD")
        assert "MLFLOW_DB_PASSWORD" not in env_value(c, "MLFLOW_BACKEND_STORE_URI")

    def test_mysql_password_defined_before_the_uri_that_uses_it(self, helm):
        names = [e["name"] for e in server(helm, CLOUDSQL_MYSQL_PASSWORD)["env"]]
        assert names.index("MLFLOW_DB_PASSWORD") < names.index("MLFLOW_BACKEND_STORE_URI")
        assert "PGPASSWORD" not in names

    @pytest.mark.parametrize("values", [CLOUDSQL_PG_IAM, CLOUDSQL_MYSQL_IAM],
                             ids=["pg", "mysql"])
    def test_iam_auth_has_no_password(self, helm, values):
        env = env_of(server(helm, values))
        assert "MLFLOW_DB_PASSWORD" not in env
        assert "PGPASSWORD" not in env

    def test_explicit_iam_user(self, helm):
        values = merge(CLOUDSQL_PG_IAM,
                       {"database": {"cloudsql": {"user": "other@p.iam"}}})
        assert env_value(server(helm, values), "MLFLOW_BACKEND_STORE_URI") == (
            "postgresql+psycopg://other%40p.iam@127.0.0.1:5432/mlflowdb")

    def test_postgresql_driver_psycopg2(self, helm):
        # For a transaction-mode pooler in front of the database (psycopg 3 prepares statements).
        values = merge(EXTERNAL_PG, {"database": {"postgresqlDriver": "psycopg2"}})
        assert env_value(server(helm, values), "MLFLOW_BACKEND_STORE_URI") == (
            "postgresql+psycopg2://mlflow@db.example.com:5432/mlflowdb")

    def test_pool_settings(self, helm):
        c = server(helm, {"database": {"pool": {"size": 30, "maxOverflow": 15,
                                                "recycleSeconds": 60}}})
        assert env_value(c, "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE") == "30"
        assert env_value(c, "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW") == "15"
        assert env_value(c, "MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE") == "60"

    # ------------------------------------------------------------ Cloud SQL proxy ---

    @pytest.mark.parametrize("values", list(CLOUDSQL_MODES.values()), ids=list(CLOUDSQL_MODES))
    def test_cloudsql_proxy_is_first_native_sidecar(self, helm, values):
        spec = pod_spec(helm, values)
        names = [c["name"] for c in spec["initContainers"]]
        assert names == ["cloud-sql-proxy", "wait-for-schema"]
        proxy = spec["initContainers"][0]
        assert proxy["restartPolicy"] == "Always"
        assert proxy["image"].startswith("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.")
        args = proxy["args"]
        for flag in ("--health-check", "--http-address=0.0.0.0", "--exit-zero-on-sigterm",
                     "--structured-logs", "--address=127.0.0.1"):
            assert flag in args
        assert args[-1] == INSTANCE
        engine_port = "3306" if "mysql" in json.dumps(values) else "5432"
        assert f"--port={engine_port}" in args
        assert ("--auto-iam-authn" in args) == (values["database"]["cloudsql"].get("auth")
                                                == "iam")
        assert proxy["startupProbe"]["httpGet"] == {"path": "/startup", "port": "proxy-health"}
        assert proxy["livenessProbe"]["httpGet"] == {"path": "/liveness",
                                                     "port": "proxy-health"}
        assert jp("ports[?name=='proxy-health'].containerPort", proxy) == [9090]
        assert "--http-port=9090" in args

    @pytest.mark.parametrize(
        ("ip_type", "flag"), [("public", None), ("private", "--private-ip"), ("psc", "--psc")])
    def test_cloudsql_ip_type(self, helm, ip_type, flag):
        values = merge(CLOUDSQL_PG_PASSWORD, {"database": {"cloudsql": {"ipType": ip_type}}})
        args = container(pod_spec(helm, values), "cloud-sql-proxy", init=True)["args"]
        ip_flags = [a for a in args if a in ("--private-ip", "--psc")]
        assert ip_flags == ([flag] if flag else [])

    def test_cloudsql_proxy_port_override(self, helm):
        values = merge(CLOUDSQL_PG_PASSWORD, {"database": {"cloudsql": {"proxy": {"port": 6543}}}})
        spec = pod_spec(helm, values)
        assert "--port=6543" in container(spec, "cloud-sql-proxy", init=True)["args"]
        assert env_value(container(spec, "mlflow"), "MLFLOW_BACKEND_STORE_URI").endswith(
            "@127.0.0.1:6543/mlflowdb")

    @pytest.mark.parametrize("mode", ["incluster", "external-pg", "external-uri"])
    def test_no_proxy_outside_cloudsql(self, helm, mode):
        spec = pod_spec(helm, DATABASE_MODES[mode])
        assert [c["name"] for c in spec["initContainers"]] == ["wait-for-schema"]

    def test_wait_for_schema(self, helm):
        c = container(pod_spec(helm), "wait-for-schema", init=True)
        assert c["command"][:3] == ["python", "/opt/mlflow-helm/db.py", "wait"]
        assert "restartPolicy" not in c
        auth = container(pod_spec(helm, {"auth": {"enabled": True}}), "wait-for-schema", init=True)
        assert "--auth" in auth["command"]

    # ------------------------------------------------------------- full matrix ---

    @pytest.mark.parametrize("toggles", ["plain", "all-on"])
    @pytest.mark.parametrize("artifacts", list(ARTIFACT_MODES))
    @pytest.mark.parametrize("db", list(DATABASE_MODES))
    def test_every_mode_combination(self, helm, db, artifacts, toggles):
        """Every database mode x artifact mode x toggles renders valid objects (the helper
        validates them) with the invariants that hold everywhere."""
        on = {"auth": {"enabled": True}, "metrics": {"enabled": True},
              "networkPolicy": {"enabled": True, "ingressFrom": [
                  {"namespaceSelector": {"matchLabels": {
                      "kubernetes.io/metadata.name": "istio-system"}}}]},
              "podDisruptionBudget": {"enabled": True},
              "server": {"staticPrefix": "/mlflow"},
              "virtualService": {"enabled": True}} if toggles == "all-on" else {}
        values = merge(DATABASE_MODES[db], ARTIFACT_MODES[artifacts], on)
        objects = render_chart(helm, values, api_versions=CRD_APIS)
        spec = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
        init = [c["name"] for c in spec["initContainers"]]
        cloudsql = db.startswith("cloudsql")
        assert init == (["cloud-sql-proxy", "wait-for-schema"] if cloudsql
                        else ["wait-for-schema"])
        args = container(spec, "mlflow")["args"]
        assert ("--no-serve-artifacts" in args) == (artifacts == "gcs-direct")
        assert ("--app-name=basic-auth" in args) == (toggles == "all-on")
        (job,) = [o for o in objects if o["kind"] == "Job"]
        job_init = [c["name"] for c in job["spec"]["template"]["spec"].get("initContainers", [])]
        # Outside Cloud SQL the Job dumps the database before migrating (migrations.backup).
        assert job_init == (["cloud-sql-proxy"] if cloudsql else ["backup-plan", "backup"])
        assert (env_of(container(spec, "mlflow"))["MLFLOW_BACKEND_STORE_URI"]
                == env_of(job["spec"]["template"]["spec"]["containers"][0])[
                    "MLFLOW_BACKEND_STORE_URI"])

    # ---------------------------------------------------------------- security ---

    @pytest.mark.parametrize(
        ("db", "artifacts"),
        [(d, a) for d, a in itertools.product(["incluster", "cloudsql-pg-iam"], ARTIFACT_MODES)],
    )
    def test_restricted_security_on_every_container(self, helm, db, artifacts):
        values = merge(DATABASE_MODES[db], ARTIFACT_MODES[artifacts],
                       {"auth": {"enabled": True}, "metrics": {"enabled": True}})
        spec = pod_spec(helm, values)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"] + spec["initContainers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert "privileged" not in sc or sc["privileged"] is False
            assert sc.get("runAsUser", spec["securityContext"]["runAsUser"]) != 0
            # The restricted profile also needs seccomp RuntimeDefault (from the pod here).
            assert sc.get("seccompProfile", spec["securityContext"]["seccompProfile"]) == {
                "type": "RuntimeDefault"}

    def test_writable_scratch_on_read_only_root(self, helm):
        c = server(helm)
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert mounts["/tmp"] == "tmp"
        assert mounts["/home/mlflow"] == "home"
        assert env_value(c, "HOME") == "/home/mlflow"
        assert jp("volumes[?name=='tmp'].emptyDir", pod_spec(helm)) == [{}]

    def test_resources_hold_the_default_workers(self, helm):
        res = server(helm)["resources"]
        # DESIGN.md: ~250 MiB a worker plus the server; the seed's 512Mi held none.
        assert res["requests"]["memory"] == "1Gi"
        assert res["limits"]["memory"] == "2Gi"

    # ------------------------------------------------------------- annotations ---

    def test_checksum_annotations_match_rendered_data(self, helm):
        objects = render_chart(helm, {"auth": {"enabled": True}})
        annotations = get_object(objects, "Deployment", FULLNAME)["spec"]["template"][
            "metadata"]["annotations"]

        def digest(kind: str, name: str) -> str:
            data = get_object(objects, kind, name)["data"]
            return hashlib.sha256(go_json(data).encode()).hexdigest()

        assert annotations["checksum/scripts"] == digest("ConfigMap", f"{FULLNAME}-scripts")
        assert annotations["checksum/db-secret"] == digest("Secret", f"{FULLNAME}-postgresql")
        assert annotations["checksum/auth-secret"] == digest("Secret", f"{FULLNAME}-auth")

    def test_no_secret_checksums_for_existing_secrets(self, helm):
        values = {"postgresql": {"auth": {"existingSecret": "pg"}},
                  "auth": {"enabled": True, "existingSecret": "auth"}}
        annotations = deployment(helm, values)["spec"]["template"]["metadata"]["annotations"]
        assert set(annotations) == {"checksum/scripts"}

    def test_pod_annotations_and_labels(self, helm):
        d = deployment(helm, {"podAnnotations": {"a": "b"}, "podLabels": {"team": "ml"},
                              "commonAnnotations": {"owner": "x"}})
        assert d["spec"]["template"]["metadata"]["annotations"]["a"] == "b"
        assert d["spec"]["template"]["metadata"]["labels"]["team"] == "ml"
        assert d["metadata"]["annotations"] == {"owner": "x"}

    # ---------------------------------------------------------------- rollout ---

    def test_recreate_with_rwo_volume(self, helm):
        assert deployment(helm)["spec"]["strategy"] == {"type": "Recreate"}

    @pytest.mark.parametrize(
        "values",
        [GCS_SERVED,
         {"artifacts": {"persistence": {"accessModes": ["ReadWriteMany"]}}},
         {"artifacts": {"persistence": {"existingClaim": "shared"}}}],
        ids=["gcs", "rwx", "existing-claim"],
    )
    def test_rolling_update_without_rwo_volume(self, helm, values):
        assert deployment(helm, values)["spec"]["strategy"] == {"type": "RollingUpdate"}

    def test_replicas_and_autoscaling(self, helm):
        assert deployment(helm, merge(GCS_SERVED, {"replicaCount": 3}))["spec"]["replicas"] == 3
        hpa = merge(GCS_SERVED, {"autoscaling": {"enabled": True}})
        assert "replicas" not in deployment(helm, hpa)["spec"]

    def test_labels_and_selector(self, helm):
        d = deployment(helm)
        selector = d["spec"]["selector"]["matchLabels"]
        assert selector == {
            "app.kubernetes.io/name": "mlflow",
            "app.kubernetes.io/instance": "prod",
            "app.kubernetes.io/component": "server",
        }
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        for labels in (d["metadata"]["labels"], pod_labels):
            assert labels["helm.sh/chart"] == "mlflow-0.1.0"
            assert labels["app.kubernetes.io/version"] == "3.17.2"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"

    def test_selector_ignores_common_and_pod_labels(self, helm):
        d = deployment(helm, {"commonLabels": {"team": "ml"}, "podLabels": {"x": "y"}})
        assert set(d["spec"]["selector"]["matchLabels"]) == {
            "app.kubernetes.io/name", "app.kubernetes.io/instance",
            "app.kubernetes.io/component"}
        assert d["metadata"]["labels"]["team"] == "ml"

    def test_service_account(self, helm):
        assert pod_spec(helm)["serviceAccountName"] == FULLNAME
        spec = pod_spec(helm, {"serviceAccount": {"create": False, "name": "byo"}})
        assert spec["serviceAccountName"] == "byo"

    def test_image_digest_and_pull_secrets(self, helm):
        values = {"image": {"digest": "sha256:" + "a" * 64}, "imagePullSecrets": ["regcred"]}
        spec = pod_spec(helm, values)
        assert spec["containers"][0]["image"] == "ghcr.io/mlflow/mlflow@sha256:" + "a" * 64
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]

    # ------------------------------------------------------------ /tmp and ephemeral storage ---
    # MLflow buffers each proxied artifact transfer in full under TMPDIR=/tmp
    # (mlflow/server/handlers.py: _upload_artifact writes the request body into a
    # TemporaryDirectory, then log_artifact; _download_artifact downloads into one, then sends).
    # GKE Autopilot sets ephemeral-storage from the request and evicts a pod that uses more
    # (https://cloud.google.com/kubernetes-engine/docs/concepts/autopilot-resource-requests).

    def test_ephemeral_storage_request(self, helm):
        spec = get_object(render_chart(helm), "Deployment", FULLNAME)["spec"]["template"]["spec"]
        server = container(spec, "mlflow")
        assert server["resources"]["requests"]["ephemeral-storage"] == "2Gi"
        # No size limit by default: a transfer larger than a guess must not evict the pod.
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        assert tmp == {"name": "tmp", "emptyDir": {}}
        assert {"name": "tmp", "mountPath": "/tmp"} in server["volumeMounts"]

    def test_tmp_size_limit(self, helm):
        objects = render_chart(helm, {"server": {"tmp": {"sizeLimit": "8Gi"}}})
        spec = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        assert tmp == {"name": "tmp", "emptyDir": {"sizeLimit": "8Gi"}}
        # Only the server buffers artifacts: the Job and the test pod keep a plain emptyDir.
        job = by_kind(objects, "Job")[0]["spec"]["template"]["spec"]
        assert next(v for v in job["volumes"] if v["name"] == "tmp") == {"name": "tmp",
                                                                           "emptyDir": {}}

    def test_tmp_generic_ephemeral_volume(self, helm):
        # A generic ephemeral volume: a PVC the ephemeral volume controller creates with the
        # pod (owned by it, deleted with it), outside the pod's ephemeral-storage budget
        # (https://kubernetes.io/docs/concepts/storage/ephemeral-volumes/#generic-ephemeral-volumes).
        values = {"server": {"tmp": {"type": "ephemeral", "ephemeral": {
            "size": "50Gi", "storageClassName": "premium-rwo"}}}}
        spec = get_object(render_chart(helm, values), "Deployment", FULLNAME)["spec"][
            "template"]["spec"]
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        claim = tmp["ephemeral"]["volumeClaimTemplate"]
        assert claim["spec"] == {"accessModes": ["ReadWriteOnce"],
                                 "storageClassName": "premium-rwo",
                                 "resources": {"requests": {"storage": "50Gi"}}}
        assert claim["metadata"]["labels"]["app.kubernetes.io/component"] == "server"
        assert {"name": "tmp", "mountPath": "/tmp"} in container(spec, "mlflow")["volumeMounts"]
        default_class = render_chart(helm, {"server": {"tmp": {"type": "ephemeral"}}})
        spec = get_object(default_class, "Deployment", FULLNAME)["spec"]["template"]["spec"]
        claim = next(v for v in spec["volumes"] if v["name"] == "tmp")["ephemeral"][
            "volumeClaimTemplate"]
        assert "storageClassName" not in claim["spec"]
        assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
