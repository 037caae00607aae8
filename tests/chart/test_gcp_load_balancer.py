"""Behind Google Cloud Application Load Balancers (GKE Ingress and GKE Gateway).

What Google's side does, and where it is written down:
- Google's front ends keep connections to backends open up to 600 s and reuse them; a backend
  that closes an idle connection first makes the next request on it fail with a 502. Google
  asks backends for a keep-alive above the load balancer's ("HTTP keepalive timeout", Cloud Load
  Balancing docs: Timeouts and retries). uvicorn's default `--timeout-keep-alive` is 5 s
  (uvicorn/config.py `timeout_keep_alive: int = 5`).
- Requests reach pods (container-native load balancing) from 35.191.0.0/16 and 130.211.0.0/22
  (global front ends and health checks) or the region's proxy-only subnet (regional and internal
  Application Load Balancers) ("Firewall rules", Cloud Load Balancing docs). uvicorn trusts
  X-Forwarded-* only from `--forwarded-allow-ips` (default 127.0.0.1: uvicorn/config.py).
- A backend service's default timeout is 30 s and its health check asks `/` unless configured:
  BackendConfig (Ingress; fields in kubernetes/ingress-gce pkg/apis/backendconfig/v1/types.go),
  HealthCheckPolicy and GCPBackendPolicy (Gateway; the CRDs of GoogleCloudPlatform/gke-gateway-api
  v1.4.0, validated here: tests/chart/crds/).
Objects are validated by render_chart against those schemas.
"""

from __future__ import annotations

import json
import shlex

import pytest

from .modes import merge
from .render import (
    CRD_APIS,
    FULLNAME,
    NAMESPACE,
    by_kind,
    container,
    get_object,
    render_chart,
    render_error,
)

GATEWAY = {"httpRoute": {"enabled": True, "parentRefs": [{"name": "gke-l7-gxlb"}],
                         "hostnames": ["mlflow.example.com"]}}
INGRESS = {"ingress": {"enabled": True, "className": "gce"}}
LB = {"gcpLoadBalancer": {"enabled": True}}


def server_of(objects: list[dict]) -> tuple[dict, dict]:
    spec = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    return spec, container(spec, "mlflow")


def uvicorn_opts(c: dict) -> list[str]:
    """What `mlflow server` hands uvicorn: it shlex-splits --uvicorn-opts
    (mlflow/server/__init__.py, _build_uvicorn_command)."""
    values = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--uvicorn-opts=")]
    return shlex.split(values[0]) if values else []


def opt(opts: list[str], name: str) -> str | None:
    """The value uvicorn (click) uses: the last occurrence."""
    found = [opts[i + 1] for i, o in enumerate(opts[:-1]) if o == name]
    return found[-1] if found else None


