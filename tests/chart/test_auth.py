"""MLflow basic authentication."""

from __future__ import annotations

import base64

from .render import FULLNAME, by_kind, container, env_of, get_object, render_chart

AUTH = {"auth": {"enabled": True}}


class TestAuth:
    def test_off_by_default(self, helm):
        objects = render_chart(helm)
        assert [s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-auth")] \
            == []
        spec = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
        assert "auth-config" not in [v["name"] for v in spec["volumes"]]
        assert "MLFLOW_AUTH_CONFIG_PATH" not in env_of(container(spec, "mlflow"))

    def test_generated_secret(self, helm):
        secret = get_object(render_chart(helm, AUTH), "Secret", f"{FULLNAME}-auth")
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        password = base64.b64decode(secret["data"]["admin-password"]).decode()
        flask_key = base64.b64decode(secret["data"]["flask-secret-key"]).decode()
        assert len(password) >= 16 and password.isalnum()
        assert len(flask_key) >= 32 and flask_key.isalnum()

    def test_existing_secret(self, helm):
        values = {"auth": {"enabled": True, "existingSecret": "my-auth",
                           "passwordKey": "pw", "secretKeyKey": "sk"}}
        objects = render_chart(helm, values)
        # No auth Secret of the chart's own (the others are the database's and the gateway's).
        assert sorted(s["metadata"]["name"] for s in by_kind(objects, "Secret")) == [
            f"{FULLNAME}-crypto", f"{FULLNAME}-postgresql"]
        env = env_of(container(get_object(objects, "Deployment", FULLNAME)["spec"]["template"][
            "spec"], "mlflow"))
        assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "my-auth", "key": "pw"}
        assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "my-auth", "key": "sk"}

    def test_auth_config_written_by_init_container(self, helm):
        values = {"auth": {"enabled": True, "adminUsername": "root",
                           "defaultPermission": "NO_PERMISSIONS"}}
        spec = get_object(render_chart(helm, values), "Deployment", FULLNAME)["spec"]["template"][
            "spec"]
        wait = container(spec, "wait-for-schema", init=True)
        assert "--write-auth-config=/etc/mlflow-auth/basic_auth.ini" in wait["command"]
        env = env_of(wait)
        assert env["MLFLOW_AUTH_DEFAULT_PERMISSION"]["value"] == "NO_PERMISSIONS"
        assert env["MLFLOW_AUTH_ADMIN_USERNAME"]["value"] == "root"
        assert {"name": "auth-config", "mountPath": "/etc/mlflow-auth"} in wait["volumeMounts"]
        server = container(spec, "mlflow")
        assert {"name": "auth-config", "mountPath": "/etc/mlflow-auth", "readOnly": True} in \
            server["volumeMounts"]
        assert env_of(server)["MLFLOW_AUTH_ADMIN_USERNAME"]["value"] == "root"
        (volume,) = [v for v in spec["volumes"] if v["name"] == "auth-config"]
        # The config holds the admin password's hash location and the database URI: memory only.
        assert volume["emptyDir"]["medium"] == "Memory"
