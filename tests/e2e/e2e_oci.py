"""The rendered pods as a cluster runs them: each container under runc, from an OCI bundle made
from the pod spec, in the pod's own network namespace.

What a kubelet and containerd decide, and where this follows them (sources cited inline):
- the security context (pod level merged with container level), the user and groups, the
  capability sets, no_new_privs, seccomp `RuntimeDefault` (the profile Debian's containers-common
  installs, the one podman and CRI-O apply), the read-only root;
- volumes at their mount paths, owned by `fsGroup` the way the kubelet's SetVolumeOwnership
  leaves them, configMap/Secret volumes read-only with their modes;
- `/etc/hosts` (the pod's name plus every Service name, as cluster DNS would answer),
  `/etc/hostname`, `/etc/resolv.conf`, `/dev/termination-log`;
- a network namespace per pod on a bridge of its own, with no default route: nothing a
  container does can leave the machine. Services are a proxy on the bridge per Service IP and
  port (what kube-proxy's userspace mode did), to a pod or to a local service.

Each container's root is an overlay of the image's root filesystem (scripts/build-images.py)
and a per-container upper directory, as a snapshotter provides it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from e2e_kube import REPO_ROOT, Cluster, KubeError, Pod, Process
from e2e_services import tail

RUNC = shutil.which("runc") or "/usr/sbin/runc"
BUILD_IMAGES = REPO_ROOT / "scripts" / "build-images.py"
# containers-common's default profile (Debian package golang-github-containers-common): the
# moby-format profile podman, buildah and CRI-O load for RuntimeDefault.
SECCOMP_PROFILE = Path("/usr/share/containers/seccomp.json")
# containerd's default capability set for a container (containerd pkg/oci/spec.go,
# defaultUnixCaps; the same list moby and CRI-O use).
DEFAULT_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)


# ----------------------------------------------------------------------------- images ----


@dataclass
class Image:
    tag: str
    rootfs: Path
    config: dict

    @classmethod
    def load(cls, path: Path) -> Image:
        build = json.loads((path / "build.json").read_text())
        return cls(build["tag"], path / "rootfs", json.loads((path / "config.json").read_text()))

    def passwd(self, uid_or_name: str) -> tuple[int, int] | None:
        """(uid, gid) of a user of the image's /etc/passwd, by name or number."""
        for line in (self.rootfs / "etc" / "passwd").read_text().splitlines():
            parts = line.split(":")
            if len(parts) >= 4 and uid_or_name in (parts[0], parts[2]):
                return int(parts[2]), int(parts[3])
        return None

    def groups_of(self, name: str) -> list[int]:
        """Supplementary groups of a user from the image's /etc/group (containerd adds them)."""
        found = []
        for line in (self.rootfs / "etc" / "group").read_text().splitlines():
            parts = line.split(":")
            if len(parts) >= 4 and name in parts[3].split(","):
                found.append(int(parts[2]))
        return found

    def user_name(self, uid: int) -> str | None:
        for line in (self.rootfs / "etc" / "passwd").read_text().splitlines():
            parts = line.split(":")
            if len(parts) >= 3 and parts[2] == str(uid):
                return parts[0]
        return None


def build_images(*names: str) -> dict[str, Image]:
    """Build (or find cached) images by recipe name; returns them by tag."""
    out = subprocess.run(
        ["python3", str(BUILD_IMAGES), *names], capture_output=True, text=True, timeout=1800
    )
    if out.returncode != 0:
        raise AssertionError(f"scripts/build-images.py {' '.join(names)} failed:\n{out.stderr}")
    images = {}
    for line in out.stdout.splitlines():
        m = re.match(r"[\w-]+: (\S+) \(", line)
        if m:
            image = Image.load(Path(m.group(1)))
            images[image.tag] = image
    return images


# ------------------------------------------------------------------ security context ----


def effective_security(pod_spec: dict, container: dict) -> dict:
    """The container's securityContext over the pod's (the pod's fields that also exist on a
    container apply unless the container sets them: k8s.io/api core/v1 PodSecurityContext)."""
    pod = pod_spec.get("securityContext") or {}
    own = container.get("securityContext") or {}
    merged = {
        k: pod[k]
        for k in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile", "seLinuxOptions")
        if k in pod
    }
    merged.update(own)
    return merged


