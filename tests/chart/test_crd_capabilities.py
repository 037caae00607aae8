"""Custom resources render only when the cluster serves their API, else the chart refuses.

Without the CRD the API server answers "resource mapping not found" for the whole release, after
other objects may have changed. The chart checks `.Capabilities.APIVersions` first: on
`helm install`/`upgrade` that is the cluster's discovery (group/version and group/version/Kind,
Helm's pkg/action/action.go getCapabilities -> GetVersionSet); `helm template` has only the
built-in API plus `--api-versions`, and Argo CD passes the cluster's group/versions without kinds
(argoproj/argo-cd#6351), so either form must count (helm/helm#10189: `--api-versions` of a
group/version/Kind does not add its group/version).
"""

from __future__ import annotations

import pytest

from .fake_discovery import render_against
from .render import FULLNAME, RenderError, get_object, render_chart, render_error

# value that turns the object on, its values, its group/version/Kind
CUSTOM_RESOURCES = {
    "serviceMonitor": (
        "metrics.serviceMonitor.enabled",
        {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True}}},
        "monitoring.coreos.com/v1/ServiceMonitor",
    ),
    "podMonitoring": (
        "metrics.podMonitoring.enabled",
        {"metrics": {"enabled": True, "podMonitoring": {"enabled": True}}},
        "monitoring.googleapis.com/v1/PodMonitoring",
    ),
    "httpRoute": (
        "httpRoute.enabled",
        {"httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}]}},
        "gateway.networking.k8s.io/v1/HTTPRoute",
    ),
    "virtualService": (
        "virtualService.enabled",
        {"virtualService": {"enabled": True}},
        "networking.istio.io/v1/VirtualService",
    ),
}


class TestCrdCapabilities:
    @pytest.mark.parametrize("name", list(CUSTOM_RESOURCES))
    def test_refused_without_the_api(self, helm, name):
        value, values, gvk = CUSTOM_RESOURCES[name]
        stderr = render_error(helm, values)
        line = next((ln for ln in stderr.splitlines() if value in ln), "")
        assert line, stderr
        group_version, kind = gvk.rsplit("/", 1)
        assert f"serves no {group_version} {kind}" in line
        # What a helm template / GitOps user needs to do, verbatim.
        assert f"--api-versions {gvk}" in line
        assert f"{value}=false" in line
        assert "resource mapping not found" not in stderr

    @pytest.mark.parametrize("form", ["group/version/Kind", "group/version"])
    @pytest.mark.parametrize("name", list(CUSTOM_RESOURCES))
    def test_rendered_with_the_api(self, helm, name, form):
        _, values, gvk = CUSTOM_RESOURCES[name]
        api = gvk if form == "group/version/Kind" else gvk.rsplit("/", 1)[0]
        objects = render_chart(helm, values, api_versions=[api])
        obj = get_object(objects, gvk.rsplit("/", 1)[1], FULLNAME)
        assert obj["apiVersion"] == gvk.rsplit("/", 1)[0]

    def test_other_apis_do_not_count(self, helm):
        # The ServiceMonitor's API does not stand in for the HTTPRoute's.
        values = {**CUSTOM_RESOURCES["serviceMonitor"][1], **CUSTOM_RESOURCES["httpRoute"][1]}
        stderr = render_error(helm, values,
                              api_versions=["monitoring.coreos.com/v1/ServiceMonitor"])
        assert "httpRoute.enabled=true" in stderr
        assert "metrics.serviceMonitor.enabled=true" not in stderr

    def test_nothing_asked_when_nothing_is_on(self, helm):
        # The defaults need no custom resource API: they render on a bare cluster.
        kinds = {o["kind"] for o in render_chart(helm)}
        assert not kinds & {"ServiceMonitor", "PodMonitoring", "HTTPRoute", "VirtualService"}

    @pytest.mark.parametrize("name", ["serviceMonitor", "httpRoute"])
    def test_against_a_cluster(self, helm, name, tmp_path):
        # On install/upgrade Helm takes the API list from the cluster's discovery: the same
        # values render where the CRD is served and are refused where it is not.
        value, values, gvk = CUSTOM_RESOURCES[name]
        group_version, kind = gvk.rsplit("/", 1)
        objects = render_against(helm, values, [], workdir=tmp_path)
        assert get_object(objects, kind, FULLNAME)["apiVersion"] == group_version
        with pytest.raises(RenderError) as refused:
            render_against(helm, values, [], workdir=tmp_path,
                           without=(group_version,))
        assert f"{value}=true, but the cluster serves no {group_version} {kind}" in \
            refused.value.stderr
