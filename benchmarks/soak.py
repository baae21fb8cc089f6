"""Soak: minutes of mixed API and page traffic against one ``kizuna serve``, for errors,
latency drift and memory growth (issue 12).

Uses a Kizuna home with four champions (the one ``benchmarks/ui.py`` builds and reuses,
``data/bench-ui-N``, made with ``kizuna run --customers N --no-serve`` on first use, or
``--home``/``--mlruns``), starts ``kizuna serve`` on it (one process, the path a user
runs; its log goes to a file whose path is printed) and, once ``/readyz`` answers and the
page's warm-up is done, runs ``--clients`` client processes for ``--minutes``. Each client
sends requests back to back (closed loop, no think time) over two keep-alive ``httpx``
connections: one with an API key, one signed in to the page through its own form. Every
request is a random draw from this mix (weights in ``MIX``):

* ``POST /v1/scores``: 1 customer, and 50 customers;
* ``POST /v1/offers/next-best`` (e-mail, SMS or push, sometimes a budget), then half the
  time ``POST /v1/decisions/{id}/outcome`` for that decision;
* ``POST /v1/events``: 1 to 5 purchases and sessions of known customers, unique ids (they
  land in the lake and refresh those customers' features and scores behind the serving);
* ``GET /v1/lists/<list>``, each of the six lists (replenishment with a ``category`` from
  ``/v1/lists/replenishment/categories``), with random filters, sorts and pages, sometimes
  as CSV;
* ``GET /v1/kpis``;
* the page: the overview ``/ui``, ``/ui/lists/<list>`` with filters, the customer view
  ``/ui/customers/<id>``, the planner's form, and now and then a planner preview.

Every minute one line: requests so far, that minute's rate and p50/p99, the errors so far
by status (anything not 2xx, ``conn`` for a connection error or timeout) and the server
process's resident memory (``VmRSS`` of ``/proc/<pid>/status``). At the end: p50/p99 and
count per route and in total (client round trips on localhost, milliseconds), the RSS of
the first and last minutes and its growth from the end of minute 2 to the end (the start
of a server fills caches; after that it should be flat), and the events acknowledged (the
``accepted`` of the 202s) against those applied (``/readyz`` ``events.pending`` polled
until 0, no poisoned batch, and the soak's rows counted in the lake once the server has
stopped). Goals: 0 errors, flat memory. Exits 1 on any error, an
event not applied, or a server that died.

The soak adds its events and decisions to the home it runs on.

    .venv/bin/python benchmarks/soak.py                       # 10 minutes, 8 clients, 10k
    .venv/bin/python benchmarks/soak.py --minutes 1 --clients 8
    .venv/bin/python benchmarks/soak.py --home /path/home --mlruns /path/mlruns --minutes 30
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
from ui import build_home, free_port, serve, sign_in

from kizuna.features.contracts import CONSENT_CHANNELS
from kizuna.serving.keys import KeyStore
from kizuna.serving.lists import SPECS
from kizuna.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
LISTS = tuple(SPECS)
SCOPES = ("score", "offers", "events", "lists")
OUTCOMES = ("shown", "clicked", "redeemed", "ignored")
# What a client does on each turn, and how often (relative weights).
MIX = {
    "scores-1": 20,
    "scores-50": 8,
    "next-best": 15,
    "events": 10,
    "api-list": 15,
    "kpis": 4,
    "ui-overview": 4,
    "ui-list": 8,
    "ui-customer": 8,
    "ui-planner": 3,
    "ui-planner-preview": 1,
}
OUTCOME_SHARE = 0.5  # of the decisions, those whose outcome is reported
FLUSH_S = 0.5  # a client reports its finished requests to the main process this often
KEEP_ERRORS = 3  # examples kept per (route, status)


def rss_mb(pid: int) -> float | None:
    """The process's resident set (VmRSS) in MB, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) / 1024 if found else None


# -- what the clients draw from ---------------------------------------------------------
def population(api: httpx.Client) -> dict:
    """Known customers and the filters' values, from the API itself."""

    def rows(name: str) -> list[dict]:
        answer = api.get(f"/v1/lists/{name}", params={"limit": 100_000, "min_churn": 0})
        answer.raise_for_status()
        return answer.json()["customers"]

    buyers, newcomers = rows("top-value"), rows("never-converted")
    everyone = buyers + newcomers
    answer = api.get("/v1/lists/replenishment/categories")
    answer.raise_for_status()
    categories = [c["category"] for c in answer.json()]

    def values(column: str) -> list[str]:
        return sorted({r[column] for r in everyone if r.get(column)})

    return {
        "customers": sorted({r["customer_id"] for r in everyone}),
        "categories": categories,
        "segments": values("rfm_segment"),
        "tiers": values("loyalty_tier"),
        "countries": values("country"),
    }