def capabilities(security: dict) -> list[str]:
    """The container's capability set: containerd's defaults, then `drop`, then `add` (the CRI
    plugin's WithCapabilities: drop ALL empties the set before adds are applied)."""
    caps = security.get("capabilities") or {}
    drop = {c.upper() for c in caps.get("drop") or []}
    add = {c.upper() for c in caps.get("add") or []}
    result = [] if "ALL" in drop else [c for c in DEFAULT_CAPS if c[4:] not in drop]
    if "ALL" in add:
        raise KubeError("capabilities.add [ALL] is not handled by this runner")
    for cap in sorted(add):
        name = cap if cap.startswith("CAP_") else f"CAP_{cap}"
        if name not in result:
            result.append(name)
    return result


def process_user(
    pod_spec: dict, container: dict, image: Image, pod_name: str
) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids) as the kubelet and containerd set them, refusing what the
    kubelet refuses (kubelet kuberuntime_container.go verifyRunAsNonRoot; its messages)."""
    security = effective_security(pod_spec, container)
    pod_security = pod_spec.get("securityContext") or {}
    image_user = image.config.get("User") or ""
    name = None
    if "runAsUser" in security:
        uid = int(security["runAsUser"])
        entry = image.passwd(str(uid))
        gid = entry[1] if entry else 0
        name = image.user_name(uid)
    elif image_user:
        user, _, group = image_user.partition(":")
        if not user.isdigit() and security.get("runAsNonRoot"):
            raise KubeError(
                f"container has runAsNonRoot and image has non-numeric user ({user}), cannot "
                f"verify user is non-root (pod: {pod_name}, container: {container['name']})"
            )
        entry = image.passwd(user)
        if entry is None:
            raise KubeError(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = entry
        name = image.user_name(uid)
        if group:
            gid = int(group) if group.isdigit() else gid
    else:
        uid, gid, name = 0, 0, "root"
    if security.get("runAsNonRoot") and uid == 0:
        raise KubeError(
            "container has runAsNonRoot and image will run as root "
            f"(pod: {pod_name}, container: {container['name']})"
        )
    if "runAsGroup" in security:
        gid = int(security["runAsGroup"])
    groups = list(image.groups_of(name)) if name else []
    groups += [int(g) for g in pod_security.get("supplementalGroups") or []]
    if "fsGroup" in pod_security:
        groups.append(int(pod_security["fsGroup"]))
    seen: list[int] = []
    for g in groups:
        if g not in seen:
            seen.append(g)
    return uid, gid, seen


_ARCHES = {"amd64": "SCMP_ARCH_X86_64", "x86": "SCMP_ARCH_X86", "x32": "SCMP_ARCH_X32"}


def runtime_default_seccomp(caps: list[str]) -> dict:
    """containers-common's profile converted to the OCI runtime spec's linux.seccomp, as the
    runtimes do when loading it (containers/common pkg/seccomp): rules apply for this machine's
    architecture and only where the container holds the capabilities they require."""
    profile = json.loads(SECCOMP_PROFILE.read_text())
    arch = "amd64"
    kernel = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    held = {c.upper() for c in caps}
    syscalls = []
    for rule in profile["syscalls"]:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if exc.get("arches") and arch in exc["arches"]:
            continue
        if inc.get("caps") and not all(c.upper() in held for c in inc["caps"]):
            continue
        if exc.get("caps") and any(c.upper() in held for c in exc["caps"]):
            continue
        if inc.get("minKernel"):
            want = tuple(int(x) for x in re.findall(r"\d+", inc["minKernel"])[:2])
            if kernel < want:
                continue
        entry = {"names": rule["names"], "action": rule["action"]}
        if rule.get("args"):
            entry["args"] = [
                {k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                for a in rule["args"]
            ]
        errno = rule.get("errnoRet")
        if errno is not None:
            entry["errnoRet"] = errno
        syscalls.append(entry)
    arches = next(
        [a["architecture"], *a.get("subArchitectures", [])]
        for a in profile["archMap"]
        if a["architecture"] == _ARCHES[arch]
    )
    out = {"defaultAction": profile["defaultAction"], "architectures": arches, "syscalls": syscalls}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return out


def set_volume_ownership(path: Path, fs_group: int, readonly: bool) -> None:
    """What the kubelet does to a volume of a pod with fsGroup (pkg/volume/volume_linux.go,
    SetVolumeOwnership): every file's group becomes fsGroup, files gain rw (ro) for the group,
    directories also the set-gid bit and x, so files made later inherit the group."""
    mask = 0o440 if readonly else 0o660
    for root, dirs, files in os.walk(path):
        for name in [None, *dirs, *files]:
            p = Path(root) if name is None else Path(root) / name
            if p.is_symlink():
                continue
            st = p.lstat()
            os.chown(p, -1, fs_group)
            mode = st.st_mode & 0o7777 | mask
            if p.is_dir():
                mode |= 0o2000 | 0o110
            os.chmod(p, mode)


# ------------------------------------------------------------------------ networking ----


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") else 9


class ServiceProxy:
    """One listening address that forwards each connection to one of its backends, in turn,
    both ways. No backend (no ready endpoint): the connection is closed at once."""

    def __init__(self, listen: tuple[str, int], backends: list[tuple[str, int]] | None = None):
        self.backends = list(backends or [])
        self.turn = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(listen)
        self.sock.listen(128)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        if not self.backends:
            client.close()
            return
        backend = self.backends[self.turn % len(self.backends)]
        self.turn += 1
        try:
            upstream = socket.create_connection(backend, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        try:
            open_sides = 2
            while open_sides:
                for key, _ in sel.select(timeout=600):
                    data = key.fileobj.recv(65536)
                    if not data:
                        key.data.shutdown(socket.SHUT_WR)
                        sel.unregister(key.fileobj)
                        open_sides -= 1
                    else:
                        key.data.sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self.closed = True
        # shutdown() first: close() alone leaves the socket listening while the accept
        # thread is still blocked in accept() on it.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@dataclass
class PodNetwork:
    """A bridge with a /24 of its own per test worker; each pod a network namespace on it.
    Service IPs are extra addresses of the bridge; pods have no default route."""

    index: int = field(default_factory=_worker_index)
    pods: list[str] = field(default_factory=list)
    proxies: list[ServiceProxy] = field(default_factory=list)
    service_ips: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bridge = f"mh{self.index}br"
        self.prefix = f"10.213.{self.index}"
        self.gateway = f"{self.prefix}.1"
        # One runc state directory per worker, so a later run finds what a killed one left.
        self.runc_root = Path(f"/run/mlflow-e2e-runc/{self.bridge}")
        self.runc_root.mkdir(parents=True, exist_ok=True)
        self.mounts_file = self.runc_root.with_suffix(".mounts")
        self._cleanup_stale()
        # A fixed MAC: a bridge otherwise takes the lowest MAC of its ports, so a pod joining
        # later can change it, and pods' cached neighbour entries for the Service IPs then
        # point at a MAC nobody has until they expire (connections to a Service stall).
        _ip(
            "link",
            "add",
            self.bridge,
            "address",
            f"02:42:0a:d5:{self.index:02x}:01",
            "type",
            "bridge",
        )
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def _cleanup_stale(self) -> None:
        """What a run of this worker killed before its teardown left: its containers (still
        running: runc's foreground process died, not them), their overlay roots, the bridge
        and the network namespaces."""
        listed = subprocess.run(
            [RUNC, "--root", str(self.runc_root), "list", "--format", "json"],
            capture_output=True,
            text=True,
        )
        for container in json.loads(listed.stdout or "null") or []:
            subprocess.run(
                [RUNC, "--root", str(self.runc_root), "delete", "--force", container["id"]],
                capture_output=True,
            )
        # Every overlay root this worker mounted and has not unmounted (OciPod records them).
        if self.mounts_file.exists():
            for line in self.mounts_file.read_text().splitlines():
                subprocess.run(["umount", line], capture_output=True)
            self.mounts_file.unlink()
        _ip("link", "del", self.bridge, check=False)
        # A namespace's veth outlives `ip netns del` while a process still holds it: delete
        # the host ends (the pairs go with them).
        for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if name.startswith(f"mh{self.index}p"):
                _ip("link", "del", name, check=False)
        for line in _ip("netns", "list", check=False).stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(f"mh{self.index}-"):
                _ip("netns", "del", name, check=False)

    def add_pod(self) -> tuple[str, str]:
        """A new network namespace with one interface on the bridge: (netns path, pod IP)."""
        k = len(self.pods)
        ns, veth = f"mh{self.index}-p{k}", f"mh{self.index}p{k}"
        ip = f"{self.prefix}.{10 + k}"
        _ip("netns", "add", ns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        self.pods.append(ns)
        return f"/var/run/netns/{ns}", ip

    def service_ip(self, name: str) -> str:
        """The Service's cluster IP: an address of the bridge, so pods and tests reach it."""
        if name not in self.service_ips:
            ip = f"{self.prefix}.{200 + len(self.service_ips)}"
            _ip("addr", "add", f"{ip}/32", "dev", self.bridge)
            self.service_ips[name] = ip
        return self.service_ips[name]

    def forward(self, name: str, port: int, backend: tuple[str, int] | None = None) -> ServiceProxy:
        proxy = ServiceProxy((self.service_ip(name), port), [backend] if backend else [])
        self.proxies.append(proxy)
        return proxy

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        for ns in self.pods:
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.bridge, check=False)


