"""A `cloud-sql-proxy` stand-in that accepts connections and never answers them.

The grant (src/mlflow_helm/dbgrant.py) starts `cloud-sql-proxy --port P --address 127.0.0.1
[--private-ip|--psc] PROJECT:REGION:INSTANCE` and connects through it with psycopg2. This
one listens where it is told, logs `pid PID` when it starts and `connection` for each client
to $FAKE_PROXY_LOG, and holds every connection open without a byte in reply: a database the
proxy is slow to reach, so the grant stays in its connection attempt until the proxy goes.
SIGTERM ends it at once, closing the connections, as the real proxy v2 does by default
(GoogleCloudPlatform/cloud-sql-proxy cmd/root.go: `--max-sigterm-delay`, "Maximum amount of
time to wait after for any open connections to close after receiving a TERM signal",
defaults to 0s).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def write_fake_proxy(bin_dir: Path) -> Path:
    """Put `cloud-sql-proxy` (this script) in `bin_dir`, for PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    proxy = bin_dir / "cloud-sql-proxy"
    proxy.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    proxy.chmod(0o755)
    return proxy


def log(line: str) -> None:
    with open(os.environ["FAKE_PROXY_LOG"], "a") as out:
        out.write(line + "\n")


def main() -> int:
    argv = sys.argv[1:]
    port = int(argv[argv.index("--port") + 1])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    log(f"pid {os.getpid()}")
    held = []
    while True:
        conn, _ = server.accept()
        held.append(conn)  # never read, never answered, never closed
        log("connection")


if __name__ == "__main__":
    sys.exit(main())
