"""The one-time grant Job (templates/job-db-grant.yaml): rendered only when the CLI asks for it
(database.cloudsql.grant.secretName), with the migration Job's pod and a proxy that logs in
with a password. The CLI runs it itself (src/mlflow_helm/dbgrant.py); its container runs
against real PostgreSQL and MariaDB in tests/cli/test_dbgrant.py and the e2e suite."""

from __future__ import annotations

import pytest

from .modes import CLOUDSQL_MODES, CLOUDSQL_MYSQL_IAM, CLOUDSQL_PG_IAM, DATABASE_MODES, merge
from .render import CHART_DIR, FULLNAME, by_kind, container, env_of, env_value, render_chart

GRANT = {"database": {"cloudsql": {"grant": {"secretName": "prod-mlflow-db-grant"}}}}


def grant_job(helm: str, values: dict) -> dict:
    jobs = [j for j in by_kind(render_chart(helm, merge(values, GRANT)), "Job")
            if j["metadata"]["labels"].get("mlflow-helm/role") == "db-grant"]
    assert len(jobs) == 1
    return jobs[0]


class TestGrantJob:
    @pytest.mark.parametrize("mode", list(DATABASE_MODES))
    def test_not_rendered_unless_the_cli_asks(self, helm, mode):
        jobs = by_kind(render_chart(helm, DATABASE_MODES[mode]), "Job")
        assert [j["metadata"]["labels"].get("mlflow-helm/role") for j in jobs] == [None]

    def test_not_rendered_without_cloud_sql(self, helm):
        jobs = by_kind(render_chart(helm, GRANT), "Job")
        assert len(jobs) == 1 and "mlflow-helm/role" not in jobs[0]["metadata"]["labels"]

    @pytest.mark.parametrize("mode", list(CLOUDSQL_MODES))
    def test_proxy_logs_in_with_a_password(self, helm, mode):
        spec = grant_job(helm, CLOUDSQL_MODES[mode])["spec"]["template"]["spec"]
        proxy = container(spec, "cloud-sql-proxy", init=True)
        assert proxy["restartPolicy"] == "Always"  # a native sidecar: the Job completes
        assert "--auto-iam-authn" not in proxy["args"]

    def test_postgres_statement_target(self, helm):
        job = grant_job(helm, CLOUDSQL_PG_IAM)
        grant = container(job["spec"]["template"]["spec"], "grant")
        assert env_value(grant, "MLFLOW_GRANT_URI") == \
            "postgresql+psycopg://mlflow-helm-grant@127.0.0.1:5432/mlflowdb"
        assert env_value(grant, "PGPASSWORD") == "$(MLFLOW_DB_PASSWORD)"
        assert env_value(grant, "MLFLOW_GRANT_GRANTEE") == \
            "mlflow-sa@my-project.iam"
        assert env_of(grant)["MLFLOW_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "prod-mlflow-db-grant", "key": "password"}

    def test_mysql_statement_target(self, helm):
        grant = container(grant_job(helm, CLOUDSQL_MYSQL_IAM)["spec"]["template"]["spec"],
                          "grant")
        assert env_value(grant, "MLFLOW_GRANT_URI") == (
            "mysql+pymysql://mlflow-helm-grant:$(MLFLOW_DB_PASSWORD)@127.0.0.1:3306/mlflowdb"
            "?charset=utf8mb4")
        assert env_value(grant, "MLFLOW_GRANT_ENGINE") == "mysql"
        assert env_value(grant, "MLFLOW_GRANT_GRANTEE") == "mlflow-sa"
        assert "PGPASSWORD" not in env_of(grant)

    def test_script_is_db_py_inline_and_survives_kubelet_expansion(self, helm):
        grant = container(grant_job(helm, CLOUDSQL_PG_IAM)["spec"]["template"]["spec"],
                          "grant")
        script = (CHART_DIR / "files" / "db.py").read_text()
        assert grant["command"][:3] == ["python", "-c", script]
        assert grant["command"][3] == "grant"
        # The kubelet expands $(NAME) in a container's command
        # (https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/):
        # the inline script must hold none, or it would be rewritten.
        assert "$(" not in script

    def test_pod_is_the_migration_jobs(self, helm):
        values = merge(CLOUDSQL_PG_IAM, {
            "nodeSelector": {"iam.gke.io/gke-metadata-server-enabled": "true"},
            "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
            "imagePullSecrets": ["regcred"],
            "database": {"cloudsql": {"ipType": "private"}}})
        objects = render_chart(helm, merge(values, GRANT))
        jobs = {j["metadata"]["labels"].get("mlflow-helm/role", "migrate"): j
                for j in by_kind(objects, "Job")}
        grant, migrate = (jobs[k]["spec"]["template"] for k in ("db-grant", "migrate"))
        for key in ("serviceAccountName", "nodeSelector", "tolerations", "imagePullSecrets",
                    "securityContext", "automountServiceAccountToken"):
            assert grant["spec"].get(key) == migrate["spec"].get(key), key
        assert grant["spec"]["serviceAccountName"] == FULLNAME
        # The migration NetworkPolicy selects it; Istio's sidecar stays out, as for migrations.
        for label in ("app.kubernetes.io/component", "sidecar.istio.io/inject"):
            assert grant["metadata"]["labels"][label] == migrate["metadata"]["labels"][label]
        proxy = container(grant["spec"], "cloud-sql-proxy", init=True)
        assert "--private-ip" in proxy["args"]
        # No volume from the release's scripts ConfigMap: on a first install it does not
        # exist yet when the Job runs.
        assert [v["name"] for v in grant["spec"]["volumes"]] == ["tmp", "home"]
        assert container(grant["spec"], "grant")["securityContext"][
            "readOnlyRootFilesystem"] is True

    def test_bounded_run_time(self, helm):
        job = grant_job(helm, merge(CLOUDSQL_PG_IAM, {"database": {"cloudsql": {"grant": {
            "activeDeadlineSeconds": 120}}}}))
        assert job["spec"]["activeDeadlineSeconds"] == 120
        assert job["spec"]["backoffLimit"] == 1
        assert job["metadata"]["name"] == f"{FULLNAME}-db-grant"
