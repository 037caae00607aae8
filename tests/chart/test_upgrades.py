"""Upgrades the API server would refuse are refused by the chart first, with what to do.

Kubernetes forbids changing a StatefulSet's volumeClaimTemplates ("updates to statefulset spec
for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy',
'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden":
pkg/apis/apps/validation/validation.go, ValidateStatefulSetUpdate) and a bound claim's spec
("spec is immutable after creation except resources.requests and volumeAttributesClassName for
bound claims", and requests may not go below the previous value:
pkg/apis/core/validation/validation.go, ValidatePersistentVolumeClaimUpdate). So growing the
artifact claim goes through Helm's patch of the claim, while anything else is refused.

The chart sees the live objects with `lookup`, which only answers when Helm talks to a cluster:
these tests render against fake_discovery's loopback API holding the objects as the API server
returns them (`render_against`, `helm template --dry-run=server --is-upgrade`).
"""

from __future__ import annotations

import copy

import pytest

from .fake_discovery import render_against
from .render import FULLNAME, NAMESPACE, RenderError, get_object, render_chart

STS = f"{FULLNAME}-postgresql"
CLAIM = f"{FULLNAME}-artifacts"

LIVE_STS = {
    "apiVersion": "apps/v1", "kind": "StatefulSet",
    "metadata": {"name": STS, "namespace": NAMESPACE},
    "spec": {"replicas": 1, "serviceName": f"{STS}-hl", "volumeClaimTemplates": [{
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                 "resources": {"requests": {"storage": "8Gi"}}},
        "status": {"phase": "Pending"}}]},
}
# As stored: the default StorageClass was filled in by admission, the claim is bound.
LIVE_PVC = {
    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
    "metadata": {"name": CLAIM, "namespace": NAMESPACE},
    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard-rwo",
             "volumeMode": "Filesystem", "volumeName": "pvc-0123",
             "resources": {"requests": {"storage": "10Gi"}}},
    "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}},
}


def upgrade(helm, tmp_path, values, objects=(LIVE_STS, LIVE_PVC)):
    return render_against(helm, values, [copy.deepcopy(o) for o in objects], workdir=tmp_path)


def refused(helm, tmp_path, values, objects=(LIVE_STS, LIVE_PVC)) -> str:
    with pytest.raises(RenderError) as failure:
        upgrade(helm, tmp_path, values, objects)
    return failure.value.stderr


def pg(persistence: dict) -> dict:
    return {"postgresql": {"persistence": persistence}}


def artifacts(persistence: dict, **more) -> dict:
    return {"artifacts": {"persistence": persistence}, **more}


