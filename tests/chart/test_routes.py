"""Ingress, Gateway API HTTPRoute and Istio VirtualService."""

from __future__ import annotations

from .render import (
    CRD_APIS,
    FULLNAME,
    NAMESPACE,
    RenderError,
    by_kind,
    get_object,
    render_chart,
)

ROUTE_KINDS = ("Ingress", "HTTPRoute", "VirtualService")



def render(helm: str, values: dict) -> list[dict]:
    """Render on a cluster that serves the Gateway API and Istio (test_crd_capabilities.py
    covers one that does not)."""
    return render_chart(helm, values, api_versions=CRD_APIS)


class TestRoutes:
    def test_all_off_by_default(self, helm):
        objects = render_chart(helm)
        for kind in ROUTE_KINDS:
            assert by_kind(objects, kind) == []

    def test_ingress(self, helm):
        values = {"ingress": {
            "enabled": True, "className": "nginx", "annotations": {"a": "b"},
            "hosts": [{"host": "mlflow.example.com",
                       "paths": [{"path": "/", "pathType": "Prefix"}]}],
            "tls": [{"secretName": "tls", "hosts": ["mlflow.example.com"]}]}}
        ing = get_object(render(helm, values), "Ingress", FULLNAME)
        spec = ing["spec"]
        assert spec["ingressClassName"] == "nginx"
        assert spec["tls"] == [{"secretName": "tls", "hosts": ["mlflow.example.com"]}]
        (rule,) = spec["rules"]
        assert rule["host"] == "mlflow.example.com"
        assert rule["http"]["paths"] == [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": FULLNAME, "port": {"name": "http"}}}}]
        assert ing["metadata"]["annotations"] == {"a": "b"}

    def test_ingress_without_class_or_host(self, helm):
        values = {"ingress": {"enabled": True,
                              "hosts": [{"host": "", "paths": [{"path": "/"}]}]},
                  "server": {"allowedHosts": {"extra": ["mlflow.corp.example.com"]}}}
        spec = get_object(render(helm, values), "Ingress", FULLNAME)["spec"]
        assert "ingressClassName" not in spec
        assert "host" not in spec["rules"][0]
        assert spec["rules"][0]["http"]["paths"][0]["pathType"] == "Prefix"

    def test_httproute(self, helm):
        values = {"httpRoute": {"enabled": True,
                                "parentRefs": [{"name": "gw", "namespace": "infra"}],
                                "hostnames": ["mlflow.example.com"]}}
        route = get_object(render(helm, values), "HTTPRoute", FULLNAME)
        spec = route["spec"]
        assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
        assert spec["parentRefs"] == [{"name": "gw", "namespace": "infra"}]
        assert spec["hostnames"] == ["mlflow.example.com"]
        assert spec["rules"] == [{
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [{"name": FULLNAME, "port": 5000}]}]

    def test_httproute_follows_static_prefix(self, helm):
        values = {"httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}]},
                  "server": {"staticPrefix": "/mlflow"}}
        spec = get_object(render(helm, values), "HTTPRoute", FULLNAME)["spec"]
        assert spec["rules"][0]["matches"][0]["path"]["value"] == "/mlflow"

    def test_virtualservice_rewrites_prefix_without_static_prefix(self, helm):
        values = {"virtualService": {"enabled": True}}
        vs = get_object(render(helm, values), "VirtualService", FULLNAME)
        assert vs["apiVersion"] == "networking.istio.io/v1"
        spec = vs["spec"]
        # The seed's Kubeflow route.
        assert spec["gateways"] == ["kubeflow/kubeflow-gateway"]
        assert spec["hosts"] == ["*"]
        (http,) = spec["http"]
        # "/mlflow/..." and exactly "/mlflow", both to the server's root.
        assert http["match"] == [{"uri": {"prefix": "/mlflow/"}}, {"uri": {"exact": "/mlflow"}}]
        # Behind the "*" host the gateway presents the Service's name, which the host check allows.
        assert http["rewrite"] == {
            "uri": "/", "authority": f"{FULLNAME}.{NAMESPACE}.svc.cluster.local:5000"}
        assert http["route"] == [{"destination": {
            "host": f"{FULLNAME}.{NAMESPACE}.svc.cluster.local", "port": {"number": 5000}}}]
        assert http["timeout"] == "300s"

    def test_virtualservice_no_rewrite_with_static_prefix(self, helm):
        values = {"virtualService": {"enabled": True}, "server": {"staticPrefix": "/mlflow"}}
        (http,) = get_object(render(helm, values), "VirtualService", FULLNAME)["spec"][
            "http"]
        assert http["match"] == [{"uri": {"prefix": "/mlflow/"}}, {"uri": {"exact": "/mlflow"}}]
        assert "uri" not in http.get("rewrite", {})

    def test_virtualservice_root_prefix_no_rewrite(self, helm):
        values = {"virtualService": {"enabled": True, "prefix": "/",
                                     "hosts": ["mlflow.example.com"]}}
        (http,) = get_object(render(helm, values), "VirtualService", FULLNAME)["spec"][
            "http"]
        assert http["match"] == [{"uri": {"prefix": "/"}}]
        # A named host is in --allowed-hosts: nothing to rewrite.
        assert "rewrite" not in http

    def test_virtualservice_static_prefix_matches_server_prefix(self, helm):
        # With a static prefix the request reaches MLflow unchanged, so the route's prefix must
        # lie under the server's: /other/ would reach a server that only answers /mlflow/.
        values = {"virtualService": {"enabled": True, "prefix": "/other/"},
                  "server": {"staticPrefix": "/mlflow"}}
        (http,) = get_object(render(helm, values), "VirtualService", FULLNAME)["spec"][
            "http"]
        prefix = http["match"][0]["uri"]["prefix"]
        assert "rewrite" in http or prefix.startswith("/mlflow"), (
            f"VirtualService sends {prefix} unchanged to a server under /mlflow")

    def test_virtualservice_prefix_without_trailing_slash_rewrites_cleanly(self, helm):
        # Istio's prefix rewrite replaces the matched prefix: matching "/mlflow" and rewriting
        # to "/" turns /mlflow/api/2.0/... into //api/2.0/... . Simulate that on the rendered
        # route; the path MLflow receives must be a clean one.
        for static_prefix in ("", "/mlflow"):
            values = {"virtualService": {"enabled": True, "prefix": "/mlflow"},
                      "server": {"staticPrefix": static_prefix}}
            (http,) = get_object(render(helm, values), "VirtualService", FULLNAME)[
                "spec"]["http"]
            for request in ("/mlflow/api/2.0/mlflow/experiments/search", "/mlflow/"):
                served = request
                for match in http["match"]:
                    prefix = match["uri"].get("prefix")
                    exact = match["uri"].get("exact")
                    if exact == request or (prefix and request.startswith(prefix)):
                        prefix = prefix or exact
                        if "uri" in http.get("rewrite", {}):
                            served = http["rewrite"]["uri"] + request[len(prefix):]
                        break
                assert "//" not in served, (
                    f"staticPrefix={static_prefix!r}: {request} reaches MLflow as {served}")
                assert served.startswith(static_prefix + "/")

    def test_virtualservice_any_host_reaches_the_host_check(self, helm):
        # The seed's route listens on every host ("*") of the Kubeflow gateway. Istio passes the
        # client's Host header through, and MLflow 3 refuses a Host that is not allowed, so a
        # request to https://kubeflow.example.com/mlflow/ must either arrive with an allowed
        # authority (rewrite.authority) or the check must let that host in.
        objects = render(helm, {"virtualService": {"enabled": True}})
        (http,) = get_object(objects, "VirtualService", FULLNAME)["spec"]["http"]
        args = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"][
            "containers"][0]["args"]
        allowed = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1]
        authority = http.get("rewrite", {}).get("authority")
        assert allowed == "*" or (authority and authority in allowed.split(",")), (
            "a request through the gateway keeps its external Host header, which "
            f"--allowed-hosts does not contain (VirtualService hosts {['*']}, no "
            "rewrite.authority): MLflow answers 403")

    def test_httproute_without_hostnames_reaches_the_host_check(self, helm):
        # httpRoute.hostnames defaults to []: the route then matches every Host the Gateway
        # serves, and the Gateway passes the client's Host through. MLflow 3 refuses a Host that
        # is not in --allowed-hosts (HTTP 403), so the route must present an allowed one
        # (a URLRewrite filter's hostname), as the VirtualService does behind "*", or the chart
        # must refuse the values, naming httpRoute.hostnames.
        values = {"httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}]}}
        try:
            objects = render(helm, values)
        except RenderError as refused:
            assert "httpRoute.hostnames" in refused.stderr, refused.stderr
            return
        (rule,) = get_object(objects, "HTTPRoute", FULLNAME)["spec"]["rules"]
        args = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"][
            "containers"][0]["args"]
        allowed = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1]
        rewritten = [f["urlRewrite"].get("hostname") for f in rule.get("filters", [])
                     if f.get("type") == "URLRewrite"]
        assert allowed == "*" or (rewritten and rewritten[0] in allowed.split(",")), (
            "an HTTPRoute without hostnames forwards any client Host, which --allowed-hosts "
            "does not contain: MLflow answers 403")

    def test_httproute_with_hostnames_needs_no_rewrite(self, helm):
        values = {"httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}],
                                "hostnames": ["mlflow.example.com"]}}
        (rule,) = get_object(render(helm, values), "HTTPRoute", FULLNAME)["spec"]["rules"]
        assert not [f for f in rule.get("filters", []) if f.get("type") == "URLRewrite"]

    def test_ingress_rule_without_host_reaches_the_host_check(self, helm):
        # An Ingress rule without host serves every Host; the controller passes the client's
        # Host (a DNS name or a public load-balancer IP) through, and MLflow 3 answers 403 to a
        # Host not in --allowed-hosts. Ingress has no portable Host rewrite, so the chart must
        # either refuse the values naming ingress.hosts, or the user must have named the hosts
        # (server.allowedHosts.extra) or turned the check off.
        values = {"ingress": {"enabled": True,
                              "hosts": [{"host": "", "paths": [{"path": "/"}]}]}}
        try:
            objects = render(helm, values)
        except RenderError as refused:
            assert "ingress.hosts" in refused.stderr, refused.stderr
            return
        args = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"][
            "containers"][0]["args"]
        allowed = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1]
        assert allowed == "*", (
            "an Ingress rule without host forwards any client Host, which --allowed-hosts does "
            "not contain: MLflow answers 403 (e.g. to http://<load balancer IP>/)")

    def test_ingress_without_host_accepted_with_extra_hosts(self, helm):
        values = {"ingress": {"enabled": True, "hosts": [{"host": "", "paths": [{"path": "/"}]}]},
                  "server": {"allowedHosts": {"extra": ["mlflow.corp.example.com"]}}}
        get_object(render(helm, values), "Ingress", FULLNAME)
