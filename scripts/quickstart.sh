#!/bin/sh
# Quickstart: MLflow on a local cluster in one command, from a checkout.
#
#   scripts/quickstart.sh [INSTALL OPTIONS...]      e.g. --namespace ml, --dry-run
#
# 1. Checks every prerequisite first, and stops at the first missing one saying how to get
#    it (exit 2), before anything is changed: python3 3.10+ with venv, Helm 3.17+ or 4, and a
#    cluster: the kubeconfig's current context, or else kind (with Docker or Podman) or
#    minikube to make one.
# 2. Installs the CLI into its own virtualenv, $MLFLOW_HELM_HOME/venv (default
#    ~/.local/share/mlflow-helm/venv; Debian's and Homebrew's Python refuse a system-wide pip,
#    PEP 668). It is built from a copy of this checkout, and rebuilt only when src/, the chart
#    or pyproject.toml changed since (the plugin's plugin/scripts/env.sh does both).
# 3. Makes a local cluster when no context is configured: kind if it and Docker or Podman
#    are present, else minikube; named $MLFLOW_HELM_CLUSTER (default mlflow-helm). Says which,
#    and how to delete it. A cluster that exists already is used as it is.
# 4. Runs `mlflow-helm install --local` (in-cluster PostgreSQL, artifacts on a volume,
#    helm test), which ends with how to open the UI. Running this again changes nothing.
#
# MLFLOW_HELM_PYTHON: an interpreter that has mlflow_helm already; no virtualenv is made.
set -eu

repo=$(cd -P "$(dirname "$0")/.." && pwd)
home=${MLFLOW_HELM_HOME:-$HOME/.local/share/mlflow-helm}
name=${MLFLOW_HELM_CLUSTER:-mlflow-helm}
# shellcheck source=../plugin/scripts/env.sh
. "$repo/plugin/scripts/env.sh"
env_init "$home" "$repo/plugin" quickstart "scripts/quickstart.sh" ""

stop() {  # what is missing, how to get it
  say "$1"
  say "  fix: $2"
  exit 2
}

have() { command -v "$1" >/dev/null 2>&1; }

# --- 1. prerequisites, nothing changed yet ------------------------------------------------
if [ -n "${MLFLOW_HELM_PYTHON:-}" ]; then
  "$MLFLOW_HELM_PYTHON" -c "import mlflow_helm" 2>/dev/null ||
    stop "MLFLOW_HELM_PYTHON=$MLFLOW_HELM_PYTHON cannot import mlflow_helm" \
      "unset it, or install the package into that interpreter"
else
  check_python || exit 2
fi

helm=${HELM_BIN:-helm}
have "$helm" || stop "Helm not found (${HELM_BIN:+HELM_BIN=}$helm)" \
  "install Helm 3.17 or later, or 4 (https://helm.sh/docs/intro/install/; macOS: brew install helm)"
helm_version=$("$helm" version --template '{{.Version}}' 2>/dev/null) || helm_version=unknown
case $helm_version in
  v4.*) ;;
  v3.*)
    minor=${helm_version#v3.}; minor=${minor%%.*}
    [ "$minor" -ge 17 ] 2>/dev/null || stop "Helm $helm_version is too old" \
      "install Helm 3.17 or later, or 4 (https://helm.sh/docs/intro/install/)" ;;
  *) stop "$helm does not report a Helm version (got: $helm_version)" \
       "install Helm 3.17 or later, or 4 (https://helm.sh/docs/intro/install/), or set HELM_BIN" ;;
esac

# The current context as kubectl and Helm pick it: the first file of KUBECONFIG (or
# ~/.kube/config) that sets a non-empty current-context. Whether that cluster answers is the
# CLI's to say (it names the URL and the fix).
current_context() {
  files=${KUBECONFIG:-$HOME/.kube/config}
  old_ifs=$IFS; IFS=:
  for file in $files; do
    [ -f "$file" ] || continue
    ctx=$(sed -n 's/^current-context:[[:space:]]*//p' "$file" | tr -d "\"'" | head -n 1)
    if [ -n "$ctx" ]; then IFS=$old_ifs; printf '%s\n' "$ctx"; return; fi
  done
  IFS=$old_ifs
}

context=$(current_context)
maker=""
if [ -z "$context" ]; then
  if have kind && { have docker || have podman; }; then
    maker=kind
    if have docker; then runtime=docker; else runtime=podman; fi
    "$runtime" info >/dev/null 2>&1 || stop "$runtime is installed but not running (kind runs its node in it)" \
      "start it (Docker Desktop, \`sudo systemctl start docker\`, or \`podman machine start\`), then re-run scripts/quickstart.sh"
  elif have minikube; then
    maker=minikube
  elif have kind; then
    stop "no cluster is configured, and kind needs Docker or Podman, neither of which is installed" \
      "install Docker (https://docs.docker.com/engine/install/) or Podman (https://podman.io/docs/installation), or minikube, then re-run scripts/quickstart.sh"
  else
    stop "no cluster is configured (no current context in ${KUBECONFIG:-$HOME/.kube/config}), and neither kind nor minikube is installed to make one" \
      "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation) with Docker or Podman, or minikube (https://minikube.sigs.k8s.io/docs/start/); or point KUBECONFIG at a cluster's kubeconfig; then re-run scripts/quickstart.sh"
  fi
fi

# --- 2. the CLI in its own virtualenv -----------------------------------------------------
if [ -n "${MLFLOW_HELM_PYTHON:-}" ]; then
  python=$MLFLOW_HELM_PYTHON
else
  if needs_setup; then
    (setup_env) || exit 2
  else
    say "CLI up to date in $venv"
  fi
  python=$venv/bin/python
fi

# --- 3. a local cluster when none is configured ----------------------------------------
# The context each tool names its cluster's: kind "kind-NAME" (kind's
# pkg/cluster/internal/kubeconfig KINDClusterKey; its quick start prints `Set kubectl context
# to "kind-NAME"`), minikube the profile name (`minikube start -p NAME`).
case $maker in
  kind)
    say "no cluster is configured: making one with kind ($runtime): $name"
    if [ "$runtime" = podman ]; then export KIND_EXPERIMENTAL_PROVIDER=podman; fi
    if kind get clusters 2>/dev/null | grep -qx "$name"; then
      kind export kubeconfig --name "$name"
    else
      kind create cluster --name "$name" --wait 180s ||
        stop "kind could not make the cluster (its output is above)" \
          "fix what kind reports (\`kind delete cluster --name $name\` clears a half-made one), then re-run scripts/quickstart.sh"
    fi
    context=kind-$name
    delete="kind delete cluster --name $name"
    ;;
  minikube)
    say "no cluster is configured: making one with minikube: $name"
    minikube start -p "$name" ||
      stop "minikube could not start the cluster (its output is above)" \
        "fix what minikube reports (\`minikube delete -p $name\` clears a half-made one), then re-run scripts/quickstart.sh"
    context=$name
    delete="minikube delete -p $name"
    ;;
esac
if [ -n "$maker" ]; then
  say "the cluster is $maker's $name (context $context); delete it with: $delete"
else
  say "using the current context, $context"
fi

# --- 4. the main job ----------------------------------------------------------------------
say "mlflow-helm install --local --kube-context $context${*:+ $*}"
"$python" -m mlflow_helm install --local --kube-context "$context" "$@" || exit $?
[ -n "${MLFLOW_HELM_PYTHON:-}" ] || say "the CLI is $venv/bin/mlflow-helm (status, test, uninstall: docs/cli.md)"
[ -z "$maker" ] || say "done with it? $delete"