class TestServerSide:
    def test_no_route_keeps_uvicorn_defaults(self, helm):
        spec, c = server_of(render_chart(helm, {}))
        assert uvicorn_opts(c) == []
        assert "lifecycle" not in c
        assert spec["terminationGracePeriodSeconds"] == 30

    @pytest.mark.parametrize("route", ["ingress", "httpRoute", "virtualService"])
    def test_a_route_raises_the_keep_alive_and_drains(self, helm, route):
        values = {"ingress": INGRESS, "httpRoute": GATEWAY,
                  "virtualService": {"virtualService": {"enabled": True}}}[route]
        spec, c = server_of(render_chart(helm, values, api_versions=CRD_APIS))
        assert int(opt(uvicorn_opts(c), "--timeout-keep-alive")) > 600
        assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
        assert spec["terminationGracePeriodSeconds"] == 5 + 30

    def test_google_load_balancer(self, helm):
        values = merge(LB, {"networkPolicy": {"proxyOnlySubnets": ["10.129.0.0/23"]},
                            "gcpLoadBalancer": {"loadBalancerAddresses": ["34.120.1.1"]}})
        spec, c = server_of(render_chart(helm, values))
        opts = uvicorn_opts(c)
        assert int(opt(opts, "--timeout-keep-alive")) > 600
        assert opt(opts, "--forwarded-allow-ips").split(",") == [
            "35.191.0.0/16", "130.211.0.0/22", "10.129.0.0/23", "34.120.1.1"]
        sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
        assert sleep == 15
        # The pod outlives the drain, then the load balancer's connection draining.
        assert spec["terminationGracePeriodSeconds"] == sleep + 60

    def test_the_users_uvicorn_options_win(self, helm):
        values = merge(LB, {"server": {"uvicornOpts": "--timeout-keep-alive 900 --h11-max-"
                                                      "incomplete-event-size 32768",
                                       "forwardedAllowIps": ["10.8.0.0/14"]}})
        _, c = server_of(render_chart(helm, values))
        opts = uvicorn_opts(c)
        assert opt(opts, "--timeout-keep-alive") == "900"
        assert "10.8.0.0/14" in opt(opts, "--forwarded-allow-ips").split(",")
        assert opt(opts, "--h11-max-incomplete-event-size") == "32768"

    def test_explicit_values(self, helm):
        values = {"server": {"keepAliveTimeout": 75, "preStopSleepSeconds": 0,
                             "forwardedAllowIps": ["127.0.0.1"]}}
        spec, c = server_of(render_chart(helm, merge(values, INGRESS)))
        assert opt(uvicorn_opts(c), "--timeout-keep-alive") == "75"
        assert opt(uvicorn_opts(c), "--forwarded-allow-ips") == "127.0.0.1"
        assert "lifecycle" not in c and spec["terminationGracePeriodSeconds"] == 30


class TestBackendObjects:
    def test_ingress_gets_a_backend_config(self, helm):
        values = merge(INGRESS, LB, {"server": {"staticPrefix": "/mlflow"}})
        objects = render_chart(helm, values, api_versions=CRD_APIS)
        bc = get_object(objects, "BackendConfig", FULLNAME)
        assert bc["spec"]["timeoutSec"] == 3600
        assert bc["spec"]["connectionDraining"] == {"drainingTimeoutSec": 60}
        assert bc["spec"]["healthCheck"]["requestPath"] == "/mlflow/health"
        assert bc["spec"]["healthCheck"]["type"] == "HTTP"
        svc = get_object(objects, "Service", FULLNAME)
        ann = svc["metadata"]["annotations"]
        # ingress-gce reads these two Service annotations (pkg/annotations/service.go:
        # cloud.google.com/backend-config, cloud.google.com/neg).
        assert json.loads(ann["cloud.google.com/backend-config"]) == {"default": FULLNAME}
        assert json.loads(ann["cloud.google.com/neg"]) == {"ingress": True}
        assert not by_kind(objects, "HealthCheckPolicy")

    def test_gateway_gets_health_check_and_backend_policies(self, helm):
        values = merge(GATEWAY, LB, {"auth": {"enabled": True}})
        objects = render_chart(helm, values, api_versions=CRD_APIS)
        svc = get_object(objects, "Service", FULLNAME)
        target = {"group": "", "kind": "Service", "name": svc["metadata"]["name"]}
        hc = get_object(objects, "HealthCheckPolicy", FULLNAME)
        assert hc["spec"]["targetRef"] == target
        # /health is open with basic auth on (mlflow/server/auth/__init__.py,
        # _UNPROTECTED_PATH_PREFIXES); "/" would answer 401 and mark every pod unhealthy.
        assert hc["spec"]["default"]["config"] == {
            "type": "HTTP", "httpHealthCheck": {"port": 5000, "requestPath": "/health"}}
        bp = get_object(objects, "GCPBackendPolicy", FULLNAME)
        assert bp["spec"]["targetRef"] == target
        assert bp["spec"]["default"]["timeoutSec"] == 3600
        assert "iap" not in bp["spec"]["default"]
        # Service and Deployment agree on the port the health check asks.
        _, c = server_of(objects)
        assert [p["containerPort"] for p in c["ports"] if p["name"] == "http"] == [5000]
        assert not by_kind(objects, "BackendConfig")

    def test_iap_on_either_route(self, helm):
        iap = {"gcpLoadBalancer": {"iap": {"enabled": True, "oauthClientSecret": "mlflow-iap",
                                           "oauthClientId": "123-abc.apps.googleusercontent.com"}}}
        objects = render_chart(helm, merge(INGRESS, LB, iap), api_versions=CRD_APIS)
        assert get_object(objects, "BackendConfig", FULLNAME)["spec"]["iap"] == {
            "enabled": True, "oauthclientCredentials": {"secretName": "mlflow-iap"}}
        objects = render_chart(helm, merge(GATEWAY, LB, iap), api_versions=CRD_APIS)
        assert get_object(objects, "GCPBackendPolicy", FULLNAME)["spec"]["default"]["iap"] == {
            "enabled": True, "clientID": "123-abc.apps.googleusercontent.com",
            "oauth2ClientSecret": {"name": "mlflow-iap"}}

    def test_iap_with_googles_managed_client_on_ingress(self, helm):
        values = merge(INGRESS, LB, {"gcpLoadBalancer": {"iap": {"enabled": True}}})
        bc = get_object(render_chart(helm, values, api_versions=CRD_APIS), "BackendConfig",
                        FULLNAME)
        assert bc["spec"]["iap"] == {"enabled": True}

    def test_network_policy_admits_google_when_the_load_balancer_is_on(self, helm):
        values = merge(INGRESS, LB, {"networkPolicy": {"enabled": True}})
        policy = get_object(render_chart(helm, values, api_versions=CRD_APIS), "NetworkPolicy",
                            f"{FULLNAME}-server")
        cidrs = {p["ipBlock"]["cidr"] for rule in policy["spec"]["ingress"]
                 for p in rule.get("from", []) if "ipBlock" in p}
        assert {"35.191.0.0/16", "130.211.0.0/22"} <= cidrs


