"""Operations: HPA, PDB, NetworkPolicy, scheduling, ServiceMonitor."""

from __future__ import annotations

import pytest

from .modes import (
    CLOUDSQL_PG_PASSWORD,
    EXTERNAL_MYSQL,
    EXTERNAL_PG,
    EXTERNAL_URI,
    GCS_SERVED,
    merge,
)
from .render import (
    CRD_APIS,
    FULLNAME,
    NAMESPACE,
    RenderError,
    by_kind,
    get_object,
    jp,
    render_chart,
    render_error,
)

SERVER_SELECTOR = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": "prod",
                   "app.kubernetes.io/component": "server"}


def egress_ports(policy: dict) -> set[tuple[str, object]]:
    return {(p["protocol"], p["port"]) for rule in policy["spec"]["egress"]
            for p in rule.get("ports") or []}


# The GKE metadata server as each data plane evaluates policy on it: Dataplane V2 sees
# 169.254.169.254:80; Calico (Dataplane V1, GKE Standard) sees it after the DNAT to the GKE
# metadata server, 169.254.169.252:988. GKE's docs: "Workload Identity Federation for GKE,
# Restrictions" (https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity#limitations)
# and "Troubleshoot Workload Identity" (https://cloud.google.com/kubernetes-engine/docs/troubleshooting/authentication#workload-identity):
# with network policy and no Dataplane V2, allow egress to 169.254.169.252/32 on port 988.
METADATA_SERVER = {("169.254.169.254/32", 80), ("169.254.169.252/32", 988)}

# Google's front ends and health checkers (https://cloud.google.com/load-balancing/docs/health-check-concepts#ip-ranges,
# https://cloud.google.com/load-balancing/docs/firewall-rules).
GOOGLE_LB_RANGES = ["35.191.0.0/16", "130.211.0.0/22"]


def metadata_rules(policy: dict) -> set[tuple[str, int]]:
    """(cidr, port) of each egress rule to a 169.254/16 address; each rule must pair one
    address with its own port (a 169.254.169.254 rule that also opens 988 is the old bug)."""
    found = set()
    for rule in policy["spec"]["egress"]:
        cidrs = [peer["ipBlock"]["cidr"] for peer in rule.get("to", []) if "ipBlock" in peer]
        if any(c.startswith("169.254.") for c in cidrs):
            assert len(cidrs) == 1 and len(rule["ports"]) == 1, rule
            found.add((cidrs[0], rule["ports"][0]["port"]))
    return found


def lb_rule(policy: dict) -> dict | None:
    rules = [r for r in policy["spec"]["ingress"]
             if any("ipBlock" in p for p in r.get("from", []))]
    assert len(rules) <= 1, rules
    return rules[0] if rules else None


