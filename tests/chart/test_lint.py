"""`helm lint --strict` and the checks `ct lint` makes, without the ct binary.

ct lint runs yamllint (chart-testing's lintconf.yaml) on Chart.yaml and values.yaml, and yamale
(chart-testing's chart_schema.yaml, strict) on Chart.yaml; both files are kept in ct/ at the
repository root, as ct.yaml points to them.
"""

from __future__ import annotations

import subprocess

import pytest
import yamale
from kubernetes_validate.utils import latest_version
from yamllint import linter
from yamllint.config import YamlLintConfig

from .render import CHART_DIR, KUBE_VERSIONS, REPO_ROOT, render_chart

CI_VALUES = sorted(CHART_DIR.glob("ci/*-values.yaml"))
LINT_CASES = [None, *CI_VALUES]

INGRESS_NGINX = {"namespaceSelector": {"matchLabels": {
    "kubernetes.io/metadata.name": "ingress-nginx"}}}


def test_ci_values_files_exist():
    assert CI_VALUES, f"no ci/*-values.yaml in {CHART_DIR}: chart-testing would install nothing"


class TestLint:
    @pytest.mark.parametrize("values_file", LINT_CASES,
                             ids=["default", *[p.name for p in CI_VALUES]])
    def test_helm_lint_strict(self, helm, values_file):
        cmd = [helm, "lint", "--strict", str(CHART_DIR)]
        if values_file:
            cmd += ["--values", str(values_file)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "[WARNING]" not in proc.stdout, proc.stdout
        assert "[ERROR]" not in proc.stdout, proc.stdout

    @pytest.mark.parametrize("name", ["Chart.yaml", "values.yaml"])
    def test_yamllint(self, name):
        config = YamlLintConfig(file=str(REPO_ROOT / "ct" / "lintconf.yaml"))
        path = CHART_DIR / name
        problems = list(linter.run(path.read_text(), config, str(path)))
        # ct runs yamllint without --strict: warnings (truthy) pass, errors fail the lint.
        errors = [p for p in problems if p.level == "error"]
        assert not errors, "\n".join(f"{name}:{p.line}:{p.column} {p.desc} ({p.rule})"
                                     for p in problems)

    def test_yamale_chart_yaml(self):
        schema = yamale.make_schema(str(REPO_ROOT / "ct" / "chart_schema.yaml"))
        data = yamale.make_data(str(CHART_DIR / "Chart.yaml"))
        yamale.validate(schema, data, strict=True)

    def test_chart_yaml_contract(self):
        chart = yamale.make_data(str(CHART_DIR / "Chart.yaml"))[0][0]
        assert chart["apiVersion"] == "v2"
        assert chart["kubeVersion"] == ">=1.29.0-0"
        assert chart["appVersion"] == "3.17.2"
        assert chart["home"] and chart["sources"] and chart["maintainers"]
        assert any(k.startswith("artifacthub.io/") for k in chart["annotations"])

    def test_kube_version_below_129_rejected(self, helm):
        proc = subprocess.run(
            [helm, "template", "r", str(CHART_DIR), "--kube-version", "1.28.0"],
            capture_output=True, text=True, check=False)
        assert proc.returncode != 0
        assert "kubeVersion" in proc.stderr or ">=1.29.0-0" in proc.stderr, proc.stderr

    def test_validated_kubernetes_versions(self):
        # From the chart's floor to the newest schemas the installed kubernetes-validate has.
        assert KUBE_VERSIONS[0] == "1.29.0"
        assert KUBE_VERSIONS[-1] == latest_version()
        assert len(KUBE_VERSIONS) >= 9

    @pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
    def test_renders_for_each_supported_kubernetes(self, helm, kube_version):
        values = {"networkPolicy": {"enabled": True, "ingressFrom": [INGRESS_NGINX]},
                  "podDisruptionBudget": {"enabled": True},
                  "autoscaling": {"enabled": True}, "ingress": {"enabled": True},
                  "artifacts": {"type": "gcs", "gcs": {"bucket": "bucket"}}}
        objects = render_chart(helm, values, kube_version=kube_version)
        assert {o["kind"] for o in objects} >= {"Deployment", "HorizontalPodAutoscaler",
                                                "PodDisruptionBudget", "Ingress"}
