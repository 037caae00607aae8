"""Every shell script the project ships or runs (the quickstart, the plugin's launcher and
hooks, bootstrap, packaging, CI, the e2e suite's PostgreSQL image entrypoint) passes
shellcheck, following the files each one sources. shellcheck is a Debian package
scripts/bootstrap.sh installs."""

from __future__ import annotations

import shutil
import subprocess

from tests.conftest import REPO_ROOT

SCRIPTS = [".ci/run", "scripts/bootstrap.sh", "scripts/package-plugin.sh",
           "scripts/quickstart.sh", "plugin/bin/mlflow-gcp", "plugin/scripts/env.sh",
           "plugin/scripts/install.sh", "charts/mlflow/files/backup.sh",
           "images/postgres/docker-entrypoint.sh"]


def test_the_list_is_every_shell_script():
    shebangs = ("#!/bin/sh", "#!/bin/bash", "#!/usr/bin/env bash", "#!/usr/bin/env sh")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    found = sorted(p for p in tracked if (REPO_ROOT / p).is_file()
                   and (REPO_ROOT / p).read_bytes()[:20].decode(errors="replace")
                   .startswith(shebangs))
    assert found == sorted(SCRIPTS)


def test_shellcheck_passes():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: run scripts/bootstrap.sh (apt-get install shellcheck)"
    out = subprocess.run([shellcheck, "-x", "-P", "SCRIPTDIR", *SCRIPTS], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