def list_query(rng: random.Random, name: str, pop: dict, ui: bool) -> list[tuple[str, str]]:
    """Random filters, sort and page for a list (valid ones: every draw should be 2xx)."""
    q: list[tuple[str, str]] = []
    if name == "replenishment":
        q.append(("category", rng.choice(pop["categories"])))
    if name in ("due-to-repurchase", "replenishment") and rng.random() < 0.3:
        q.append(("due_within_days", str(rng.choice((7, 14, 30)))))
    draws = {
        "min_churn": lambda: [("min_churn", f"{rng.uniform(0.1, 0.8):.2f}")],
        "max_churn": lambda: [("max_churn", f"{rng.uniform(0.5, 1.0):.2f}")],
        "risk_band": lambda: [("risk_band", b) for b in rng.sample(("low", "medium", "high"), 2)],
        "min_value": lambda: [("min_value", str(rng.choice((10, 50, 200))))],
        "segment": lambda: [("segment", rng.choice(pop["segments"]))],
        "tier": lambda: [("tier", rng.choice(pop["tiers"]))],
        "country": lambda: [("country", rng.choice(pop["countries"]))],
        "channel": lambda: [("channel", rng.choice(CONSENT_CHANNELS))],
        "not_contacted_days": lambda: [("not_contacted_days", str(rng.choice((7, 30))))],
    }
    for what in rng.sample(sorted(draws), rng.choice((0, 0, 1, 1, 2))):
        plural = {"segment": "segments", "tier": "tiers", "country": "countries"}.get(what)
        if plural and not pop[plural]:
            continue
        q += draws[what]()
    if rng.random() < 0.4:
        q.append(("sort", rng.choice(SPECS[name].sortable)))
        q.append(("order", rng.choice(("asc", "desc"))))
    limit = rng.choice((25, 50, 100))
    q += [("limit", str(limit)), ("offset", str(limit * rng.choice((0, 0, 1, 2, 5))))]
    if not ui and rng.random() < 0.1:
        q.append(("format", "csv"))
    return q


