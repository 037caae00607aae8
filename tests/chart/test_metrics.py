"""Metrics that scrapers can read: logins with auth on, pod IPs on any pod range, GKE's
managed collection.

- MLflow's basic-auth app guards every path but `/static`, `/favicon.ico` and `/health`
  (mlflow/server/auth/__init__.py, `_UNPROTECTED_PATH_PREFIXES`, MLflow 3.17.2), so `/metrics`
  answers 401 to a scrape that does not log in.
- Scrapers fetch `http://POD_IP:5000/metrics`, so the Host is the pod's address. MLflow's host
  check accepts only its patterns (mlflow/server/security_utils.py: `is_allowed_host_header`
  with fnmatch; the defaults of `get_private_ip_patterns` cover RFC 1918 only), and GKE's pod
  ranges may be 100.64.0.0/10, class E or IPv6
  (https://cloud.google.com/kubernetes-engine/docs/concepts/alias-ips#cluster_sizing_secondary_range_pods).
  The patterns the chart renders are checked here with MLflow's own matcher, not a model of it.
- PodMonitoring (Managed Service for Prometheus): the CRD schema is
  tests/chart/crds/monitoring.googleapis.com_v1_PodMonitoring.json (prometheus-engine v0.17.2);
  basicAuth's password is read by the collector itself (the collector's
  `--enable-feature=google-kubernetes-secret-provider`, charts/operator/templates/collector.yaml)
  under ServiceAccount gmp-system/collector, whose ClusterRole has no secrets, so the Secret is
  granted with a Role as prometheus-engine's
  examples/instrumentation/go-synthetic/go-synthetic-basic-auth.yaml does (commit 2ffde4ec).
"""

from __future__ import annotations

import base64
import ipaddress
import random

import pytest
from mlflow.server.security_utils import is_allowed_host_header

from .modes import merge
from .render import (
    CRD_APIS,
    FULLNAME,
    by_kind,
    container,
    get_object,
    render_chart,
)

METRICS = {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True},
                       "podMonitoring": {"enabled": True}}}
AUTH = merge(METRICS, {"auth": {"enabled": True}})


def secret_data(objects: list[dict], name: str) -> dict[str, str]:
    secret = get_object(objects, "Secret", name)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def allowed_hosts(helm, values: dict) -> list[str]:
    objects = render_chart(helm, values)
    server = container(get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"],
                       "mlflow")
    (arg,) = [a for a in server["args"] if a.startswith("--allowed-hosts=")]
    # mlflow server splits the flag on "," (mlflow/cli/__init__.py, --allowed-hosts).
    return arg.split("=", 1)[1].split(",")


class TestScrapeLogins:
    def test_service_monitor_logs_in_as_the_admin(self, helm):
        objects = render_chart(helm, AUTH, api_versions=CRD_APIS)
        (endpoint,) = get_object(objects, "ServiceMonitor", FULLNAME)["spec"]["endpoints"]
        auth = endpoint["basicAuth"]
        # Both halves are SecretKeySelectors the operator reads in this namespace; both must
        # name a rendered Secret and a key it has.
        user = secret_data(objects, auth["username"]["name"])[auth["username"]["key"]]
        password = secret_data(objects, auth["password"]["name"])[auth["password"]["key"]]
        assert user == "admin"
        assert auth["password"]["name"] == f"{FULLNAME}-auth"
        assert len(password) >= 16

    def test_pod_monitoring_logs_in_and_the_collector_may_read_the_password(self, helm):
        objects = render_chart(helm, AUTH, api_versions=CRD_APIS)
        pm = get_object(objects, "PodMonitoring", FULLNAME)
        (endpoint,) = pm["spec"]["endpoints"]
        assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
        assert endpoint["basicAuth"]["username"] == "admin"
        ref = endpoint["basicAuth"]["password"]["secret"]
        assert ref["key"] in secret_data(objects, ref["name"])
        # The selector picks the server pods (and nothing else of the release).
        deploy = get_object(objects, "Deployment", FULLNAME)
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert pm["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for other in by_kind(objects, "StatefulSet") + by_kind(objects, "Job"):
            other_labels = other["spec"]["template"]["metadata"]["labels"]
            assert not pm["spec"]["selector"]["matchLabels"].items() <= other_labels.items()
        (role,) = by_kind(objects, "Role")
        (rule,) = role["rules"]
        assert rule["resources"] == ["secrets"] and rule["resourceNames"] == [ref["name"]]
        assert set(rule["verbs"]) == {"get", "list", "watch"}
        (binding,) = by_kind(objects, "RoleBinding")
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "collector",
                                        "namespace": "gmp-system"}]

    def test_a_dedicated_scrape_user(self, helm):
        values = merge(AUTH, {"metrics": {"basicAuth": {
            "username": "prometheus", "existingSecret": "scrape-login", "passwordKey": "pw"}}})
        objects = render_chart(helm, values, api_versions=CRD_APIS)
        sm_auth = get_object(objects, "ServiceMonitor", FULLNAME)["spec"]["endpoints"][0][
            "basicAuth"]
        assert secret_data(objects, sm_auth["username"]["name"]) == {"username": "prometheus"}
        assert sm_auth["password"] == {"name": "scrape-login", "key": "pw"}
        pm_auth = get_object(objects, "PodMonitoring", FULLNAME)["spec"]["endpoints"][0][
            "basicAuth"]
        assert pm_auth == {"username": "prometheus",
                           "password": {"secret": {"name": "scrape-login", "key": "pw"}}}
        (role,) = by_kind(objects, "Role")
        assert role["rules"][0]["resourceNames"] == ["scrape-login"]

    def test_no_login_and_no_grant_without_auth(self, helm):
        objects = render_chart(helm, METRICS, api_versions=CRD_APIS)
        assert "basicAuth" not in get_object(objects, "ServiceMonitor", FULLNAME)["spec"][
            "endpoints"][0]
        assert "basicAuth" not in get_object(objects, "PodMonitoring", FULLNAME)["spec"][
            "endpoints"][0]
        assert not by_kind(objects, "Role") and not by_kind(objects, "RoleBinding")
        assert not [s for s in by_kind(objects, "Secret")
                    if s["metadata"]["name"].endswith("metrics-user")]

    def test_the_grant_can_be_left_to_the_user(self, helm):
        values = merge(AUTH, {"metrics": {"podMonitoring": {"grantCollector": False}}})
        objects = render_chart(helm, values, api_versions=CRD_APIS)
        assert not by_kind(objects, "Role") and not by_kind(objects, "RoleBinding")


