"""The API's OpenAPI contract fuzzed against a real server (schemathesis).

Every operation of ``/openapi.json`` gets a bounded number of generated requests, valid and
invalid, sent by the ``schemathesis`` command to ``kizuna serve`` on its own copy of the
trained home (fuzzed events and campaigns must not reach the other tests' server). Each
response must be no server error, a status code the schema documents, the documented
content type, and a body that matches the documented schema.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Bounded so the suite stays within its time; each operation still sees valid and invalid
# bodies, parameters and headers.
EXAMPLES = 10
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


def test_every_operation_keeps_its_contract(scratch_server, tmp_path) -> None:
    fuzzed = scratch_server
    report = tmp_path / "report.json"
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{fuzzed.url}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "11",
            # One worker: on two, schemathesis' threads call ast.parse at once and Python
            # 3.11 fails with "AST constructor recursion depth mismatch" (a tool error).
            "--workers",
            "1",
            "--header",
            f"Authorization: Bearer {fuzzed.keys['admin']}",
            "--request-timeout",
            "60",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    summary = json.loads(report.read_text())
    assert summary, "schemathesis wrote an empty report"