class TestRefusals:
    def test_iap_needs_a_route(self, helm):
        stderr = render_error(helm, merge(LB, {"gcpLoadBalancer": {"iap": {"enabled": True}}}))
        assert "gcpLoadBalancer.iap.enabled" in stderr and "ingress.enabled" in stderr

    def test_gateway_iap_needs_the_oauth_client(self, helm):
        values = merge(GATEWAY, LB, {"gcpLoadBalancer": {"iap": {"enabled": True}}})
        stderr = render_error(helm, values, api_versions=CRD_APIS)
        assert "gcpLoadBalancer.iap.oauthClientId" in stderr
        assert "gcpLoadBalancer.iap.oauthClientSecret" in stderr

    @pytest.mark.parametrize(("route", "gvk"), [
        ("ingress", "cloud.google.com/v1/BackendConfig"),
        ("httpRoute", "networking.gke.io/v1/GCPBackendPolicy"),
        ("httpRoute", "networking.gke.io/v1/HealthCheckPolicy"),
    ])
    def test_refused_where_gke_does_not_serve_the_api(self, helm, route, gvk):
        values = merge(INGRESS if route == "ingress" else GATEWAY, LB)
        apis = [a for a in CRD_APIS if a != gvk]
        stderr = render_error(helm, values, api_versions=apis)
        group_version, kind = gvk.rsplit("/", 1)
        line = next(ln for ln in stderr.splitlines() if f"serves no {group_version} {kind}" in ln)
        assert "gcpLoadBalancer.enabled=false" in line and f"--api-versions {gvk}" in line


def test_namespace_of_the_policies(helm):
    objects = render_chart(helm, merge(GATEWAY, LB), api_versions=CRD_APIS)
    for kind in ("HealthCheckPolicy", "GCPBackendPolicy"):
        assert get_object(objects, kind, FULLNAME)["metadata"]["namespace"] == NAMESPACE
