"""Inventory: the full set of (kind, name) objects for the default values and each ci/ file.

A new ci/*-values.yaml fails test_every_ci_file_has_an_inventory until its expected set is
written down here, so a change in what chart-testing installs is always a reviewed change.
"""

from __future__ import annotations

import json
import re

import pytest

from .render import (
    CHART_DIR,
    CRD_APIS,
    FULLNAME,
    NAMESPACE,
    kind_names,
    load_yaml,
    render_chart,
)

BASE = {
    ("ServiceAccount", FULLNAME),
    ("Secret", f"{FULLNAME}-postgresql"),
    ("Secret", f"{FULLNAME}-crypto"),
    ("ConfigMap", f"{FULLNAME}-scripts"),
    ("PersistentVolumeClaim", f"{FULLNAME}-artifacts"),
    # The migration Job's dumps before migrating (migrations.backup, destination volume).
    ("PersistentVolumeClaim", f"{FULLNAME}-backups"),
    ("Service", f"{FULLNAME}-postgresql"),
    ("Service", f"{FULLNAME}-postgresql-hl"),
    ("Service", FULLNAME),
    ("Deployment", FULLNAME),
    ("StatefulSet", f"{FULLNAME}-postgresql"),
    ("Job", f"{FULLNAME}-migrate-<hash>"),
    ("Pod", f"{FULLNAME}-test"),
}

EXPECTED: dict[str, set[tuple[str, str]]] = {
    "default-values.yaml": BASE,
    "auth-values.yaml": BASE | {("Secret", f"{FULLNAME}-auth")},
    "prefix-nodeport-values.yaml": BASE,
    "production-values.yaml": BASE | {
        ("NetworkPolicy", f"{FULLNAME}-server"),
        ("NetworkPolicy", f"{FULLNAME}-migrate"),
        ("NetworkPolicy", f"{FULLNAME}-test"),
        ("NetworkPolicy", f"{FULLNAME}-postgresql"),
        ("PodDisruptionBudget", FULLNAME),
        ("Ingress", FULLNAME),
    },
}

CI_FILES = sorted(p.name for p in CHART_DIR.glob("ci/*-values.yaml"))


def inventory(objects: list[dict]) -> set[tuple[str, str]]:
    """(kind, name) of each object; the migration Job's hash (what it migrates to, see
    test_job_migrate.py) is written as <hash>."""
    return {(kind, re.sub(r"-migrate-[0-9a-f]{10}$", "-migrate-<hash>", name) if kind == "Job"
             else name) for kind, name in kind_names(objects)}


def diff(actual: set, expected: set) -> str:
    return (f"unexpected: {sorted(actual - expected)}\n"
            f"missing: {sorted(expected - actual)}")


