import os

from .cli import main

# As a Helm plugin, usage lines should read `helm mlflow-gcp …`.
main(prog_name="helm mlflow-gcp" if os.environ.get("HELM_PLUGIN_NAME") else "mlflow-helm")
