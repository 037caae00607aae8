"""The chart's pods under a real OCI runtime (runc), from images built here: what only a
container runtime decides (tests/e2e/README.md, "Real containers").

Primary sources of the behaviour modelled in e2e_oci.py are cited there; what these tests read
back is the kernel's own account (/proc/self/status, errno), not the runner's."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_client import run_client
from e2e_kube import Cluster, KubeError, http_get, render
from e2e_oci import Image, OciPod, PodNetwork, build_images
from e2e_release import Release
from e2e_services import FakeGCS
from test_e2e_configs import (
    ARTIFACT_ROUNDTRIP,
    CONFIGS,
    DEFAULT_EXPERIMENT,
    IN_CONTAINERS,
    route_hosts,
)

PROBE_SCRIPT = r"""
id
grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status
for path in /probe-root-write /opt/mlflow-helm/probe-write /usr/probe-write; do
  if touch "$path" 2>/tmp/err; then echo "WROTE $path"
  else echo "REFUSED $path: $(cat /tmp/err)"; fi
done
touch /tmp/made-here /home/mlflow/made-here
stat -c 'STAT %n %u %g %a' /tmp/made-here /home/mlflow/made-here /tmp /opt/mlflow-helm/db.py
if mount -t tmpfs none /tmp 2>/tmp/err; then echo "MOUNT ok"; else echo "MOUNT refused"; fi
command -v python; command -v mlflow
"""


@pytest.fixture(scope="module")
def images() -> dict[str, Image]:
    return build_images("mlflow-full")


@pytest.fixture
def network() -> Iterator[PodNetwork]:
    net = PodNetwork()
    yield net
    net.close()


@pytest.fixture
def default_objects(helm4: str) -> list[dict]:
    return render(helm4)


def _server_pod_spec(objects: list[dict]) -> dict:
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    return copy.deepcopy(deployment["spec"]["template"]["spec"])


def _run(pod: OciPod, container: dict, timeout: float = 120) -> str:
    process = pod.run(container, timeout=timeout)
    output = process.output()
    assert process.proc.returncode == 0, output
    return output


def test_server_container_runs_with_the_charts_security_context(
    default_objects: list[dict], images: dict[str, Image], network: PodNetwork, tmp_path: Path
) -> None:
    """The server container, as rendered by default, in the official recipe's image: the
    kernel reports the chart's uid and groups, no capabilities at all, no_new_privs, the
    seccomp filter; writes outside the volumes fail with EROFS."""
    spec = _server_pod_spec(default_objects)
    cluster = Cluster(default_objects, workdir=tmp_path)
    pod = OciPod(cluster, spec, "mlflow-6d4cf56db6-sec01", images, network)
    try:
        container = copy.deepcopy(pod.container("mlflow"))
        container["command"], container["args"] = ["sh", "-c", PROBE_SCRIPT], []
        out = _run(pod, container)
    finally:
        pod.stop()
    assert "uid=1000 gid=1000 groups=1000" in out, out
    for field in ("CapEff", "CapBnd", "CapPrm"):
        assert f"{field}:\t0000000000000000" in out, out
    assert "NoNewPrivs:\t1" in out, out
    assert "Seccomp:\t2" in out, out  # SECCOMP_MODE_FILTER
    for path in ("/probe-root-write", "/opt/mlflow-helm/probe-write", "/usr/probe-write"):
        assert f"REFUSED {path}: touch: cannot touch '{path}': Read-only file system" in out, out
    # emptyDirs: files the container makes are its own, in fsGroup (set-gid directory);
    # the scripts configMap is root's, group fsGroup, its defaultMode 0555 kept.
    assert "STAT /tmp/made-here 1000 1000 644" in out, out
    assert "STAT /home/mlflow/made-here 1000 1000 644" in out, out
    assert "STAT /tmp 0 1000 2777" in out, out  # emptyDir: 0777, then set-gid for fsGroup
    assert "STAT /opt/mlflow-helm/db.py 0 1000 555" in out, out
    assert "MOUNT refused" in out, out  # no CAP_SYS_ADMIN
    assert "/usr/bin/python\n/usr/local/bin/mlflow" in out, out


def test_stripped_security_context_is_what_the_runtime_then_allows(
    default_objects: list[dict], images: dict[str, Image], network: PodNetwork, tmp_path: Path
) -> None:
    """The same probe with the chart's context taken away (run as 1000, nothing else): root
    writable, containerd's default capabilities in the bounding set, no seccomp. Proves the
    first test's refusals come from the rendered context, not from the runner: the root is
    writable (uid 1000 gets EACCES on root's directories, not EROFS; /tmp/.. is an emptyDir)."""
    spec = _server_pod_spec(default_objects)
    spec["securityContext"] = {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}
    cluster = Cluster(default_objects, workdir=tmp_path)
    pod = OciPod(cluster, spec, "mlflow-6d4cf56db6-sec02", images, network)
    try:
        container = copy.deepcopy(pod.container("mlflow"))
        container.pop("securityContext")
        container["command"], container["args"] = ["sh", "-c", PROBE_SCRIPT], []
        out = _run(pod, container)
    finally:
        pod.stop()
    refused = "touch: cannot touch '/probe-root-write': Permission denied"
    assert f"REFUSED /probe-root-write: {refused}" in out, out
    assert "CapBnd:\t00000000a80425fb" in out, out  # containerd's 14 default capabilities
    assert "NoNewPrivs:\t0" in out, out
    assert "Seccomp:\t0" in out, out


def test_run_as_non_root_refuses_an_image_that_runs_as_root(
    default_objects: list[dict], images: dict[str, Image], network: PodNetwork, tmp_path: Path
) -> None:
    """The official image runs as root (no USER); without the chart's runAsUser, its
    runAsNonRoot makes the kubelet refuse to start the container, with the kubelet's words."""
    spec = _server_pod_spec(default_objects)
    spec["securityContext"].pop("runAsUser")
    cluster = Cluster(default_objects, workdir=tmp_path)
    pod = OciPod(cluster, spec, "mlflow-6d4cf56db6-sec03", images, network)
    try:
        with pytest.raises(
            KubeError, match="container has runAsNonRoot and image will run as root"
        ):
            pod.start(pod.container("mlflow"))
    finally:
        pod.stop()


def test_pod_network_reaches_services_by_name_and_nothing_off_the_machine(
    default_objects: list[dict], images: dict[str, Image], network: PodNetwork, tmp_path: Path
) -> None:
    """A Service name resolves through the pod's /etc/hosts to a Service IP whose proxy leads
    to a listener of the test; an address off the machine has no route at all."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def answer() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"hello from the service\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    network.forward("mlflow-postgresql", 5432, ("127.0.0.1", port))
    ip = network.service_ip("mlflow-postgresql")
    spec = _server_pod_spec(default_objects)
    cluster = Cluster(default_objects, workdir=tmp_path)
    hosts = {"mlflow-postgresql.mlflow.svc.cluster.local mlflow-postgresql": ip}
    pod = OciPod(cluster, spec, "mlflow-6d4cf56db6-net01", images, network, hosts=hosts)
    script = (
        "exec 3<>/dev/tcp/mlflow-postgresql.mlflow.svc.cluster.local/5432 && head -1 <&3; "
        "if exec 4<>/dev/tcp/192.0.2.1/80; then echo OFF-MACHINE-REACHED; fi; "
        "wc -l < /proc/net/route"
    )
    try:
        container = copy.deepcopy(pod.container("mlflow"))
        container["command"], container["args"] = ["bash", "-c", script], []
        process = pod.run(container, timeout=60)
        out = process.output().split("\n", 1)[1]  # after the logged command line
    finally:
        pod.stop()
        listener.close()
    assert "hello from the service" in out, out
    assert "Network is unreachable" in out, out
    assert "OFF-MACHINE-REACHED" not in out, out
    # The route table: a header and the pod's /24, no default route.
    assert out.strip().splitlines()[-1] == "2", out


# ------------------------------------------------------------------ releases in containers ----


@pytest.fixture(scope="module")
def all_images() -> dict[str, Image]:
    return build_images("mlflow-full", "postgres", "cloud-sql-proxy")


@pytest.fixture
def oci_release(helm4: str, services, all_images: dict[str, Image], network, e2e_dir: Path):
    made = []
    # A fake-gcs-server of its own on the pod bridge: the upload session URLs it hands out
    # name its listening address, which the pods must reach (the session one's is loopback).
    gcs = FakeGCS(host=network.gateway).start()
    services = dataclasses.replace(services, gcs=gcs)

    def make(name: str = "default", **kwargs):
        rel = Release(helm4, services, e2e_dir / name, oci=(network, all_images), **kwargs)
        made.append(rel)
        return rel

    yield make
    gcs.cleanup()
    for rel in made:
        rel.finish()


def test_default_install_in_containers(oci_release) -> None:
    """No values: PostgreSQL as its StatefulSet's pod (the image's initdb on an empty claim),
    the migration Job's pod (backup plan, dump, migration), the server with wait-for-schema,
    then the chart's own helm test, every one a real container in its own network namespace;
    the test reaches the server only through its Service's IP."""
    rel = oci_release()
    rel.install()
    code, output = rel.helm_test()
    assert code == 0, f"{output}\n{rel.logs()}"
    assert "ok    host check (Host mlflow.mlflow.svc.cluster.local:5000 accepted)" in output
    status, body = rel.get("/health")
    assert (status, body) == (200, b"OK"), body
    # The schema is MLflow's, made by the Job in the StatefulSet's database.
    assert rel.db_query("SELECT count(*) FROM alembic_version") == [(1,)]
    pg_log = rel.postgresql_pod.processes[-1].output()
    assert "PostgreSQL init process complete; ready for start up." in pg_log, pg_log