class TestInventory:
    def test_default_values(self, helm):
        actual = inventory(render_chart(helm))
        assert actual == BASE, diff(actual, BASE)

    def test_every_ci_file_has_an_inventory(self):
        unknown = sorted(set(CI_FILES) - set(EXPECTED))
        assert not unknown, (
            f"no expected inventory for {unknown}: add its (kind, name) set to EXPECTED in "
            f"tests/chart/test_inventory.py (render it with `helm template prod charts/mlflow "
            f"-n mlops -f charts/mlflow/ci/FILE`)")
        gone = sorted(set(EXPECTED) - set(CI_FILES))
        assert not gone, f"EXPECTED lists ci files that no longer exist: {gone}"

    @pytest.mark.parametrize("ci_file", CI_FILES)
    def test_ci_file(self, helm, ci_file):
        values = load_yaml(CHART_DIR / "ci" / ci_file) or {}
        actual = inventory(render_chart(helm, values))
        expected = EXPECTED.get(ci_file)
        assert expected is not None, f"add {ci_file} to EXPECTED (see the test above)"
        assert actual == expected, diff(actual, expected)

    @pytest.mark.parametrize("ci_file", CI_FILES)
    def test_ci_file_needs_no_google_cloud(self, helm, ci_file):
        # chart-testing installs each ci/ file on a plain kind cluster: nothing may need GCP.
        values = load_yaml(CHART_DIR / "ci" / ci_file) or {}
        # (The scripts ConfigMap mentions gs:// in its code; what is deployed is the rest.)
        text = json.dumps([o for o in render_chart(helm, values) if o["kind"] != "ConfigMap"])
        for marker in ("gs://", "cloud-sql-proxy", "iam.gke.io/gcp-service-account"):
            assert marker not in text, f"{ci_file} renders {marker!r}"

    def test_names_fit_dns_labels(self, helm):
        # Object names become DNS labels (Services) or pod name prefixes: at most 63 characters,
        # whatever the release name.
        release = "r" * 53  # the longest release name Helm accepts
        values = {"auth": {"enabled": True}, "networkPolicy": {"enabled": True},
                  "podDisruptionBudget": {"enabled": True}}
        objects = render_chart(helm, values, release=release)
        too_long = [(k, n, len(n)) for k, n in kind_names(objects) if len(n) > 63]
        assert not too_long, too_long
        names = [n for _, n in kind_names(objects)]
        assert all(not n.endswith("-") for n in names), names

    def test_long_names_stay_unique(self, helm):
        # Cutting names to 63 characters must not make two objects of one kind the same object
        # (Helm would apply the second over the first).
        release = "r" * 53
        objects = render_chart(helm, {"networkPolicy": {"enabled": True}}, release=release)
        pairs = [(o["kind"], o["metadata"]["name"]) for o in objects]
        duplicates = sorted({p for p in pairs if pairs.count(p) > 1})
        assert not duplicates, f"objects sharing a name with release {release!r}: {duplicates}"

    def test_hooks_and_kept_objects(self, helm):
        # Only the helm test pod is a hook: migrations are an ordinary Job (see job-migrate.yaml)
        # so they run beside the in-cluster database on the first install. Exactly the objects
        # that hold data or the keys to it survive `helm uninstall`.
        objects = render_chart(helm, {"auth": {"enabled": True}})
        hooks = {(o["kind"], o["metadata"]["name"]): o["metadata"]["annotations"]["helm.sh/hook"]
                 for o in objects if "helm.sh/hook" in (o["metadata"].get("annotations") or {})}
        assert hooks == {("Pod", f"{FULLNAME}-test"): "test"}
        kept = {(o["kind"], o["metadata"]["name"]) for o in objects
                if (o["metadata"].get("annotations") or {}).get("helm.sh/resource-policy")
                == "keep"}
        assert kept == {("Secret", f"{FULLNAME}-postgresql"), ("Secret", f"{FULLNAME}-auth"),
                        ("Secret", f"{FULLNAME}-crypto"),
                        ("PersistentVolumeClaim", f"{FULLNAME}-artifacts"),
                        ("PersistentVolumeClaim", f"{FULLNAME}-backups")}

    def test_everything_in_the_release_namespace(self, helm):
        objects = render_chart(helm, {"auth": {"enabled": True},
                                      "networkPolicy": {"enabled": True}})
        outside = [(o["kind"], o["metadata"]["name"]) for o in objects
                   if o["metadata"].get("namespace") != NAMESPACE]
        assert not outside

    def test_common_labels_everywhere(self, helm):
        objects = render_chart(helm, {"commonLabels": {"team": "ml"},
                                      "networkPolicy": {"enabled": True}})
        missing = [(o["kind"], o["metadata"]["name"]) for o in objects
                   if (o["metadata"].get("labels") or {}).get("team") != "ml"]
        assert not missing, f"objects without commonLabels: {missing}"

    def test_common_annotations_everywhere(self, helm):
        # values.yaml: commonAnnotations are "Annotations added to every object".
        values = {"commonAnnotations": {"owner": "ml-platform"},
                  "auth": {"enabled": True},
                  "networkPolicy": {"enabled": True, "ingressFrom": [{"podSelector": {}}, {
                      "namespaceSelector": {"matchLabels": {
                          "kubernetes.io/metadata.name": "ingress-nginx"}}}]},
                  "podDisruptionBudget": {"enabled": True},
                  "autoscaling": {"enabled": True},
                  "artifacts": {"type": "gcs", "gcs": {"bucket": "bucket"}},
                  "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
                  "ingress": {"enabled": True}, "virtualService": {"enabled": True},
                  "httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}]}}
        objects = render_chart(helm, values, api_versions=CRD_APIS)
        missing = sorted((o["kind"], o["metadata"]["name"]) for o in objects
                         if (o["metadata"].get("annotations") or {}).get("owner")
                         != "ml-platform")
        assert not missing, f"objects without commonAnnotations: {missing}"
