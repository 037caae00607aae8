#!/bin/sh
# The mlflow-gcp plugin's Python environment: where it lives, where the package comes from,
# and how it is (re)built. Sourced by scripts/install.sh (Helm's install and update hooks) and
# bin/mlflow-gcp (the launcher, which builds or re-syncs it on first use).
#
# The environment is outside the plugin directory, so a user's checkout gets no virtualenv,
# build/ or egg-info, and `helm plugin uninstall` (delete hook) removes it:
#   $HELM_DATA_HOME/mlflow-gcp/venv     the virtualenv (Helm exports HELM_DATA_HOME to plugins
#                                       and their hooks, Helm 3 and 4)
#   $HELM_DATA_HOME/mlflow-gcp/source   what it was built from
#   $HELM_DATA_HOME/mlflow-gcp/error    why the last set-up failed, and the fix
#
# Where the package comes from, first match wins:
#   MLFLOW_HELM_PYTHON   an interpreter that has mlflow_helm already (no environment is made;
#                        the launcher must see the same variable). Tests and offline use.
#   MLFLOW_HELM_SOURCE   anything pip accepts: a checkout path, a wheel, a pinned requirement.
#   dist/*.whl           the wheel a packaged plugin carries (scripts/package-plugin.sh): tgz,
#                        HTTP and OCI installs; the exact package of that plugin release.
#   the checkout         the repository around this plugin directory (local or git URL
#                        install), built from a copy; a later edit of src/, the chart or
#                        pyproject.toml re-syncs it on the next use.
# There is no fallback to a package name: a plugin with none of these says so.
# MLFLOW_HELM_PIP_ARGS adds pip options, e.g. "--no-index --find-links /wheels" offline.

# env_init ENV_DIR PLUGIN_DIR WHO RETRY [ERROR_FILE]: where the environment lives, the plugin
# directory (its parent is the checkout), the name messages start with, the command a failed
# set-up tells the user to run once it is fixed, and the file that failure is kept in (empty:
# none; default ENV_DIR/error).
env_init() {
  env_dir=$1
  venv=$env_dir/venv
  plugin_dir=$2
  who=$3
  retry=$4
  error_file=${5-$env_dir/error}
}
env_init "${HELM_DATA_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/helm}/mlflow-gcp" \
  "$(cd -P "$(dirname "$0")/.." && pwd)" mlflow-gcp "helm mlflow-gcp --version"

say() { printf '%s: %s\n' "$who" "$*" >&2; }

# The checkout around the plugin directory, if there is one.
checkout() {
  repo=$(cd "$plugin_dir/.." && pwd)
  if [ -f "$repo/pyproject.toml" ] && grep -q '^name = "mlflow-helm"' "$repo/pyproject.toml"; then
    printf '%s\n' "$repo"
  fi
}

# What to install, as pip takes it; empty (and the reason in $why) when there is nothing.
package_source() {
  if [ -n "${MLFLOW_HELM_SOURCE:-}" ]; then
    printf '%s\n' "$MLFLOW_HELM_SOURCE"; return
  fi
  for wheel in "$plugin_dir"/dist/mlflow_helm-*.whl; do
    [ -f "$wheel" ] && { printf '%s\n' "$wheel"; return; }
  done
  checkout
}

# Whether the environment is missing, or older than the checkout it was built from.
needs_setup() {
  [ -x "$venv/bin/python" ] && [ -f "$env_dir/source" ] || return 0
  source=$(package_source)
  [ "$(cat "$env_dir/source")" = "$source" ] || return 0
  [ -n "$source" ] && [ "$source" = "$(checkout)" ] || return 1  # a wheel or pip spec: as built
  changed=$(find "$source/src" "$source/charts/mlflow" "$source/pyproject.toml" -newer "$env_dir/source" \
    ! -name '*.pyc' ! -path '*/__pycache__*' ! -path '*.egg-info*' -print 2>/dev/null | head -n 1)
  [ -n "$changed" ]
}

