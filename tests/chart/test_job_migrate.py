"""The schema migration Job: one per revision, in every database mode, no hook."""

from __future__ import annotations

import re

import pytest

from .modes import CLOUDSQL_MODES, DATABASE_MODES, merge
from .render import CHART_DIR, FULLNAME, by_kind, container, env_value, get_object, render_chart


def job(helm: str, values: dict | None = None, extra_args: tuple[str, ...] = ()) -> dict:
    jobs = by_kind(render_chart(helm, values, extra_args=extra_args), "Job")
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    return jobs[0]


class TestJobMigrate:
    @pytest.mark.parametrize("mode", list(DATABASE_MODES))
    def test_exists_in_every_database_mode(self, helm, mode):
        j = job(helm, DATABASE_MODES[mode])
        c = container(j["spec"]["template"]["spec"], "migrate")
        assert c["command"][:3] == ["python", "/opt/mlflow-helm/db.py", "upgrade"]
        assert j["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    def test_migrates_the_servers_database(self, helm):
        for values in DATABASE_MODES.values():
            objects = render_chart(helm, values)
            server = container(
                get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"], "mlflow")
            migrate = container(by_kind(objects, "Job")[0]["spec"]["template"]["spec"], "migrate")
            server_db = [e for e in server["env"] if e["name"].startswith(("MLFLOW_DB", "PG",
                                                                          "MLFLOW_BACKEND",
                                                                          "MLFLOW_SQLALCHEMY"))]
            migrate_db = [e for e in migrate["env"] if e["name"].startswith((
                "MLFLOW_DB", "PG", "MLFLOW_BACKEND", "MLFLOW_SQLALCHEMY"))]
            assert migrate_db == server_db

    def test_name_carries_the_revision(self, helm):
        assert job(helm)["metadata"]["name"] == f"{FULLNAME}-migrate-1"

    def test_revision_survives_long_names(self, helm):
        # A Job's pod template is immutable and a Job that already ran never runs again: if a
        # long name cuts the revision off, every upgrade reuses one Job name and no migration
        # runs (or the upgrade fails on the immutable field). The cut must fall on the name.
        long_name = "x" * 60
        j = get_object(render_chart(helm, {"fullnameOverride": long_name}), "Job")
        assert j["metadata"]["name"].endswith("-migrate-1")
        assert len(j["metadata"]["name"]) <= 63

    def test_is_not_a_hook(self, helm):
        annotations = job(helm)["metadata"].get("annotations") or {}
        assert not any(k.startswith("helm.sh/hook") for k in annotations)

    @pytest.mark.parametrize("mode", list(CLOUDSQL_MODES))
    def test_cloudsql_sidecar_in_the_job(self, helm, mode):
        spec = job(helm, CLOUDSQL_MODES[mode])["spec"]["template"]["spec"]
        assert [c["name"] for c in spec["initContainers"]] == ["cloud-sql-proxy"]
        proxy = spec["initContainers"][0]
        # A native sidecar: ends with the Job's container, so the Job completes.
        assert proxy["restartPolicy"] == "Always"
        assert ("--auto-iam-authn" in proxy["args"]) == mode.endswith("iam")
        assert env_value(container(spec, "migrate"), "MLFLOW_BACKEND_STORE_URI").split("@")[
            -1].startswith("127.0.0.1:")

    @pytest.mark.parametrize("mode", ["incluster", "external-pg", "external-uri"])
    def test_no_sidecar_outside_cloudsql(self, helm, mode):
        spec = job(helm, DATABASE_MODES[mode])["spec"]["template"]["spec"]
        assert "initContainers" not in spec

    def test_auth_tables(self, helm):
        c = container(job(helm, {"auth": {"enabled": True}})["spec"]["template"]["spec"],
                      "migrate")
        assert "--auth" in c["command"]
        assert "--auth" not in container(job(helm)["spec"]["template"]["spec"],
                                         "migrate")["command"]

    def test_limits(self, helm):
        spec = job(helm, {"migrations": {"backoffLimit": 1, "activeDeadlineSeconds": 60,
                                         "ttlSecondsAfterFinished": 600}})["spec"]
        assert spec["backoffLimit"] == 1
        assert spec["activeDeadlineSeconds"] == 60
        assert spec["ttlSecondsAfterFinished"] == 600
        assert "ttlSecondsAfterFinished" not in job(helm)["spec"]

    def test_security_and_labels(self, helm):
        j = job(helm, merge(CLOUDSQL_MODES["cloudsql-pg-iam"]))
        spec = j["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == FULLNAME
        for c in spec["containers"] + spec["initContainers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert j["spec"]["template"]["metadata"]["labels"][
            "app.kubernetes.io/component"] == "migrate"

    def test_db_script_knows_every_flag_the_chart_passes(self, helm):
        script = (CHART_DIR / "files" / "db.py").read_text()
        known = set(re.findall(r"add_argument\(\s*\"(--[a-z-]+)\"", script))
        objects = render_chart(helm, {"auth": {"enabled": True}})
        commands = [container(by_kind(objects, "Job")[0]["spec"]["template"]["spec"],
                              "migrate")["command"],
                    container(get_object(objects, "Deployment", FULLNAME)["spec"]["template"][
                        "spec"], "wait-for-schema", init=True)["command"]]
        for command in commands:
            assert command[:2] == ["python", "/opt/mlflow-helm/db.py"]
            flags = {a.split("=", 1)[0] for a in command[2:] if a.startswith("--")}
            assert flags <= known, f"db.py does not accept {sorted(flags - known)}"
