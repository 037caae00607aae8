"""GitOps: with every Secret external, `helm template` gives the same bytes on every render.

Argo CD and Flux (through its kustomize/post-renderer paths and `helm template` users) compare
what the chart renders with what runs; Argo CD renders with `helm template`, where `lookup` is
empty, so random values differ on every comparison (Argo CD's docs, user-guide/helm.md,
"Random Data"). Renders here bypass render.py's cache: each is its own `helm template` run.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from .modes import CLOUDSQL_PG_PASSWORD, EXTERNAL_URI, merge
from .render import CHART_DIR, FULLNAME, NAMESPACE, RELEASE

EXTERNAL_SECRETS = {
    "postgresql": {"auth": {"existingSecret": "mlflow-db"}},
    "auth": {"enabled": True, "existingSecret": "mlflow-auth"},
    "server": {"cryptoKek": {"existingSecret": "mlflow-kek"}},
}
CASES = {
    "incluster": EXTERNAL_SECRETS,
    "cloudsql": merge(EXTERNAL_SECRETS, CLOUDSQL_PG_PASSWORD),
    # (PreSync: the dumps before migrating go to GCS, not to a claim of the Sync phase.)
    "external-uri-argocd-hook": merge(EXTERNAL_SECRETS, EXTERNAL_URI,
                                      {"migrations": {"argocd": {"hook": "PreSync"},
                                                      "backup": {"destination": "gcs"}},
                                       "backups": {"gcs": {"bucket": "team-backups"}}}),
}


def template(helm: str, values: dict) -> str:
    proc = subprocess.run(
        [helm, "template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE, "--values", "-"],
        input=json.dumps(values), capture_output=True, text=True, check=True)
    return proc.stdout


class TestGitOps:
    @pytest.mark.parametrize("case", list(CASES))
    def test_two_renders_are_byte_identical(self, helm, case):
        first = template(helm, CASES[case])
        assert template(helm, CASES[case]) == first
        objects = [d for d in yaml.safe_load_all(first) if d]
        # Nothing secret is rendered, and no checksum of a generated value.
        assert not [o for o in objects if o["kind"] == "Secret"]
        assert "checksum/db-secret" not in first and "checksum/auth-secret" not in first

    def test_generated_secrets_differ_on_every_render(self, helm):
        # Why the README's GitOps section says existingSecret: this is what Argo CD would see.
        assert template(helm, {}) != template(helm, {})

    def test_the_same_bytes_on_helm3_and_helm4(self, helm3, helm4):
        # A repository rendered in CI with one major and compared by Argo CD with the other
        # (Argo CD 3.5 renders with Helm 4) must agree, the migration Job's name included.
        values = CASES["incluster"]
        assert template(helm3, values) == template(helm4, values)

    def test_job_name_is_stable_and_not_the_revision(self, helm):
        text = template(helm, EXTERNAL_SECRETS)
        assert f"name: {FULLNAME}-migrate-1\n" not in text
        job = next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "Job")
        assert job["metadata"]["name"].startswith(f"{FULLNAME}-migrate-")


class TestHelmInstallKeepsGeneratedSecrets:
    """Without existingSecret, `helm upgrade` keeps what the first install generated: the chart
    looks the Secrets up (rendered here against the loopback API, see fake_discovery.py)."""

    def test_upgrade_reuses_every_generated_secret(self, helm, tmp_path):
        import base64

        from .fake_discovery import render_against

        def secret(name: str, **data: str) -> dict:
            return {"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": name, "namespace": NAMESPACE},
                    "data": {k.replace("_", "-"): base64.b64encode(v.encode()).decode()
                             for k, v in data.items()}}

        live = [secret(f"{FULLNAME}-postgresql", password="first-db-password"),
                secret(f"{FULLNAME}-auth", admin_password="first-admin",
                       flask_secret_key="first-flask-key"),
                secret(f"{FULLNAME}-crypto", passphrase="first-passphrase")]
        values = {"auth": {"enabled": True}}
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = render_against(helm, values, live, workdir=tmp_path / "a")
        second = render_against(helm, values, live, workdir=tmp_path / "b")
        rendered = {o["metadata"]["name"]: o["data"] for o in first if o["kind"] == "Secret"}
        assert rendered == {s["metadata"]["name"]: s["data"] for s in live}
        # And so the pods' checksums do not move between upgrades either.
        assert first == second
