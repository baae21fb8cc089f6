"""The ``kizuna`` command: the CLI is the only place that prints."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from kizuna.console import console, err, fail
from kizuna.settings import get_settings

app = typer.Typer(
    help="Kizuna: churn risk, repurchase timing, customer value and next best offer.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


def _register_subcommands() -> None:
    from kizuna.cli_features import features_app
    from kizuna.cli_models import backtest_command, models_app, retrain_command, train_command

    app.add_typer(features_app, name="features")
    app.add_typer(models_app, name="models")
    app.command("train")(train_command)
    app.command("backtest")(backtest_command)
    app.command("retrain")(retrain_command)

    from kizuna.cli_serving import keys_app, lists_app, score_command, serve_command

    app.add_typer(keys_app, name="keys")
    app.add_typer(lists_app, name="lists")
    app.command("serve")(serve_command)
    app.command("score")(score_command)

    from kizuna.cli_customers import customers_app
    from kizuna.cli_kpis import kpis_command
    from kizuna.cli_plan import plan_command

    app.add_typer(customers_app, name="customers")

    from kizuna.cli_policy import policy_app

    app.add_typer(policy_app, name="policy")

    app.command("kpis")(kpis_command)
    app.command("plan")(plan_command)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    """Kizuna: churn risk, repurchase timing, customer value and next best offer.

    Everything Kizuna writes goes under `KIZUNA_HOME` (default `./data`).
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # MLflow logs each step at INFO on its own handler, and SQLAlchemy warns about
        # MLflow's internals; neither is for a Kizuna user to act on.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="mlflow")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="sqlalchemy")


@contextmanager
def _interrupts() -> Iterator[threading.Event]:
    """Note a Ctrl-C (SIGINT) while it is being turned into KeyboardInterrupt as usual."""
    seen = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame) -> None:
        seen.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


class _Bar:
    """Progress fed by ingest's (label, done, total) callback.

    A rich bar on a terminal; elsewhere (CI logs, pipes) a line every ``every`` seconds
    with the share done and the rate, so long work is never silent.
    """

    def __init__(self, progress: Progress, every: float = 10.0) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.every = every
        self.started: dict[str, float] = {}
        self.last_line = time.perf_counter()

    def __call__(self, label: str, done: int, total: int) -> None:
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=total)
            self.started[label] = time.perf_counter()
        self.progress.update(self.tasks[label], completed=done)
        now = time.perf_counter()
        if self.progress.disable and now - self.last_line >= self.every:
            self.last_line = now
            rate = done / max(now - self.started[label], 1e-9) / 1e6
            err.print(
                f"  {label}: {100 * done / max(total, 1):.0f}% of {total / 1e6:,.0f} MB "
                f"({rate:.1f} MB/s)",
                highlight=False,
            )


