#!/bin/sh
# Install and update hook of the mlflow-gcp plugin: build its Python environment (see
# scripts/env.sh for where it lives and where the package comes from).
#
# The hook never fails: Helm 3 and 4 both keep a plugin registered when its install hook
# exits non-zero, and a re-install then says "plugin already exists". A set-up that cannot
# finish is written to $HELM_DATA_HOME/mlflow-gcp/error; the launcher retries it on first use
# and, if it still cannot, says why and how to fix it.
set -u
# This script's own location, not HELM_PLUGIN_DIR (see bin/mlflow-gcp).
# shellcheck source=env.sh
. "$(cd -P "$(dirname "$0")" && pwd)/env.sh"
if [ -n "${MLFLOW_HELM_PYTHON:-}" ]; then
  if "$MLFLOW_HELM_PYTHON" -c "import mlflow_helm"; then
    echo "mlflow-gcp: using $MLFLOW_HELM_PYTHON"
  else
    say "$MLFLOW_HELM_PYTHON cannot import mlflow_helm; the launcher will say so on first use"
  fi
  exit 0
fi
if needs_setup; then
  # In a subshell: its traps (lock, half-made venv) are its own.
  (setup_env) || say "set-up not finished; \`helm mlflow-gcp\` retries it on first use"
else
  say "environment up to date ($venv)"
fi
exit 0
