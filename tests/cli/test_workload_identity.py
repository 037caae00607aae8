"""Workload Identity as GKE reports it: the cluster's own workload pool (a fleet host
project's, for a fleet), and node pools with and without the GKE metadata server.

Sources: discovery, container v1 (googleapiclient/discovery_cache/documents/container.v1.json):
Cluster.workloadIdentityConfig.workloadPool ("The workload pool to attach all Kubernetes
service accounts to"), NodeConfig.workloadMetadataConfig.mode (GKE_METADATA: "Run the GKE
Metadata Server on this node"), Cluster.autopilot.enabled. GKE's "Authenticate to Google Cloud
APIs from GKE workloads": pods select nodes with iam.gke.io/gke-metadata-server-enabled: "true"
when some pools lack the server; Autopilot rejects that nodeSelector. The principal:// member
names the pool's project by number ("principal://iam.googleapis.com/projects/PROJECT_NUMBER/
locations/global/workloadIdentityPools/PROJECT_ID.svc.id.goog/subject/ns/NAMESPACE/sa/KSA").
"""

from __future__ import annotations

import pytest

from mlflow_helm.commands import do_install
from mlflow_helm.errors import UserError
from tests.cli.conftest import CLUSTER, LOCATION, PROJECT
from tests.cli.test_install import GSA, project_members, upgrade_call

FULL = dict(database="cloudsql", cloudsql_instance="pg", bucket="gs://team-artifacts",
            create_bucket=True, skip_tests=True)
LABEL = "iam.gke.io/gke-metadata-server-enabled"


def cluster(world) -> dict:
    return world.google.state.clusters[(PROJECT, LOCATION, CLUSTER)]


def add_pool(world, name: str, mode: str | None) -> None:
    config = {"workloadMetadataConfig": {"mode": mode}} if mode else {}
    cluster(world)["nodePools"].append({"name": name, "config": config})


def test_fleet_pool_is_used_for_the_gsa_binding(world):
    world.google.add_project("fleet-host", number="555555555555")
    cluster(world)["workloadIdentityConfig"] = {"workloadPool": "fleet-host.svc.id.goog"}
    do_install(world.context(**FULL))
    policy = world.google.state.accounts[GSA]["policy"]
    assert policy["bindings"] == [{"role": "roles/iam.workloadIdentityUser",
                                   "members": ["serviceAccount:fleet-host.svc.id.goog"
                                               "[mlflow/mlflow]"]}]


def test_fleet_pool_is_used_for_the_direct_principal(world):
    world.google.add_project("fleet-host", number="555555555555")
    cluster(world)["workloadIdentityConfig"] = {"workloadPool": "fleet-host.svc.id.goog"}
    do_install(world.context(**FULL, identity="direct"))
    principal = ("principal://iam.googleapis.com/projects/555555555555/locations/global/"
                 "workloadIdentityPools/fleet-host.svc.id.goog/subject/ns/mlflow/sa/mlflow")
    assert project_members(world, "roles/cloudsql.client") == [principal]
    assert world.gcs.members("team-artifacts", "roles/storage.objectUser") == [principal]


def test_pools_without_the_metadata_server_get_a_warning_and_a_node_selector(world):
    add_pool(world, "legacy", "GCE_METADATA")
    add_pool(world, "old", None)
    result = do_install(world.context(**FULL))
    _, values = upgrade_call(world)
    assert values["nodeSelector"] == {LABEL: "true"}
    warning = next(n for n in result.notes if n.startswith("warning: node pools"))
    assert "legacy (workloadMetadataConfig.mode=GCE_METADATA)" in warning
    assert "old (workloadMetadataConfig.mode=unset)" in warning
    assert "--workload-metadata=GKE_METADATA" in warning


def test_a_users_node_selector_merges_with_ours(world, tmp_path):
    add_pool(world, "legacy", "GCE_METADATA")
    mine = tmp_path / "mine.yaml"
    mine.write_text("nodeSelector:\n  team: ml\n")
    do_install(world.context(**FULL, values_files=[str(mine)]))
    argv, values = upgrade_call(world)
    # Ours go first on stdin; Helm merges the user's file over them, map into map.
    assert values["nodeSelector"] == {LABEL: "true"}
    assert argv[argv.index("--values"):argv.index("--values") + 4] == \
        ["--values", "-", "--values", str(mine)]


def test_all_pools_without_the_metadata_server_is_refused_before_any_change(world):
    cluster(world)["nodePools"][0]["config"]["workloadMetadataConfig"]["mode"] = "GCE_METADATA"
    with pytest.raises(UserError) as err:
        do_install(world.context(**FULL))
    assert "no node pool of cluster prod runs the GKE metadata server" in str(err.value)
    assert world.mutating() == []


def test_autopilot_gets_no_node_selector(world):
    cluster(world)["autopilot"] = {"enabled": True}
    cluster(world)["nodePools"][0]["config"] = {}
    do_install(world.context(**FULL))
    _, values = upgrade_call(world)
    assert "nodeSelector" not in values


def test_all_pools_with_the_metadata_server_get_no_node_selector(world):
    add_pool(world, "second", "GKE_METADATA")
    do_install(world.context(**FULL))
    _, values = upgrade_call(world)
    assert "nodeSelector" not in values
