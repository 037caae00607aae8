"""A database migrated by a newer MLflow than the image (issue 14, item 4): after `helm
rollback` across a schema change, or an image pinned back by hand. The migration Job's
`db.py upgrade` must stop before any statement, saying the schema is newer than this image and
what to do, instead of failing inside alembic's revision walk; the server's wait-for-schema
says the same. Real PostgreSQL; the rendered Job and server pod run as local processes.

The unknown revision stands for what a newer MLflow leaves in alembic_version: MLflow's
migrations are an alembic chain (mlflow/store/db_migrations), and alembic looks every
revision up in the script directory, raising "Can't locate revision identified by ..." for one
it does not have (alembic/script/revision.py RevisionMap._resolve_revision)."""

from __future__ import annotations

import pytest
from e2e_kube import Pod
from e2e_release import Release

NEWER = "ffffffffffff"


def test_upgrade_and_wait_refuse_a_schema_newer_than_the_image(helm4, services, e2e_dir):
    rel = Release(helm4, services, e2e_dir / "schema-newer")
    rel.migrate("mlflow-migrate-1-first")
    head = rel.db_query("SELECT version_num FROM alembic_version")[0][0]
    tables = rel.db_query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                          "ORDER BY tablename")
    rel.db_query(f"UPDATE alembic_version SET version_num = '{NEWER}'")

    with pytest.raises(AssertionError) as failure:
        rel.migrate("mlflow-migrate-2-rolled-back")
    message = str(failure.value)
    assert "the tracking schema is newer than this image" in message, message
    assert f"at revision {NEWER}, which MLflow 3.17.2 (head {head}) does not know" in message
    assert "Nothing was changed" in message and "restore the database backup" in message
    assert "Can't locate revision" not in message and "Traceback" not in message
    assert rel.db_query("SELECT version_num FROM alembic_version") == [(NEWER,)]
    assert rel.db_query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "ORDER BY tablename") == tables

    # The server pod's wait-for-schema init container fails the same way, at once.
    pod = Pod(rel.cluster, rel.deployment["spec"]["template"]["spec"], "mlflow-server-newer")
    wait = next(c for c in pod.spec["initContainers"] if c["name"] == "wait-for-schema")
    process = pod.run(wait, timeout=120)
    assert process.proc.returncode == 1
    log = process.log.read_text()
    assert "the tracking schema is newer than this image" in log, log
