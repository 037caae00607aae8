"""The chart bundled in the package (a symlink to charts/mlflow in a checkout, a copy in the
wheel), found through importlib.resources."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import UserError


def bundled_chart() -> Path:
    path = Path(str(resources.files("mlflow_helm") / "chart"))
    if not (path / "Chart.yaml").is_file():
        raise UserError(f"the bundled chart is missing at {path}",
                        "reinstall mlflow-helm, or pass --chart oci://…/mlflow")
    return path


def _chart_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load((path / "Chart.yaml").read_text()) or {}


def chart_version(path: Path) -> str:
    return str(_chart_yaml(path)["version"])


def chart_app_version(path: Path) -> str:
    """The MLflow version the chart's default image runs (Chart.yaml appVersion)."""
    return str(_chart_yaml(path).get("appVersion", ""))
