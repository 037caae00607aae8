"""The chart's default server against `mlflow server` with MLflow's own defaults, back to back on
one PostgreSQL, under closed-loop load on loopback (issue 6).

Chart side: the e2e harness renders the chart with real Helm (default values unless `--set`),
provisions the in-cluster database on the local PostgreSQL, runs the rendered migration Job and
the server pod's command and environment. Baseline: `mlflow server --backend-store-uri
postgresql+<driver>://…` (the driver the chart renders) with nothing else, in its own fresh
database on the same PostgreSQL; MLflow's defaults serve artifacts too.

Load: N clients over kept-alive HTTP/1.1 connections (asyncio + aiohttp, one connection per
client, as the MLflow client keeps its own); each sends its next request when the previous one
answered. Workloads: log-metric and log-batch (100 metrics) at each concurrency, and an
experiments search. Every client logs to its own run (runs are created first), as training jobs
do. Any non-200 answer or timeout is an error; `errors` counts the chart's over every workload
(warm-up included), `baseline_errors` the baseline's. Latency quantiles cover every request
outstanding at some time in the measured window (sent before it and still waiting included),
waited for to the end, a failed one at the time it took to fail (a timeout counts its full
wait); requests/s counts the successful answers in the window. A window
lasts `--seconds`, extended (up to `--max-seconds`) until `--min-completed` answers arrived in
it, so no rate is taken over zero answers; `*_window_s` prints its real length.

Memory: the server's process tree (the `mlflow server` process, uvicorn's supervisor and its
workers) sampled during load; `memory_ratio` is the ratio of the peak tree RSS. PSS (from
smaps_rollup, which counts shared pages once) is printed alongside.

Rounds (issue 16): one pair of windows decides nothing on a shared machine (the same commit
measured 1.04 and 2.78 x in two runs). The configurations alternate, A B A B ..., `--rounds`
times (default 5), each time a fresh server on a freshly made database of the same PostgreSQL.
Every figure is printed per round (`LABEL_rN_...`) and then as the median over rounds with its
spread (min-max, and the interquartile range from four rounds); each ratio is the median of the
per-round ratios (a round's two sides ran back to back, so its ratio cancels what the machine
did then), with a seeded 95% bootstrap interval of that median, and `_clear: yes` when the
interval excludes 1.0. Server CPU-ms per request (every process of the server's tree, from
/proc) and PostgreSQL CPU-ms per request move least with other load on the machine; the
load generator's own CPU is printed (`loadgen_cpu_pct`) and a warning says when it took more
than half a CPU. A 1-minute load average above `--max-loadavg` (default: half the CPUs) before
the start is refused (exit 3), saying why.

`--sweep KEY=V1,V2,...` compares the chart with each value of one setting (no baseline), at 8,
16 and 32 clients, and prints a Markdown table per workload.

Prints `name: value` lines; run `python bench/server.py --help` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))

from e2e_kube import render  # noqa: E402
from e2e_release import Release, Services  # noqa: E402
from e2e_services import PostgreSQL, free_port, random_password, spawn, stop_process, tail  # noqa: E402

API = "/api/2.0/mlflow"
BATCH_SIZE = 100


class NoGCS:
    """The chart's default release keeps artifacts on a volume: no bucket, no emulator."""

    def env(self) -> dict[str, str]:
        return {}

    def create_bucket(self, name: str) -> None:  # pragma: no cover - default values have none
        raise AssertionError(f"default values should not name a bucket ({name})")


# ------------------------------------------------------------------------------ servers ----


@dataclass
class Server:
    side: str  # chart | baseline
    base_url: str
    pid: int
    db_name: str
    description: str
    stop: object  # callable
    startup_s: float


