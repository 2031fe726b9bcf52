"""schemathesis over the running gateway's own /openapi.json (issue 10, item 14).

The document is generated from the schemas the handlers validate with, so every check runs:
0 server errors, 0 schema-valid requests rejected, 0 schema-violating requests accepted,
0 responses off their schema, on a gateway started the way an operator starts it. Examples
are bounded and the seed fixed, so a run takes seconds and a failure reproduces
(`st replay` or the curl line in the message).

Three operations carry a rule JSON Schema cannot state, and skip only the check that rule
defeats (named per pass below); everything else about them is checked in the main pass's
company: register (a password on the NIST blocklist, or equal to the username, is 400),
create reservation (quantity must equal the number of seat_ids) and POST leave (the token
comes in the query or, for old sendBeacon callers, in the body: an either-or across two
parts of a request).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.envs import TEST_DATABASE_PATH
from tests.redis_server import free_port

CONFIG = Path(__file__).with_name("schemathesis.toml")
SECRET = "schemathesis-secret-schemathesis-secret"
EXAMPLES = "50"
SEED = "20261205"
REGISTER = "POST /api/v1/auth/register"
RESERVE = "POST /api/v1/reservations"
BEACON_LEAVE = "POST /api/v1/queue/leave"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
    env = {name: value for name, value in os.environ.items() if name in keep}
    env.update(
        SERVER_ENVIRONMENT="development",  # the bypass token lets every route be reached
        QUEUE_TOKEN_SECRET=SECRET,
        DATABASE_PATH=TEST_DATABASE_PATH,
        BACKEND_EMBEDDED="true",
        RATE_LIMIT_ENABLED="false",  # thousands of requests from one address
        LOG_ACCESS="false",
        LOG_LEVEL="warning",
    )
    log = (tmp_path_factory.mktemp("st") / "gateway.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ticketgate.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the gateway exited during start-up"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _schemathesis(url: str, *selection: str, workdir: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "1",
        "--header",
        "Authorization: Bearer dev-super-key-local-testing",
        "--no-color",
        *selection,
    ]
    done = subprocess.run(  # in a scratch directory: st keeps a cache where it runs
        command,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        cwd=workdir,
    )
    assert done.returncode == 0, done.stdout[-12_000:] + done.stderr[-2_000:]
    assert " 0 generated" not in done.stdout, done.stdout[-2_000:]


def test_every_operation_passes_every_check(gateway: str, tmp_path: Path) -> None:
    _schemathesis(
        gateway,
        "--exclude-name",
        REGISTER,
        "--exclude-name",
        RESERVE,
        "--exclude-name",
        BEACON_LEAVE,
        workdir=tmp_path,
    )


def test_rules_json_schema_cannot_state_are_the_only_allowance(
    gateway: str, tmp_path: Path
) -> None:
    # Valid-looking but refused: a blocklisted password; seat_ids and quantity disagreeing.
    _schemathesis(
        gateway,
        "--include-name",
        REGISTER,
        "--include-name",
        RESERVE,
        "--exclude-checks",
        "positive_data_acceptance",
        workdir=tmp_path,
    )
    # Accepted though the query lacks the (documented) token: it came in the body.
    _schemathesis(
        gateway,
        "--include-name",
        BEACON_LEAVE,
        "--exclude-checks",
        "negative_data_rejection",
        workdir=tmp_path,
    )
