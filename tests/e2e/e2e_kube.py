"""Just enough of Kubernetes to run the rendered chart's containers as local processes.

`render()` runs `helm template`; `Cluster` holds the rendered objects plus what the test adds
(Secrets the chart references but does not create, where Services and Cloud SQL instances really
are); `Pod` turns a pod spec into processes: volumes become per-pod directories, the environment
is resolved as the kubelet resolves it (envFrom, ordered env with `$(VAR)` expansion, valueFrom,
service links), and in-pod paths and in-cluster addresses in command, args and env are mapped
to their local stand-ins.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from e2e_services import free_port, spawn, stop_process, tail

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "mlflow"
VENV_BIN = Path(sys.executable).parent
POD_IP = "10.244.1.23"
CLUSTER_DOMAIN = "cluster.local"
CLOUDSQL_PROXY_IMAGE = "cloud-sql-connectors/cloud-sql-proxy"
# The stand-in cluster serves the custom resource APIs the chart can render (as
# tests/chart/render.py's CRD_APIS): the chart refuses a route or monitor whose CRD is missing.
CRD_APIS = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.googleapis.com/v1/PodMonitoring",
    "gateway.networking.k8s.io/v1/HTTPRoute",
    "networking.istio.io/v1/VirtualService",
    "cloud.google.com/v1/BackendConfig",
    "networking.gke.io/v1/HealthCheckPolicy",
    "networking.gke.io/v1/GCPBackendPolicy",
)


# ------------------------------------------------------------------------------ rendering ----


def render(
    helm: str,
    values: dict | None = None,
    values_files: Iterable[Path] = (),
    release: str = "mlflow",
    namespace: str = "mlflow",
) -> list[dict]:
    cmd = [helm, "template", release, str(CHART_DIR), "--namespace", namespace]
    for api in CRD_APIS:
        cmd += ["--api-versions", api]
    for path in values_files:
        cmd += ["--values", str(path)]
    cmd += ["--values", "-"]
    result = subprocess.run(
        cmd, input=yaml.safe_dump(values or {}), capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# --------------------------------------------------------------------------- expansion ----


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' $(VAR) expansion (third_party/forked/golang/expansion): `$$` is a literal `$`,
    `$(NAME)` of a defined variable is its value, anything else is left as written."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = rest[1:close]
                    value = lookup(name)
                    out.append(value if value is not None else f"$({name})")
                    advance = close + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


# ------------------------------------------------------------------------------ cluster ----


class KubeError(AssertionError):
    """What would leave a pod in CreateContainerConfigError (or a similar state) on a cluster."""


@dataclass
class Cluster:
    objects: list[dict]
    namespace: str = "mlflow"
    workdir: Path = Path("/tmp")
    # Service name -> (host, port) of its local stand-in, per Service port.
    service_backends: dict[str, dict[int, tuple[str, int]]] = field(default_factory=dict)
    # Cloud SQL instance connection name -> (host, port) of the local database.
    cloudsql_instances: dict[str, tuple[str, int]] = field(default_factory=dict)
    # What the node gives every container besides the pod spec (GCS emulator, ...).
    node_env: dict[str, str] = field(default_factory=dict)
    # Other in-cluster or external `host:port` -> local `host:port` (an external database).
    extra_addresses: dict[str, str] = field(default_factory=dict)

    def add(self, *objects: dict) -> None:
        self.objects.extend(objects)

    def get(self, kind: str, name: str | None = None) -> dict:
        found = [
            o
            for o in self.objects
            if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)
        ]
        if len(found) != 1:
            raise AssertionError(f"expected one {kind} {name or ''}, rendered {len(found)}")
        return found[0]

    def all(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def find(self, kind: str, name: str) -> dict | None:
        for obj in self.all(kind):
            if obj["metadata"]["name"] == name:
                return obj
        return None

    def secret_data(self, name: str) -> dict[str, str] | None:
        secret = self.find("Secret", name)
        if secret is None:
            return None
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        data.update(secret.get("stringData") or {})
        return data

    def configmap_data(self, name: str) -> dict[str, str] | None:
        cm = self.find("ConfigMap", name)
        if cm is None:
            return None
        data = dict(cm.get("data") or {})
        data.update(
            {k: base64.b64decode(v).decode() for k, v in (cm.get("binaryData") or {}).items()}
        )
        return data

    def pvc_dir(self, claim: str) -> Path:
        if self.find("PersistentVolumeClaim", claim) is None and not claim.startswith("existing-"):
            raise KubeError(f"PersistentVolumeClaim {claim} is neither rendered nor provided")
        path = self.workdir / "pvc" / claim
        path.mkdir(parents=True, exist_ok=True)
        return path

    def service_env(self) -> dict[str, str]:
        """The docker-links style variables the kubelet injects for every Service of the namespace
        (enableServiceLinks defaults to true), with made-up cluster IPs."""
        env = {
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
            "KUBERNETES_SERVICE_PORT_HTTPS": "443",
            "KUBERNETES_PORT": "tcp://10.96.0.1:443",
            "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_PORT": "443",
            "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
        }
        for i, svc in enumerate(self.all("Service")):
            spec = svc["spec"]
            if spec.get("clusterIP") == "None":
                continue
            ip = f"10.96.{10 + i}.{20 + i}"
            prefix = svc["metadata"]["name"].upper().replace("-", "_")
            ports = spec.get("ports") or []
            env[f"{prefix}_SERVICE_HOST"] = ip
            for j, port in enumerate(ports):
                proto = port.get("protocol", "TCP")
                if j == 0:
                    env[f"{prefix}_SERVICE_PORT"] = str(port["port"])
                    env[f"{prefix}_PORT"] = f"{proto.lower()}://{ip}:{port['port']}"
                if port.get("name"):
                    env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                        port["port"]
                    )
                base = f"{prefix}_PORT_{port['port']}_{proto}"
                env[base] = f"{proto.lower()}://{ip}:{port['port']}"
                env[f"{base}_PROTO"] = proto.lower()
                env[f"{base}_PORT"] = str(port["port"])
                env[f"{base}_ADDR"] = ip
        return env

    def address_map(self) -> dict[str, str]:
        """In-cluster `host:port` -> local `host:port`, for every DNS form of each Service."""
        result = dict(self.extra_addresses)
        for name, ports in self.service_backends.items():
            forms = [
                name,
                f"{name}.{self.namespace}",
                f"{name}.{self.namespace}.svc",
                f"{name}.{self.namespace}.svc.{CLUSTER_DOMAIN}",
            ]
            for port, (host, local_port) in ports.items():
                for form in forms:
                    result[f"{form}:{port}"] = f"{host}:{local_port}"
        return result


# --------------------------------------------------------------------------------- pods ----


@dataclass
class Process:
    name: str
    proc: subprocess.Popen
    log: Path

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"{self.name} still running after {timeout}s:\n{tail(self.log)}"
            ) from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)


class Pod:
    """One pod of a rendered workload, run as local processes under `workdir/<name>`."""

    def __init__(self, cluster: Cluster, spec: dict, name: str, metadata: dict | None = None):
        self.cluster = cluster
        self.spec = spec
        self.name = name
        self.metadata = metadata or {}
        self.dir = cluster.workdir / "pods" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.volumes = {v["name"]: self._volume(v) for v in spec.get("volumes") or []}
        self.processes: list[Process] = []
        self.port_map: dict[int, int] = {}
        # Address of each native sidecar's listener -> where it really leads.
        self.sidecar_addresses: dict[str, str] = {}

    # volumes
    def _volume(self, volume: dict) -> Path:
        path = self.dir / "volumes" / volume["name"]
        path.mkdir(parents=True, exist_ok=True)
        # A generic ephemeral volume is a claim the ephemeral volume controller creates with
        # the pod and deletes with it (kubernetes.io/docs/concepts/storage/ephemeral-volumes):
        # empty at start and private to the pod, as an emptyDir is.
        if "emptyDir" in volume or "ephemeral" in volume:
            return path
        if "configMap" in volume or "secret" in volume:
            src = volume.get("configMap") or volume["secret"]
            if "configMap" in volume:
                data = self.cluster.configmap_data(src["name"])
            else:
                data = self.cluster.secret_data(src["secretName"])
            if data is None:
                if src.get("optional"):
                    return path
                kind = "ConfigMap" if "configMap" in volume else "Secret"
                raise KubeError(
                    f"volume {volume['name']}: {kind} "
                    f"{src.get('name') or src.get('secretName')} not found"
                )
            mode = src.get("defaultMode", 0o644)
            items = src.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] not in data:
                    raise KubeError(f"volume {volume['name']}: key {item['key']} not found")
                target = path / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(data[item["key"]])
                target.chmod(item.get("mode", mode))
            return path
        if "persistentVolumeClaim" in volume:
            return self.cluster.pvc_dir(volume["persistentVolumeClaim"]["claimName"])
        raise KubeError(f"volume {volume['name']}: kind {sorted(volume)} is not emulated")

    def mount_sources(self, container: dict) -> list[tuple[dict, Path]]:
        """Each of the container's volumeMounts with the directory it mounts."""
        result = []
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in self.volumes:
                raise KubeError(
                    f"container {container['name']} mounts unknown volume {mount['name']}"
                )
            local = self.volumes[mount["name"]]
            if mount.get("subPath"):
                local = local / mount["subPath"]
            result.append((mount, local))
        return result

    def mounts(self, container: dict) -> list[tuple[str, Path]]:
        result = [
            (mount["mountPath"].rstrip("/") or "/", local)
            for mount, local in self.mount_sources(container)
        ]
        return sorted(result, key=lambda m: len(m[0]), reverse=True)

    # environment
    def env(self, container: dict) -> dict[str, str]:
        """The container's environment, as kubelet's makeEnvironmentVariables builds it."""
        cluster = self.cluster
        service_env = (
            cluster.service_env()
            if self.spec.get("enableServiceLinks", True)
            else {k: v for k, v in cluster.service_env().items() if k.startswith("KUBERNETES_")}
        )
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                data = cluster.configmap_data(ref["name"])
                what = f"ConfigMap {ref['name']}"
            else:
                ref = source["secretRef"]
                data = cluster.secret_data(ref["name"])
                what = f"Secret {ref['name']}"
            if data is None:
                if ref.get("optional"):
                    continue
                raise KubeError(f"container {container['name']}: envFrom {what} not found")
            for key, value in data.items():
                if ENV_NAME.match(prefix + key):
                    env[prefix + key] = value

        def lookup(name: str) -> str | None:
            if name in env:
                return env[name]
            return service_env.get(name)

        for var in container.get("env") or []:
            name = var["name"]
            if var.get("value"):
                env[name] = expand(var["value"], lookup)
            elif "valueFrom" in var:
                value = self._value_from(container, name, var["valueFrom"])
                if value is None:
                    continue
                env[name] = value
            else:
                env[name] = ""
        for key, value in service_env.items():
            env.setdefault(key, value)
        return env

    def _value_from(self, container: dict, name: str, source: dict) -> str | None:
        cname = container["name"]
        if "secretKeyRef" in source or "configMapKeyRef" in source:
            is_secret = "secretKeyRef" in source
            ref = source["secretKeyRef" if is_secret else "configMapKeyRef"]
            kind = "Secret" if is_secret else "ConfigMap"
            data = (self.cluster.secret_data if is_secret else self.cluster.configmap_data)(
                ref["name"]
            )
            if data is None:
                if ref.get("optional"):
                    return None
                raise KubeError(f'container {cname}: env {name}: {kind} "{ref["name"]}" not found')
            if ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise KubeError(
                    f"container {cname}: env {name}: couldn't find key {ref['key']} "
                    f"in {kind} {self.cluster.namespace}/{ref['name']}"
                )
            return data[ref["key"]]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            fields = {
                "metadata.name": self.name,
                "metadata.namespace": self.cluster.namespace,
                "status.podIP": POD_IP,
                "status.podIPs": POD_IP,
                "status.hostIP": "10.0.0.2",
                "spec.nodeName": "node-1",
                "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
            }
            if path not in fields:
                raise KubeError(f"container {cname}: env {name}: fieldRef {path} is not emulated")
            return fields[path]
        raise KubeError(
            f"container {cname}: env {name}: valueFrom {sorted(source)} is not emulated"
        )

    # mapping to local stand-ins
    def localize(self, text: str, mounts: list[tuple[str, Path]]) -> str:
        """In-pod paths -> the volumes' local directories, in-cluster addresses -> local ones.
        One pass each, so a replacement is never replaced again."""
        if mounts:
            local = dict(mounts)
            alternatives = "|".join(re.escape(m) for m, _ in mounts)  # longest first
            pattern = r"(?<![\w./-])(" + alternatives + r")(?=$|[/\s,;:\"'])"
            text = re.sub(pattern, lambda m: str(local[m.group(1)]), text)
        addresses = {**self.cluster.address_map(), **self.sidecar_addresses}
        if addresses:
            alternatives = "|".join(re.escape(a) for a in sorted(addresses, key=len, reverse=True))
            pattern = r"(?<![\w.-])(" + alternatives + r")(?!\d)"
            text = re.sub(pattern, lambda m: addresses[m.group(1)], text)
        return text

    def command(self, container: dict, env: dict[str, str]) -> list[str]:
        if not container.get("command"):
            raise KubeError(f"container {container['name']} relies on the image's entrypoint")
        argv = [
            expand(a, env.get)
            for a in list(container["command"]) + list(container.get("args") or [])
        ]
        # The server binds to a free loopback port instead of 0.0.0.0:<containerPort>.
        out = []
        for arg in argv:
            m = re.fullmatch(r"--port=(\d+)", arg)
            if m and int(m.group(1)) in self.port_map:
                arg = f"--port={self.port_map[int(m.group(1))]}"
            if arg == "--host=0.0.0.0":
                arg = "--host=127.0.0.1"
            out.append(arg)
        return out

    def process_env(
        self, container: dict, extra: dict[str, str] | None = None
    ) -> tuple[dict, list[tuple[str, Path]]]:
        mounts = self.mounts(container)
        env = self.env(container)
        base = {
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOSTNAME": self.name,
            "HOME": "/",
        }
        base.update(self.cluster.node_env)
        base.update({k: self.localize(v, mounts) for k, v in env.items()})
        base.update(extra or {})
        return base, mounts

    def start(self, container: dict, extra_env: dict[str, str] | None = None) -> Process:
        env, mounts = self.process_env(container, extra_env)
        argv = [self.localize(a, mounts) for a in self.command(container, env)]
        cwd = self.dir / "cwd"
        cwd.mkdir(exist_ok=True)
        return self.spawn(container, argv, shlex.join(argv), env=env, cwd=cwd)

    def spawn(self, container: dict, argv: list[str], shown: str, **kwargs) -> Process:
        """Start `argv` for the container, its output (after `$ shown`) in its log."""
        log = self.dir / f"{container['name']}.log"
        with open(log, "ab") as out:
            out.write(f"$ {shown}\n".encode())
            out.flush()
            proc = spawn(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
            )
        process = Process(f"{self.name}/{container['name']}", proc, log)
        self.processes.append(process)
        return process

    def run(
        self, container: dict, timeout: float = 600, extra_env: dict[str, str] | None = None
    ) -> Process:
        process = self.start(container, extra_env)
        process.wait(timeout)
        return process

    def emulate_sidecars(self) -> None:
        """Native sidecars (init containers with restartPolicy Always). The Cloud SQL Auth Proxy is
        the only kind the chart renders: its listener leads to the local database that stands in
        for the instance it names."""
        for container in self.spec.get("initContainers") or []:
            if container.get("restartPolicy") != "Always":
                continue
            if CLOUDSQL_PROXY_IMAGE not in container["image"]:
                raise KubeError(
                    f"sidecar {container['name']} ({container['image']}) is not emulated"
                )
            args = container.get("args") or []
            opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
            instances = [a for a in args if not a.startswith("-")]
            if len(instances) != 1 or instances[0] not in self.cluster.cloudsql_instances:
                raise KubeError(
                    f"cloud-sql-proxy args {args}: instance not one of "
                    f"{sorted(self.cluster.cloudsql_instances)}"
                )
            if "port" not in opts:
                raise KubeError(f"cloud-sql-proxy args {args}: no --port")
            host, port = self.cluster.cloudsql_instances[instances[0]]
            self.sidecar_addresses[f"{opts.get('address', '127.0.0.1')}:{opts['port']}"] = (
                f"{host}:{port}"
            )

    def run_init_containers(self, timeout: float = 600) -> None:
        self.emulate_sidecars()
        # The kubelet starts init containers in order: one listed before a sidecar runs (to
        # completion) before the sidecar exists, so it could not reach the database.
        seen_regular = None
        for container in self.spec.get("initContainers") or []:
            if container.get("restartPolicy") != "Always":
                seen_regular = seen_regular or container["name"]
            elif seen_regular:
                raise KubeError(
                    f"init container {seen_regular} runs before sidecar {container['name']} starts"
                )
        for container in self.spec.get("initContainers") or []:
            if container.get("restartPolicy") != "Always":
                self.run_to_completion(container, timeout)

    def run_to_completion(self, container: dict, timeout: float) -> None:
        """A regular init container: it must exit 0, or the pod does not start."""
        process = self.run(container, timeout)
        if process.proc.returncode != 0:
            raise AssertionError(
                f"init container {container['name']} exited "
                f"{process.proc.returncode}:\n{tail(process.log)}"
            )

    def container(self, name: str) -> dict:
        for container in self.spec.get("containers") or []:
            if container["name"] == name:
                return container
        raise AssertionError(f"pod {self.name} has no container {name}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def http_get(
    port: int,
    path: str,
    host: str,
    timeout: float = 10,
    headers: dict[str, str] | None = None,
    address: str = "127.0.0.1",
) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://{address}:{port}{path}", headers={"Host": host, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_probe(process: Process, container: dict, port: int, probe: str = "startupProbe") -> float:
    """Poll the container's HTTP probe like the kubelet (Host: <pod IP>:<port>) until it passes,
    within the probe's own budget."""
    spec = container[probe]
    get = spec["httpGet"]
    budget = spec.get("periodSeconds", 10) * spec.get("failureThreshold", 3) + spec.get(
        "initialDelaySeconds", 0
    )
    started = time.monotonic()
    deadline = started + min(budget, 240)
    last = "no answer"
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise AssertionError(
                f"{process.name} exited {process.proc.returncode}:\n{tail(process.log, 60)}"
            )
        try:
            status, body = http_get(
                port, get["path"], f"{POD_IP}:{container_port(container, get['port'])}", timeout=5
            )
            if 200 <= status < 400:
                return time.monotonic() - started
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise AssertionError(
        f"{process.name}: {probe} failed after {budget}s ({last}):\n{tail(process.log, 60)}"
    )


def container_port(container: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    raise KubeError(f"container {container['name']} has no port named {port}")


def run_in_thread(fn: Callable[[], None]) -> Callable[[], None]:
    """Run fn in a thread; the returned function joins it and re-raises its exception."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised in join
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def join(timeout: float = 900) -> None:
        thread.join(timeout)
        if thread.is_alive():
            raise AssertionError("background step did not finish")
        if errors:
            raise errors[0]

    return join


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def environ_for_debug(env: dict[str, str]) -> str:
    return "\n".join(
        f"{k}={v}" for k, v in sorted(env.items()) if "PASSWORD" not in k and "SECRET" not in k
    )


__all__ = [
    "Cluster",
    "KubeError",
    "Pod",
    "Process",
    "expand",
    "free_port",
    "http_get",
    "os",
    "render",
    "run_in_thread",
    "wait_probe",
]