class TestRefusedUpgrades:
    def test_unchanged_values_pass(self, helm, tmp_path):
        # No false alarm: the defaulted storage class and an equal size in other units.
        objects = upgrade(helm, tmp_path, pg({"size": "8192Mi"}))
        assert get_object(objects, "PersistentVolumeClaim", CLAIM)

    def test_growing_the_database_volume_says_how(self, helm, tmp_path):
        err = refused(helm, tmp_path, pg({"size": "20Gi"}))
        assert f"postgresql.persistence.size=20Gi: the StatefulSet {STS} was created with a 8Gi" \
            in err
        assert (f"kubectl -n {NAMESPACE} patch pvc data-{STS}-0 -p "
                """'{"spec":{"resources":{"requests":{"storage":"20Gi"}}}}'""") in err
        assert "allowVolumeExpansion: true" in err
        assert f"kubectl -n {NAMESPACE} delete statefulset {STS} --cascade=orphan" in err
        assert "keep postgresql.persistence.size=8Gi" in err

    def test_shrinking_the_database_volume(self, helm, tmp_path):
        err = refused(helm, tmp_path, pg({"size": "4Gi"}))
        assert "postgresql.persistence.size=4Gi is smaller than the 8Gi" in err
        assert "cannot shrink" in err

    @pytest.mark.parametrize(("change", "named"), [
        ({"accessModes": ["ReadWriteOncePod"]}, "postgresql.persistence.accessModes="),
        ({"storageClass": "premium-rwo"}, 'postgresql.persistence.storageClass="premium-rwo"'),
    ])
    def test_other_database_volume_changes(self, helm, tmp_path, change, named):
        err = refused(helm, tmp_path, pg(change))
        assert named in err and f"data-{STS}-0" in err

    def test_artifact_access_modes_say_how_to_move(self, helm, tmp_path):
        err = refused(helm, tmp_path, artifacts({"accessModes": ["ReadWriteMany"]},
                                                replicaCount=2))
        assert (f'artifacts.persistence.accessModes=["ReadWriteMany"]: the claim {CLAIM} was '
                'created with ["ReadWriteOnce"]') in err
        assert "set artifacts.persistence.existingClaim to the new claim" in err
        assert "standard-rwx" in err

    def test_artifact_storage_class(self, helm, tmp_path):
        err = refused(helm, tmp_path, artifacts({"storageClass": "premium-rwo"}))
        assert 'artifacts.persistence.storageClass="premium-rwo"' in err
        assert '"standard-rwo"' in err

    def test_artifact_volume_grows_through_the_claim(self, helm, tmp_path):
        # resources.requests may grow on a bound claim: Helm patches the claim (the StorageClass
        # must allow expansion; the API server says so otherwise).
        objects = upgrade(helm, tmp_path, artifacts({"size": "50Gi"}))
        pvc = get_object(objects, "PersistentVolumeClaim", CLAIM)
        assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"

    def test_artifact_volume_cannot_shrink(self, helm, tmp_path):
        err = refused(helm, tmp_path, artifacts({"size": "5Gi"}))
        assert "artifacts.persistence.size=5Gi is smaller than the 10Gi" in err

    def test_the_documented_move_passes(self, helm, tmp_path):
        # After the copy: the new claim by existingClaim, two replicas; the old claim is no
        # longer the chart's, so nothing is compared with it.
        values = artifacts({"existingClaim": "mlflow-artifacts-rwx",
                            "accessModes": ["ReadWriteMany"]}, replicaCount=2)
        objects = upgrade(helm, tmp_path, values)
        # (Only the backup volume, for the migration Job's dumps, is left.)
        assert [o["metadata"]["name"] for o in objects
                if o["kind"] == "PersistentVolumeClaim"] == [f"{FULLNAME}-backups"]

    def test_first_install_has_nothing_to_compare(self, helm, tmp_path):
        objects = upgrade(helm, tmp_path, pg({"size": "20Gi"}), objects=())
        assert get_object(objects, "StatefulSet", STS)

    def test_helm_template_cannot_see_the_cluster(self, helm):
        # lookup is empty without a cluster: the check only fires on install and upgrade.
        assert render_chart(helm, pg({"size": "20Gi"}))


class TestScalingAdvice:
    def test_replica_message_gives_a_procedure_for_existing_releases(self, helm):
        from .render import render_error

        err = render_error(helm, {"replicaCount": 2})
        assert "on a new install, artifacts.persistence.accessModes=[ReadWriteMany]" in err
        assert "its access modes cannot change" in err
        assert "set artifacts.persistence.existingClaim" in err


KEPT_CLAIM = {
    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
    "metadata": {"name": f"data-{STS}-0", "namespace": NAMESPACE},
    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard-rwo",
             "resources": {"requests": {"storage": "8Gi"}}},
    "status": {"phase": "Bound", "capacity": {"storage": "8Gi"}},
}


class TestKeptDatabaseClaim:
    """After `helm uninstall` the StatefulSet is gone but its claim stays (retention policy
    Retain, statefulset-postgresql.yaml); a new StatefulSet adopts the claim as it is."""

    def test_larger_size_than_the_kept_claim_says_how(self, helm, tmp_path):
        err = refused(helm, tmp_path, pg({"size": "20Gi"}), objects=(KEPT_CLAIM,))
        assert f"the database claim data-{STS}-0 kept from an earlier install holds 8Gi" in err
        assert f"kubectl -n {NAMESPACE} patch pvc data-{STS}-0" in err

    def test_reinstall_with_the_same_size(self, helm, tmp_path):
        assert upgrade(helm, tmp_path, pg({"size": "8Gi"}), objects=(KEPT_CLAIM,))