# ------------------------------------------------------------------------------ pods ----


def default_mounts() -> list[dict]:
    """The mounts every container gets (runc's `spec` defaults, containerd's the same)."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
    ]


def _bind(source: Path, destination: str, readonly: bool) -> dict:
    options = ["rbind", "rprivate"] + (["ro"] if readonly else [])
    return {"destination": destination, "type": "bind", "source": str(source), "options": options}


def _memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    m = re.fullmatch(r"(\d+)([KMG]i?)?", str(quantity))
    if not m:
        raise KubeError(f"memory quantity {quantity!r} is not handled")
    return int(m.group(1)) * units.get(m.group(2) or "", 1)


class OciPod(Pod):
    """A pod whose containers run under runc in the pod's network namespace."""

    def __init__(
        self,
        cluster: Cluster,
        spec: dict,
        name: str,
        images: dict[str, Image],
        network: PodNetwork,
        hosts: dict[str, str] | None = None,
        metadata: dict | None = None,
    ):
        super().__init__(cluster, spec, name, metadata)
        self.images = images
        self.network = network
        self.netns, self.ip = network.add_pod()
        self.extra_hosts = hosts or {}
        self.containers: list[str] = []
        self.container_ids: dict[str, str] = {}  # container name -> runc id of its last start
        self.state = network.runc_root
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        for volume in spec.get("volumes") or []:
            path = self.volumes[volume["name"]]
            readonly = "configMap" in volume or "secret" in volume
            if "emptyDir" in volume or "ephemeral" in volume:
                # The kubelet makes an emptyDir 0777 (pkg/volume/emptydir: perm 0777).
                path.chmod(0o777)
            if fs_group is not None:
                set_volume_ownership(path, int(fs_group), readonly)
        self._write_etc()

    def _write_etc(self) -> None:
        etc = self.dir / "etc"
        etc.mkdir(exist_ok=True)
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        fqdn = f"{self.name}.{self.cluster.namespace}.pod.cluster.local"
        lines.append(f"{self.ip}\t{self.name} {fqdn}")
        for host, ip in self.extra_hosts.items():
            lines.append(f"{ip}\t{host}")
        (etc / "hosts").write_text("\n".join(lines) + "\n")
        (etc / "hostname").write_text(self.name + "\n")
        # Cluster DNS's search path; there is no resolver: names come from /etc/hosts.
        ns = self.cluster.namespace
        (etc / "resolv.conf").write_text(
            f"search {ns}.svc.cluster.local svc.cluster.local cluster.local\n"
            "nameserver 127.0.0.53\noptions ndots:5\n"
        )

    def image_for(self, container: dict) -> Image:
        ref = container["image"].split("@", 1)[0]
        if ref not in self.images:
            raise KubeError(
                f"container {container['name']}: image {container['image']} not built here "
                f"(built: {', '.join(sorted(self.images))})"
            )
        return self.images[ref]

    def argv(self, container: dict, image: Image, env: dict[str, str]) -> list[str]:
        """Entrypoint and Cmd as Kubernetes combines them with command and args (core/v1
        Container: command replaces the Entrypoint and drops Cmd; args replaces Cmd)."""
        from e2e_kube import expand

        if container.get("command"):
            argv = list(container["command"]) + list(container.get("args") or [])
        elif container.get("args"):
            argv = list(image.config.get("Entrypoint") or []) + list(container["args"])
        else:
            argv = list(image.config.get("Entrypoint") or []) + list(image.config.get("Cmd") or [])
        return [expand(a, env.get) for a in argv]

    def oci_config(self, container: dict, extra_env: dict[str, str] | None = None) -> dict:
        image = self.image_for(container)
        security = effective_security(self.spec, container)
        uid, gid, groups = process_user(self.spec, container, image, self.name)
        env: dict[str, str] = {}
        for item in image.config.get("Env") or []:
            k, _, v = item.partition("=")
            env[k] = v
        env["HOSTNAME"] = self.name
        # What the node gives every container (the GCS emulator's address and project: what
        # Workload Identity's metadata server stands for here).
        env.update(self.cluster.node_env)
        env.update(self.env(container))
        env.update(extra_env or {})
        caps = capabilities(security)
        mounts = default_mounts()
        mounts.append(_bind(self.dir / "etc" / "hosts", "/etc/hosts", False))
        mounts.append(_bind(self.dir / "etc" / "hostname", "/etc/hostname", False))
        mounts.append(_bind(self.dir / "etc" / "resolv.conf", "/etc/resolv.conf", False))
        log = self.dir / f"termination-log-{container['name']}"
        log.touch()
        os.chown(log, uid, gid)
        mounts.append(
            _bind(log, container.get("terminationMessagePath", "/dev/termination-log"), False)
        )
        readonly_volumes = {
            v["name"] for v in self.spec.get("volumes") or [] if "configMap" in v or "secret" in v
        }
        for mount, source in self.mount_sources(container):
            if mount.get("subPath"):
                source.mkdir(parents=True, exist_ok=True)  # the kubelet makes a missing subPath
            readonly = bool(mount.get("readOnly")) or mount["name"] in readonly_volumes
            mounts.append(_bind(source, mount["mountPath"], readonly))
        seccomp_type = (security.get("seccompProfile") or {}).get("type", "Unconfined")
        linux: dict = {
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network", "path": self.netns},
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        }
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            linux["resources"]["memory"] = {"limit": _memory_bytes(limit)}
        if seccomp_type == "RuntimeDefault":
            linux["seccomp"] = runtime_default_seccomp(caps)
        elif seccomp_type != "Unconfined":
            raise KubeError(f"seccompProfile {seccomp_type} is not handled")
        cwd = container.get("workingDir") or image.config.get("WorkingDir") or "/"
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": uid, "gid": gid, "additionalGids": groups},
                "args": self.argv(container, image, env),
                "env": [f"{k}={v}" for k, v in env.items()],
                "cwd": cwd,
                "capabilities": {
                    "bounding": caps,
                    "effective": caps,
                    "permitted": caps,
                },
                # The hard limits of this machine's shell; a node's would be higher.
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}],
                "noNewPrivileges": security.get("allowPrivilegeEscalation") is False,
            },
            "root": {"path": "rootfs", "readonly": bool(security.get("readOnlyRootFilesystem"))},
            "hostname": self.name,
            "mounts": mounts,
            "linux": linux,
        }

    def _bundle(self, container: dict, config: dict) -> Path:
        """The bundle: config.json and the container's root, an overlay of the image."""
        n = len(self.containers)
        bundle = self.dir / "bundles" / f"{n}-{container['name']}"
        for sub in ("upper", "work", "rootfs"):
            (bundle / sub).mkdir(parents=True, exist_ok=True)
        image = self.image_for(container)
        subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={image.rootfs},upperdir={bundle / 'upper'},workdir={bundle / 'work'}",
                str(bundle / "rootfs"),
            ],
            check=True,
        )
        with open(self.network.mounts_file, "a") as mounts:
            mounts.write(f"{bundle / 'rootfs'}\n")
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle

    def start(self, container: dict, extra_env: dict[str, str] | None = None) -> Process:
        config = self.oci_config(container, extra_env)
        bundle = self._bundle(container, config)
        # Unique on the worker's runc root: a hash of the pod's directory (per test) is in it.
        tag = hashlib.sha256(str(self.dir).encode()).hexdigest()[:8]
        cid = f"{tag}-{self.name}-{len(self.containers)}-{container['name']}"
        self.containers.append(cid)
        self.container_ids[container["name"]] = cid
        # Foreground `runc run`: the container's stdio is runc's, runc forwards signals to the
        # container's init and exits with its status.
        return self.spawn(
            container,
            [RUNC, "--root", str(self.state), "run", "--bundle", str(bundle), cid],
            " ".join(config["process"]["args"]),
        )

    def emulate_sidecars(self) -> None:
        """Nothing to emulate: native sidecars run as containers (run_init_containers)."""

    def run_init_containers(self, timeout: float = 600) -> None:
        """Init containers in order, as the kubelet runs them: a regular one to completion
        (a non-zero exit fails the pod), a native sidecar (restartPolicy Always) started and,
        before the next init container starts, its startupProbe passed; sidecars keep running
        and stop after the main containers (Pod.stop stops in reverse start order)."""
        for container in self.spec.get("initContainers") or []:
            if container.get("restartPolicy") == "Always":
                process = self.start(container)
                wait_probe(self, process, container, "startupProbe")
                continue
            self.run_to_completion(container, timeout)

    def exec(self, container_name: str, command: list[str], timeout: float) -> tuple[int, str]:
        """`runc exec`: the container's own process settings (user, capabilities, seccomp,
        no_new_privs) with these arguments, as the CRI runs an exec probe."""
        try:
            out = subprocess.run(
                [
                    RUNC,
                    "--root",
                    str(self.state),
                    "exec",
                    self.container_ids[container_name],
                    *command,
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return -1, f"timed out after {timeout}s"
        return out.returncode, out.stdout + out.stderr

    def stop(self) -> None:
        super().stop()
        for cid in self.containers:
            subprocess.run(
                [RUNC, "--root", str(self.state), "delete", "--force", cid], capture_output=True
            )
        for bundle in sorted((self.dir / "bundles").glob("*")):
            subprocess.run(["umount", str(bundle / "rootfs")], capture_output=True)


def probe_once(pod: OciPod, container: dict, spec: dict) -> bool:
    """One probe attempt as the kubelet's prober makes it (pkg/probe/http: a status from 200
    to 399 succeeds; exec: exit status 0; tcpSocket: the connection opens)."""
    from e2e_kube import container_port

    timeout = spec.get("timeoutSeconds", 1)
    if "exec" in spec:
        code, _ = pod.exec(container["name"], spec["exec"]["command"], timeout)
        return code == 0
    if "tcpSocket" in spec:
        port = container_port(container, spec["tcpSocket"]["port"])
        try:
            socket.create_connection((pod.ip, port), timeout=timeout).close()
            return True
        except OSError:
            return False
    get = spec["httpGet"]
    port = container_port(container, get["port"])
    try:
        with socket.create_connection((pod.ip, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            host = f"{pod.ip}:{port}"
            conn.sendall(
                f"GET {get['path']} HTTP/1.1\r\nHost: {host}\r\n"
                "Connection: close\r\nUser-Agent: kube-probe/1.33\r\n\r\n".encode()
            )
            status = conn.recv(64).split(b" ")[1:2]
            return bool(status) and 200 <= int(status[0]) < 400
    except (OSError, ValueError):
        return False


def wait_probe(
    pod: OciPod, process: Process, container: dict, probe: str = "startupProbe"
) -> float:
    """Run the container's probe with its rendered timings (initialDelaySeconds, then one
    attempt per periodSeconds) until it succeeds; fail after failureThreshold failures or
    when the container exits. Returns the seconds from the call to the success."""
    spec = container.get(probe)
    if not spec:
        return 0.0
    started = time.monotonic()
    time.sleep(spec.get("initialDelaySeconds", 0))
    failures = 0
    while True:
        if process.proc.poll() is not None:
            raise AssertionError(
                f"{process.name} exited {process.proc.returncode} before its {probe} "
                f"passed:\n{tail(process.log, 60)}"
            )
        attempt = time.monotonic()
        if probe_once(pod, container, spec):
            return time.monotonic() - started
        failures += 1
        if failures >= spec.get("failureThreshold", 3):
            raise AssertionError(
                f"{process.name}: {probe} failed {failures} times:\n{tail(process.log, 60)}"
            )
        time.sleep(max(0.0, spec.get("periodSeconds", 10) - (time.monotonic() - attempt)))


# --------------------------------------------------------------------------- services ----


def _free_node_port(address: str) -> int:
    for port in range(30000, 32768):
        with socket.socket() as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free node port on {address}")


def _dns_forms(name: str, namespace: str) -> list[str]:
    return [
        name,
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}.svc.cluster.local",
    ]


def _target_port(pod_spec: dict, target: int | str) -> int:
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod_spec.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    raise KubeError(f"targetPort {target} names no container port of the pod")


class OciCluster:
    """A release's Services on a PodNetwork: each Service an IP with a proxy per port (its
    endpoints: the matching pods, added once they are ready), each DNS form of its name in
    every pod's /etc/hosts; outside hosts (an external database) the same way, leading to
    the suite's local services."""

    def __init__(self, cluster: Cluster, network: PodNetwork, images: dict[str, Image]):
        self.cluster = cluster
        self.network = network
        self.images = images
        self.hosts: dict[str, str] = {}
        self.proxies: dict[tuple[str, int], ServiceProxy] = {}
        # (Service, port) -> the node port, listening on the node's address (the bridge's).
        self.node_ports: dict[tuple[str, int], int] = {}
        ns = cluster.namespace
        for svc in cluster.all("Service"):
            name = svc["metadata"]["name"]
            ip = network.service_ip(f"{ns}/{name}")
            self.hosts[" ".join(_dns_forms(name, ns))] = ip
            for port in svc["spec"].get("ports") or []:
                proxy = network.forward(f"{ns}/{name}", port["port"])
                self.proxies[(name, port["port"])] = proxy
                if svc["spec"].get("type") in ("NodePort", "LoadBalancer"):
                    # The rendered nodePort, else one from the default range, as the API
                    # server allocates (--service-node-port-range 30000-32767).
                    node_port = port.get("nodePort") or _free_node_port(network.gateway)
                    node_proxy = ServiceProxy((network.gateway, node_port))
                    node_proxy.backends = proxy.backends  # the same endpoints
                    network.proxies.append(node_proxy)
                    self.node_ports[(name, port["port"])] = node_port

    def external(self, host: str, port: int, local_port: int) -> None:
        """`host:port` outside the cluster -> the suite's service on 127.0.0.1:local_port."""
        self.network.forward(f"external/{host}", port, ("127.0.0.1", local_port))
        self.hosts[host] = self.network.service_ip(f"external/{host}")

    def check_node_env(self, env: dict[str, str]) -> None:
        """The node's environment reaches containers as it is: a loopback address in it would
        name the pod's own loopback. Refused before any pod starts."""
        for key, value in env.items():
            if "127.0.0.1" in value or "localhost" in value:
                raise AssertionError(
                    f"node environment {key}={value}: a pod cannot reach the host's loopback; "
                    f"start that service on the pod bridge ({self.network.gateway}), as "
                    "FakeGCS(host=network.gateway)"
                )

    def pod(self, spec: dict, name: str, metadata: dict | None = None) -> OciPod:
        return OciPod(
            self.cluster, spec, name, self.images, self.network, dict(self.hosts), metadata
        )

    def add_endpoint(self, pod: OciPod, labels: dict[str, str]) -> None:
        """The pod is ready: every Service selecting its labels now leads to it too."""
        for svc in self.cluster.all("Service"):
            selector = svc["spec"].get("selector") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            for port in svc["spec"].get("ports") or []:
                target = _target_port(pod.spec, port.get("targetPort", port["port"]))
                self.proxies[(svc["metadata"]["name"], port["port"])].backends.append(
                    (pod.ip, target)
                )

    def address(self, service: str) -> tuple[str, int]:
        """The Service's IP and first port, where the test reaches it from the host."""
        svc = self.cluster.get("Service", service)
        ns = self.cluster.namespace
        return self.network.service_ip(f"{ns}/{service}"), svc["spec"]["ports"][0]["port"]
