"""Garbage collection (issue 14, item 6): a CronJob running `mlflow gc --older-than` with the
server's database settings and identity, deleting served artifacts through the server (MLflow
3.17.2 mlflow/cli gc: with artifact proxying, MLFLOW_TRACKING_URI must be set, and
mlflow-artifacts: URIs resolve through it). What it deletes is tests/e2e/test_e2e_gc.py's."""

from __future__ import annotations

import pytest

from .modes import CLOUDSQL_PG_PASSWORD, DATABASE_MODES, merge
from .render import FULLNAME, by_kind, container, env_of, env_value, get_object, render_chart

ON = {"gc": {"enabled": True}}


def gc_pod(objects: list[dict]) -> dict:
    job = get_object(objects, "CronJob", f"{FULLNAME}-gc")
    return job["spec"]["jobTemplate"]["spec"]["template"]["spec"]


class TestGcCronJob:
    def test_off_by_default(self, helm):
        assert by_kind(render_chart(helm), "CronJob") == []

    @pytest.mark.parametrize("mode", list(DATABASE_MODES))
    def test_uses_the_servers_database_settings(self, helm, mode):
        objects = render_chart(helm, merge(DATABASE_MODES[mode], ON))
        gc = container(gc_pod(objects), "gc")
        server = container(get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"],
                           "mlflow")
        prefixes = ("MLFLOW_DB", "PG", "MLFLOW_BACKEND")
        assert [e for e in gc["env"] if e["name"].startswith(prefixes)] == \
            [e for e in server["env"] if e["name"].startswith(prefixes)]
        assert gc["command"] == ["mlflow", "gc", "--older-than=30d",
                                 "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)"]
        assert env_value(gc, "MLFLOW_TRACKING_URI").startswith(f"http://{FULLNAME}.")
        assert gc_pod(objects)["serviceAccountName"] == FULLNAME

    def test_cloud_sql_through_the_proxy_sidecar(self, helm):
        spec = gc_pod(render_chart(helm, merge(CLOUDSQL_PG_PASSWORD, ON)))
        [proxy] = spec["initContainers"]
        assert proxy["restartPolicy"] == "Always" and "cloud-sql-proxy" in proxy["image"]

    def test_settings_and_auth(self, helm):
        objects = render_chart(helm, {"gc": {"enabled": True, "olderThan": "7d12h",
                                             "schedule": "0 2 * * 0"},
                                      "auth": {"enabled": True}})
        job = get_object(objects, "CronJob", f"{FULLNAME}-gc")
        assert job["spec"]["schedule"] == "0 2 * * 0"
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        gc = container(gc_pod(objects), "gc")
        assert "--older-than=7d12h" in gc["command"]
        assert env_value(gc, "MLFLOW_TRACKING_USERNAME") == "admin"
        assert "secretKeyRef" in env_of(gc)["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]

    def test_network_policies(self, helm):
        objects = render_chart(helm, merge(ON, {"networkPolicy": {"enabled": True}}))
        policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
        gc = policies[f"{FULLNAME}-gc"]
        assert gc["ingress"] == []
        to_server = gc["egress"][-1]
        assert to_server["to"][0]["podSelector"]["matchLabels"][
            "app.kubernetes.io/component"] == "server"
        peers = policies[f"{FULLNAME}-server"]["ingress"][0]["from"]
        server_peers = [p.get("podSelector", {}).get("matchLabels", {}).get(
            "app.kubernetes.io/component") for p in peers]
        assert "gc" in server_peers
        db_peers = [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                    for p in policies[f"{FULLNAME}-postgresql"]["ingress"][0]["from"]]
        assert db_peers == ["server", "migrate", "gc"]

    def test_a_bad_older_than_is_refused(self, helm):
        from .render import render_error

        assert "olderThan" in render_error(helm, {"gc": {"enabled": True, "olderThan": "30 days"}})
