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
)

SERVER_SELECTOR = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": "prod",
                   "app.kubernetes.io/component": "server"}


def egress_ports(policy: dict) -> set[tuple[str, object]]:
    return {(p["protocol"], p["port"]) for rule in policy["spec"]["egress"]
            for p in rule.get("ports") or []}


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
            # Workload Identity tokens come from the GKE metadata server.
            assert jp("spec.egress[].to[].ipBlock.cidr", policy) == ["169.254.169.254/32"]
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

    @pytest.mark.parametrize("route", ["ingress", "httpRoute", "virtualService", "serviceMonitor"])
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
