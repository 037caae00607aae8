"""Names and label values fit their limits for any release name Helm accepts.

Helm accepts release names of up to 53 characters that match
`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$` (Helm's
pkg/chartutil/validate_name.go, `ValidateReleaseName`, in Helm 3 and 4). The limits that bite:

- label values: 63 characters, `(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?` (apimachinery's
  IsValidLabelValue);
- Service names: DNS-1035 labels (63, starting with a letter);
- StatefulSet: the controller copies its template labels and adds
  `controller-revision-hash: <statefulset name>-<hash>` to every pod (Kubernetes
  pkg/controller/history/controller_history.go: `ControllerRevisionName` is "%s-%s" of the
  parent's name and `HashControllerRevision`, `rand.SafeEncodeString` of a decimal uint32, up to
  10 characters; pkg/controller/statefulset/stateful_set_utils.go `setPodRevision` puts the
  revision's name into the label). So the name may have at most 63 - 11 = 52 characters, and
  `statefulset.kubernetes.io/pod-name` (the pod name `<name>-0`) must fit 63 too;
- Job: the API server adds `job-name` and `batch.kubernetes.io/job-name` labels holding the Job's
  name to its pod template (pkg/registry/batch/job/strategy.go, `generateSelector`), so the name
  must fit 63. Its pods (and the Deployment's) are named from generateName, which the API server
  cuts to 58 characters before adding 5 random ones (staging/src/k8s.io/apiserver/pkg/storage/
  names/generate.go, SimpleNameGenerator), so pod names fit whatever the owner's name.
kubernetes-validate's schemas check none of these lengths, so this test does.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from mlflow_helm.options import Options

from .modes import GSA, merge
from .render import CRD_APIS, by_kind, render_chart, render_error

LONG_RELEASE = "r" * 20 + "-long-release-name-" + "x" * 14  # 53: Helm's maximum
assert len(LONG_RELEASE) == 53
LONG_63 = "n" * 30 + "-" + "m" * 32
assert len(LONG_63) == 63

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
REVISION_HASH_MAX = 10  # rand.SafeEncodeString of a decimal uint32

# Everything on that makes objects or names: routes, auth, metrics, policies, the test pod.
EVERYTHING = {
    "auth": {"enabled": True},
    "ingress": {"enabled": True},
    "httpRoute": {"enabled": True, "parentRefs": [{"name": "gw", "namespace": "infra"}],
                  "hostnames": ["mlflow.example.com"]},
    "virtualService": {"enabled": True},
    "podDisruptionBudget": {"enabled": True},
    "networkPolicy": {"enabled": True, "ingressFrom": [{"podSelector": {}}]},
    "metrics": {"enabled": True, "serviceMonitor": {"enabled": True},
                "podMonitoring": {"enabled": True}},
    "serviceAccount": {"gcpServiceAccount": GSA},
    "commonLabels": {"team": "ml-platform"},
    "podLabels": {"tier": "backend"},
}
# A generic ephemeral /tmp: its claim is named "<pod>-<volume>" (Kubernetes
# staging/src/k8s.io/component-helpers/storage/ephemeral/ephemeral.go, VolumeClaimName), a
# subdomain of 253 at most, which pod names of 63 leave room for, and carries the template's
# labels, which the walk below checks.
SCALED_GCS = merge(EVERYTHING, {"artifacts": {"type": "gcs", "gcs": {"bucket": "b-1"}},
                                "autoscaling": {"enabled": True},
                                "server": {"tmp": {"type": "ephemeral"}}})

CASES = {
    "release-53": (LONG_RELEASE, EVERYTHING),
    "release-53-gcs-hpa": (LONG_RELEASE, SCALED_GCS),
    "release-53-nameOverride-63": (LONG_RELEASE, merge(EVERYTHING, {"nameOverride": LONG_63})),
    "fullnameOverride-63": ("prod", merge(EVERYTHING, {"fullnameOverride": LONG_63})),
    "both-overrides-63": (LONG_RELEASE, merge(EVERYTHING, {"fullnameOverride": LONG_63,
                                                           "nameOverride": LONG_63})),
}


def label_maps(node: Any, path: str = "") -> list[tuple[str, dict]]:
    """Every `labels` and `matchLabels` mapping anywhere in an object, with where it is."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else key
            if key in ("labels", "matchLabels") and isinstance(value, dict):
                found.append((where, value))
            found += label_maps(value, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += label_maps(item, f"{path}[{i}]")
    return found


def problems(objects: list[dict]) -> list[str]:
    out = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        where = f"{kind}/{name}"
        if len(name) > 63 or not DNS1123_LABEL.match(name):
            out.append(f"{where}: name is not a DNS-1123 label of at most 63 characters")
        if kind == "Service" and not DNS1035_LABEL.match(name):
            out.append(f"{where}: Service name is not a DNS-1035 label")
        for path, labels in label_maps(obj):
            for key, value in labels.items():
                value = str(value)
                if len(value) > 63 or not LABEL_VALUE.match(value):
                    out.append(f"{where} {path}.{key}={value!r}: not a label value (63 max)")
        if kind == "StatefulSet":
            revision_label = f"{name}-{'x' * REVISION_HASH_MAX}"
            if len(revision_label) > 63:
                out.append(f"{where}: controller-revision-hash {revision_label} over 63")
            pod = f"{name}-{obj['spec'].get('replicas', 1) - 1}"
            if len(pod) > 63:
                out.append(f"{where}: statefulset.kubernetes.io/pod-name {pod} over 63")
            service = obj["spec"]["serviceName"]
            if len(service) > 63 or not DNS1035_LABEL.match(service):
                out.append(f"{where}: serviceName {service} is not a DNS-1035 label")
        if kind == "Job" and len(name) > 63:
            out.append(f"{where}: job-name / batch.kubernetes.io/job-name label over 63")
    return out


class TestNames:
    @pytest.mark.parametrize("case", list(CASES))
    def test_every_name_and_label_value_fits(self, helm, case):
        release, values = CASES[case]
        objects = render_chart(helm, values, release=release, api_versions=CRD_APIS)
        assert {"Deployment", "StatefulSet", "Job", "Service", "Pod", "Secret", "Ingress",
                "HTTPRoute", "NetworkPolicy"} <= {o["kind"] for o in objects}
        assert problems(objects) == []
        # Names stay unique per kind once they are cut.
        seen = [(o["kind"], o["metadata"]["name"]) for o in objects]
        assert len(seen) == len(set(seen)), seen

    def test_the_checks_catch_what_they_check(self):
        # The helper must be able to fail: a 53-character StatefulSet and a 64-character label.
        sts = {"kind": "StatefulSet", "metadata": {"name": "s" * 53, "labels": {"a": "v" * 64}},
               "spec": {"serviceName": "svc"}}
        found = problems([sts])
        assert any("controller-revision-hash" in p for p in found)
        assert any("not a label value" in p for p in found)

    def test_statefulset_leaves_room_for_the_revision_hash(self, helm):
        sts = by_kind(render_chart(helm, {}, release=LONG_RELEASE), "StatefulSet")[0]
        name = sts["metadata"]["name"]
        assert len(name) <= 52 and name.endswith("-postgresql")
        # The Service the pods are reached by and the password Secret follow the same name.
        objects = render_chart(helm, {}, release=LONG_RELEASE)
        services = {o["metadata"]["name"] for o in by_kind(objects, "Service")}
        assert name in services and f"{name}-hl" not in services  # headless has its own cut
        assert any(s.endswith("-postgresql-hl") for s in services)
        assert sts["spec"]["template"]["spec"]["containers"][0]["env"][2]["valueFrom"][
            "secretKeyRef"]["name"] == name

    def test_short_names_are_unchanged(self, helm):
        objects = render_chart(helm, {})
        names = {(o["kind"], o["metadata"]["name"]) for o in objects}
        assert ("Deployment", "prod-mlflow") in names
        assert ("StatefulSet", "prod-mlflow-postgresql") in names

    def test_long_names_that_share_a_prefix_differ(self, helm):
        a = LONG_RELEASE[:-1] + "a"
        b = LONG_RELEASE[:-1] + "b"
        names = []
        for release in (a, b):
            objects = render_chart(helm, {"nameOverride": LONG_63}, release=release)
            names.append({(o["kind"], o["metadata"]["name"]) for o in objects})
        assert not names[0] & names[1]

    def test_cut_names_are_cut_with_a_hash(self, helm):
        deployment = by_kind(render_chart(helm, {"nameOverride": LONG_63}, release=LONG_RELEASE),
                             "Deployment")[0]
        name = deployment["metadata"]["name"]
        # Cut to 54 (a trailing "-" dropped), then "-" and 8 hex digits of the whole name's sha256.
        assert len(name) <= 63
        assert re.fullmatch(r"[a-z0-9-]{1,53}[a-z0-9]-[0-9a-f]{8}", name), name
        assert name.startswith(LONG_RELEASE)

    def test_cli_computes_the_same_full_name(self, helm):
        """The CLI names the ServiceAccount (Workload Identity subject) and Secrets from its
        own copy of `mlflow.fullname`; for cut names both must agree."""
        for release, name_values in ((LONG_RELEASE, {"nameOverride": LONG_63}),
                                     ("prod", {"fullnameOverride": LONG_63}),
                                     ("prod", {})):
            deployment = by_kind(render_chart(helm, dict(name_values), release=release),
                                 "Deployment")[0]
            opts = Options(release=release, name_values=dict(name_values))
            assert opts.fullname == deployment["metadata"]["name"]

    @pytest.mark.parametrize("release", ["1st-mlflow", "team.mlflow"])
    def test_release_names_that_cannot_name_a_service_are_refused(self, helm, release):
        # Helm accepts both; a Service name must start with a letter and have no dot.
        err = render_error(helm, {}, release=release)
        assert "is not a DNS-1035 label" in err and "fullnameOverride" in err
        # The override is the way out.
        objects = render_chart(helm, {"fullnameOverride": "mlflow"}, release=release)
        assert problems(objects) == []
