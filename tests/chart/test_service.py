"""The server's Service."""

from __future__ import annotations

from .render import FULLNAME, get_object, render_chart


def service(helm: str, values: dict | None = None) -> dict:
    objects = render_chart(helm, values, show_only=["templates/service.yaml"])
    assert len(objects) == 1
    return get_object(objects, "Service", FULLNAME)


class TestService:
    def test_cluster_ip_default(self, helm):
        svc = service(helm)
        assert svc["spec"]["type"] == "ClusterIP"
        assert svc["spec"]["ports"] == [{"name": "http", "port": 5000, "targetPort": "http",
                                         "protocol": "TCP"}]
        assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "mlflow",
                                           "app.kubernetes.io/instance": "prod",
                                           "app.kubernetes.io/component": "server"}

    def test_node_port(self, helm):
        svc = service(helm, {"service": {"type": "NodePort", "nodePort": 30500}})
        assert svc["spec"]["type"] == "NodePort"
        assert svc["spec"]["ports"][0]["nodePort"] == 30500

    def test_node_port_chosen_by_kubernetes(self, helm):
        svc = service(helm, {"service": {"type": "NodePort"}})
        assert "nodePort" not in svc["spec"]["ports"][0]

    def test_port_and_annotations(self, helm):
        svc = service(helm, {"service": {"port": 80, "annotations": {"a": "b"}},
                             "commonAnnotations": {"c": "d"}})
        assert svc["spec"]["ports"][0]["port"] == 80
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
        assert svc["metadata"]["annotations"] == {"a": "b", "c": "d"}

    def test_selects_the_server_pods(self, helm):
        objects = render_chart(helm)
        pod_labels = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["metadata"][
            "labels"]
        assert service(helm)["spec"]["selector"].items() <= pod_labels.items()