def start_chart(pg: PostgreSQL, helm: str, workdir: Path, values: dict) -> Server:
    started = time.monotonic()
    rel = Release(helm, Services(pg, None, NoGCS()), workdir / "chart", values=values)
    try:
        rel.install()
    except BaseException:
        rel.stop()
        raise
    assert rel.server is not None
    env = rel.server_env()
    args = rel.server_args()
    pool = "+".join(
        env.get(k, "-")
        for k in ("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW")
    )
    knobs = [a for a in args if a.startswith(("--workers", "--uvicorn-opts"))]
    extra_env = sorted(
        f"{k}={v}"
        for k, v in env.items()
        if k.startswith(("MLFLOW_SERVER_", "MALLOC_", "PYTHON")) and "PASSWORD" not in k
    )
    return Server(
        side="chart",
        base_url=rel.tracking_uri(),
        pid=rel.server.proc.pid,
        db_name=rel.db_name,
        description=" ".join([*knobs, f"pool={pool}", *extra_env]),
        stop=rel.stop,
        startup_s=time.monotonic() - started,
    )


def chart_driver(helm: str, values: dict) -> str:
    """The SQLAlchemy scheme of the backend URI the chart renders: the baseline uses it too."""
    for obj in render(helm, values):
        if obj["kind"] != "Deployment":
            continue
        for var in obj["spec"]["template"]["spec"]["containers"][0].get("env") or []:
            if var["name"] == "MLFLOW_BACKEND_STORE_URI" and var.get("value"):
                return var["value"].split("://", 1)[0]
    raise AssertionError("the chart renders no MLFLOW_BACKEND_STORE_URI value")


def start_baseline(pg: PostgreSQL, workdir: Path, driver: str, extra_args: list[str]) -> Server:
    started = time.monotonic()
    db, user, password = "mlflow_baseline", "baseline", random_password()
    pg.provision(db, user, password)
    home = workdir / "baseline"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    uri = f"{driver}://{user}:{password}@127.0.0.1:{pg.port}/{db}"
    argv = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra_args,
    ]
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
    }
    log = home / "server.log"
    with open(log, "ab") as out:
        proc = spawn(argv, env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"baseline server exited {proc.returncode}:\n{tail(log, 60)}")
        try:
            import urllib.request

            with urllib.request.urlopen(base_url + "/health", timeout=5) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"baseline server not healthy after 180 s:\n{tail(log, 60)}")
        time.sleep(0.5)
    return Server(
        side="baseline",
        base_url=base_url,
        pid=proc.pid,
        db_name=db,
        description=" ".join(["mlflow server defaults (4 workers, job execution on)", *extra_args]),
        stop=lambda: stop_process(proc),
        startup_s=time.monotonic() - started,
    )


# ---------------------------------------------------------------------------- sampling ----


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            # children_*: processes it reaped (PostgreSQL backends that ended in the window).
            total += t.user + t.system + t.children_user + t.children_system
    return total


@dataclass
class Memory:
    pid: int
    rss_peak: int = 0
    pss_peak: int = 0
    pss_ok: bool = True

    def sample(self, pss: bool = False) -> None:
        rss = pss_total = 0
        for p in tree(self.pid):
            with contextlib.suppress(psutil.Error):
                rss += p.memory_info().rss
                if pss and self.pss_ok:
                    try:
                        pss_total += p.memory_full_info().pss
                    except (psutil.AccessDenied, AttributeError):
                        self.pss_ok = False
        self.rss_peak = max(self.rss_peak, rss)
        if pss and self.pss_ok:
            self.pss_peak = max(self.pss_peak, pss_total)

    async def run(self, interval: float = 0.5) -> None:
        n = 0
        while True:
            self.sample(pss=n % 4 == 0)
            n += 1
            await asyncio.sleep(interval)


# ------------------------------------------------------------------------------- load ----


@dataclass
class Result:
    workload: str
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    completed: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    loadgen_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    pg_cpu_s: float = 0.0
    pg_sessions: int = 0
    spread: str = ""  # kept-alive client connections per server process

    @property
    def name(self) -> str:
        return f"{self.workload}_c{self.concurrency}"

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        data = sorted(self.latencies)
        # Nearest-rank: the smallest latency at or above the q-th fraction of requests.
        return data[min(len(data) - 1, max(0, math.ceil(q * len(data)) - 1))]

    @property
    def rps(self) -> float:
        return self.completed / self.seconds


