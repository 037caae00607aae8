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


def chart_version(path: Path) -> str:
    import yaml

    return str(yaml.safe_load((path / "Chart.yaml").read_text())["version"])