# Configurations of test_e2e_configs.py in real containers: basic auth, the static prefix
# behind a NodePort, GCS served through the server by fake-gcs-server (two replicas, routes),
# an external PostgreSQL, and Cloud SQL for PostgreSQL through the proxy's stand-in as a
# native sidecar (password and IAM).
OCI_CONFIGS = [c for c in CONFIGS if c.id in IN_CONTAINERS]
assert len(OCI_CONFIGS) == len(IN_CONTAINERS), "a configuration id in IN_CONTAINERS is gone"


@pytest.mark.parametrize("config", OCI_CONFIGS, ids=lambda c: c.id)
def test_configuration_in_containers(config, oci_release) -> None:
    rel = config.release(oci_release)
    rel.install()
    code, output = rel.helm_test()
    assert code == 0, f"helm test failed:\n{output}\n{rel.logs()}"
    assert "artifact upload, download, delete" in output, output
    # Every replica serves, at its pod IP.
    for pod in rel.server_pods:
        status, body = http_get(
            5000, rel.prefix() + DEFAULT_EXPERIMENT, rel.service_host(), address=pod.ip
        )
        assert status in (200, 401), f"{pod.name}: HTTP {status} {body[:300]!r}"
    # Clients that come through a route send its host name: the server must accept it.
    for host in route_hosts(rel.cluster.objects):
        status, body = rel.get(DEFAULT_EXPERIMENT, host=host)
        assert status == 200, f"Host {host} (a route's host): HTTP {status} {body[:300]!r}"
    # A NodePort Service answers on the node's address (the bridge's) at its node port.
    for (service, _), node_port in rel.mesh.node_ports.items():
        status, body = http_get(
            node_port,
            rel.prefix() + "/health",
            rel.service_host(),
            address=rel.mesh.network.gateway,
        )
        assert (status, body) == (200, b"OK"), f"{service} node port {node_port}: {status} {body!r}"
    if config.database is not None and config.database.cloudsql:
        # The proxy ran as a native sidecar container in both pods, passed its startupProbe
        # (/startup on --http-port) before the next init container started, and the Job's
        # exited 0 on SIGTERM once the migration was done (--exit-zero-on-sigterm).
        sidecars = [
            p
            for pod in [*rel.server_pods, rel.migrate_pod]
            for p in pod.processes
            if p.name.endswith("/cloud-sql-proxy")
        ]
        assert len(sidecars) == 2, [p.name for pod in rel.server_pods for p in pod.processes]
        for sidecar in sidecars:
            assert "ready for new connections" in sidecar.output(), sidecar.output()
        job_sidecar = next(
            p for p in rel.migrate_pod.processes if p.name.endswith("/cloud-sql-proxy")
        )
        assert job_sidecar.proc.returncode == 0, job_sidecar.output()
        assert rel.migrate_pod.processes.index(job_sidecar) == 0  # before every other container
    if config.id == "ci-prefix-nodeport":
        assert rel.mesh.node_ports, "the NodePort Service got no node port"
    if rel.buckets():
        # A client's artifact goes through the server (in its container) to the bucket.
        result = run_client(ARTIFACT_ROUNDTRIP, rel.tracking_uri(), rel.workdir / "client")
        assert result["artifact_uri"].startswith("mlflow-artifacts:/"), result
        assert result["content"] == "written by the client"
        bucket = rel.buckets()[0]
        assert any(
            name.endswith(f"{result['run_id']}/artifacts/direct/hello.txt")
            for name in rel.services.gcs.objects(bucket)
        ), rel.services.gcs.objects(bucket)

