"""Latency and throughput of the Kizuna API against Feast's own feature server, and batch
scoring's rate.

Uses a Kizuna home with four champions (or builds one with ``kizuna run --no-serve``),
starts ``kizuna serve`` and ``feast serve`` (one worker each) on the same materialized
online store, and drives each from separate client processes on localhost, every client
one keep-alive connection sending requests back to back (benchmarks/load.py). Customers are
drawn from the home's known customers with the same seed for both servers. Every figure is
the median over ``--repeat`` runs; the Feast figures, measured in the same run, are the
baseline of the ratios. Then it times ``kizuna score --out`` over every customer of the home.

Clients and servers share the machine's cores, so the throughput with 8 clients is what
the server delivers while 8 client processes compete with it for CPU.

The default home (data/bench-serving/home, its MLflow store in data/bench-serving/mlruns)
is built on first use (~3 minutes at 10,000 customers) and reused; its decision log is
emptied before each run so the offers' contact caps start alike. When a goal is missed, or
with ``--profile``, py-spy (``.venv/bin/pip install py-spy``; not a project dependency)
samples the server under load and ``kizuna score``, to show where the time goes.

    .venv/bin/python benchmarks/serving.py
    .venv/bin/python benchmarks/serving.py --repeat 3 --duration 10 --json serving.json
    .venv/bin/python benchmarks/serving.py --home /path/home --mlruns /path/mlruns --profile
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from load import Result, Target, drive

from kizuna.features.contracts import CONSENT_CHANNELS
from kizuna.features.store import REPO_DIR
from kizuna.serving.keys import KeyStore
from kizuna.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Written into a home this benchmark built, so only that home's decision log is reset.
BUILT_MARKER = ".built-by-benchmarks-serving"
SERVICE = "churn_v1"
# Frames every sample passes through on its way in (CLI, uvicorn's loop): not informative.
LAUNCHER = (
    "<module> (<string>",
    "Typer",
    "TyperGroup",
    "Command.",
    "Context.invoke",
    "_main (typer",
    "get_callback",
    "serve_command",
    "run (uvicorn/main",
    "Server.run",
    "asyncio_run",
    "Runner.run",
    "BaseEventLoop.run",
    "Thread._bootstrap",
    "WorkerThread.run",
    "Context.run",
)


@dataclass(frozen=True)
class Scenario:
    server: str  # "kizuna" or "feast"
    request: str
    customers: int
    clients: int

    @property
    def name(self) -> str:
        return f"{self.server} | {self.request} | {self.customers} | {self.clients}"


def scenarios(clients: int) -> list[Scenario]:
    return [
        Scenario("kizuna", "POST /v1/scores", 1, 1),
        Scenario("kizuna", "POST /v1/scores", 1, clients),
        Scenario("kizuna", "POST /v1/scores", 100, 1),
        Scenario("kizuna", "POST /v1/offers/next-best", 1, 1),
        Scenario("kizuna", "POST /v1/offers/next-best", 1, clients),
        Scenario("feast", f"POST /get-online-features ({SERVICE})", 1, 1),
        Scenario("feast", f"POST /get-online-features ({SERVICE})", 1, clients),
        Scenario("feast", f"POST /get-online-features ({SERVICE})", 100, 1),
    ]


# ---- bodies (module level: the forked clients call them) ----------------------------


def scores_body(ids: list[str]) -> bytes:
    return json.dumps({"customer_ids": ids}).encode()


def offers_body(ids: list[str]) -> bytes:
    channel = CONSENT_CHANNELS[zlib.crc32(ids[0].encode()) % len(CONSENT_CHANNELS)]
    return json.dumps({"customer_id": ids[0], "channel": channel}).encode()


REQUEST_TIME = datetime.now(UTC).timestamp()


def feast_body(ids: list[str]) -> bytes:
    # churn_v1 holds an on-demand view fed by the request's ``request_time`` (Unix seconds).
    entities = {"customer_id": ids, "request_time": [REQUEST_TIME] * len(ids)}
    return json.dumps({"feature_service": SERVICE, "entities": entities}).encode()


# ---- the home -----------------------------------------------------------------------


def champions_of(settings: Settings) -> dict[str, str | None]:
    from kizuna.training.models import MODEL_NAMES
    from kizuna.training.registry import champion_version

    return {name: champion_version(settings, name) for name in MODEL_NAMES}


def kizuna_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "KIZUNA_HOME": str(settings.home_dir),
        "KIZUNA_MLRUNS": str(settings.mlruns_dir),
    }


def kizuna_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "from kizuna.cli import app; app()", *args]


def ensure_home(settings: Settings, customers: int) -> None:
    """Build the home with ``kizuna run --no-serve`` unless it already has champions."""
    home = settings.home_dir
    if home.exists() and any(home.iterdir()):
        if None not in champions_of(settings).values():
            return
        raise SystemExit(
            f"{home} holds data but {settings.mlruns_dir} has no four champions; remove "
            "both (or pass an empty --home) and the benchmark builds them"
        )
    print(f"building {home} with `kizuna run --no-serve --customers {customers}` (~3 min)")
    home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log = home.parent / "build.log"
    with log.open("w") as out:
        proc = subprocess.run(
            kizuna_argv("run", "--no-serve", "--customers", str(customers)),
            env=kizuna_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"kizuna run failed; see {log}:\n{log.read_text()[-3000:]}")
    (home / BUILT_MARKER).write_text("built by benchmarks/serving.py\n")
    print(f"built in {time.perf_counter() - started:.0f} s (log: {log})")


def known_customers(settings: Settings) -> list[str]:
    """Every customer of the feature snapshots (the online store holds each one's latest)."""
    import duckdb

    from kizuna.features.compute import snapshots_dir

    path = snapshots_dir(settings) / "customer_purchases.parquet"
    rows = duckdb.connect().execute(
        f"SELECT DISTINCT customer_id FROM read_parquet('{path}') ORDER BY 1"
    )
    return [r[0] for r in rows.fetchall()]


def reset_decisions(settings: Settings) -> int:
    """Empty the decision log of a home this benchmark built, so each run starts from the
    same contact history; returns the decisions logged before the run (kept otherwise)."""
    path = settings.home_dir / "serving" / "decisions.jsonl"
    if not path.exists():
        return 0
    if (settings.home_dir / BUILT_MARKER).exists():
        path.unlink()
        (settings.home_dir / "serving" / "outcomes.jsonl").unlink(missing_ok=True)
        return 0
    with path.open() as lines:
        return sum(1 for _ in lines)


# ---- servers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        """Stop the server and its workers (its own process group)."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


def start_server(name: str, argv: list[str], env: dict[str, str], port: int, logs: Path) -> Server:
    log = logs / f"{name}.log"
    with log.open("w") as out:
        # A session of its own: Ctrl-C reaches only this script, which then stops it.
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(name, port, process, log)


def wait_ready(server: Server, path: str, seconds: float = 300, reasons: bool = False) -> None:
    """Until ``path`` answers 200 (and, with ``reasons``, until /readyz says every
    customer's reasons are filled in, so the figures are of the steady state)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=2) as r:
                if r.status == 200 and (not reasons or json.load(r)["reasons_ready"] >= 1.0):
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"{server.name} was not ready in {seconds:.0f} s; see {server.log}")


@contextmanager
def servers(settings: Settings, workers: int) -> Iterator[tuple[Server, Server]]:
    """``kizuna serve`` and ``feast serve`` on free ports, stopped however the block ends."""
    logs = Path(tempfile.mkdtemp(prefix="kizuna-bench-serving-"))
    env = kizuna_env(settings)
    started: list[Server] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        port = free_port()
        kizuna = start_server(
            "kizuna",
            kizuna_argv("serve", "--port", str(port), "--workers", str(workers)),
            env,
            port,
            logs,
        )
        started.append(kizuna)
        port = free_port()
        # feature_store.yaml's ${KIZUNA_HOME} is expanded by Feast from the environment.
        # One worker like Kizuna's; --max-requests 0 keeps gunicorn from recycling the
        # worker every 1,000 requests (its default), which would time Feast's restarts.
        feast = start_server(
            "feast",
            [
                str(BIN / "feast"),
                "-c",
                str(REPO_DIR),
                "serve",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--no-access-log",
                "--workers",
                str(workers),
                "--max-requests",
                "0",
            ],
            env,
            port,
            logs,
        )
        started.append(feast)
        wait_ready(kizuna, "/readyz", reasons=True)
        wait_ready(feast, "/health")
        yield kizuna, feast
    finally:
        for server in started:
            server.stop()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(logs, ignore_errors=True)


# ---- measuring ----------------------------------------------------------------------


def target_of(scenario: Scenario, kizuna: Server, feast: Server, key: str) -> Target:
    if scenario.server == "feast":
        return Target(feast.port, "/get-online-features", feast_body, scenario.customers)
    auth = (("Authorization", f"Bearer {key}"),)
    if "offers" in scenario.request:
        return Target(kizuna.port, "/v1/offers/next-best", offers_body, 1, auth)
    return Target(kizuna.port, "/v1/scores", scores_body, scenario.customers, auth)


def measure(target: Target, customers: list[str], clients: int, args) -> Result:
    result = drive(target, customers, clients, args.warmup, args.duration, args.seed)
    if result.errors:
        raise SystemExit(
            f"{result.errors} failed requests to :{target.port}{target.path}: {result.first_error}"
        )
    return result


def batch_score(settings: Settings, out_dir: Path) -> dict[str, float]:
    """Time ``kizuna score --out`` over every customer of the home (a fresh process)."""
    import pyarrow.parquet as pq

    out = out_dir / "scores.parquet"
    started = time.perf_counter()
    proc = subprocess.run(
        kizuna_argv("score", "--out", str(out)),
        env=kizuna_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"kizuna score failed:\n{proc.stderr[-3000:]}")
    rows = pq.read_metadata(out).num_rows
    # The command's own timing (after its imports), when its last line reports one.
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    found = re.search(r" in ([\d.]+) s\s*$", last)
    own = float(found.group(1)) if found else float("nan")
    return {"customers": rows, "seconds": seconds, "command_seconds": own}


def summarize_stacks(raw: Path, top: int) -> list[str]:
    """py-spy's raw stacks as the functions and packages holding the most samples."""
    own, inclusive, packages, total = Counter(), Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith(("thread ", "process "))]
        n = int(count)
        total += n
        own[frames[-1]] += n
        # "func (package/module.py:line)": the first folder names the library.
        where = frames[-1].rpartition("(")[2]
        packages[where.split("/")[0] if "/" in where else where.split(":")[0]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return ["no samples"]
    lines = [f"{total:,} samples; own time by package:"]
    lines += [f"  {100 * n / total:5.1f}%  {p}" for p, n in packages.most_common(top)]
    lines.append("own time by function:")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("including callees (below the launcher's frames):")
    nested = [(f, n) for f, n in inclusive.most_common() if not f.startswith(LAUNCHER)]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in nested[:top]]
    return lines


