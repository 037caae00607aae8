#!/usr/bin/env bash
# Package the mlflow-gcp Helm plugin with the exact mlflow-helm wheel it runs, for installs
# that have no checkout around them (a tgz file, an HTTP URL, an OCI reference):
#
#   scripts/package-plugin.sh [OUT_DIR]      # default dist/; prints the package's path
#   helm plugin install https://example.com/mlflow-gcp-0.1.0.tgz   # Helm 4: --verify=false
#
# The tgz holds mlflow-gcp/{plugin.yaml,bin,scripts,dist/mlflow_helm-VERSION-*.whl}, where
# Helm 4 looks for a plugin archive's files (a directory named after the plugin), and a
# plugin.yaml at the top pointing into mlflow-gcp/, where Helm 3's HTTP installer looks
# (Helm 3 also takes an HTTP archive only when it is served as application/gzip or
# application/x-gzip: checked with Helm 3.17.3 and 4.1.4, HTTP and a local file). The
# install hook installs that wheel (plugin/scripts/env.sh), never a package name. The wheel
# is built from a copy of the checkout, so no build/ or egg-info is left in it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
PYTHON=${PYTHON:-python3}
version=$(sed -n 's/^version: *//p' plugin/plugin.yaml)
package_version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
[[ $version == "$package_version" ]] || {
  echo "plugin/plugin.yaml version $version differs from pyproject.toml's $package_version" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/mlflow-gcp/dist"
cp -R pyproject.toml README.md src charts "$work/src/"
rm -rf "$work"/src/src/*.egg-info
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$work/mlflow-gcp/dist" "$work/src"
cp -R plugin/plugin.yaml plugin/bin plugin/scripts "$work/mlflow-gcp/"
# shellcheck disable=SC2016 # $HELM_PLUGIN_DIR is for Helm to expand, not this shell
sed 's|\$HELM_PLUGIN_DIR/|$HELM_PLUGIN_DIR/mlflow-gcp/|' plugin/plugin.yaml >"$work/plugin.yaml"
tgz=$OUT/mlflow-gcp-$version.tgz
# Sorted, owner-less and dated by the last commit: the same checkout makes the same bytes.
mtime=$(git -C "$ROOT" log -1 --format=%cI 2>/dev/null || echo 2026-01-01T00:00:00Z)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" -C "$work" \
  -cf - plugin.yaml mlflow-gcp | gzip -n >"$tgz"
echo "$tgz"