def _ingest_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def print_ingest_report(report) -> None:
    """The ingest summary: rows read, accepted, skipped and rejected by reason, per kind."""
    console.print(
        f"ingest [bold]{report.ingest_id}[/]: read {report.rows_read:,} rows in "
        f"{report.seconds:.1f} s ({report.rows_per_second:,.0f} rows/s); "
        f"lake version {report.lake_version}",
        highlight=False,
    )
    table = Table(
        "kind",
        "read",
        "accepted",
        "already in lake",
        "duplicates",
        "rejected",
        "for review",
        "unknown customers",
    )
    for rep in report.kinds.values():
        table.add_row(
            rep.kind,
            f"{rep.read:,}",
            f"{rep.accepted:,}",
            f"{rep.already_in_lake:,}",
            f"{rep.duplicates_in_input:,}",
            f"{rep.rejected_rows:,}",
            f"{rep.review_total:,}",
            f"{rep.unknown_customers:,}",
        )
    console.print(table)
    for rep in report.kinds.values():
        for reason, n in sorted({**rep.rejected, **rep.review}.items(), key=lambda kv: -kv[1]):
            console.print(f"  {rep.kind}: {n:,} x {reason}", highlight=False)
        if rep.profile_updates:
            console.print(
                f"  {rep.kind}: {rep.profile_updates:,} customers changed consent, tier or "
                "country: kept as profile changes (history), in effect from now",
                highlight=False,
            )
        if rep.erased:
            console.print(
                f"  {rep.kind}: {rep.erased:,} rows of erased customers were dropped (a "
                "customer row with a signup_at after the erasure brings a customer back)",
                highlight=False,
            )
        if rep.already_quarantined:
            console.print(
                f"  {rep.kind}: {rep.already_quarantined:,} rejected rows were already in "
                "quarantine from an earlier ingest and were not added again",
                highlight=False,
            )
    if any(r.rejected_rows or r.review_total for r in report.kinds.values()):
        console.print(
            f"rejected rows are kept whole in {get_settings().quarantine_dir}/<kind>/; "
            "reasons are explained in docs/data.md",
            highlight=False,
        )


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="CSV (plain or .gz) or Parquet files, or folders of them.")
    ],
    kind: Annotated[
        str | None,
        typer.Option(
            help="customers, orders, order_lines, events, offers or exposures; "
            "guessed from the file name or columns when left out."
        ),
    ] = None,
    map_: Annotated[
        str | None,
        typer.Option("--map", help='Rename columns: "theirs=ours,...".'),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help="A known foreign format: cdnow, online-retail or hillstrom."),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="Text encoding of CSV files, e.g. latin-1 or cp1252 "
            "(default utf-8, with or without a byte-order mark)."
        ),
    ] = None,
    sep: Annotated[
        str | None,
        typer.Option(
            help="CSV separator, one character: , ; | or \\t (default: sniffed from the header)."
        ),
    ] = None,
    decimal: Annotated[
        str | None,
        typer.Option(help="Decimal mark: , for numbers written 12,50 or 1.234,50 (default .)."),
    ] = None,
    true_words: Annotated[
        list[str] | None,
        typer.Option(
            "--true",
            help="A word meaning true in yes/no columns, any case; repeat it: --true ja --true x.",
        ),
    ] = None,
    false_words: Annotated[
        list[str] | None,
        typer.Option(
            "--false", help="A word meaning false in yes/no columns, any case; repeat it."
        ),
    ] = None,
    options_file: Annotated[
        Path | None,
        typer.Option(
            help="A saved format, TOML or JSON, with sep, encoding, decimal, true, false and "
            "map; options given here override it."
        ),
    ] = None,
) -> None:
    """Validate files against their contract and land them in the lake.

    Accepted rows go to `$KIZUNA_HOME/lake/<kind>/month=YYYY-MM/`; every rejected row goes,
    whole and with its reasons, to `$KIZUNA_HOME/quarantine/<kind>/`. Ingesting the same
    file twice adds nothing; a crash or Ctrl-C leaves the lake as it was. A file that
    cannot be read at all is one error (exit code 2) and nothing is written.

    Examples:

        kizuna ingest orders.csv

        kizuna ingest export.csv.gz --kind orders --map "OrderNo=order_id,Total=amount"

        kizuna ingest bestellungen.csv --sep ';' --decimal , --true ja --false nein

        kizuna ingest bestellungen.csv --options-file ingest.toml

        kizuna ingest --preset online-retail online_retail_II.csv.gz
    """
    from kizuna.features.ingest import IngestError
    from kizuna.features.ingest import ingest as run_ingest
    from kizuna.features.lake import LakeBusyError

    with _interrupts() as interrupted:
        try:
            settings = get_settings()
            with _ingest_progress() as progress:
                report = run_ingest(
                    paths,
                    settings,
                    kind=kind,
                    mapping=map_,
                    preset=preset,
                    encoding=encoding,
                    sep=sep,
                    decimal=decimal,
                    true_words=true_words,
                    false_words=false_words,
                    options_file=options_file,
                    progress=_Bar(progress),
                )
        except BaseException as exc:
            # Ctrl-C can surface as another error from inside pandas or DuckDB.
            if interrupted.is_set() or isinstance(exc, KeyboardInterrupt):
                err.print("interrupted: nothing was written; the lake is as it was")
                raise typer.Exit(130) from None
            if isinstance(exc, IngestError | LakeBusyError | ValueError):
                fail(str(exc))
            if isinstance(exc, OSError):
                fail(
                    f"{exc.filename or 'ingest'}: {exc.strerror or exc}; check the path and that "
                    "KIZUNA_HOME is writable and has space. The lake is as it was"
                )
            # A bug, not bad input: the traceback goes to the log (-v), the user gets a line.
            logging.getLogger("kizuna.cli").info("ingest failed", exc_info=True)
            fail(
                f"ingest failed unexpectedly ({type(exc).__name__}: {exc}); the lake is as it "
                "was. Run `kizuna -v ingest ...` to see where, and report it with that output"
            )
    print_ingest_report(report)
    reasons = {r.split(":", 1)[-1] for rep in report.kinds.values() for r in rep.rejected}
    if "decimal_comma" in reasons:
        console.print(
            "hint: numbers written like 12,50 were rejected; declare a decimal comma with "
            '--decimal , (or decimal = "," in an --options-file) and ingest again',
            highlight=False,
        )
    if "not_a_boolean" in reasons:
        console.print(
            "hint: yes/no values were not understood; declare the file's words, e.g. "
            "--true ja --false nein (or true/false in an --options-file), and ingest again",
            highlight=False,
        )


