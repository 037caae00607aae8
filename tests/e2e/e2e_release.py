"""A rendered release brought up as a cluster would: its database and bucket provisioned, the
migration Job and the server pod started together (the server's wait-for-schema init container
waits for the Job), the server probed, and the chart's helm test run against it."""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import e2e_oci
from e2e_kube import Cluster, Pod, Process, free_port, http_get, render, run_in_thread, wait_probe
from e2e_oci import Image, OciCluster, OciPod, PodNetwork
from e2e_services import FakeGCS, MariaDB, PostgreSQL, tail

APP_VERSION = "3.17.2"


@dataclass
class Services:
    postgres: PostgreSQL
    mariadb: MariaDB
    gcs: FakeGCS

    def for_engine(self, engine: str) -> PostgreSQL | MariaDB:
        return self.mariadb if engine == "mysql" else self.postgres


@dataclass
class Database:
    """A database the test creates as a DBA would before installing (Cloud SQL, external)."""

    engine: str  # postgres | mysql
    name: str
    user: str
    password: str | None  # None: IAM database authentication
    cloudsql: bool = False  # made as Cloud SQL makes it (ownership, IAM user grants)


def secret(name: str, namespace: str = "mlflow", **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


@dataclass
class Release:
    helm: str
    services: Services
    workdir: Path
    values: dict = field(default_factory=dict)
    values_files: list[Path] = field(default_factory=list)
    name: str = "mlflow"
    namespace: str = "mlflow"
    extra_objects: list[dict] = field(default_factory=list)
    database: Database | None = None
    # Hosts of external databases: "host:port" in the rendered URI -> engine of the local stand-in.
    external_hosts: dict[str, str] = field(default_factory=dict)
    create_buckets: bool = True
    # Real containers (e2e_oci): the network the pods join and the images they run. Then the
    # in-cluster PostgreSQL runs as its StatefulSet's pod too, and the test reaches the
    # server through its Service's IP.
    oci: tuple[PodNetwork, dict[str, Image]] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.objects = render(self.helm, self.values, self.values_files, self.name, self.namespace)
        self.cluster = Cluster(
            self.objects + list(self.extra_objects),
            self.namespace,
            self.workdir,
            node_env=self.services.gcs.env(),
        )
        self.mesh = OciCluster(self.cluster, *self.oci) if self.oci else None
        if self.mesh is not None:
            self.mesh.check_node_env(self.cluster.node_env)
        self.postgresql_pod: OciPod | None = None
        self.address = ("127.0.0.1", 0)
        self.deployment = self.cluster.get("Deployment")
        self.job = self.cluster.get("Job")
        self.server_pod: Pod | None = None
        self.migrate_pod: Pod | None = None
        self.server_pods: list[Pod] = []
        self.ports: list[int] = []
        self.server: Process | None = None
        self.port = 0
        self.timings: dict[str, float] = {}
        self.db_engine, self.db_name = "postgres", ""
        self._wire()

    # ------------------------------------------------------------------ provisioning ----
    def _wire(self) -> None:
        """Point the in-cluster addresses at the local services and create what the pods expect."""
        cluster = self.cluster
        for address, engine in self.external_hosts.items():
            db = self.services.for_engine(engine)
            cluster.extra_addresses[address] = f"127.0.0.1:{db.port}"
            if self.mesh is not None:
                host, port = address.rsplit(":", 1)
                self.mesh.external(host, int(port), db.port)
        statefulset = next(
            (s for s in cluster.all("StatefulSet") if "postgres" in s["metadata"]["name"]), None
        )
        if statefulset is not None and self.mesh is not None:
            self._start_postgresql(statefulset)
        elif statefulset is not None:
            # The in-cluster PostgreSQL: the official image creates POSTGRES_USER with
            # POSTGRES_PASSWORD and POSTGRES_DB on first start; do the same on the local server.
            pg = self.services.postgres
            pod = Pod(cluster, statefulset["spec"]["template"]["spec"], "postgresql-0")
            env = pod.env(pod.spec["containers"][0])
            self.db_engine, self.db_name = "postgres", env.get("POSTGRES_DB", env["POSTGRES_USER"])
            pg.provision(self.db_name, env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
            labels = statefulset["spec"]["template"]["metadata"]["labels"]
            for svc in cluster.all("Service"):
                selector = svc["spec"].get("selector") or {}
                if selector and all(labels.get(k) == v for k, v in selector.items()):
                    cluster.service_backends[svc["metadata"]["name"]] = {
                        p["port"]: ("127.0.0.1", pg.port) for p in svc["spec"]["ports"]
                    }
        for container in self.deployment["spec"]["template"]["spec"].get("initContainers") or []:
            if container.get("restartPolicy") == "Always":
                instance = [a for a in container.get("args") or [] if not a.startswith("-")][-1]
                engine = self.database.engine if self.database else self._uri_engine()
                cluster.cloudsql_instances[instance] = (
                    "127.0.0.1",
                    self.services.for_engine(engine).port,
                )
                if self.mesh is not None:
                    # Where the proxy stand-in (images/cloud-sql-proxy) finds the instance.
                    project, region, name = instance.split("?")[0].rsplit(":", 2)
                    host = f"{name}.{region}.{project.replace(':', '.')}.cloudsql.e2e"
                    self.mesh.external(host, 3307, self.services.for_engine(engine).port)
        if self.database is not None:
            db = self.database
            self.db_engine, self.db_name = db.engine, db.name
            server = self.services.for_engine(db.engine)
            server.provision(db.name, db.user, db.password, cloudsql=db.cloudsql)
            if db.cloudsql and db.password is None:
                self.grant(db, server)
        elif statefulset is None:
            # A ci/ values file with an outside database: create what its URI names.
            uri = urlsplit(self.backend_uri())
            password = (
                unquote(uri.password) if uri.password else self._migrate_env().get("PGPASSWORD")
            )
            self.db_engine, self.db_name = self._uri_engine(), uri.path.lstrip("/")
            self.services.for_engine(self.db_engine).provision(
                self.db_name, unquote(uri.username or ""), password
            )
        if self.create_buckets:
            for bucket in self.buckets():
                self.services.gcs.create_bucket(bucket)

    def _pod(self, spec: dict, name: str, metadata: dict | None = None) -> Pod:
        if self.mesh is not None:
            return self.mesh.pod(spec, name, metadata)
        return Pod(self.cluster, spec, name, metadata)

    def _start_postgresql(self, statefulset: dict) -> None:
        """The StatefulSet's pod in a real container: its claim made from the claim template
        (as the StatefulSet controller names it: <template>-<pod>), init containers, the
        container started and probed, and then the pod made an endpoint of its Services."""
        spec = copy.deepcopy(statefulset["spec"]["template"]["spec"])
        name = f"{statefulset['metadata']['name']}-0"
        for template in statefulset["spec"].get("volumeClaimTemplates") or []:
            claim = f"{template['metadata']['name']}-{name}"
            self.cluster.add({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": self.namespace},
                "spec": template["spec"],
            })
            volume = {"persistentVolumeClaim": {"claimName": claim}}
            spec.setdefault("volumes", []).append({"name": template["metadata"]["name"], **volume})
        assert self.mesh is not None
        pod = self.mesh.pod(spec, name)
        self.postgresql_pod = pod
        pod.run_init_containers()
        container = spec["containers"][0]
        process = pod.start(container)
        for probe in ("startupProbe", "readinessProbe"):
            self.timings[f"postgresql-{probe}"] = e2e_oci.wait_probe(pod, process, container, probe)
        self.mesh.add_endpoint(pod, statefulset["spec"]["template"]["metadata"]["labels"])
        env = pod.env(container)
        self.db_engine, self.db_name = "postgres", env.get("POSTGRES_DB", env["POSTGRES_USER"])
        self._postgresql_login = (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])

    def grant(self, db: Database, server: PostgreSQL | MariaDB) -> None:
        """What `mlflow-helm install` does once for a Cloud SQL IAM user (src/mlflow_helm/
        dbgrant.py): a temporary built-in user as Cloud SQL creates one, its password in a
        Secret, and the chart's grant Job, rendered with this release's values, run as a pod;
        then the user is dropped again. MLflow's migrations and server then run as the IAM
        user with nothing but what the Job granted."""
        admin, password = "mlflow-helm-grant", "Tmp-Grant-pw.e2e~1"
        cloudsql = {**self.values["database"]["cloudsql"],
                    "grant": {"secretName": "mlflow-db-grant", "adminUser": admin}}
        values = {**self.values, "database": {**self.values["database"], "cloudsql": cloudsql}}
        objects = render(self.helm, values, self.values_files, self.name, self.namespace)
        job = next(o for o in objects if o["kind"] == "Job"
                   and o["metadata"]["labels"].get("mlflow-helm/role") == "db-grant")
        self.cluster.add(secret("mlflow-db-grant", self.namespace, password=password))
        server.add_cloudsql_builtin_user(admin, password)
        try:
            pod = Pod(self.cluster, job["spec"]["template"]["spec"], "mlflow-db-grant-q8m4z")
            pod.emulate_sidecars()
            process = pod.run(pod.container("grant"), timeout=300)
            if process.proc.returncode != 0:
                raise AssertionError(
                    f"grant Job failed ({process.proc.returncode}):\n{tail(process.log, 40)}"
                )
        finally:
            server.drop_user(admin)

    def _migrate_pod(self, name: str | None = None, local: bool = False) -> Pod:
        spec = self.job["spec"]["template"]["spec"]
        name = name or f"{self.job['metadata']['name']}-x7k2p"
        pod = Pod(self.cluster, spec, name) if local else self._pod(spec, name)
        pod.emulate_sidecars()
        return pod

    def _migrate_env(self) -> dict[str, str]:
        pod = self._migrate_pod("probe-env", local=True)
        env, _ = pod.process_env(pod.container("migrate"))
        return env

    def backend_uri(self) -> str:
        """The backend store URI the pods use, mapped to the local database."""
        return self._migrate_env()["MLFLOW_BACKEND_STORE_URI"]

    def _uri_engine(self) -> str:
        return (
            "mysql"
            if self._migrate_env()["MLFLOW_BACKEND_STORE_URI"].startswith("mysql")
            else "postgres"
        )

    def server_args(self) -> list[str]:
        return list(self.deployment["spec"]["template"]["spec"]["containers"][0].get("args") or [])

    def buckets(self) -> list[str]:
        found = []
        for arg in self.server_args():
            m = re.match(r"--(?:artifacts-destination|default-artifact-root)=gs://([^/]+)", arg)
            if m:
                found.append(m.group(1))
        return found

    def artifact_dir(self) -> Path | None:
        claims = [c for c in self.cluster.all("PersistentVolumeClaim")
                  if c["metadata"]["labels"].get("app.kubernetes.io/component") == "server"]
        return self.cluster.pvc_dir(claims[0]["metadata"]["name"]) if claims else None

    # ------------------------------------------------------------------- lifecycle ----
    def migrate(self, name: str | None = None) -> Process:
        """The migration Job's pod (its init containers in order: the backup plan and the dump;
        then the migration), run to completion; fails on a non-zero exit."""
        pod = self._migrate_pod(name)
        self.migrate_pod = pod
        try:
            pod.run_init_containers()
            process = pod.run(pod.container("migrate"), timeout=600)
        finally:
            if isinstance(pod, OciPod):
                pod.stop()  # a finished Job's pod keeps no running container
        if process.proc.returncode != 0:
            raise AssertionError(
                f"migration Job failed ({process.proc.returncode}):\n{tail(process.log, 60)}"
            )
        return process

    def install(self, migrate: bool = True, migrate_when_waiting: bool = False) -> Release:
        """Start every replica's server pod and (as on `helm install`) the migration Job at the
        same time. `migrate_when_waiting`: start the Job only once the replicas' wait-for-schema
        containers report that they wait (proves they wait rather than start or migrate)."""
        spec = self.deployment["spec"]["template"]["spec"]
        replicas = self.deployment["spec"].get("replicas", 1)
        suffix = hashlib.sha256(str(self.workdir).encode()).hexdigest()[:5]
        started = time.monotonic()
        joins = []
        for i in range(replicas):
            name = f"{self.deployment['metadata']['name']}-6d4cf56db6-{suffix[:4]}{i}"
            pod = self._pod(spec, name)
            container = pod.container("mlflow")
            port = free_port()
            if self.mesh is None:
                pod.port_map = {p["containerPort"]: port for p in container.get("ports") or []}
            self.server_pods.append(pod)
            self.ports.append(port)
            joins.append(run_in_thread(pod.run_init_containers))
        self.server_pod, self.port = self.server_pods[0], self.ports[0]
        if migrate_when_waiting:
            for pod in self.server_pods:
                _wait_for_text(pod.dir / "wait-for-schema.log", "waiting for", 300)
        if migrate:
            self.migrate()
        self.timings["migrate"] = time.monotonic() - started
        for join in joins:
            join()
        self.timings["init"] = time.monotonic() - started
        servers = [pod.start(pod.container("mlflow")) for pod in self.server_pods]
        for pod, server, port in zip(self.server_pods, servers, self.ports, strict=True):
            container = pod.container("mlflow")
            if isinstance(pod, OciPod):
                assert self.mesh is not None
                self.timings["startup"] = e2e_oci.wait_probe(pod, server, container)
                self.timings["ready"] = e2e_oci.wait_probe(
                    pod, server, container, "readinessProbe"
                )
                labels = self.deployment["spec"]["template"]["metadata"]["labels"]
                self.mesh.add_endpoint(pod, labels)
                continue
            self.timings["startup"] = wait_probe(server, container, port)
            # The Service sends traffic only to Ready pods: wait for readiness too (with
            # server.warmup it passes once every worker has built its stores).
            self.timings["ready"] = wait_probe(server, container, port, probe="readinessProbe")
        self.server = servers[0]
        if self.mesh is not None:
            self.address = self.mesh.address(self.deployment["metadata"]["name"])
            self.port = self.address[1]
        else:
            self.address = ("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        pods = list(self.server_pods)
        if self.postgresql_pod is not None:
            pods.append(self.postgresql_pod)
        for pod in pods:
            pod.stop()

    def finish(self) -> None:
        """Stop the release's pods and print its phases' timings (shown with `-s`)."""
        self.stop()
        if self.timings:
            print(
                f"\n[e2e timings] {self.workdir.name}: "
                + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
            )

    def helm_test(self, extra_env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run the chart's helm test Pod against the server; returns (exit code, output)."""
        test = next(
            p
            for p in self.cluster.all("Pod")
            if p["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
        )
        pod = self._pod(test["spec"], test["metadata"]["name"])
        env = dict(extra_env or {})
        if self.mesh is None:
            env["MLFLOW_TEST_CONNECT_TO"] = f"127.0.0.1:{self.port}"
        started = time.monotonic()
        try:
            process = pod.run(test["spec"]["containers"][0], timeout=300, extra_env=env)
        finally:
            if isinstance(pod, OciPod):
                pod.stop()
        self.timings["helm-test"] = time.monotonic() - started
        return process.proc.returncode, process.output()

    def get(self, path: str, host: str | None = None) -> tuple[int, bytes]:
        return http_get(
            self.port, self.prefix() + path, host or self.service_host(), address=self.address[0]
        )

    def prefix(self) -> str:
        for arg in self.server_args():
            if arg.startswith("--static-prefix="):
                return arg.split("=", 1)[1]
        return ""

    def service_host(self, port: bool = True) -> str:
        svc = self.cluster.get("Service", self.deployment["metadata"]["name"])
        host = f"{svc['metadata']['name']}.{self.namespace}.svc.cluster.local"
        return f"{host}:{svc['spec']['ports'][0]['port']}" if port else host

    def tracking_uri(self) -> str:
        return f"http://{self.address[0]}:{self.port}{self.prefix()}"

    def server_env(self) -> dict[str, str]:
        assert self.server_pod is not None
        env, _ = self.server_pod.process_env(self.server_pod.container("mlflow"))
        return env

    def db_query(self, statement: str) -> list:
        if self.postgresql_pod is not None:
            import psycopg2

            user, password = self._postgresql_login
            conn = psycopg2.connect(
                host=self.postgresql_pod.ip, user=user, password=password, dbname=self.db_name
            )
            try:
                with conn.cursor() as cur:
                    cur.execute(statement)
                    return list(cur.fetchall()) if cur.description else []
            finally:
                conn.close()
        return self.services.for_engine(self.db_engine).query(self.db_name, statement)

    def logs(self) -> str:
        out = []
        pods = list(self.server_pods)
        pods += [p for p in (self.migrate_pod, self.postgresql_pod) if p is not None]
        for pod in pods:
            for process in pod.processes:
                out.append(f"--- {process.name}\n{tail(process.log, 80)}")
        return "\n".join(out)


def _wait_for_text(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise AssertionError(f"{path} never said {text!r}:\n{tail(path)}")