class Client:
    """The REST calls the MLflow client makes, over one kept-alive connection."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1, force_close=False),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def post(self, path: str, body: dict) -> dict:
        async with self.session.post(self.base_url + API + path, json=body) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status} {path}: {data[:200]!r}")
            return json.loads(data) if data else {}

    async def close(self) -> None:
        await self.session.close()


def request_for(workload: str, run_id: str, client: int, seq: int) -> tuple[str, dict]:
    now = int(time.time() * 1000)
    if workload == "logmetric":
        return "/runs/log-metric", {
            "run_id": run_id,
            "key": f"loss_{client}",
            "value": random.random(),
            "timestamp": now,
            "step": seq,
        }
    if workload == "logbatch":
        return "/runs/log-batch", {
            "run_id": run_id,
            "metrics": [
                {"key": f"m{j:03d}", "value": random.random(), "timestamp": now, "step": seq}
                for j in range(BATCH_SIZE)
            ],
        }
    return "/experiments/search", {"max_results": 100}


async def setup_runs(base_url: str, timeout: float, runs: int, experiments: int) -> list[str]:
    client = Client(base_url, timeout)
    try:
        exp = await client.post("/experiments/create", {"name": f"bench-{time.time_ns()}"})
        experiment_id = exp["experiment_id"]
        for i in range(experiments - 1):
            await client.post("/experiments/create", {"name": f"bench-extra-{i}"})
        run_ids = []
        for i in range(runs):
            run = await client.post(
                "/runs/create",
                {"experiment_id": experiment_id, "run_name": f"client-{i}"},
            )
            run_ids.append(run["run"]["info"]["run_id"])
        return run_ids
    finally:
        await client.close()


async def load(
    server: Server,
    workload: str,
    concurrency: int,
    run_ids: list[str],
    warmup: float,
    seconds: float,
    timeout: float,
    pg: PostgreSQL,
    min_completed: int = 0,
    max_seconds: float = math.inf,
) -> Result:
    """Load for `warmup` unmeasured seconds, then measure for at least `seconds`, and longer
    (up to `max_seconds`) until `min_completed` answers arrived in the window: on a busy machine
    a cold server can answer nothing inside a short window, and a rate or a ratio over zero
    answers says nothing. The window's real length is what `Result.seconds` holds."""
    result = Result(workload, concurrency, seconds)
    clients = [Client(server.base_url, timeout) for _ in range(concurrency)]
    window: list[float] = []  # [start, end] of the measured window, set below
    stop_at = [math.inf]
    seqs = [int(time.time()) * 1000] * concurrency

    async def worker(i: int) -> None:
        run_id = run_ids[i % len(run_ids)]
        while time.monotonic() < stop_at[0]:
            seqs[i] += 1
            path, body = request_for(workload, run_id, i, seqs[i])
            started = time.monotonic()
            ok = True
            try:
                await clients[i].post(path, body)
            except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError) as exc:
                ok = False
                result.errors += 1
                if len(result.error_samples) < 3:
                    result.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
            done = time.monotonic()
            if not window:
                continue
            # Latency: every request outstanding at some time in the window, however long it
            # takes to answer (the load waits for it), a failed one at the time it took to fail.
            # A request sent during the warm-up and still waiting when the window opens counts:
            # a client stuck behind a full pool for the 30 s timeout is a latency of the window,
            # and a window shorter than the timeout would otherwise never see it. Throughput:
            # the successful answers that arrived in the window.
            if started < window[1] and done >= window[0]:
                result.latencies.append(done - started)
            if ok and window[0] <= done <= window[1]:
                result.completed += 1

    procs = tree(server.pid)
    pg_procs = tree(pg.proc.pid) if pg.proc else []
    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    await asyncio.sleep(warmup)
    result.spread = connection_spread(procs, server.base_url)
    sessions0 = pg_sessions(pg, server.db_name)
    cpu0, pg0, own0 = tree_cpu(procs), tree_cpu(pg_procs), time.process_time()
    opened = time.monotonic()
    window[:] = [opened, math.inf]
    await asyncio.sleep(seconds)
    while result.completed < min_completed and time.monotonic() - opened < max_seconds:
        await asyncio.sleep(0.1)
    # Close the window: answers arriving later still finish (and their errors count) but are
    # not throughput, and no worker sends another request.
    window[1] = stop_at[0] = time.monotonic()
    result.seconds = window[1] - opened
    result.loadgen_cpu_s = time.process_time() - own0
    result.server_cpu_s = tree_cpu(procs) - cpu0
    result.pg_cpu_s = tree_cpu(pg_procs) - pg0
    result.pg_sessions = pg_sessions(pg, server.db_name) - sessions0
    # Let the requests in flight finish (their errors count) before the next workload.
    await asyncio.gather(*tasks)
    for c in clients:
        await c.close()
    return result