class Turns:
    """One client's requests: ``run(kind)`` sends one (two for a decision and its
    outcome) and records (route, status, seconds, ended_at, example)."""

    def __init__(self, url: str, key: str, pop: dict, seed: int, client: int, run_id: str):
        self.rng = random.Random(seed * 1000 + client)
        self.pop = pop
        self.api = httpx.Client(
            base_url=url, timeout=120, headers={"X-API-Key": key}, follow_redirects=False
        )
        self.url, self.key = url, key
        self.page = sign_in(url, key)
        csrf = re.search(r'name="csrf" value="([^"]+)"', self.page.get("/ui/planner").text)
        self.csrf = csrf.group(1)
        self.prefix = f"soak-{run_id}-{client}-"
        self.sequence = 0
        self.done: list[tuple] = []
        self.accepted = self.duplicates = 0

    def request(self, route: str, client: httpx.Client, method: str, path: str, **kw):
        began = time.perf_counter()
        try:
            answer = client.request(method, path, **kw)
            status, text = answer.status_code, ""
            if not 200 <= status < 300:
                text = answer.text[:400]
        except httpx.HTTPError as exc:
            answer, status, text = None, 0, repr(exc)[:400]
        ended = time.perf_counter()
        example = ""
        if status == 0 or not 200 <= status < 300:
            sent = kw.get("json") or kw.get("params") or kw.get("data") or ""
            if isinstance(sent, dict) and "csrf" in sent:
                sent = {k: v for k, v in sent.items() if k != "csrf"}
            example = f"{method} {path} {str(sent)[:300]} -> {status} {text}"
        self.done.append((route, status, ended - began, ended, example))
        return answer if status and 200 <= status < 300 else None

    def customers(self, k: int) -> list[str]:
        return self.rng.sample(self.pop["customers"], k)

    def run(self, kind: str) -> None:
        rng = self.rng
        if kind == "scores-1":
            body = {"customer_ids": self.customers(1)}
            self.request("POST /v1/scores (1)", self.api, "POST", "/v1/scores", json=body)
        elif kind == "scores-50":
            body = {"customer_ids": self.customers(50)}
            self.request("POST /v1/scores (50)", self.api, "POST", "/v1/scores", json=body)
        elif kind == "next-best":
            body = {"customer_id": self.customers(1)[0], "channel": rng.choice(CONSENT_CHANNELS)}
            if rng.random() < 0.3:
                body["context"] = {"budget": rng.choice((2, 5, 20))}
            answer = self.request(
                "POST /v1/offers/next-best", self.api, "POST", "/v1/offers/next-best", json=body
            )
            if answer is not None and rng.random() < OUTCOME_SHARE:
                outcome = rng.choice(OUTCOMES)
                revenue = round(rng.uniform(10, 150), 2) if outcome == "redeemed" else 0.0
                self.request(
                    "POST /v1/decisions/{id}/outcome",
                    self.api,
                    "POST",
                    f"/v1/decisions/{answer.json()['decision_id']}/outcome",
                    json={"outcome": outcome, "revenue": revenue},
                )
        elif kind == "events":
            now = datetime.now(UTC)
            events = []
            for customer in self.customers(rng.randint(1, 5)):
                self.sequence += 1
                event = {
                    "event_id": f"{self.prefix}{self.sequence}",
                    "customer_id": customer,
                    "occurred_at": (now - timedelta(seconds=rng.uniform(1, 120))).isoformat(),
                }
                if rng.random() < 0.4:
                    event |= {"type": "purchase", "amount": round(rng.uniform(5, 200), 2)}
                else:
                    event |= {"type": "session", "channel": rng.choice(("web", "app"))}
                events.append(event)
            answer = self.request(
                "POST /v1/events", self.api, "POST", "/v1/events", json={"events": events}
            )
            if answer is not None:
                counts = answer.json()
                self.accepted += counts["accepted"]
                self.duplicates += counts["duplicates"]
        elif kind == "api-list":
            name = rng.choice(LISTS)
            self.request(
                f"GET /v1/lists/{name}",
                self.api,
                "GET",
                f"/v1/lists/{name}",
                params=list_query(rng, name, self.pop, ui=False),
            )
        elif kind == "kpis":
            self.request("GET /v1/kpis", self.api, "GET", "/v1/kpis")
        elif kind == "ui-overview":
            self.request("GET /ui (overview)", self.page, "GET", "/ui")
        elif kind == "ui-list":
            name = rng.choice(LISTS)
            self.request(
                "GET /ui/lists/{list}",
                self.page,
                "GET",
                f"/ui/lists/{name}",
                params=list_query(rng, name, self.pop, ui=True),
            )
        elif kind == "ui-customer":
            customer = self.customers(1)[0]
            self.request("GET /ui/customers/{id}", self.page, "GET", f"/ui/customers/{customer}")
        elif kind == "ui-planner":
            self.request("GET /ui/planner (form)", self.page, "GET", "/ui/planner")
        elif kind == "ui-planner-preview":
            plan = {
                "csrf": self.csrf,
                "list": rng.choice(("at-risk", "win-back", "due-to-repurchase")),
                "channel": rng.choice(CONSENT_CHANNELS),
                "budget": str(rng.choice((200, 500, 2000))),
                "holdout_share": "0.1",
                "seed": str(rng.randint(0, 99)),
                "action": "preview",
            }
            self.request("POST /ui/planner (preview)", self.page, "POST", "/ui/planner", data=plan)
        else:  # pragma: no cover - MIX and run() disagree
            raise ValueError(kind)


def client_main(
    url: str, key: str, pop: dict, seed: int, client: int, run_id: str, stop: float, out
) -> None:
    try:
        turns = Turns(url, key, pop, seed, client, run_id)
    except Exception as exc:  # sign-in or the planner form failed: report it, do not hang
        out.put(("failed", client, repr(exc)[:500]))
        return
    kinds, weights = list(MIX), list(MIX.values())
    flushed = time.perf_counter()
    try:
        while time.perf_counter() < stop:
            turns.run(turns.rng.choices(kinds, weights)[0])
            if time.perf_counter() - flushed >= FLUSH_S:
                out.put(("done", client, turns.done))
                turns.done, flushed = [], time.perf_counter()
    except Exception:  # a fault of the client itself (not an HTTP answer): stop the soak
        import traceback

        out.put(("failed", client, traceback.format_exc()[-1500:]))
        return
    out.put(("done", client, turns.done))
    out.put(("end", client, (turns.accepted, turns.duplicates)))


