#!/bin/sh
# Install/update hook of the mlflow-gcp plugin: make the Python environment the launcher
# uses. Where the package comes from, first match wins:
#   MLFLOW_HELM_PYTHON   an interpreter that already has mlflow_helm (nothing is installed;
#                        the launcher must see the same variable). Tests and offline use.
#   MLFLOW_HELM_SOURCE   anything pip accepts: a checkout path, a wheel, `mlflow-helm==X`.
#   the repository this plugin directory lives in (a checkout, or a git URL install).
#   `mlflow-helm` from the package index.
# MLFLOW_HELM_PIP_ARGS adds pip options, e.g. "--no-index --find-links /wheels" offline.
set -eu
# This script's own location, not HELM_PLUGIN_DIR (see bin/mlflow-gcp).
dir=$(cd -P "$(dirname "$0")/.." && pwd)
if [ -n "${MLFLOW_HELM_PYTHON:-}" ]; then
  "$MLFLOW_HELM_PYTHON" -c "import mlflow_helm" || {
    echo "mlflow-gcp: $MLFLOW_HELM_PYTHON cannot import mlflow_helm" >&2; exit 1; }
  echo "mlflow-gcp: using $MLFLOW_HELM_PYTHON"
  exit 0
fi
repo=$(cd "$dir/.." && pwd)
if [ -n "${MLFLOW_HELM_SOURCE:-}" ]; then
  source="$MLFLOW_HELM_SOURCE"
elif [ -f "$repo/pyproject.toml" ] && grep -q '^name = "mlflow-helm"' "$repo/pyproject.toml"; then
  source="$repo"
else
  source="mlflow-helm"
fi
python=$(command -v python3 || true)
if [ -z "$python" ]; then
  echo "mlflow-gcp: python3 (3.10 or later) is needed" >&2; exit 1
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
  echo "mlflow-gcp: python3 is older than 3.10" >&2; exit 1; }
echo "mlflow-gcp: installing $source into $dir/.venv"
"$python" -m venv "$dir/.venv"
# shellcheck disable=SC2086 # MLFLOW_HELM_PIP_ARGS is a list of options
"$dir/.venv/bin/python" -m pip install --quiet ${MLFLOW_HELM_PIP_ARGS:-} "$source"
"$dir/.venv/bin/python" -c "import mlflow_helm"
echo "mlflow-gcp: ready"
