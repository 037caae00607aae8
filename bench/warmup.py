"""The first tracking calls after a server pod turns Ready, against the hundredth (issue 10).

For each setting of `server.warmup.enabled` and each round: the e2e harness installs the
chart's default release (migration Job, server pod with 2 uvicorn workers) on a local
PostgreSQL and waits for the rendered startup and readiness probes as the kubelet would. Then:
- first wave: 2 x workers tracking calls (`experiments/search`) at once, each on its own new
  connection, so each worker gets its first call; the slowest is what a user behind the load
  balancer waits;
- steady: 120 more calls one after another (new connection each); the median of calls
  100-120 is "the hundredth".

Prints `name: value` lines. Usage: python bench/warmup.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))

from e2e_kube import http_get  # noqa: E402
from e2e_release import Release, Services  # noqa: E402
from e2e_services import PostgreSQL  # noqa: E402

from bench.server import NoGCS  # noqa: E402

CALL = "/api/2.0/mlflow/experiments/search?max_results=1"


def timed(port: int, host: str) -> float:
    started = time.monotonic()
    status, body = http_get(port, CALL, host, timeout=60)
    assert status == 200, (status, body[:200])
    return time.monotonic() - started


def one_round(pg: PostgreSQL, helm: str, workdir: Path, warmup: bool) -> tuple[float, float]:
    values = {"server": {"warmup": {"enabled": warmup}}}
    rel = Release(helm, Services(pg, None, NoGCS()), workdir, values=values)
    rel.install()
    try:
        host = rel.service_host()
        workers = 2
        with ThreadPoolExecutor(2 * workers) as pool:
            wave = list(pool.map(lambda _: timed(rel.port, host), range(2 * workers)))
        steady = [timed(rel.port, host) for _ in range(120)]
        return max(wave), statistics.median(steady[99:120])
    finally:
        rel.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--helm", default=str(REPO_ROOT / ".tools" / "helm4" / "helm"))
    args = parser.parse_args()
    pg = PostgreSQL().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for warmup in (False, True):
                firsts, hundredths = [], []
                for i in range(args.rounds):
                    first, hundredth = one_round(pg, args.helm, Path(tmp) / f"{warmup}-{i}",
                                                 warmup)
                    firsts.append(first)
                    hundredths.append(hundredth)
                name = "warmup" if warmup else "no_warmup"
                print(f"{name}_first_wave_max_s: "
                      + " ".join(f"{v:.3f}" for v in firsts), flush=True)
                print(f"{name}_hundredth_median_s: "
                      + " ".join(f"{v:.3f}" for v in hundredths), flush=True)
    finally:
        pg.cleanup()


if __name__ == "__main__":
    main()