# ------------------------------------------------------------------------ pod ranges ----

PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


def sample_ipv4(rng: random.Random, n: int, near: list[ipaddress.IPv4Network]) -> list:
    """Random addresses across the space, plus ones just inside and outside each range."""
    out = [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(n)]
    for net in near:
        first, last = int(net.network_address), int(net.broadcast_address)
        out += [ipaddress.IPv4Address(a) for a in (first, last, first - 1, last + 1)
                if 0 <= a < 2 ** 32]
        out += [ipaddress.IPv4Address(rng.randint(first, last)) for _ in range(50)]
    return out


class TestPodRanges:
    def test_a_cgnat_pod_range_is_refused_by_default(self, helm):
        # The defect: GKE pods in 100.64.0.0/10 cannot be scraped by IP.
        hosts = allowed_hosts(helm, {})
        assert not is_allowed_host_header(hosts, "100.96.1.7:5000")
        assert is_allowed_host_header(hosts, "10.8.1.7:5000")  # MLflow's default, kept

    @pytest.mark.parametrize("cidrs", [
        ["100.64.0.0/10"],
        ["240.0.0.0/4"],
        ["100.64.16.0/20", "100.65.3.7/32"],
        ["100.65.0.0/10"],  # host bits set: the network is 100.64.0.0/10, as ipaddress reads it
        ["198.18.0.0/15", "11.0.0.0/8"],
    ])
    def test_ipv4_ranges_match_exactly_their_addresses(self, helm, cidrs):
        hosts = allowed_hosts(helm, {"server": {"allowedHosts": {"podCIDRs": cidrs}}})
        nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        rng = random.Random(",".join(cidrs))
        for addr in sample_ipv4(rng, 3000, nets):
            expected = any(addr in n for n in nets + PRIVATE)
            # Requests by pod IP reach the container port: Host is ADDRESS:5000.
            assert is_allowed_host_header(hosts, f"{addr}:5000") == expected, (addr, cidrs)

    def test_names_that_start_like_an_address_are_not_addresses(self, helm):
        hosts = allowed_hosts(helm, {"server": {"allowedHosts": {"podCIDRs": ["100.64.0.0/10"]}}})
        assert is_allowed_host_header(hosts, "100.64.1.2:5000")
        # DNS rebinding sends the attacker's name as Host; only the container port is added.
        for name in ("100.64.example.com", "100.64.1.1.example.com:5000", "100.64.evil:5000",
                     "100.64.1.2", "100.64.1.2:8080"):
            assert not is_allowed_host_header(hosts, name), name

    def test_ipv6_ranges(self, helm):
        cidrs = ["2600:1900:4120:fabf::/64", "FD12:3456:0789::/48"]
        hosts = allowed_hosts(helm, {"server": {"allowedHosts": {"podCIDRs": cidrs}}})
        rng = random.Random(6)
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr)
            inside = [net.network_address + rng.getrandbits(128 - net.prefixlen)
                      for _ in range(300)] + [net.network_address + 5]
            for addr in inside:
                # Kubernetes and Prometheus print addresses in RFC 5952 form, which str() gives.
                assert is_allowed_host_header(hosts, f"[{addr}]:5000"), addr
            outside = net.network_address + (1 << (128 - net.prefixlen))
            assert not is_allowed_host_header(hosts, f"[{outside}]:5000"), outside
        assert not is_allowed_host_header(hosts, "[2600:1900:4120:fabe::5]:5000")
