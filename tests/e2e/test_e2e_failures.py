"""The helm test must fail for real problems, and say which: a bucket that does not exist, a
database that went away."""

from __future__ import annotations

from dataclasses import replace

import pytest
from e2e_release import Database, Release, secret
from e2e_services import MariaDB, PostgreSQL

INSTANCE = "proj-e2e:europe-west1:mlflow"


def test_missing_bucket_fails_helm_test(release_factory) -> None:
    rel = release_factory(
        "missing-bucket",
        create_buckets=False,
        values={
            "artifacts": {"type": "gcs", "gcs": {"bucket": "e2e-no-such-bucket"}},
            "serviceAccount": {"gcpServiceAccount": "mlflow-sa@proj-e2e.iam.gserviceaccount.com"},
        },
    )
    rel.install()
    code, output = rel.helm_test()
    assert code != 0, output
    failed = [line for line in output.splitlines() if line.startswith("FAIL")]
    assert failed and failed[0].startswith("FAIL  artifact upload, download, delete"), output
    # MLflow itself answers with a bare "Internal Server Error"; the script names the cause.
    assert "could not use its artifact store" in failed[0] and "bucket exists" in failed[0], output
    test_pod = next(p for p in rel.cluster.all("Pod") if p["metadata"]["name"].endswith("-test"))
    if any(
        e["name"] == "MLFLOW_TEST_ARTIFACT_STORE" for e in test_pod["spec"]["containers"][0]["env"]
    ):
        assert "gs://e2e-no-such-bucket" in failed[0], output
    assert "helm test FAILED" in output


def test_database_down_fails_helm_test(helm4, services, e2e_dir) -> None:
    # Its own PostgreSQL, so stopping it leaves the shared one to the other tests.
    own = PostgreSQL().start()
    try:
        rel = Release(helm4, replace(services, postgres=own), e2e_dir / "database-down")
        try:
            rel.install()
            code, output = rel.helm_test()
            assert code == 0, output
            own.stop()
            code, output = rel.helm_test()
            assert code != 0, output
            failed = [line for line in output.splitlines() if line.startswith("FAIL")]
            assert failed, output
            print(f"\n[database down] {failed[0]}")
            assert "Connection refused" in failed[0] or "connection" in failed[0].lower(), output
            assert f"port {own.port}" in failed[0] or "database" in failed[0].lower(), output
        finally:
            rel.stop()
    finally:
        own.cleanup()


def test_mysql_binlog_without_trust_flag_stops_before_migrating(helm4, services, e2e_dir) -> None:
    """Cloud SQL for MySQL keeps a binary log; without log_bin_trust_function_creators MySQL
    refuses MLflow's triggers half-way through the migrations (and a retry then finds the table
    already there). The migration step must stop first, name the flag, and change nothing."""
    own = MariaDB(trust_function_creators=False).start()
    try:
        rel = Release(
            helm4,
            replace(services, mariadb=own),
            e2e_dir / "mysql-binlog",
            values={
                "database": {
                    "type": "cloudsql",
                    "cloudsql": {
                        "instanceConnectionName": INSTANCE,
                        "engine": "mysql",
                        "existingSecret": "mlflow-cloudsql",
                    },
                }
            },
            extra_objects=[secret("mlflow-cloudsql", password="Cl0udSqlPw-e2e")],
            database=Database("mysql", "mlflowdb", "mlflow", "Cl0udSqlPw-e2e"),
        )
        with pytest.raises(AssertionError) as failure:
            rel.migrate("mlflow-migrate-1-first")
        message = str(failure.value)
        assert "log_bin_trust_function_creators=on" in message, message
        assert "Nothing was changed" in message
        assert rel.db_query("SHOW TABLES") == []
        # The DBA sets the flag; the Job's next attempt migrates.
        own.admin("SET GLOBAL log_bin_trust_function_creators = 1")
        output = rel.migrate("mlflow-migrate-1-retry").output()
        assert "migrations done" in output, output
    finally:
        own.cleanup()