# -- the main process -------------------------------------------------------------------
class Tally:
    """Every finished request, by route and by minute."""

    def __init__(self, start: float, minutes: int) -> None:
        self.start, self.minutes = start, minutes
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter = Counter()  # (route, status)
        self.examples: dict[tuple[str, int], list[str]] = defaultdict(list)
        self.per_minute: list[list[float]] = [[] for _ in range(minutes)]
        self.total = 0

    def add(self, rows: list[tuple]) -> None:
        for route, status, seconds, ended, example in rows:
            self.total += 1
            self.seconds[route].append(seconds)
            minute = min(self.minutes - 1, max(0, int((ended - self.start) // 60)))
            self.per_minute[minute].append(seconds)
            if example:
                self.errors[(route, status)] += 1
                if len(self.examples[(route, status)]) < KEEP_ERRORS:
                    self.examples[(route, status)].append(example)

    def by_status(self) -> str:
        counts: Counter = Counter()
        for (_, status), n in self.errors.items():
            counts["conn" if status == 0 else str(status)] += n
        return ", ".join(f"{s}: {n}" for s, n in sorted(counts.items())) or "none"


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000) if values else float("nan")


def drain(out, tally: Tally, ends: dict, failures: dict, until: float) -> None:
    """Take the clients' reports until ``until`` (perf_counter)."""
    while True:
        left = until - time.perf_counter()
        if left <= 0:
            return
        try:
            kind, client, payload = out.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        if kind == "done":
            tally.add(payload)
        elif kind == "end":
            ends[client] = payload
        else:
            failures[client] = payload


def wait_for_events(api: httpx.Client, timeout: float = 600) -> tuple[dict, float]:
    """Poll /readyz until no acknowledged event is pending; its ``events`` and the wait."""
    began = time.monotonic()
    while True:
        events = api.get("/readyz", timeout=30).json()["events"] or {}
        if events.get("pending", 0) == 0 or time.monotonic() - began > timeout:
            return events, time.monotonic() - began
        time.sleep(0.5)


def landed(settings: Settings, prefix: str) -> int:
    """The soak's events in the lake (orders and engagement rows with its id prefix)."""
    import duckdb

    from kizuna.features.lake import Lake

    lake, con, rows = Lake(settings), duckdb.connect(), 0
    for kind, column in (("orders", "order_id"), ("events", "event_id")):
        rows += con.execute(
            f"SELECT count(*) FROM {lake.relation_sql(kind)} WHERE {column} LIKE ?",
            [prefix + "%"],
        ).fetchone()[0]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--mlruns", type=Path)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--port", type=int, help="Default: a free port.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--log", type=Path, help="The server's log (default: a temp file).")
    args = parser.parse_args()
    if args.minutes < 1 or args.clients < 1:
        parser.error("--minutes and --clients must be at least 1")
    base = ROOT / "data" / f"bench-ui-{args.customers}"
    home, mlruns = args.home or base / "home", args.mlruns or base / "mlruns"
    if not (home / "lake").exists():
        build_home(home, mlruns, args.customers)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    run_id = f"{time.time_ns():x}"
    log = args.log or Path(tempfile.gettempdir()) / f"kizuna-soak-{run_id}.log"
    settings = Settings(home=home, mlruns=mlruns)
    store = KeyStore(settings)
    key_name = f"bench-soak-{run_id}"
    key = store.create(key_name, SCOPES)
    print(f"home {home}\nserver log {log}", flush=True)
    process = serve(home, mlruns, port, log)
    api = httpx.Client(base_url=url, timeout=120, headers={"X-API-Key": key})
    while api.get("/readyz").json()["page_warming"]:
        time.sleep(0.5)
    warm = time.monotonic() - process.started
    pop = population(api)
    print(
        f"kizuna serve (pid {process.pid}) ready in {process.ready - process.started:.1f} s, "
        f"page warm in {warm:.1f} s; {len(pop['customers']):,} customers, "
        f"{len(pop['categories'])} categories; RSS {rss_mb(process.pid):,.0f} MB",
        flush=True,
    )
    print(f"{args.clients} clients for {args.minutes} minute(s)", flush=True)

    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start = time.perf_counter() + 2  # the clients sign in meanwhile
    stop = start + 60 * args.minutes
    procs = [
        ctx.Process(
            target=client_main,
            args=(url, key, pop, args.seed, c, run_id, stop, out),
            daemon=True,
        )
        for c in range(args.clients)
    ]
    for p in procs:
        p.start()
    tally = Tally(start, args.minutes)
    ends: dict[int, tuple[int, int]] = {}
    failures: dict[int, str] = {}
    rss: list[float] = []
    server_died = False
    try:
        for minute in range(args.minutes):
            boundary = start + 60 * (minute + 1)
            peak = 0.0
            while time.perf_counter() < boundary:
                drain(out, tally, ends, failures, min(boundary, time.perf_counter() + 5))
                peak = max(peak, rss_mb(process.pid) or 0.0)
                if failures or process.poll() is not None:
                    break
            if failures:
                raise SystemExit(f"a client failed (a fault of the benchmark): {failures}")
            if process.poll() is not None:
                server_died = True
                print(f"kizuna serve exited with {process.returncode}; its log: {log}")
                break
            drain(out, tally, ends, failures, time.perf_counter() + 2 * FLUSH_S)
            now = rss_mb(process.pid) or float("nan")
            rss.append(now)
            this = tally.per_minute[minute]
            print(
                f"minute {minute + 1:>3}/{args.minutes}: {tally.total:>9,} requests "
                f"({len(this) / 60:6.1f}/s, p50 {ms(this, 50):6.1f} ms, p99 {ms(this, 99):7.1f} "
                f"ms) | errors {tally.by_status()} | server RSS {now:,.0f} MB "
                f"(peak {max(peak, now):,.0f})",
                flush=True,
            )
        deadline = time.perf_counter() + 180
        while len(ends) < len(procs) and time.perf_counter() < deadline and not server_died:
            drain(out, tally, ends, failures, time.perf_counter() + 1)
            if failures:
                raise SystemExit(f"a client failed (a fault of the benchmark): {failures}")
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        events, waited = ({}, 0.0) if server_died else wait_for_events(api)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=120)
        store.revoke(key_name)

    accepted = sum(a for a, _ in ends.values())
    duplicates = sum(d for _, d in ends.values())
    print(
        f"\nKizuna soak, {args.minutes} min, {args.clients} clients, {len(pop['customers']):,} "
        "customers: client round trips (ms)"
    )
    print(f"{'route':38s} {'p50':>8s} {'p99':>9s} {'count':>9s} {'errors':>7s}")
    errors_of: Counter = Counter()
    for (route, _), n in tally.errors.items():
        errors_of[route] += n
    everything: list[float] = []
    for route in sorted(tally.seconds):
        values = tally.seconds[route]
        everything += values
        print(
            f"{route:38s} {ms(values, 50):8.1f} {ms(values, 99):9.1f} {len(values):9,} "
            f"{errors_of[route]:7,}"
        )
    n_errors = sum(tally.errors.values())
    print(
        f"{'total':38s} {ms(everything, 50):8.1f} {ms(everything, 99):9.1f} "
        f"{len(everything):9,} {n_errors:7,}  ({len(everything) / (60 * args.minutes):.1f}/s)"
    )
    print(f"\nerrors: {n_errors:,} (goal 0) by status: {tally.by_status()}")
    for (route, status), examples in sorted(tally.examples.items()):
        for example in examples:
            print(f"  {route} [{status or 'conn'}]: {example}")
    if rss:
        baseline_minute = 2 if len(rss) >= 2 else 1
        base_rss = rss[baseline_minute - 1]
        growth = rss[-1] - base_rss
        print(
            f"server RSS: minute 1 {rss[0]:,.0f} MB, last minute {rss[-1]:,.0f} MB; growth "
            f"from the end of minute {baseline_minute} to the end {growth:+,.0f} MB "
            f"({100 * growth / base_rss:+.1f}%) (goal: flat)"
        )
        if len(rss) < 3:
            print("  (too short to judge memory growth: run 10 minutes or more)")
        print("  per minute: " + ", ".join(f"{r:,.0f}" for r in rss))
    pending = events.get("pending")
    poisoned = events.get("poisoned_batches")
    applied = accepted - (pending or 0) if pending is not None else None
    print(
        f"events: {accepted:,} acknowledged (202, {duplicates} duplicates), "
        f"{applied if applied is not None else '?'} applied after {waited:.1f} s "
        f"(pending {pending}, poisoned batches {poisoned}, failed attempts "
        f"{events.get('failed_attempts')})"
    )
    in_lake = landed(settings, f"soak-{run_id}-")
    print(f"  in the lake after the run: {in_lake:,} of the {accepted:,} (orders and events)")
    if events.get("last_error"):
        print(f"  last error applying events: {events['last_error']}")
    server_log = log.read_text(errors="replace") if log.exists() else ""
    tracebacks = server_log.count("Traceback")
    if tracebacks:
        print(f"server log: {tracebacks} traceback(s) in {log}; its tail:")
        print("\n".join(server_log.splitlines()[-40:]))
    print(
        f"\nreproduce: .venv/bin/python benchmarks/soak.py --minutes {args.minutes} "
        f"--clients {args.clients}"
        + (f" --home {home} --mlruns {mlruns}" if args.home else f" --customers {args.customers}")
    )
    bad = (
        n_errors
        or server_died
        or pending != 0
        or in_lake != accepted
        or poisoned
        or tracebacks
        or len(ends) < len(procs)
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