def py_spy(argv: list[str], raw: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``py-spy record`` (pip-installed into the venv, not a project dependency)."""
    spy = BIN / "py-spy"
    if not spy.exists():
        raise FileNotFoundError(f"{spy} is missing: `.venv/bin/pip install py-spy` to profile")
    return subprocess.Popen(
        [str(spy), "record", "--format", "raw", "--output", str(raw), *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def profile_server(
    kizuna: Server, target: Target, clients: int, customers: list[str], args
) -> list[str]:
    """Where the Kizuna server's GIL goes under ``clients`` clients of ``target``.

    With one worker process the GIL bounds throughput, so only samples of the thread
    holding it count (``--gil``); "Runner.run" is uvloop's own C code (parsing, sockets).
    """
    folder = Path(tempfile.mkdtemp(prefix="kizuna-spy-"))
    raw = folder / "stacks.txt"
    seconds = max(5, int(args.duration))
    try:
        argv = ["--pid", str(kizuna.process.pid), "--duration", str(seconds), "--rate", "500"]
        spy = py_spy([*argv, "--gil", "--threads"], raw)
        time.sleep(1)
        result = drive(target, customers, clients, 0.5, seconds, args.seed)
        _, spy_err = spy.communicate(timeout=60)
        if not raw.exists():
            return [f"no profile: py-spy failed: {spy_err.strip()[-500:]}"]
        head = (
            f"{target.path}, {target.customers_per_request} customer(s), {clients} client(s) "
            f"({result.requests_per_second:,.0f} requests/s while sampled), {seconds} s at "
            "500 samples/s of the thread holding the GIL:"
        )
        return [head, *summarize_stacks(raw, args.top)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def profile_batch(settings: Settings, args) -> list[str]:
    """Where ``kizuna score --out`` spends its time (every thread, idle waits left out)."""
    folder = Path(tempfile.mkdtemp(prefix="kizuna-spy-"))
    raw = folder / "stacks.txt"
    try:
        argv = ["--rate", "200", "--"]
        argv += kizuna_argv("score", "--out", str(folder / "scores.parquet"))
        spy = py_spy(argv, raw, kizuna_env(settings))
        _, spy_err = spy.communicate(timeout=1800)
        if not raw.exists():
            return [f"no profile: py-spy failed: {spy_err.strip()[-500:]}"]
        return ["kizuna score --out, 200 samples/s:", *summarize_stacks(raw, args.top)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def code_under_test() -> str:
    """The commit measured, and which tracked files differ from it (others may be editing)."""

    def git(*argv: str) -> str:
        proc = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("diff", "--name-only", "HEAD").split()
    return f"commit {commit}" + (
        f" with uncommitted changes to {', '.join(changed)}" if changed else ""
    )


# ---- report -------------------------------------------------------------------------


def median_result(results: list[Result]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(r.percentile_ms(50) for r in results),
        "p99_ms": statistics.median(r.percentile_ms(99) for r in results),
        "requests_per_second": statistics.median(r.requests_per_second for r in results),
        "requests_measured": statistics.median(len(r.latencies) for r in results),
    }


def goals(figures: dict[str, dict[str, float]], clients: int, batch: dict | None) -> list[tuple]:
    """(goal, measured, met) for each goal of the issue; met is None when not shown."""
    one = figures[Scenario("kizuna", "POST /v1/scores", 1, 1).name]
    many = figures[Scenario("kizuna", "POST /v1/scores", 1, clients).name]
    hundred = figures[Scenario("kizuna", "POST /v1/scores", 100, 1).name]
    feast = figures[Scenario("feast", f"POST /get-online-features ({SERVICE})", 1, clients).name]
    ratio = many["requests_per_second"] / feast["requests_per_second"]
    met = [
        (
            "1 customer's scores, 1 client: p50 ≤ 1.5 ms",
            f"{one['p50_ms']:.2f} ms",
            one["p50_ms"] <= 1.5,
        ),
        (
            f"{clients} clients: ≥ 1,000 requests/s",
            f"{many['requests_per_second']:,.0f} /s",
            many["requests_per_second"] >= 1000,
        ),
        (f"{clients} clients: p99 ≤ 10 ms", f"{many['p99_ms']:.2f} ms", many["p99_ms"] <= 10),
        (
            f"{clients} clients: ≥ 5x feast serve's throughput",
            f"{ratio:.1f}x",
            ratio >= 5,
        ),
        (
            "100 customers, 1 client: p50 ≤ 40 ms",
            f"{hundred['p50_ms']:.2f} ms",
            hundred["p50_ms"] <= 40,
        ),
    ]
    if batch is not None:
        rate = batch["customers"] / batch["seconds"]
        met.append(
            (
                "batch: 1,000,000 customers in < 120 s (≥ 8,334 customers/s)",
                f"{rate:,.0f} customers/s at {batch['customers']:,} customers",
                None,  # only measured at the home's size; not claimed for a million
            )
        )
    return met


def print_report(figures, clients: int, batch: dict, args, home: Settings) -> dict:
    rows = [
        "| server | request | customers per request | clients | p50 | p99 | requests/s "
        "| customers/s | Kizuna / feast (requests/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scenarios(clients):
        f = figures[s.name]
        ratio = ""
        if s.server == "kizuna" and "scores" in s.request:
            base = figures[
                Scenario(
                    "feast", f"POST /get-online-features ({SERVICE})", s.customers, s.clients
                ).name
            ]
            ratio = f"{f['requests_per_second'] / base['requests_per_second']:.1f}x"
        rows.append(
            f"| {s.server} | {s.request} | {s.customers} | {s.clients} | {f['p50_ms']:.2f} ms "
            f"| {f['p99_ms']:.2f} ms | {f['requests_per_second']:,.0f} "
            f"| {f['requests_per_second'] * s.customers:,.0f} | {ratio} |"
        )
    print("\n".join(rows))
    rate = batch["customers"] / batch["seconds"]
    print(
        f"\nbatch: `kizuna score --out scores.parquet` wrote {batch['customers']:,} customers "
        f"in {batch['seconds']:.1f} s wall, process start and model loading included "
        f"({rate:,.0f} customers/s); the command reports {batch['command_seconds']:.1f} s after "
        f"its imports ({batch['customers'] / batch['command_seconds']:,.0f} customers/s). At "
        "this size fixed costs (imports, loading four models) weigh heavily; this is not a "
        "measurement at 1,000,000 customers"
    )
    met = goals(figures, clients, batch)
    print("\n| goal | measured | met |\n|---|---|---|")
    for goal, measured, ok in met:
        verdict = (
            "not shown (measured at this home's size only)"
            if ok is None
            else ("met" if ok else "NOT met")
        )
        print(f"| {goal} | {measured} | {verdict} |")
    print(
        f"\nmedians over {args.repeat} run(s); each measurement {args.duration:g} s after "
        f"{args.warmup:g} s of warm-up; one server worker each; {os.cpu_count()} CPUs shared by "
        f"servers and clients; home {home.home_dir}; {code_under_test()}"
    )
    return {
        "scenarios": [{**vars(s), **figures[s.name]} for s in scenarios(clients)],
        "batch": {**batch, "customers_per_second": rate},
        "goals": [{"goal": g, "measured": m, "met": ok} for g, m, ok in met],
        "code": code_under_test(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / "data/bench-serving/home")
    parser.add_argument("--mlruns", type=Path, default=ROOT / "data/bench-serving/mlruns")
    parser.add_argument("--customers", type=int, default=10_000, help="when building a home")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2, help="seconds before measuring")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client processes")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server")
    parser.add_argument("--repeat", type=int, default=1, help="runs; figures are medians")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the Kizuna server under load (also done when a latency goal is missed)",
    )
    parser.add_argument("--top", type=int, default=15, help="functions shown per profile list")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")

    settings = Settings(home=args.home, mlruns=args.mlruns)
    ensure_home(settings, args.customers)
    earlier = reset_decisions(settings)
    customers = known_customers(settings)
    key = KeyStore(settings).create(f"bench-serving-{time.time_ns()}", ("score", "offers"))
    print(f"{len(customers):,} customers in {settings.home_dir}")
    if earlier:
        print(f"the decision log already holds {earlier:,} decisions (kept: not a bench home)")

    results: dict[str, list[Result]] = {s.name: [] for s in scenarios(args.clients)}
    batches = []
    profile: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="kizuna-bench-score-"))
    try:
        with servers(settings, args.workers) as (kizuna, feast):
            for run in range(args.repeat):
                for s in scenarios(args.clients):
                    target = target_of(s, kizuna, feast, key)
                    result = measure(target, customers, s.clients, args)
                    results[s.name].append(result)
                    print(
                        f"run {run + 1}: {s.name}: p50 {result.percentile_ms(50):.2f} ms, "
                        f"p99 {result.percentile_ms(99):.2f} ms, "
                        f"{result.requests_per_second:,.0f} requests/s",
                        flush=True,
                    )
            figures = {name: median_result(r) for name, r in results.items()}
            many = Scenario("kizuna", "POST /v1/scores", 1, args.clients)
            slow = [g for g in goals(figures, args.clients, None) if g[2] is False]
            if (args.profile or slow) and not (BIN / "py-spy").exists():
                profile.append("no profile: `.venv/bin/pip install py-spy` to get one")
            elif args.profile or slow:
                offers = Scenario("kizuna", "POST /v1/offers/next-best", 1, 1)
                for scenario, clients in ((many, args.clients), (offers, 1)):
                    target = target_of(scenario, kizuna, feast, key)
                    profile += [*profile_server(kizuna, target, clients, customers, args), ""]
        for _ in range(args.repeat):
            batches.append(batch_score(settings, work))
        if (args.profile or slow) and (BIN / "py-spy").exists():
            profile += profile_batch(settings, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    batch = {k: statistics.median(b[k] for b in batches) for k in batches[0]}

    print()
    report = print_report(figures, args.clients, batch, args, settings)
    if profile:
        print("\nwhere Kizuna's time goes (py-spy):")
        print("\n".join(profile))
        report["profile"] = profile
    command = f".venv/bin/python benchmarks/serving.py {' '.join(sys.argv[1:])}".strip()
    print(f"\ncommand: {command}")
    if args.json:
        args.json.write_text(json.dumps({**report, "command": command}, indent=1, default=str))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