@app.command()
def simulate(
    customers: Annotated[int, typer.Option(min=1, help="How many customers.")] = 10_000,
    days: Annotated[int, typer.Option(min=30, help="How many days of history.")] = 730,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 7,
    start: Annotated[str, typer.Option(help="First simulated day, YYYY-MM-DD.")] = "2024-01-01",
    out: Annotated[
        Path | None, typer.Option(help="Folder to write to; default $KIZUNA_HOME/sim.")
    ] = None,
) -> None:
    """Write a synthetic retailer in Kizuna's contracts, with its ground truth aside.

    The tables land in OUT (customers, orders, order_lines, events, offers, exposures)
    and the ground truth (true dropout dates, true offer effects) in OUT/ground_truth/,
    which training never reads.

    Example:

        kizuna simulate --customers 50000 --days 730 --seed 7 --out data/sim
    """
    summary = _simulate(customers, days, seed, start, out)
    _print_simulation(summary)


def _simulate(customers: int, days: int, seed: int, start: str, out: Path | None):
    from kizuna.features.simulate import simulate as run_simulation

    try:
        first_day = date.fromisoformat(start)
    except ValueError:
        fail(f"--start {start!r} is not a date; write it as YYYY-MM-DD, e.g. 2024-01-01")
    target = out or get_settings().home_dir / "sim"
    with Progress(
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} customers"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("simulate", total=customers)
        return run_simulation(
            target,
            customers=customers,
            days=days,
            seed=seed,
            start=first_day,
            progress=lambda done, total: progress.update(task, completed=done),
        )


def _print_simulation(summary) -> None:
    console.print(
        f"simulated {summary.period_start} to {summary.period_end - timedelta(days=1)} in "
        f"{summary.seconds:.1f} s → {summary.out}",
        highlight=False,
    )
    for name, n in summary.rows.items():
        console.print(f"  {name}: {n:,} rows", highlight=False)


@app.command()
def lake() -> None:
    """Show what the lake holds: rows per kind, months, quarantined rows, last ingests.

    Example:

        kizuna lake
    """
    from kizuna.features.lake import Lake

    the_lake = Lake(get_settings())
    manifest = the_lake.manifest()
    table = Table("kind", "rows", "files", "quarantined rows")
    counts = the_lake.counts()
    for kind, n in counts.items():
        quarantined = sum(len(the_lake.quarantine(kind, what)) for what in ("rejected", "review"))
        table.add_row(kind, f"{n:,}", str(len(manifest.files.get(kind, []))), f"{quarantined:,}")
    console.print(f"lake {the_lake.root} (version {manifest.version})", highlight=False)
    console.print(table)
    for record in manifest.ingests[-5:]:
        console.print(f"  {record['ingest_id']}: {', '.join(record['sources'])}", highlight=False)


@app.command()
def contracts(
    markdown: Annotated[bool, typer.Option(help="Print docs/data.md's tables.")] = False,
) -> None:
    """List the data contracts (the tables Kizuna accepts).

    Example:

        kizuna contracts --markdown > docs/data.md
    """
    from kizuna.features import contracts as c

    if markdown:
        from kizuna.features.datadoc import data_markdown

        sys.stdout.write(data_markdown())
        return
    for contract in c.CONTRACTS.values():
        console.print(
            f"[bold]{contract.kind}[/] (key {', '.join(contract.key)}): "
            + ", ".join(col.name + ("*" if col.required else "") for col in contract.columns)
        )
    console.print("* required")


