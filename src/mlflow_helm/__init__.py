"""mlflow-helm: production MLflow on GKE in one command."""

__version__ = "0.1.0"
