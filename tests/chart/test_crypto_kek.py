"""The AI Gateway encryption passphrase: generated and kept, or from an existing Secret.

MLflow 3.17.2 encrypts AI Gateway secrets (provider API keys) with a key derived from
MLFLOW_CRYPTO_KEK_PASSPHRASE and MLFLOW_CRYPTO_KEK_VERSION (default "1"), read in
mlflow/utils/crypto.py (KEKManager.__init__); unset, it uses DEFAULT_KEK_PASSPHRASE
("mlflow-default-kek-passphrase-for-development-only", same module), which every installation
shares. The server reports `using_default_passphrase` from whether the variable is set
(mlflow/server/handlers.py, _get_secrets_config).
"""

from __future__ import annotations

import base64

import pytest

from .fake_discovery import render_against
from .render import FULLNAME, NAMESPACE, by_kind, container, env_of, get_object, render_chart

SECRET = f"{FULLNAME}-crypto"


def server(objects: list[dict]) -> dict:
    deployment = get_object(objects, "Deployment", FULLNAME)
    return container(deployment["spec"]["template"]["spec"], "mlflow")


class TestCryptoKek:
    def test_generated_secret_wired_into_the_server(self, helm):
        objects = render_chart(helm)
        secret = get_object(objects, "Secret", SECRET)
        passphrase = base64.b64decode(secret["data"]["passphrase"]).decode()
        assert len(passphrase) == 48 and passphrase.isalnum()
        # Kept by `helm uninstall`, like the database holding what it encrypts.
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        env = env_of(server(objects))
        assert env["MLFLOW_CRYPTO_KEK_PASSPHRASE"]["valueFrom"]["secretKeyRef"] == {
            "name": SECRET, "key": "passphrase"}
        assert env["MLFLOW_CRYPTO_KEK_VERSION"]["value"] == "1"

    def test_only_the_server_gets_it(self, helm):
        objects = render_chart(helm)
        pods = [by_kind(objects, "Job")[0]["spec"]["template"]["spec"],
                get_object(objects, "Pod")["spec"]]
        deployment = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
        others = [c for spec in pods for c in spec["containers"] + spec.get("initContainers", [])]
        others += [c for c in deployment["initContainers"]]
        assert others
        for c in others:
            assert "MLFLOW_CRYPTO_KEK_PASSPHRASE" not in env_of(c), c["name"]

    def test_existing_secret(self, helm):
        objects = render_chart(helm, {"server": {"cryptoKek": {
            "existingSecret": "team-kek", "secretKey": "kek", "version": 3}}})
        assert not [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == SECRET]
        env = env_of(server(objects))
        assert env["MLFLOW_CRYPTO_KEK_PASSPHRASE"]["valueFrom"]["secretKeyRef"] == {
            "name": "team-kek", "key": "kek"}
        assert env["MLFLOW_CRYPTO_KEK_VERSION"]["value"] == "3"

    def test_disabled_leaves_mlflows_default(self, helm):
        objects = render_chart(helm, {"server": {"cryptoKek": {"enabled": False}}})
        assert SECRET not in {s["metadata"]["name"] for s in by_kind(objects, "Secret")}
        env = env_of(server(objects))
        assert "MLFLOW_CRYPTO_KEK_PASSPHRASE" not in env and "MLFLOW_CRYPTO_KEK_VERSION" not in env

    def test_upgrade_keeps_the_passphrase(self, helm, tmp_path):
        """On upgrade, `lookup` finds the Secret and its passphrase is kept, not regenerated
        (a new one would make every stored gateway secret unreadable)."""
        kept = base64.b64encode(b"the-passphrase-of-the-first-install").decode()
        existing = {"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": SECRET, "namespace": NAMESPACE},
                    "data": {"passphrase": kept}}
        objects = render_against(helm, {}, [existing], workdir=tmp_path,
                                 show_only=("templates/secret-crypto.yaml",))
        assert get_object(objects, "Secret", SECRET)["data"] == {"passphrase": kept}

    @pytest.mark.parametrize("version", [0, "2"])
    def test_version_is_a_positive_integer(self, helm, version):
        from .render import render_error

        err = render_error(helm, {"server": {"cryptoKek": {"version": version}}})
        assert "cryptoKek" in err and "version" in err
