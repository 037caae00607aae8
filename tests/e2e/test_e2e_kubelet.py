"""The harness's kubelet emulation, against what Kubernetes documents and does."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_kube import Cluster, KubeError, Pod, expand
from e2e_release import secret


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "a"),
        ("x$(A)y$(B)", "xaybb"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$a"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("cost $", "cost $"),
        ("$()", "$()"),
        ("postgresql://u:$(A)@h/db", "postgresql://u:a@h/db"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, {"A": "a", "B": "bb"}.get) == expected


def pod(tmp_path: Path, container: dict, *objects: dict, links: bool = True) -> tuple[Pod, dict]:
    cluster = Cluster(list(objects), "ns", tmp_path)
    spec = {"containers": [container]}
    if not links:
        spec["enableServiceLinks"] = False
    return Pod(cluster, spec, "p"), container


def test_env_order_expansion_and_refs(tmp_path: Path) -> None:
    cm = {
        "kind": "ConfigMap",
        "metadata": {"name": "cm"},
        "data": {"X": "from-cm", "bad key": "dropped"},
    }
    p, c = pod(
        tmp_path,
        {
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "P_"}],
            "env": [
                {"name": "LATER_REF", "value": "$(PW)"},  # PW is not defined yet: stays as written
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                {"name": "URI", "value": "mysql://u:$(PW)@h/$(P_X)"},
                {"name": "ESC", "value": "$$(PW)"},
                {
                    "name": "OPT",
                    "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
                },
                {"name": "SVC", "value": "$(WEB_SERVICE_PORT)"},
            ],
        },
        cm,
        secret("s", pw="s3cr$(et)"),
        {
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80, "name": "http"}]},
        },
    )
    env = p.env(c)
    assert env["LATER_REF"] == "$(PW)"
    assert env["URI"] == "mysql://u:s3cr$(et)@h/from-cm"  # values from Secrets are not expanded
    assert env["ESC"] == "$(PW)"
    assert "OPT" not in env and "P_bad key" not in env
    assert env["SVC"] == "80" and env["WEB_PORT"].startswith("tcp://")


def test_missing_secret_key_is_a_config_error(tmp_path: Path) -> None:
    p, c = pod(
        tmp_path,
        {
            "name": "c",
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        },
        secret("s", other="v"),
    )
    with pytest.raises(KubeError, match="couldn't find key k"):
        p.env(c)


def test_service_links_off(tmp_path: Path) -> None:
    p, c = pod(
        tmp_path,
        {"name": "c"},
        {"kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}},
        links=False,
    )
    env = p.env(c)
    assert "WEB_PORT" not in env and "KUBERNETES_SERVICE_HOST" in env


def test_localize_paths_and_addresses(tmp_path: Path) -> None:
    cluster = Cluster([], "ns", tmp_path, service_backends={"db": {5432: ("127.0.0.1", 40000)}})
    p = Pod(cluster, {"containers": [], "volumes": [{"name": "tmp", "emptyDir": {}}]}, "p")
    p.sidecar_addresses["127.0.0.1:3306"] = "127.0.0.1:41000"
    mounts = p.mounts({"name": "c", "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]})
    local = str(p.volumes["tmp"])
    assert p.localize("--x=/tmp/a /tmpx /var/tmp", mounts) == f"--x={local}/a /tmpx /var/tmp"
    assert p.localize("pg://u@db.ns.svc.cluster.local:5432/d", mounts) == "pg://u@127.0.0.1:40000/d"
    assert (
        p.localize("my://u@127.0.0.1:3306/d my://127.0.0.1:33060", mounts)
        == "my://u@127.0.0.1:41000/d my://127.0.0.1:33060"
    )