def connection_spread(procs: list[psutil.Process], base_url: str) -> str:
    """How the kernel dealt the clients' connections to uvicorn's workers (they share one
    listening socket): an uneven split makes one worker's requests slower for the whole window."""
    port = int(base_url.rsplit(":", 1)[1].split("/")[0])
    counts = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            n = sum(
                1
                for c in p.net_connections(kind="tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
            )
            if n:
                counts.append(n)
    return "/".join(str(n) for n in sorted(counts, reverse=True)) or "-"


def pg_sessions(pg: PostgreSQL, database: str) -> int:
    """Sessions ever opened on the database (PostgreSQL 14+): new connections during a window."""
    rows = pg.admin(f"SELECT sessions FROM pg_stat_database WHERE datname = '{database}'")
    return int(rows[0][0]) if rows else 0


async def measure(server: Server, args: argparse.Namespace, pg: PostgreSQL) -> dict:
    memory = Memory(server.pid)
    memory.sample(pss=True)
    idle_rss, idle_pss = memory.rss_peak, memory.pss_peak
    sampler = asyncio.create_task(memory.run())
    workloads = [(w, c) for w in ("logmetric", "logbatch") for c in args.concurrency]
    workloads.append(("search", min(args.concurrency)))
    if args.workloads:
        workloads = [(w, c) for w, c in workloads if w in args.workloads]
    try:
        run_ids = await setup_runs(
            server.base_url, args.timeout, max(args.concurrency), args.experiments
        )
        results = []
        for workload, concurrency in workloads:
            results.append(
                await load(
                    server,
                    workload,
                    concurrency,
                    run_ids,
                    args.warmup,
                    args.seconds,
                    args.timeout,
                    pg,
                    args.min_completed,
                    args.max_seconds,
                )
            )
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    memory.sample(pss=True)
    return {
        "results": results,
        "rss_peak": memory.rss_peak,
        "pss_peak": memory.pss_peak if memory.pss_ok else None,
        "rss_idle": idle_rss,
        "pss_idle": idle_pss if memory.pss_ok else None,
    }


# ------------------------------------------------------------------------------ report ----

# Per workload, per round: the figures the summary gives the median and spread of.
FIGURES = ("rps", "p50_s", "p95_s", "p99_s", "server_cpu_ms_per_req", "postgres_cpu_ms_per_req",
           "new_db_sessions_per_s", "loadgen_cpu_pct")
# The least noisy on a shared machine (CPU time is not stretched by another tenant's work the
# way wall-clock rates are): printed for every round.
PER_ROUND = ("rps", "p99_s", "server_cpu_ms_per_req", "postgres_cpu_ms_per_req")


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.{digits}f}"


def figures(r: Result) -> dict[str, float]:
    n = max(1, r.completed)
    return {
        "rps": r.rps,
        "p50_s": r.quantile(0.50),
        "p95_s": r.quantile(0.95),
        "p99_s": r.quantile(0.99),
        "server_cpu_ms_per_req": 1000 * r.server_cpu_s / n,
        "postgres_cpu_ms_per_req": 1000 * r.pg_cpu_s / n,
        "new_db_sessions_per_s": r.pg_sessions / r.seconds,
        "loadgen_cpu_pct": 100 * r.loadgen_cpu_s / r.seconds,
        "window_s": r.seconds,
        "errors": float(r.errors),
    }


