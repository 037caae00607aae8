"""A scrape of the real MLflow server as Prometheus (ServiceMonitor) and GKE's managed collector
(PodMonitoring) make it: by pod IP, on a pod range outside RFC 1918, with auth on.

Prometheus requests http://POD_IP:PORT/metrics, so Host is "POD_IP:5000", and sends the
endpoint's basicAuth (prometheus-operator's ServiceMonitor `basicAuth`, GMP's PodMonitoring
`basicAuth`: the CRD schemas in tests/chart/crds/). The credentials used here are the ones the
rendered objects point at, read from the rendered Secrets.
"""

from __future__ import annotations

import base64

import pytest
from e2e_kube import http_get

pytestmark = pytest.mark.e2e

POD_HOST = "100.96.1.7:5000"  # a GKE pod address in 100.64.0.0/10


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_scrapes_log_in_and_pass_the_host_check_on_the_declared_pod_range(release_factory):
    rel = release_factory(
        "metrics-auth",
        values={
            "auth": {"enabled": True},
            "metrics": {"enabled": True, "serviceMonitor": {"enabled": True},
                        "podMonitoring": {"enabled": True}},
            "server": {"allowedHosts": {"podCIDRs": ["100.64.0.0/10"]}},
        },
    )
    rel.install()
    cluster = rel.cluster

    sm = cluster.get("ServiceMonitor")["spec"]["endpoints"][0]
    user_ref, pw_ref = sm["basicAuth"]["username"], sm["basicAuth"]["password"]
    user = cluster.secret_data(user_ref["name"])[user_ref["key"]]
    password = cluster.secret_data(pw_ref["name"])[pw_ref["key"]]
    pm = cluster.get("PodMonitoring")["spec"]["endpoints"][0]
    assert pm["basicAuth"]["username"] == user
    pm_ref = pm["basicAuth"]["password"]["secret"]
    assert cluster.secret_data(pm_ref["name"])[pm_ref["key"]] == password

    status, body = http_get(rel.port, sm["path"], POD_HOST, headers=basic(user, password))
    assert status == 200, body[:300]
    # The exposition of prometheus_flask_exporter, defaults_prefix="mlflow"
    # (mlflow/server/prometheus_exporter.py): its own info gauge is always there.
    assert b"# TYPE mlflow_exporter_info gauge" in body, body[:500]

    # Without the login MLflow's basic auth refuses; outside the declared range the host check.
    status, _ = http_get(rel.port, sm["path"], POD_HOST)
    assert status == 401
    status, body = http_get(rel.port, sm["path"], "100.128.0.1:5000",
                            headers=basic(user, password))
    assert status == 403, body[:300]