fail() {  # reason, fix
  if [ -n "$error_file" ]; then
    mkdir -p "$(dirname "$error_file")"
    printf '%s\n  fix: %s\n' "$1" "$2" >"$error_file"
  fi
  say "$1"
  say "  fix: $2"
  return 1
}

# The python3 the virtualenv is made with ($python): 3.10 or later, with venv and ensurepip.
check_python() {
  python=$(command -v python3 || true)
  [ -n "$python" ] || { fail "python3 not found (3.10 or later is needed)" \
    "install it (Debian/Ubuntu: apt-get install python3 python3-venv; macOS: brew install python), then run \`$retry\`"; return 1; }
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { fail \
    "$python is $("$python" -V 2>&1 | cut -d' ' -f2); 3.10 or later is needed" \
    "put a newer python3 first on PATH, then run \`$retry\`"; return 1; }
  "$python" -c 'import ensurepip, venv' 2>/dev/null || { fail \
    "$python cannot make a virtualenv (no ensurepip)" \
    "apt-get install python3-venv, then run \`$retry\`"; return 1; }
}

# Build the environment: a new virtualenv next to the old one, swapped in only when the
# package imports, so an interrupted or failed set-up never leaves a half-made one in use.
setup_env() {
  source=$(package_source)
  if [ -z "$source" ]; then
    fail "this copy of the plugin carries no mlflow-helm package (no dist/mlflow_helm-*.whl, no checkout around $plugin_dir)" \
      "install a packaged release (mlflow-gcp-VERSION.tgz, made by scripts/package-plugin.sh) or the git repository; or set MLFLOW_HELM_SOURCE to a wheel or checkout and run \`$retry\`"
    return 1
  fi
  check_python || return 1
  mkdir -p "$env_dir"
  lock=$env_dir/lock
  waited=0
  until mkdir "$lock" 2>/dev/null; do  # another set-up is running: wait for it
    [ "$waited" -ge 900 ] && { fail "a set-up has held $lock for 15 minutes" \
      "if no other helm mlflow-gcp is running, remove $lock"; return 1; }
    sleep 1; waited=$((waited + 1))
  done
  trap 'rm -rf "$lock" "$venv.new" "${copy:-}"' EXIT
  trap 'exit 130' INT TERM
  build=$source
  copy=""
  if [ "$source" = "$(checkout)" ] && [ -d "$source/src" ]; then
    # pip builds a directory in place (build/, *.egg-info): build a copy instead, so the
    # user's checkout is left as it was.
    copy=$(mktemp -d)
    cp -R "$source/pyproject.toml" "$source/README.md" "$source/src" "$source/charts" "$copy/"
    rm -rf "$copy"/src/*.egg-info
    build=$copy
  fi
  say "setting up its Python environment in $venv (the first time takes a minute and about 350 MB)"
  say "  from $source"
  rm -rf "$venv.new"
  "$python" -m venv "$venv.new" || { fail "$python -m venv failed" \
    "apt-get install python3-venv (or fix the error above), then run \`$retry\`"; return 1; }
  # Progress: one line per package pip fetches, then what it installed or why it failed.
  # shellcheck disable=SC2086 # MLFLOW_HELM_PIP_ARGS is a list of options
  "$venv.new/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    ${MLFLOW_HELM_PIP_ARGS:-} "$build" 2>&1 |
    grep -E '^(Collecting|Successfully installed|ERROR|  error)' >&2 || true
  "$venv.new/bin/python" -c "import mlflow_helm.cli" 2>/dev/null || { fail \
    "pip could not install mlflow-helm from $source (its output is above)" \
    "fix what pip reports (network, MLFLOW_HELM_PIP_ARGS for an offline index), then run \`$retry\`"; return 1; }
  rm -rf "$venv"
  mv "$venv.new" "$venv"
  printf '%s\n' "$source" >"$env_dir/source"
  [ -z "$error_file" ] || rm -f "$error_file"
  say "ready ($("$venv/bin/python" -m mlflow_helm --version))"
}