@dataclass
class Round:
    """One configuration's measurement in one round: a fresh server on a fresh database."""

    label: str
    number: int
    description: str
    startup_s: float
    figures: dict[str, dict[str, float]]  # workload name -> figure -> value
    spreads: dict[str, str]
    errors: int
    error_samples: list[str]
    rss_idle: float
    rss_peak: float
    pss_peak: float | None


def to_round(label: str, number: int, server: Server, data: dict) -> Round:
    results = data["results"]
    return Round(
        label=label, number=number, description=server.description,
        startup_s=server.startup_s,
        figures={r.name: figures(r) for r in results},
        spreads={r.name: r.spread for r in results},
        errors=sum(r.errors for r in results),
        error_samples=[f"{r.name}: {e}" for r in results for e in r.error_samples],
        rss_idle=data["rss_idle"], rss_peak=data["rss_peak"], pss_peak=data["pss_peak"])


def report_round(rnd: Round) -> None:
    p = f"{rnd.label}_r{rnd.number}"
    for name, values in rnd.figures.items():
        for figure in PER_ROUND:
            print(f"{p}_{name}_{figure}: {fmt(values[figure], 3 if figure.endswith('_s') else 1)}")
        print(f"# {p}_{name}: window {fmt(values['window_s'], 1)} s, "
              f"connections per worker {rnd.spreads[name]}")
    print(f"{p}_rss_peak_mib: {fmt(rnd.rss_peak / 1024 / 1024, 0)}")
    print(f"{p}_errors: {rnd.errors}")
    for sample in rnd.error_samples[:3]:
        print(f"# {p} error: {sample}")
    sys.stdout.flush()


def median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def spread(values: list[float]) -> str:
    """min-max, and the interquartile range when there are four rounds or more."""
    clean = sorted(v for v in values if not math.isnan(v))
    if not clean:
        return "nan"
    digits = 3 if max(clean) < 10 else 1
    text = f"{fmt(clean[0], digits)}-{fmt(clean[-1], digits)}"
    if len(clean) >= 4:
        q1, _, q3 = statistics.quantiles(clean, n=4, method="inclusive")
        text += f" (IQR {fmt(q1, digits)}-{fmt(q3, digits)})"
    return text


