#!/usr/bin/env python3
"""Builds the container images the e2e suite runs under runc, offline from any registry.

    scripts/build-images.py [NAME ...]     build (or find in the cache) and print each path

Each image is a root filesystem made by mmdebstrap (which leaves no apt lists or package
caches behind, as the official images clean up) from the Debian mirror this machine's apt
already uses, plus an image config (Env, User, WorkingDir, Entrypoint, Cmd: the fields of the
OCI image config a runtime reads). The result lives in `.tools/images/<name>-<hash>/`, where
the hash covers the recipe and this file, so a changed recipe builds anew and a warm cache
never rebuilds: `rootfs/`, `config.json` (the image config), `build.json` (tag, seconds).

Recipes:
  mlflow-full  The official MLflow image's recipe (mlflow's docker/Dockerfile.full:
               `FROM python:3.11-slim-bookworm`, `pip install mlflow[extras,azure,db,gateway,
               genai,auth]==$VERSION`, root, HOME=/root), on Debian's own Python 3.11 instead of
               the python image's, tagged with the chart's default image reference. The
               packages are installed by uv (same resolver inputs, same wheels) from its cache,
               so a warm machine does not download them again.
  postgres     A stand-in for the official postgres image (images/postgres).
  cloud-sql-proxy
               A stand-in for the Cloud SQL Auth Proxy (images/cloud-sql-proxy).

Needs root (mmdebstrap --mode=root, chroot) and the network path to the Debian mirror and PyPI
that bootstrap.sh already uses.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / ".tools" / "images"
CHART_YAML = ROOT / "charts" / "mlflow" / "Chart.yaml"
# apt's own source list: the same mirror (and snapshot pin, if any) the host installs from.
APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def app_version() -> str:
    match = re.search(r'^appVersion:\s*"?([^"\s]+)"?', CHART_YAML.read_text(), re.M)
    if not match:
        raise SystemExit(f"error: no appVersion in {CHART_YAML}")
    return match.group(1)


def chart_image(name: str) -> str:
    """The chart's image reference for `name`, from Chart.yaml's artifacthub.io/images list
    (which a chart test keeps equal to what the templates render by default)."""
    for ref in re.findall(r"image:\s*(\S+)", CHART_YAML.read_text()):
        if ref.rsplit(":", 1)[0].endswith("/" + name):
            return ref
    raise SystemExit(f"error: {CHART_YAML} lists no {name} image")


def recipes() -> dict[str, dict]:
    """Each recipe: `include` Debian packages, `essential` commands run in the chroot before
    they are installed, `files` copied in (image path -> repository path, with their mode),
    `run` commands after, `pip` requirements, and the image `config`."""
    version = app_version()
    pg_bin = "/usr/lib/postgresql/15/bin"
    return {
        "mlflow-full": {
            "tag": chart_image("mlflow"),
            # python-is-python3: the python image has `python` on PATH, and the chart runs it.
            "include": ["python3", "python-is-python3", "ca-certificates"],
            "pip": [f"mlflow[extras,azure,db,gateway,genai,auth]=={version}"],
            "config": {
                # As the python image's: PATH, LANG; Dockerfile.full sets no USER, so root.
                "Env": [f"PATH={SYSTEM_PATH}", "LANG=C.UTF-8", "HOME=/root"],
                "User": "",
                "WorkingDir": "/",
                "Entrypoint": [],
                "Cmd": ["python3"],
            },
        },
        "cloud-sql-proxy": {
            # A stand-in for the Cloud SQL Auth Proxy (images/cloud-sql-proxy: same flags,
            # same health endpoints, forwarding to the suite's database), under the chart's
            # proxy reference. The real image is distroless and runs as nonroot (65532).
            "tag": chart_image("cloud-sql-proxy"),
            "include": ["python3"],
            "files": {"/cloud-sql-proxy": "images/cloud-sql-proxy/cloud-sql-proxy"},
            "pip": [],
            "config": {
                "Env": [f"PATH={SYSTEM_PATH}"],
                "User": "65532",
                "WorkingDir": "/",
                "Entrypoint": ["/cloud-sql-proxy"],
                "Cmd": [],
            },
        },
        "postgres": {
            # A stand-in for the official postgres:17 image, under its reference: Debian's
            # PostgreSQL 15 with the official image's user, paths and entrypoint contract
            # (images/postgres/docker-entrypoint.sh).
            "tag": chart_image("postgres"),
            # The official image creates postgres as 999:999 before installing PostgreSQL,
            # so the package keeps that user (its postinst only adds a missing one).
            "essential": [
                # (useradd is not essential yet: the passwd package comes with the includes)
                "echo postgres:x:999: >>/etc/group",
                "echo postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/bash >>/etc/passwd",
                "mkdir -p /var/lib/postgresql && chown 999:999 /var/lib/postgresql",
            ],
            "include": ["postgresql-15", "postgresql-client-15"],
            "files": {
                "/usr/local/bin/docker-entrypoint.sh": "images/postgres/docker-entrypoint.sh"
            },
            "run": [
                # As the official Dockerfile: listen on every address; no cluster made by the
                # package (the entrypoint makes one in PGDATA); the socket directory 3777.
                "sed -ri \"s!^#?(listen_addresses)\\s*=\\s*\\S+.*!\\1 = '*'!\" "
                "/usr/share/postgresql/15/postgresql.conf.sample",
                "rm -rf /var/lib/postgresql/15 /etc/postgresql/15",
                "mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql "
                "&& chmod 3777 /var/run/postgresql",
                "mkdir -p /var/lib/postgresql/data && chown postgres:postgres "
                "/var/lib/postgresql/data && chmod 1777 /var/lib/postgresql/data",
            ],
            "pip": [],
            "config": {
                "Env": [
                    f"PATH={SYSTEM_PATH}:{pg_bin}",  # as upstream: its bin directory last
                    "LANG=C.UTF-8",
                    "PGDATA=/var/lib/postgresql/data",
                ],
                "User": "",
                "WorkingDir": "/",
                "Entrypoint": ["docker-entrypoint.sh"],
                "Cmd": ["postgres"],
                "StopSignal": "SIGINT",
            },
        },
    }


def recipe_hash(name: str, recipe: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"name": name, **recipe}, sort_keys=True).encode())
    digest.update(Path(__file__).read_bytes())
    for src in sorted(recipe.get("files", {}).values()):
        digest.update((ROOT / src).read_bytes())
    digest.update(APT_SOURCES.read_bytes())
    return digest.hexdigest()[:16]


def image_dir(name: str) -> Path:
    all_recipes = recipes()
    if name not in all_recipes:
        raise SystemExit(
            f"error: no image recipe {name!r}; known: {', '.join(sorted(all_recipes))}"
        )
    return IMAGES / f"{name}-{recipe_hash(name, all_recipes[name])}"


def uv_binary() -> Path:
    for candidate in (ROOT / ".venv" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise SystemExit("error: uv not found: run scripts/bootstrap.sh (it installs uv into .venv)")


def pip_install(rootfs: Path, requirements: list[str]) -> None:
    """uv, run inside the image's root (its own Python), with the host's uv cache bound in.
    A private mount namespace: every mount goes away with the process, even on Ctrl-C."""
    uv = uv_binary()
    cache = Path(
        subprocess.run(
            [uv, "cache", "dir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    cache.mkdir(parents=True, exist_ok=True)
    for sub in ("uv-bin", "uv-cache"):
        (rootfs / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    # The host's CA bundle: where the host reaches the package index through a TLS-inspecting
    # proxy, its CA is there and not in the image's ca-certificates.
    host_ca = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    shutil.copy2(host_ca, rootfs / "tmp" / "host-ca.crt")
    shutil.copy2("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
    script = (
        'set -e; r="$1"; shift; '
        f'mount --bind {uv.parent} "$r/tmp/uv-bin"; '
        f'mount --bind {cache} "$r/tmp/uv-cache"; '
        'mount -t proc proc "$r/proc"; '
        'exec chroot "$r" env -i PATH=' + SYSTEM_PATH + " HOME=/root UV_CACHE_DIR=/tmp/uv-cache "
        "SSL_CERT_FILE=/tmp/host-ca.crt "
        # copy, not hardlink: the image must not share inodes with the cache.
        "UV_LINK_MODE=copy /tmp/uv-bin/uv pip install --quiet --system --break-system-packages "
        '--compile-bytecode "$@"'
    )
    subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            rootfs,
            *requirements,
        ],
        check=True,
    )
    for sub in ("uv-bin", "uv-cache"):
        (rootfs / "tmp" / sub).rmdir()
    (rootfs / "tmp" / "host-ca.crt").unlink()
    # The image's resolv.conf is the runtime's to provide (the suite binds its own).
    (rootfs / "etc" / "resolv.conf").write_text("")


def build(name: str) -> Path:
    recipe = recipes()[name]
    final = image_dir(name)
    if (final / "build.json").exists():
        return final
    IMAGES.mkdir(parents=True, exist_ok=True)
    # One builder per image at a time (two pytest workers can ask at once); the second waits
    # and then finds the finished image.
    with open(IMAGES / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "build.json").exists():
            return final
        if os.geteuid() != 0:
            raise SystemExit("error: building images needs root (mmdebstrap --mode=root, chroot)")
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=IMAGES))
        try:
            rootfs = work / "rootfs"
            command = [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                "--mode=root",
                "--format=directory",
            ]
            if recipe["include"]:
                command.append("--include=" + ",".join(recipe["include"]))
            for line in recipe.get("essential", []):
                command.append(f'--essential-hook=chroot "$1" sh -ec {shlex.quote(line)}')
            for dest, src in recipe.get("files", {}).items():
                command.append(f"--customize-hook=copy-in {ROOT / src} {Path(dest).parent}")
            for line in recipe.get("run", []):
                command.append(f'--customize-hook=chroot "$1" sh -ec {shlex.quote(line)}')
            command += ["bookworm", str(rootfs), str(APT_SOURCES)]
            subprocess.run(command, check=True)
            if recipe["pip"]:
                pip_install(rootfs, recipe["pip"])
            (work / "config.json").write_text(json.dumps(recipe["config"], indent=2) + "\n")
            (work / "build.json").write_text(
                json.dumps({"tag": recipe["tag"], "seconds": round(time.monotonic() - started, 1)})
                + "\n"
            )
            # Older builds of the same image (an earlier recipe) are replaced.
            for old in IMAGES.glob(f"{name}-*"):
                shutil.rmtree(old, ignore_errors=True)
            work.rename(final)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return final


def main(argv: list[str]) -> int:
    names = argv or list(recipes())
    for name in names:
        image_dir(name)  # an unknown name fails before anything is built
    for name in names:
        path = build(name)
        info = json.loads((path / "build.json").read_text())
        print(f"{name}: {path} ({info['tag']}, built in {info['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
