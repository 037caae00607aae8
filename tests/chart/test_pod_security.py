"""Every pod the chart makes (server, migration Job, PostgreSQL, its backup CronJob, gc, helm test)
in every mode:
Pod Security Standards "restricted", no API token, the pull secrets."""

from __future__ import annotations

import pytest

from .modes import DATABASE_MODES, GCS_SERVED, merge
from .render import render_chart

POD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod")


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for o in objects:
        if o["kind"] == "Pod":
            out.append((f"Pod/{o['metadata']['name']}", o["spec"]))
        elif o["kind"] in POD_KINDS:
            out.append((f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
        elif o["kind"] == "CronJob":
            out.append((f"CronJob/{o['metadata']['name']}",
                        o["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out


class TestPodSecurity:
    @pytest.mark.parametrize("mode", list(DATABASE_MODES))
    def test_restricted_everywhere(self, helm, mode):
        values = merge(DATABASE_MODES[mode], GCS_SERVED, {"auth": {"enabled": True},
                                                          "metrics": {"enabled": True},
                                                          "gc": {"enabled": True}})
        specs = pod_specs(render_chart(helm, values))
        assert {name.split("/")[0] for name, _ in specs} >= {"Deployment", "Job", "Pod"}
        for name, spec in specs:
            pod_sc = spec.get("securityContext") or {}
            assert spec.get("automountServiceAccountToken") is False, name
            # Service links would inject MLFLOW_PORT=tcp://… (release "mlflow"), which MLflow
            # reads as its --port.
            assert spec.get("enableServiceLinks") is False, name
            assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True, name
            for c in spec["containers"] + spec.get("initContainers", []):
                where = f"{name} {c['name']}"
                sc = c.get("securityContext") or {}
                assert sc.get("allowPrivilegeEscalation") is False, where
                assert sc.get("privileged") in (None, False), where
                assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
                assert not sc.get("capabilities", {}).get("add"), where
                assert sc.get("readOnlyRootFilesystem") is True, where
                assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
                assert sc.get("runAsUser", pod_sc.get("runAsUser")) not in (0, None), where
                seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
                assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), where
                assert c.get("resources", {}).get("limits", {}).get("memory"), (
                    f"{where}: no memory limit")
            for volume in spec.get("volumes", []):
                assert "hostPath" not in volume, f"{name} {volume['name']}"

    def test_pull_secrets_on_every_pod(self, helm):
        specs = pod_specs(render_chart(helm, {"imagePullSecrets": ["regcred"]}))
        assert len(specs) == 4
        for name, spec in specs:
            assert spec.get("imagePullSecrets") == [{"name": "regcred"}], name
