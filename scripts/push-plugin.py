#!/usr/bin/env python3
"""Push the packaged mlflow-gcp plugin (scripts/package-plugin.sh) to an OCI registry, as
Helm 4 installs plugins from one:

    scripts/push-plugin.py dist/mlflow-gcp-0.1.0.tgz oci://HOST/PATH [--plain-http]
    helm plugin install oci://HOST/PATH/mlflow-gcp:0.1.0 --verify=false      # Helm 4 only

What Helm 4.1.4 accepts (pkg/registry/plugin.go processPluginPull, checked by
tests/cli/test_plugin_pip.py against the real Helm 4 and a real registry): a manifest whose
artifact type, or else config media type, is application/vnd.helm.plugin.v1+json, with the
archive as a layer titled `mlflow-gcp-VERSION.tgz`. Helm 3 has no OCI plugin source (its
installer knows directories, HTTP archives and VCS URLs; it says "Cannot detect VCS"), so
Helm 3 users install the same tgz over HTTP.

Credentials are the registry's usual ones (docker's config.json, as `helm registry login`
and `docker login` write them), read by oras (the ORAS project's Python client).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

PLUGIN_TYPE = "application/vnd.helm.plugin.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ARCHIVE = re.compile(r"^mlflow-gcp-(\d+\.\d+\.\d+[0-9A-Za-z.+-]*)\.tgz$")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", type=Path, help="mlflow-gcp-VERSION.tgz")
    parser.add_argument("destination", help="oci://HOST[/PATH]; the plugin goes to "
                        "HOST/PATH/mlflow-gcp:VERSION")
    parser.add_argument("--plain-http", action="store_true", help="registry without TLS")
    args = parser.parse_args(argv)

    match = ARCHIVE.match(args.archive.name)
    if not match:
        parser.error(f"{args.archive}: expected mlflow-gcp-VERSION.tgz, as "
                     "scripts/package-plugin.sh names it (Helm 4 looks for that layer title)")
    if not args.archive.is_file():
        parser.error(f"{args.archive} does not exist: run scripts/package-plugin.sh first")
    if not args.destination.startswith("oci://") or not args.destination[6:].strip("/"):
        parser.error(f"{args.destination!r}: expected oci://HOST[/PATH]")
    version = match.group(1)
    base = args.destination[len("oci://"):].rstrip("/")
    target = f"{base}/mlflow-gcp:{version}"

    import oras.client  # the `release` extra; imported after the checks so --help needs none

    client = oras.client.OrasClient(hostname=base.split("/")[0], insecure=args.plain_http)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text("{}")
        # oras uploads a layer under its path's basename, which becomes the layer's title.
        response = client.push(target=target, files=[f"{args.archive.resolve()}:{LAYER_TYPE}"],
                               manifest_config=f"{config}:{PLUGIN_TYPE}",
                               disable_path_validation=True)
    if response.status_code not in (200, 201):
        print(f"push of {target} failed: HTTP {response.status_code}", file=sys.stderr)
        return 1
    print(f"pushed oci://{target}")
    print(f"install (Helm 4): helm plugin install oci://{target}"
          + (" --plain-http" if args.plain_http else "") + " --verify=false")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
