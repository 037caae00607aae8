"""Session services for the e2e suite (marker `e2e`): one PostgreSQL, one MariaDB and one
fake-gcs-server per test session (per xdist worker), each configuration getting a fresh database
and bucket. See tests/e2e/README.md."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_release import APP_VERSION, Release, Services
from e2e_services import FakeGCS, MariaDB, PostgreSQL

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
OLD_MLFLOW = os.environ.get("E2E_OLD_MLFLOW", "2.22.*")
OLD_VENV = Path(os.environ.get("E2E_OLD_MLFLOW_VENV", REPO_ROOT / ".tools" / "mlflow-2.22"))


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # A run cut short with SIGTERM (CI timeout) still tears down and stops every child by PID.
    signal.signal(signal.SIGTERM, _interrupt)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def _mlflow_of_app_version() -> None:
    """The processes run this interpreter's MLflow: it must be the chart's appVersion."""
    try:
        import mlflow
    except ImportError:
        pytest.fail(
            "mlflow is not installed: pip install -e '.[e2e]' (or run scripts/bootstrap.sh)",
            pytrace=False,
        )
    if mlflow.__version__ != APP_VERSION:
        pytest.fail(
            f"MLflow {mlflow.__version__} installed, the chart's appVersion is {APP_VERSION}: "
            "pip install -e '.[e2e]'",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    started = []
    try:
        for cls in (PostgreSQL, MariaDB, FakeGCS):
            service = cls()
            started.append(service)
            service.start()
        yield Services(*started)
    finally:
        for service in reversed(started):
            service.cleanup()


@pytest.fixture
def e2e_dir() -> Iterator[Path]:
    # Our own directory rather than tmp_path: the database servers' users must reach it.
    path = Path(tempfile.mkdtemp(prefix="mlflow-e2e-run-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def release_factory(helm4: str, services: Services, e2e_dir: Path) -> Iterator:
    """Make releases; every server they started is stopped at the end of the test."""
    made: list[Release] = []

    def make(name: str = "default", **kwargs) -> Release:
        rel = Release(helm4, services, e2e_dir / name, **kwargs)
        made.append(rel)
        return rel

    yield make
    for rel in made:
        rel.finish()


@pytest.fixture(scope="session")
def old_mlflow() -> Path:
    """A virtualenv with MLflow 2.22 for the upgrade test, made with uv once and cached."""
    # MLflow 2.22 predates SQLAlchemy 2.1 (it imports pool classes 2.1 removed).
    # (pymysql: the backup tests fill a MariaDB database with it.)
    requirements = [f"mlflow=={OLD_MLFLOW}", "sqlalchemy<2.1", "psycopg2-binary", "pymysql"]
    marker = OLD_VENV / ".e2e-requirements"
    if not marker.exists() or marker.read_text() != "\n".join(requirements):
        uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
        if not uv:
            pytest.fail(
                "uv not found: pip install uv (the upgrade test builds an MLflow 2.22 "
                f"virtualenv in {OLD_VENV})",
                pytrace=False,
            )
        subprocess.run(
            [uv, "venv", "-q", "--allow-existing", "--python", sys.executable, str(OLD_VENV)],
            check=True,
        )
        subprocess.run(
            [uv, "pip", "install", "-q", *requirements],
            env={**os.environ, "VIRTUAL_ENV": str(OLD_VENV)},
            check=True,
        )
        marker.write_text("\n".join(requirements))
    return OLD_VENV
