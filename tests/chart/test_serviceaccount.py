"""The server's ServiceAccount and Workload Identity."""

from __future__ import annotations

from .modes import GSA
from .render import FULLNAME, by_kind, get_object, render_chart


class TestServiceAccount:
    def test_default(self, helm):
        sa = get_object(render_chart(helm), "ServiceAccount", FULLNAME)
        assert sa["automountServiceAccountToken"] is False
        assert "annotations" not in sa["metadata"]

    def test_workload_identity_annotation(self, helm):
        values = {"serviceAccount": {"gcpServiceAccount": GSA, "annotations": {"a": "b"}}}
        sa = get_object(render_chart(helm, values), "ServiceAccount", FULLNAME)
        assert sa["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": GSA,
                                                 "a": "b"}

    def test_name(self, helm):
        values = {"serviceAccount": {"name": "mlflow"}}
        objects = render_chart(helm, values)
        get_object(objects, "ServiceAccount", "mlflow")
        dep = get_object(objects, "Deployment", FULLNAME)
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "mlflow"

    def test_not_created(self, helm):
        objects = render_chart(helm, {"serviceAccount": {"create": False}})
        assert by_kind(objects, "ServiceAccount") == []
        dep = get_object(objects, "Deployment", FULLNAME)
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "default"