@app.command()
def run(
    customers: Annotated[int, typer.Option(min=1, help="Customers to simulate.")] = 10_000,
    days: Annotated[
        int,
        typer.Option(min=30, help="Days of history (a 365-day value label needs 3+ years)."),
    ] = 1_460,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    weeks: Annotated[int, typer.Option(min=1, help="Weekly feature snapshots to build.")] = 8,
    train: Annotated[bool, typer.Option(help="Train the four models.")] = True,
    serve: Annotated[bool, typer.Option(help="End by serving the API on --port.")] = True,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the API.")] = 8000,
) -> None:
    """The main job on the embedded default: simulate, ingest, build features, train.

    Simulates the last four years of a retailer (up to yesterday), ingests it into the
    lake, builds training snapshots every eight weeks and weekly ones for the latest
    weeks, registers them with Feast, loads the latest into the online store, then
    trains the churn, repurchase, value and offer models, printing each evaluation next
    to its baselines.

    Example:

        kizuna run --customers 10000 --weeks 8
    """
    from kizuna.cli_features import print_services
    from kizuna.cli_models import print_trained, step_printer
    from kizuna.features.compute import Tables, build_feature_files, cutoff_range, default_cutoff
    from kizuna.features.ingest import connect
    from kizuna.features.ingest import ingest as run_ingest
    from kizuna.features.lake import Lake
    from kizuna.features.store import apply, materialize

    settings = get_settings()
    # The simulated history ends yesterday, so "now" in the API is right after the data.
    start = date.today() - timedelta(days=days)
    console.rule("1. simulate a retailer")
    summary = _simulate(customers, days, seed, start.isoformat(), None)
    _print_simulation(summary)
    console.rule("2. ingest it into the lake")
    with _ingest_progress() as progress:
        report = run_ingest([summary.out], settings, progress=_Bar(progress))
    print_ingest_report(report)
    console.rule("3. what landed")
    lake()
    console.rule("4. build features")
    latest = default_cutoff(Tables.from_lake(Lake(settings)), connect(settings))
    weekly = cutoff_range(
        (latest - timedelta(weeks=weeks - 1)).date(), latest.date(), timedelta(weeks=1)
    )
    training = cutoff_range(start + timedelta(weeks=8), latest.date(), timedelta(weeks=8))
    cutoffs = sorted({*training, *weekly})
    started = time.perf_counter()
    build_feature_files(settings, cutoffs)
    console.print(
        f"built {len(cutoffs)} snapshots in {time.perf_counter() - started:.1f} s: every eight "
        f"weeks from {training[0].date()} and weekly from {weekly[0].date()} to "
        f"{weekly[-1].date()}",
        highlight=False,
    )
    console.rule("5. register with Feast and load the online store")
    features = apply(settings)
    _, high = materialize(settings)
    print_services(features)
    console.print(f"online store holds the snapshot of {high.date()}", highlight=False)
    if not train:
        return
    from kizuna.training.runs import train_and_register

    console.rule("6. train, evaluate against the baselines, register in MLflow")
    trained, _ = train_and_register(settings, progress=step_printer())
    print_trained(trained)
    from kizuna.cli_models import print_evaluation
    from kizuna.training.truth import uplift_against_truth

    offers = next(t.result for t in trained if t.result.name == "offers")
    truth = uplift_against_truth(offers.model, offers.test, summary.out / "ground_truth")
    print_evaluation("offers against the simulator's true uplift", truth)
    console.print(f"MLflow store: {settings.tracking_uri}", highlight=False)
    if serve:
        _serve_demo(settings, port)


def _serve_demo(settings, port: int) -> None:
    """Create a demo key, say how to call the API, and serve it until Ctrl-C."""
    from kizuna.cli_serving import serve_command
    from kizuna.serving.keys import KeyStore

    console.rule("7. serve the API and the marketer page")
    key = KeyStore(settings).create(
        f"demo-{time.strftime('%Y%m%dT%H%M%S')}", ("score", "offers", "events", "lists")
    )
    url = f"http://127.0.0.1:{port}"
    console.print(
        f"API: {url}  (docs: {url}/docs)\n"
        f"marketer page: {url}/ui  (sign in with the demo key)\n"
        f"demo key (scopes score, offers, events, lists; shown once): {key}\n"
        "try:\n"
        f"  curl -s -X POST {url}/v1/scores -H 'Authorization: Bearer {key}' "
        "-H 'Content-Type: application/json' -d '{\"customer_ids\": [\"C000001\"]}'\n"
        f"  curl -s '{url}/v1/lists/at-risk?limit=5&format=csv' "
        f"-H 'Authorization: Bearer {key}'\n"
        "Ctrl-C stops it.",
        highlight=False,
        soft_wrap=True,
    )
    serve_command(host="127.0.0.1", port=port, workers=1)


_register_subcommands()