class TestOperations:
    def test_nothing_optional_by_default(self, helm):
        objects = render_chart(helm)
        for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
                     "ServiceMonitor"):
            assert by_kind(objects, kind) == []

    # ------------------------------------------------------------------- HPA ---

    def test_hpa(self, helm):
        values = merge(GCS_SERVED, {"autoscaling": {"enabled": True, "minReplicas": 2,
                                                    "maxReplicas": 5,
                                                    "targetMemoryUtilizationPercentage": 80}})
        hpa = get_object(render_chart(helm, values), "HorizontalPodAutoscaler", FULLNAME)
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": FULLNAME}
        assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 5)
        targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"]
                   for m in spec["metrics"]}
        assert targets == {"cpu": 70, "memory": 80}

    # ------------------------------------------------------------------- PDB ---

    def test_pdb_max_unavailable(self, helm):
        pdb = get_object(render_chart(helm, {"podDisruptionBudget": {"enabled": True}}),
                         "PodDisruptionBudget", FULLNAME)
        assert pdb["spec"] == {"maxUnavailable": 1,
                               "selector": {"matchLabels": SERVER_SELECTOR}}

    def test_pdb_min_available(self, helm):
        values = {"podDisruptionBudget": {"enabled": True, "minAvailable": 1,
                                          "maxUnavailable": None}}
        pdb = get_object(render_chart(helm, values), "PodDisruptionBudget", FULLNAME)
        assert pdb["spec"]["minAvailable"] == 1
        assert "maxUnavailable" not in pdb["spec"]

    # --------------------------------------------------------- NetworkPolicy ---

    def test_network_policies_incluster(self, helm):
        objects = render_chart(helm, {"networkPolicy": {"enabled": True}})
        names = {o["metadata"]["name"] for o in by_kind(objects, "NetworkPolicy")}
        assert names == {f"{FULLNAME}-server", f"{FULLNAME}-migrate", f"{FULLNAME}-test",
                         f"{FULLNAME}-postgresql"}
        for component in ("server", "migrate"):
            policy = get_object(objects, "NetworkPolicy", f"{FULLNAME}-{component}")
            assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
            ports = egress_ports(policy)
            assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 5432)} <= ports
            # Workload Identity tokens come from the GKE metadata server, in both forms.
            assert metadata_rules(policy) == METADATA_SERVER
            db_rule = [r for r in policy["spec"]["egress"]
                       if {"protocol": "TCP", "port": 5432} in r.get("ports", [])]
            assert db_rule[0]["to"] == [{"podSelector": {"matchLabels": {
                **SERVER_SELECTOR, "app.kubernetes.io/component": "postgresql"}}}]
        pg = get_object(objects, "NetworkPolicy", f"{FULLNAME}-postgresql")
        peers = jp("spec.ingress[0].from[].podSelector.matchLabels.\"app.kubernetes.io/component\"",
                   pg)
        assert sorted(peers) == ["migrate", "server"]
        assert pg["spec"]["egress"] == []

    def test_network_policy_server_ingress(self, helm):
        policy = get_object(render_chart(helm, {"networkPolicy": {"enabled": True}}),
                            "NetworkPolicy", f"{FULLNAME}-server")
        (rule,) = policy["spec"]["ingress"]
        assert {"podSelector": {}} in rule["from"]
        assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
        peers = [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}]
        policy = get_object(render_chart(helm, {"networkPolicy": {"enabled": True,
                                                                  "ingressFrom": peers}}),
                            "NetworkPolicy", f"{FULLNAME}-server")
        assert policy["spec"]["ingress"][0]["from"][0] == peers[0]
        assert {"podSelector": {}} not in policy["spec"]["ingress"][0]["from"]
        # The helm test pod is always let in.
        assert jp("spec.ingress[0].from[-1].podSelector.matchLabels.\"app.kubernetes.io/"
                  "component\"", policy) == "test"

    @pytest.mark.parametrize(
        ("values", "db_port"),
        [(CLOUDSQL_PG_PASSWORD, 3307), (EXTERNAL_PG, 5432), (EXTERNAL_MYSQL, 3307),
         (EXTERNAL_URI, 5432)],
        ids=["cloudsql", "external-pg", "external-mysql-3307", "external-uri"],
    )
    def test_network_policy_database_egress(self, helm, values, db_port):
        objects = render_chart(helm, merge(values, {"networkPolicy": {"enabled": True}}))
        for component in ("server", "migrate"):
            policy = get_object(objects, "NetworkPolicy", f"{FULLNAME}-{component}")
            assert ("TCP", db_port) in egress_ports(policy)
            assert ("TCP", 443) in egress_ports(policy)
        assert not [o for o in by_kind(objects, "NetworkPolicy")
                    if o["metadata"]["name"].endswith("postgresql")]

    def test_network_policy_google_load_balancers(self, helm):
        values = {"networkPolicy": {"enabled": True}}
        assert lb_rule(get_object(render_chart(helm, values), "NetworkPolicy",
                                  f"{FULLNAME}-server")) is None
        values = {"networkPolicy": {"enabled": True, "allowGoogleLoadBalancers": True,
                                    "proxyOnlySubnets": ["10.129.0.0/23"]}}
        objects = render_chart(helm, values)
        rule = lb_rule(get_object(objects, "NetworkPolicy", f"{FULLNAME}-server"))
        assert [p["ipBlock"]["cidr"] for p in rule["from"]] == [*GOOGLE_LB_RANGES, "10.129.0.0/23"]
        assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
        # Only the server is behind the load balancer.
        for component in ("migrate", "test", "postgresql"):
            policy = get_object(objects, "NetworkPolicy", f"{FULLNAME}-{component}")
            assert not [p for r in policy["spec"]["ingress"] for p in r.get("from", [])
                        if "ipBlock" in p]

    @pytest.mark.parametrize("route", ["ingress", "httpRoute"])
    def test_google_load_balancers_satisfy_the_route_check(self, helm, route):
        values = {"networkPolicy": {"enabled": True, "allowGoogleLoadBalancers": True},
                  "ingress": {"ingress": {"enabled": True}},
                  "httpRoute": {"httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}],
                                              "hostnames": ["mlflow.example.com"]}}}[route]
        values = merge(values, {"networkPolicy": {"enabled": True,
                                                  "allowGoogleLoadBalancers": True}})
        policy = get_object(render_chart(helm, values, api_versions=CRD_APIS), "NetworkPolicy",
                            f"{FULLNAME}-server")
        assert lb_rule(policy) is not None

    def test_route_hint_is_right_for_gke(self, helm):
        stderr = render_error(helm, {"networkPolicy": {"enabled": True},
                                     "ingress": {"enabled": True}})
        (line,) = [ln for ln in stderr.splitlines() if "ingress.enabled=true" in ln]
        assert "networkPolicy.allowGoogleLoadBalancers=true" in line
        assert "networkPolicy.proxyOnlySubnets" in line
        # The istio-system hint is for the VirtualService only.
        stderr = render_error(helm, {"networkPolicy": {"enabled": True},
                                     "virtualService": {"enabled": True}},
                              api_versions=CRD_APIS)
        assert "istio-system" in stderr and "allowGoogleLoadBalancers" not in stderr

    def test_proxy_only_subnets_need_the_switch(self, helm):
        stderr = render_error(helm, {"networkPolicy": {"enabled": True,
                                                       "proxyOnlySubnets": ["10.129.0.0/23"]}})
        assert "networkPolicy.allowGoogleLoadBalancers=true" in stderr

    def test_network_policy_test_pod(self, helm):
        policy = get_object(render_chart(helm, {"networkPolicy": {"enabled": True}}),
                            "NetworkPolicy", f"{FULLNAME}-test")
        assert ("TCP", 5000) in egress_ports(policy)
        assert ("UDP", 53) in egress_ports(policy)

    def test_network_policy_extra_egress(self, helm):
        extra = {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
                 "ports": [{"protocol": "TCP", "port": 8443}]}
        policy = get_object(render_chart(helm, {"networkPolicy": {"enabled": True,
                                                                  "extraEgress": [extra]}}),
                            "NetworkPolicy", f"{FULLNAME}-server")
        assert policy["spec"]["egress"][-1] == extra

    # ------------------------------------------------------------- scheduling ---

    def test_topology_spread_gets_server_selector(self, helm):
        constraint = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                      "whenUnsatisfiable": "ScheduleAnyway"}
        dep = get_object(render_chart(helm, {"topologySpreadConstraints": [constraint]}),
                         "Deployment", FULLNAME)
        (tsc,) = dep["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert tsc == {**constraint, "labelSelector": {"matchLabels": SERVER_SELECTOR}}

    def test_topology_spread_keeps_own_selector(self, helm):
        constraint = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                      "whenUnsatisfiable": "DoNotSchedule",
                      "labelSelector": {"matchLabels": {"app": "x"}}}
        dep = get_object(render_chart(helm, {"topologySpreadConstraints": [constraint]}),
                         "Deployment", FULLNAME)
        (tsc,) = dep["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert tsc["labelSelector"] == {"matchLabels": {"app": "x"}}

    def test_scheduling(self, helm):
        values = {
            "nodeSelector": {"pool": "ml"},
            "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "pool", "operator": "In", "values": ["ml"]}]}]}}},
            "priorityClassName": "high",
            "postgresql": {"nodeSelector": {"pool": "db"}, "priorityClassName": "db-high"},
        }
        objects = render_chart(helm, values)
        spec = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == values["nodeSelector"]
        assert spec["tolerations"] == values["tolerations"]
        assert spec["affinity"] == values["affinity"]
        assert spec["priorityClassName"] == "high"
        job = by_kind(objects, "Job")[0]["spec"]["template"]["spec"]
        assert job["nodeSelector"] == values["nodeSelector"]
        assert job["priorityClassName"] == "high"
        pg = get_object(objects, "StatefulSet", f"{FULLNAME}-postgresql")["spec"]["template"][
            "spec"]
        assert pg["nodeSelector"] == {"pool": "db"}
        assert pg["priorityClassName"] == "db-high"

    # --------------------------------------------------------- ServiceMonitor ---

    def test_service_monitor(self, helm):
        values = {"metrics": {"enabled": True, "serviceMonitor": {
            "enabled": True, "labels": {"release": "kube-prometheus"}}}}
        objects = render_chart(helm, values, api_versions=CRD_APIS)
        sm = get_object(objects, "ServiceMonitor", FULLNAME)
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus"
        assert sm["spec"]["selector"] == {"matchLabels": SERVER_SELECTOR}
        assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        (endpoint,) = sm["spec"]["endpoints"]
        assert endpoint == {"port": "http", "path": "/metrics", "interval": "30s",
                            "scrapeTimeout": "10s"}
        # The endpoint's port must be the Service's port name.
        svc = get_object(objects, "Service", FULLNAME)
        assert endpoint["port"] in [p["name"] for p in svc["spec"]["ports"]]

    def test_service_monitor_path_ignores_static_prefix(self, helm):
        values = {"server": {"staticPrefix": "/mlflow"},
                  "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}}}
        sm = get_object(render_chart(helm, values, api_versions=CRD_APIS), "ServiceMonitor",
                        FULLNAME)
        # prometheus_flask_exporter registers /metrics on the Flask app itself, outside
        # MLflow's _add_static_prefix routes (mlflow/server/prometheus_exporter.py).
        assert sm["spec"]["endpoints"][0]["path"] == "/metrics"

    @pytest.mark.parametrize("route", ["ingress", "httpRoute", "virtualService", "serviceMonitor",
                                       "podMonitoring"])
    def test_network_policy_lets_the_route_in(self, helm, route):
        # Ingress controllers, Gateways, the Istio ingress gateway and Prometheus run in their
        # own namespaces. With the default ingressFrom (pods of the release namespace) the
        # server's NetworkPolicy drops their traffic and the route answers 502/504. The chart
        # must either admit a peer outside the namespace or refuse, naming
        # networkPolicy.ingressFrom.
        route_values = {
            "ingress": {"ingress": {"enabled": True}},
            "httpRoute": {"httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}],
                                        "hostnames": ["mlflow.example.com"]}},
            "virtualService": {"virtualService": {"enabled": True}},
            "serviceMonitor": {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True}}},
            "podMonitoring": {"metrics": {"enabled": True, "podMonitoring": {"enabled": True}}},
        }[route]
        values = merge(route_values, {"networkPolicy": {"enabled": True}})
        try:
            objects = render_chart(helm, values, api_versions=CRD_APIS)
        except RenderError as refused:
            assert "networkPolicy.ingressFrom" in refused.stderr, refused.stderr
            return
        policy = get_object(objects, "NetworkPolicy", f"{FULLNAME}-server")
        peers = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
        outside = [p for p in peers if "namespaceSelector" in p or "ipBlock" in p]
        assert outside, (
            f"{route} is enabled but the server's NetworkPolicy only admits {peers}: "
            "the controller's namespace is shut out")
