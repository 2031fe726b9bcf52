"""The shipped JavaScript type-checks against its own JSDoc (TypeScript's checker, strict, run
on the plain .js files: no build step, the types are for the sites that embed the client and
for us)."""

from __future__ import annotations

import subprocess

from tests.browser.conftest import HERE, missing

TSC = HERE / "node_modules" / ".bin" / "tsc"


def test_the_client_and_pages_type_check() -> None:
    if not TSC.exists():
        missing("typescript is not installed (scripts/test.sh runs npm ci in tests/browser)")
    done = subprocess.run(
        [str(TSC), "-p", str(HERE / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