def bootstrap_ci(values: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median of `values` (the rounds resampled
    with replacement), seeded so a report is reproducible from its rounds."""
    clean = [v for v in values if not math.isnan(v)]
    if len(clean) < 2:
        return math.nan, math.nan
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(clean, k=len(clean)))
                     for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def clear_of_one(lo: float, hi: float) -> bool:
    """A ratio differs beyond the noise when its 95% interval excludes 1.0."""
    return not math.isnan(lo) and (lo > 1.0 or hi < 1.0)


def report_config(label: str, rounds: list[Round]) -> None:
    """Each figure as the median over rounds, with its spread."""
    print(f"{label}_config: {rounds[0].description}")
    print(f"{label}_rounds: {len(rounds)}")
    print(f"{label}_startup_s: {fmt(median([r.startup_s for r in rounds]), 1)}")
    for name in rounds[0].figures:
        for figure in FIGURES:
            values = [r.figures[name][figure] for r in rounds]
            digits = 3 if figure.endswith("_s") else 1
            print(f"{label}_{name}_{figure}: {fmt(median(values), digits)}")
            print(f"{label}_{name}_{figure}_spread: {spread(values)}")
        windows = [r.figures[name]["window_s"] for r in rounds]
        print(f"{label}_{name}_window_s: {fmt(median(windows), 1)}")
        print(f"{label}_{name}_errors: {sum(int(r.figures[name]['errors']) for r in rounds)}")
    mib = 1024 * 1024
    print(f"{label}_rss_idle_mib: {fmt(median([r.rss_idle for r in rounds]) / mib, 0)}")
    print(f"{label}_rss_peak_mib: {fmt(median([r.rss_peak for r in rounds]) / mib, 0)}")
    print(f"{label}_rss_peak_mib_spread: {spread([r.rss_peak / mib for r in rounds])}")
    if all(r.pss_peak is not None for r in rounds):
        print(f"{label}_pss_peak_mib: {fmt(median([r.pss_peak for r in rounds]) / mib, 0)}")
    print(f"{label}_errors: {sum(r.errors for r in rounds)}")


def paired(a: list[Round], b: list[Round], name: str, figure: str) -> list[float]:
    """a/b per round: the configurations ran back to back in each round, so a round's ratio
    cancels what the machine did in that round."""
    out = []
    for x, y in zip(a, b, strict=True):
        den = y.figures.get(name, {}).get(figure, math.nan)
        num = x.figures.get(name, {}).get(figure, math.nan)
        out.append(num / den if den and not math.isnan(den) else math.nan)
    return out


def report_ratio(name: str, ratios: list[float], a: list[float], b: list[float]) -> float:
    """The median ratio, its rounds, its bootstrap interval, and whether it is clear of the
    noise: the interval of the median excludes 1.0."""
    mid = median(ratios)
    lo, hi = bootstrap_ci(ratios)
    print(f"{name}: {fmt(mid)}")
    print(f"{name}_rounds: {' '.join(fmt(r) for r in ratios)}")
    print(f"{name}_ci95: {fmt(lo)}-{fmt(hi)}")
    overlap = bool(a and b) and min(a) <= max(b) and min(b) <= max(a)
    clear = clear_of_one(lo, hi)
    print(f"{name}_clear: {'yes' if clear else 'no'} (the 95% interval of the median ratio "
          f"{'excludes' if clear else 'includes'} 1.0; the two sides' ranges "
          f"{'overlap' if overlap else 'do not overlap'})")
    return mid


def sweep_table(key: str, labels: list[str], values: list[str], rounds: dict[str, list[Round]],
                names: list[str]) -> None:
    """A Markdown table per workload: one row per value of the swept setting."""
    for name in names:
        print(f"# sweep {key}, {name} (median over {len(rounds[labels[0]])} rounds, "
              "min-max in brackets)")
        print(f"| {key} | req/s | p99 s | server CPU ms/req | PostgreSQL CPU ms/req | errors "
              f"| req/s ÷ {values[0]}'s, paired by round (95% interval) |")
        print("|---|---|---|---|---|---|---|")
        first = rounds[labels[0]]
        for label, value in zip(labels, values, strict=True):
            rs = rounds[label]

            def cell(figure: str, digits: int | None, rs=rs, name=name) -> str:
                """median [min-max], all three to the same digits (None: 2 below 10, else 1)."""
                vals = [v for v in (r.figures[name][figure] for r in rs) if not math.isnan(v)]
                if not vals:
                    return "nan"
                mid = median(vals)
                if digits is None:
                    digits = 2 if mid < 10 else 1
                return f"{fmt(mid, digits)} [{fmt(min(vals), digits)}-{fmt(max(vals), digits)}]"

            # The same round's configurations ran back to back, so a per-round ratio cancels
            # what the machine did in that round.
            ratios = paired(rs, first, name, "rps")
            lo, hi = bootstrap_ci(ratios)
            clear = clear_of_one(lo, hi)
            versus = ("1" if label == labels[0] else
                      f"{fmt(median(ratios))} ({fmt(lo)}-{fmt(hi)}{', clear' if clear else ''})")
            cpu = f"{cell('server_cpu_ms_per_req', None)} | {cell('postgres_cpu_ms_per_req', None)}"
            print(f"| {value} | {cell('rps', 1)} | {cell('p99_s', 3)} | {cpu} | "
                  f"{sum(r.errors for r in rs)} | {versus} |")


def set_value(values: dict, assignment: str) -> None:
    """`a.b.c=VALUE` (VALUE parsed as YAML), like `helm --set`."""
    key, _, raw = assignment.partition("=")
    node = values
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(raw) if raw else ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30, help="measured window per workload")
    ap.add_argument("--warmup", type=float, default=5, help="unmeasured load before each window")
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds: each configuration once per round, A B A B ... "
                         "(default 5)")
    ap.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="comma-separated client counts (default 8,32; with --sweep 8,16,32); search runs "
             "at the smallest",
    )
    ap.add_argument("--only", choices=("chart", "baseline"), help="measure one side only")
    ap.add_argument(
        "--sweep",
        metavar="KEY=V1,V2,...",
        help="compare the chart with each value of one setting (as --set), no baseline; "
             "prints a table per workload",
    )
    ap.add_argument(
        "--workloads",
        type=lambda s: s.split(","),
        help="subset of logmetric,logbatch,search (default: all)",
    )
    ap.add_argument(
        "--min-completed",
        type=int,
        default=20,
        help="extend a window until this many answers arrived in it (default 20)",
    )
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=120,
        help="longest a window is extended to (default 120); its real length is printed",
    )
    ap.add_argument(
        "--max-loadavg",
        type=float,
        default=0.5 * (os.cpu_count() or 1),
        help="refuse to start when the 1-minute load average is above this (default: half the "
             "CPUs): another tenant's work moves every figure",
    )
    ap.add_argument("--timeout", type=float, default=30, help="per-request timeout (an error)")
    ap.add_argument("--experiments", type=int, default=20, help="experiments the search returns")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="chart value for an experiment (as helm --set; default: the chart's defaults)",
    )
    ap.add_argument(
        "--baseline-arg", action="append", default=[], help="extra `mlflow server` argument"
    )
    ap.add_argument(
        "--helm",
        default=os.environ.get("HELM4_BIN", str(REPO_ROOT / ".tools" / "helm4" / "helm")),
    )
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be 1 or more")
    if args.sweep and (args.only or "=" not in args.sweep):
        ap.error("--sweep KEY=V1,V2,... (and without --only)")
    if args.concurrency is None:
        args.concurrency = [8, 16, 32] if args.sweep else [8, 32]
    return args


@dataclass
class Config:
    label: str
    kind: str  # chart | baseline
    values: dict = field(default_factory=dict)


def configs_of(args: argparse.Namespace, values: dict) -> list[Config]:
    if args.sweep:
        key, _, raw = args.sweep.partition("=")
        out = []
        for value in raw.split(","):
            mine = json.loads(json.dumps(values))
            set_value(mine, f"{key}={value}")
            label = re.sub(r"\W", "_", f"{key.rsplit('.', 1)[-1]}_{value}")
            out.append(Config(label, "chart", mine))
        return out
    both = [Config("chart", "chart", values), Config("baseline", "baseline")]
    return [c for c in both if not args.only or c.kind == args.only]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    values: dict = {}
    for assignment in args.sets:
        set_value(values, assignment)

    load1 = os.getloadavg()[0]
    print(f"machine_cpus: {os.cpu_count()}")
    print(f"machine_loadavg_at_start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if load1 > args.max_loadavg:
        print(f"refused: the 1-minute load average is {load1:.2f}, above --max-loadavg "
              f"{args.max_loadavg:.2f}: something else is using this machine, and its work would "
              "move every figure. Wait until it is quiet, or raise --max-loadavg to measure "
              "anyway.")
        return 3

    import mlflow

    print(f"python: {platform.python_version()}")
    print(f"mlflow_version: {mlflow.__version__}")
    print(f"seconds: {fmt(args.seconds, 1)}")
    print(f"warmup_s: {fmt(args.warmup, 1)}")
    print(f"rounds: {args.rounds}")
    print(f"chart_values: {yaml.safe_dump(values, default_flow_style=True).strip()}")
    driver = chart_driver(args.helm, values)
    print(f"database_driver: {driver} (every configuration)")
    print("memory_measure: peak RSS of the server's process tree (parent + workers)")
    configs = configs_of(args, values)
    print(f"order: {' '.join(c.label for c in configs)}, each round (a fresh server on a fresh "
          "database each time)")
    sys.stdout.flush()

    workdir = Path(tempfile.mkdtemp(prefix="mlflow-bench-"))
    workdir.chmod(0o755)
    pg = PostgreSQL().start()
    rounds: dict[str, list[Round]] = {c.label: [] for c in configs}
    try:
        for number in range(1, args.rounds + 1):
            for config in configs:
                if config.kind == "chart":
                    server = start_chart(pg, args.helm, workdir / f"{config.label}-r{number}",
                                         config.values)
                else:
                    server = start_baseline(pg, workdir / f"baseline-r{number}", driver,
                                            args.baseline_arg)
                try:
                    data = asyncio.run(measure(server, args, pg))
                finally:
                    server.stop()
                rnd = to_round(config.label, number, server, data)
                rounds[config.label].append(rnd)
                report_round(rnd)
    finally:
        pg.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    for config in configs:
        report_config(config.label, rounds[config.label])
    loadgen = max(r.figures[n]["loadgen_cpu_pct"] for rs in rounds.values() for r in rs
                  for n in r.figures)
    print(f"loadgen_cpu_pct_max: {fmt(loadgen, 1)}")
    if loadgen > 50:
        print("# warning: the load generator used more than half a CPU in some window; it "
              "competes with the server for the machine's cores")
    top = max(args.concurrency)
    names = list(rounds[configs[0].label][0].figures)
    if args.sweep:
        key = args.sweep.partition("=")[0]
        sweep_table(key, [c.label for c in configs], args.sweep.partition("=")[2].split(","),
                    rounds, names)
        print(f"errors: {sum(r.errors for rs in rounds.values() for r in rs)}")
        return 0
    if "chart" not in rounds or "baseline" not in rounds:
        print(f"errors: {sum(r.errors for rs in rounds.values() for r in rs)}")
        return 0
    c, b = rounds["chart"], rounds["baseline"]

    def side(rs: list[Round], name: str, figure: str) -> list[float]:
        return [r.figures.get(name, {}).get(figure, math.nan) for r in rs]

    lines = {}
    for workload in ("logmetric", "logbatch"):
        name = f"{workload}_c{top}"
        for what, figure in (("throughput", "rps"), ("p99", "p99_s")):
            lines[f"{name}_{what}_ratio"] = report_ratio(
                f"{name}_{what}_ratio", paired(c, b, name, figure), side(c, name, figure),
                side(b, name, figure))
        for figure in ("server_cpu_ms_per_req", "postgres_cpu_ms_per_req"):
            report_ratio(f"{name}_{figure}_ratio", paired(c, b, name, figure),
                         side(c, name, figure), side(b, name, figure))
    chart_errors = sum(r.errors for r in c)
    print(f"errors: {chart_errors}")
    mem = report_ratio("memory_ratio", [x.rss_peak / y.rss_peak for x, y in zip(c, b, strict=True)],
                       [x.rss_peak for x in c], [y.rss_peak for y in b])
    if all(x.pss_peak and y.pss_peak for x, y in zip(c, b, strict=True)):
        print(f"memory_pss_ratio: "
              f"{fmt(median([x.pss_peak / y.pss_peak for x, y in zip(c, b, strict=True)]))}")
    targets = {
        "logmetric throughput >= 1.3": lines[f"logmetric_c{top}_throughput_ratio"] >= 1.3,
        "logmetric p99 <= 0.8": lines[f"logmetric_c{top}_p99_ratio"] <= 0.8,
        "logbatch throughput >= 1.0": lines[f"logbatch_c{top}_throughput_ratio"] >= 1.0,
        "logbatch p99 <= 0.8": lines[f"logbatch_c{top}_p99_ratio"] <= 0.8,
        "errors == 0": chart_errors == 0,
        "memory <= 0.85": mem <= 0.85,
    }
    print(f"targets_met: {sum(targets.values())}/{len(targets)} (on the medians over rounds)")
    for name, ok in targets.items():
        if not ok:
            print(f"# target missed: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
