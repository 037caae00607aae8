"""The load-balancer settings reach the real server (uvicorn under `mlflow server`).

- Keep-alive: a connection left idle longer than uvicorn's default 5 s (uvicorn/config.py
  `timeout_keep_alive`) is closed by the server; Google's load balancers reuse idle backend
  connections for up to 600 s, so the next request on it fails (a 502 to the user). With the
  chart's setting the connection still serves after the idle time.
- Forwarded headers: uvicorn's ProxyHeadersMiddleware takes the client address from
  X-Forwarded-For only when the peer is in `--forwarded-allow-ips` (uvicorn/middleware/
  proxy_headers.py), and its access log prints that address (MLflow's uvicorn_log_config.yaml,
  `%(client_addr)s`). The tests connect from 127.0.0.1: uvicorn's default trusts it, the
  chart's Google ranges do not, an explicit CIDR does.
"""

from __future__ import annotations

import http.client
import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

IDLE = 7  # seconds: beyond uvicorn's default keep-alive (5 s), far below the chart's (620 s)
CLIENT = "203.0.113.7"  # TEST-NET-3, as a user's address behind the load balancer
MARKED = "/health?from=lb-test"  # told apart from the harness's own probes in the access log


def two_requests_one_connection(port: int, host: str) -> tuple[int, int | str]:
    """GET /health, stay idle IDLE seconds, GET again on the same TCP connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", MARKED, headers={"Host": host, "X-Forwarded-For": CLIENT})
    first = conn.getresponse()
    first.read()
    sock = conn.sock
    time.sleep(IDLE)
    try:
        conn.request("GET", "/health", headers={"Host": host})
        second = conn.getresponse()
        second.read()
        reused = conn.sock is sock
        return first.status, second.status if reused else "reconnected"
    except (TimeoutError, http.client.RemoteDisconnected, ConnectionError) as exc:
        return first.status, type(exc).__name__
    finally:
        conn.close()


def access_client(log: Path) -> str:
    """The client address the access log gives the request with X-Forwarded-For."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines()
             if f'"GET {MARKED} HTTP/1.1" 200' in ln]
    assert len(lines) == 1, log.read_text(errors="replace")[-2000:]
    m = re.search(r"(\d+\.\d+\.\d+\.\d+):\d+ - \"GET ", lines[0])
    assert m, lines[0]
    return m.group(1)


def uvicorn_cmdline(pid: int) -> list[str]:
    import psutil

    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        cmd = proc.cmdline()
        if "uvicorn" in cmd:
            return cmd
    raise AssertionError(f"no uvicorn process under {pid}")


def test_google_load_balancer_settings_reach_uvicorn(release_factory):
    rel = release_factory(
        "gcp-lb",
        values={"gcpLoadBalancer": {"enabled": True},
                "networkPolicy": {"proxyOnlySubnets": ["10.129.0.0/23"]}},
    )
    rel.install()
    cmd = uvicorn_cmdline(rel.server.proc.pid)
    assert cmd[cmd.index("--timeout-keep-alive") + 1] == "620", cmd
    assert cmd[cmd.index("--forwarded-allow-ips") + 1] == (
        "35.191.0.0/16,130.211.0.0/22,10.129.0.0/23"), cmd

    first, second = two_requests_one_connection(rel.port, rel.service_host())
    assert (first, second) == (200, 200), f"idle connection after {IDLE}s: {second}"
    # 127.0.0.1 is no Google front end: its X-Forwarded-For is not believed.
    assert access_client(rel.server.log) == "127.0.0.1"


def test_without_a_route_uvicorn_keeps_its_defaults(release_factory):
    # The control: the same idle connection is closed by uvicorn's 5 s default, and
    # X-Forwarded-For from a trusted peer (here an explicit CIDR) is the logged client.
    rel = release_factory("no-lb", values={"server": {"forwardedAllowIps": ["127.0.0.0/8"]}})
    rel.install()
    first, second = two_requests_one_connection(rel.port, rel.service_host())
    assert first == 200 and second != 200, second
    assert access_client(rel.server.log) == CLIENT
