"""The backend starting points charts/mlflow/values-gcp-*.yaml (the seed's two overlays)."""

from __future__ import annotations

import pytest
import yaml

from .render import CHART_DIR, FULLNAME, by_kind, get_object, render_chart, render_error

FILES = sorted(p.name for p in CHART_DIR.glob("values-*.yaml"))


def filled_in(name: str) -> dict:
    text = (CHART_DIR / name).read_text().replace("REPLACE_ME", "my-project")
    return yaml.safe_load(text)


def test_both_overlays_have_a_starting_point():
    assert {"values-gcp-incluster.yaml", "values-gcp-cloudsql.yaml"} <= set(FILES)


class TestStartingPoints:
    @pytest.mark.parametrize("name", FILES)
    def test_placeholders_are_refused(self, helm, name):
        # Installing the file unedited must fail loudly, not deploy against "REPLACE_ME".
        values = yaml.safe_load((CHART_DIR / name).read_text())
        assert "REPLACE_ME" in (CHART_DIR / name).read_text()
        stderr = render_error(helm, values)
        assert "gcpServiceAccount" in stderr or "instanceConnectionName" in stderr \
            or "bucket" in stderr, stderr

    @pytest.mark.parametrize("name", FILES)
    def test_filled_in_renders(self, helm, name):
        objects = render_chart(helm, filled_in(name))
        sa = get_object(objects, "ServiceAccount", FULLNAME)
        assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(
            ".iam.gserviceaccount.com")
        server = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
        args = server["containers"][0]["args"]
        assert any(a.startswith("--artifacts-destination=gs://") for a in args)
        assert by_kind(objects, "PersistentVolumeClaim") == []

    def test_cloudsql_starting_point(self, helm):
        objects = render_chart(helm, filled_in("values-gcp-cloudsql.yaml"))
        spec = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
        assert spec["initContainers"][0]["name"] == "cloud-sql-proxy"
        assert by_kind(objects, "StatefulSet") == []

    def test_incluster_starting_point(self, helm):
        objects = render_chart(helm, filled_in("values-gcp-incluster.yaml"))
        get_object(objects, "StatefulSet", f"{FULLNAME}-postgresql")
