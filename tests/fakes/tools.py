"""Where the repository's tools are, for the fakes and the demo as well as the suites (no
pytest here: `make demo` runs the fakes without it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / ".tools"


class ToolMissing(RuntimeError):
    pass


def find_helm(major: str) -> str:
    """Path of the Helm binary of one major: HELM<major>_BIN, else the one scripts/bootstrap.sh
    installs under .tools; ToolMissing with the fix otherwise."""
    candidate = os.environ.get(f"HELM{major}_BIN") or str(TOOLS / f"helm{major}" / "helm")
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(candidate)
    if not found:
        raise ToolMissing(f"Helm {major} not found at {candidate}: run scripts/bootstrap.sh "
                          f"(or set HELM{major}_BIN)")
    return found
