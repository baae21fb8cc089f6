"""Latency of Feast's get_online_features for one customer, per FeatureService.

Builds a small simulated retailer (simulate → ingest → one snapshot → apply → materialize)
in a scratch KIZUNA_HOME, then times ``get_online_features`` for one random customer at a
time from each FeatureService, in process. In the same run, the baseline reads the same
customer's rows straight from the SQLite online store with ``sqlite3`` (what Feast reads
underneath), so the ratio is Feast's own overhead: deserialising protobuf values, the
on-demand view and building the response.

    .venv/bin/python benchmarks/online_features.py
    .venv/bin/python benchmarks/online_features.py --customers 20000 --calls 2000
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sqlite3
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from kizuna.features.compute import Tables, build_feature_files, default_cutoff
from kizuna.features.ingest import connect, ingest
from kizuna.features.lake import Lake
from kizuna.features.simulate import simulate
from kizuna.features.store import apply, materialize, open_store
from kizuna.settings import Settings

SERVICES = ("churn_v1", "repurchase_v1", "value_v1", "offers_v1")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=1_000, help="timed calls per service")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")

    work = Path(tempfile.mkdtemp(prefix="kizuna-online-"))
    settings = Settings(home=work / "home")
    sim = simulate(work / "sim", customers=args.customers, days=730, seed=7)
    ingest([sim.out], settings, now=datetime(2026, 1, 1, tzinfo=UTC))
    cutoff = default_cutoff(Tables.from_lake(Lake(settings)), connect(settings))
    build_feature_files(settings, [cutoff])
    apply(settings)
    materialize(settings)

    store = open_store(settings)
    customers = Lake(settings).read("customers")["customer_id"].tolist()
    rng = np.random.default_rng(0)
    picks = rng.choice(customers, size=args.calls + 50)
    moment = cutoff.timestamp()
    rows = ["| read | p50 | p99 | features |", "|---|---|---|---|"]

    db = sqlite3.connect(str(settings.home_dir / "feast" / "online_store.db"))
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    raw = []
    for customer in picks[: args.calls]:
        started = time.perf_counter()
        key = serialize_entity_key(
            EntityKeyProto(
                join_keys=["customer_id"], entity_values=[ValueProto(string_val=customer)]
            ),
            entity_key_serialization_version=3,
        )
        for table in tables:
            db.execute(
                f"SELECT feature_name, value FROM {table} WHERE entity_key = ?", (key,)
            ).fetchall()
        raw.append(time.perf_counter() - started)
    raw_p50, raw_p99 = percentiles(raw)
    rows.append(
        f"| sqlite3, one customer's rows of every view (baseline) | {raw_p50:.2f} ms | "
        f"{raw_p99:.2f} ms | all |"
    )

    for service in SERVICES:
        fs = store.get_feature_service(service)
        n = sum(len(p.features) for p in fs.feature_view_projections)
        for customer in picks[:50]:  # warm caches
            store.get_online_features(
                features=fs, entity_rows=[{"customer_id": customer, "request_time": moment}]
            )
        samples = []
        for customer in picks[: args.calls]:
            started = time.perf_counter()
            store.get_online_features(
                features=fs, entity_rows=[{"customer_id": customer, "request_time": moment}]
            ).to_dict()
            samples.append(time.perf_counter() - started)
        p50, p99 = percentiles(samples)
        rows.append(
            f"| get_online_features({service}), one customer | {p50:.2f} ms | "
            f"{p99:.2f} ms ({p50 / raw_p50:.1f}x the baseline's p50) | {n} |"
        )
    print("\n".join(rows))
    print(f"\n{args.calls} calls each; {args.customers:,} customers")
    print(f"command: .venv/bin/python benchmarks/online_features.py {' '.join(sys.argv[1:])}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
