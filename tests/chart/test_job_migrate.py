"""The schema migration Job: named after what it migrates to, in every database mode, no hook."""

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

    def test_name_is_the_hash_of_what_it_migrates_to(self, helm):
        # Not the revision (always 1 under `helm template`, so GitOps would reuse one name):
        # "<fullname>-migrate-<10 hex>", the same on every render and with either Helm major.
        name = job(helm)["metadata"]["name"]
        assert re.fullmatch(rf"{FULLNAME}-migrate-[0-9a-f]{{10}}", name), name
        assert job(helm)["metadata"]["name"] == name

    def test_same_name_on_helm3_and_helm4(self, helm3, helm4):
        assert job(helm3)["metadata"]["name"] == job(helm4)["metadata"]["name"]

    @pytest.mark.parametrize("change", [
        {"image": {"tag": "v3.18.0-full"}},
        {"image": {"digest": "sha256:" + "ab" * 32}},
        {"migrations": {"resources": {"limits": {"memory": "2Gi"}}}},  # the Job's spec
        {"auth": {"enabled": True}},  # the auth schema joins the migration
    ])
    def test_new_image_or_job_spec_gets_a_new_job(self, helm, change):
        # A Job's pod template is immutable and a finished Job never runs again: whatever would
        # change the Job must change its name.
        assert job(helm, change)["metadata"]["name"] != job(helm)["metadata"]["name"]

    def test_values_outside_the_job_keep_its_name(self, helm):
        # Scaling the server is no reason to migrate again.
        same = {"replicaCount": 1, "service": {"port": 80}, "podDisruptionBudget": {
            "enabled": True}}
        assert job(helm, same)["metadata"]["name"] == job(helm)["metadata"]["name"]

    def test_new_chart_version_gets_a_new_job(self, helm, tmp_path):
        import shutil

        copy = tmp_path / "mlflow"
        shutil.copytree(CHART_DIR, copy)
        chart = copy / "Chart.yaml"
        chart.write_text(chart.read_text().replace("\nversion: ", "\nversion: 9.9.9-", 1))
        import subprocess

        out = subprocess.run([helm, "template", "prod", str(copy), "--namespace", "mlops",
                              "--show-only", "templates/job-migrate.yaml"],
                             capture_output=True, text=True, check=True).stdout
        other = re.search(r"name: (prod-mlflow-migrate-[0-9a-f]+)", out)[1]
        assert other != job(helm)["metadata"]["name"]

    def test_hash_survives_long_names(self, helm):
        # If a long name cut the hash off, every upgrade would reuse one Job name. The cut must
        # fall on the full name.
        for values in ({"fullnameOverride": "x" * 63}, {"nameOverride": "y" * 63}):
            j = get_object(render_chart(helm, values, release="r" * 53), "Job")
            name = j["metadata"]["name"]
            assert re.search(r"-migrate-[0-9a-f]{10}$", name), name
            assert len(name) <= 63

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
        assert [c["name"] for c in spec["initContainers"]] == ["backup-plan", "backup"]
        assert not [c for c in spec["initContainers"] if c.get("restartPolicy")]
        off = merge(DATABASE_MODES[mode], {"migrations": {"backup": {"enabled": False}}})
        assert "initContainers" not in job(helm, off)["spec"]["template"]["spec"]

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


class TestJobMigrateGitOps:
    """Argo CD: the Job as an ordinary object (default) or as an Argo CD hook.

    Argo CD's docs (user-guide/helm.md, "Helm Hooks"; user-guide/sync-waves.md): a `Sync` hook
    runs "at the same time as the application of the manifests", `PreSync` before them; a hook
    annotation of Argo CD's own makes it ignore the object's Helm hook annotations; delete
    policies are HookSucceeded, HookFailed and BeforeHookCreation.
    """

    def test_no_hook_annotations_by_default(self, helm):
        annotations = job(helm)["metadata"].get("annotations") or {}
        assert not any(k.startswith("argocd.argoproj.io/") for k in annotations)

    def test_job_annotations_and_common_annotations(self, helm):
        j = job(helm, {"commonAnnotations": {"team": "ml"},
                       "migrations": {"jobAnnotations": {"argocd.argoproj.io/sync-wave": "1",
                                                         "team": "ml-platform"}}})
        assert j["metadata"]["annotations"] == {"argocd.argoproj.io/sync-wave": "1",
                                                "team": "ml-platform"}

    def test_argocd_sync_hook(self, helm):
        values = {"migrations": {"argocd": {"hook": "Sync"}}}
        j = job(helm, values)
        assert j["metadata"]["annotations"] == {
            "argocd.argoproj.io/hook": "Sync",
            "argocd.argoproj.io/hook-delete-policy": "HookSucceeded,BeforeHookCreation"}
        # Annotations are no part of the name's hash: turning the hook on migrates nothing anew.
        assert j["metadata"]["name"] == job(helm)["metadata"]["name"]
        # Still no Helm hook: `helm install` keeps running it beside the database.
        assert not any(k.startswith("helm.sh/hook") for k in j["metadata"]["annotations"])

    def test_presync_needs_a_database_that_exists_before_the_sync(self, helm):
        from .render import render_error

        err = render_error(helm, {"migrations": {"argocd": {"hook": "PreSync"}}})
        assert "migrations.argocd.hook=PreSync" in err and "migrations.argocd.hook=Sync" in err
        # The dumps before migrating go to the backup volume by default, a claim Argo CD
        # creates in the Sync phase: refused too. To GCS, the Job needs nothing of the sync.
        external = merge(DATABASE_MODES["external-pg"],
                         {"migrations": {"argocd": {"hook": "PreSync",
                                                    "hookDeletePolicy": "BeforeHookCreation"}}})
        err = render_error(helm, external)
        assert "migrations.argocd.hook=PreSync with the backup volume" in err
        assert "migrations.backup.destination=gcs" in err
        external = merge(external, {"migrations": {"backup": {"destination": "gcs"}},
                                    "backups": {"gcs": {"bucket": "team-backups"}}})
        assert job(helm, external)["metadata"]["annotations"] == {
            "argocd.argoproj.io/hook": "PreSync",
            "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation"}

    @pytest.mark.parametrize("values", [{"hook": "PostSync"}, {"hookDeletePolicy": "Always"}])
    def test_unknown_hook_settings_are_refused(self, helm, values):
        from .render import render_error

        err = render_error(helm, {"migrations": {"argocd": values}})
        assert "argocd" in err
