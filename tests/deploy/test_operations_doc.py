"""docs/operations.md's list of the settings a 3-replica production deployment needs is exact:
with the block as written the gateway's start-up checks pass; without any line marked
required they refuse to start; without an unmarked line they still start (the page says
what then happens); and the compose stack and the production overlay set every line."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from tests.deploy.test_compose import rendered as rendered_compose
from tests.deploy.test_k8s import TARGETS, config_of, container, one, render
from tests.deploy.tools import ROOT
from ticketgate.config import check_replicas, load_settings
from ticketgate.envparse import ConfigError

DOC = (ROOT / "docs" / "operations.md").read_text()
HEADING = "## The settings a 3-replica production deployment needs"
PLACEHOLDERS = {"<64 hex chars>": "a1" * 32, "<password>": "pw"}


def documented() -> dict[str, tuple[str, bool]]:
    """name -> (value, marked required) from the section's first sh block."""
    section = DOC[DOC.index(HEADING) :]
    block = section[section.index("```sh\n") + 6 :]
    block = block[: block.index("```")]
    lines: dict[str, tuple[str, bool]] = {}
    for line in block.splitlines():
        assignment, _, comment = line.partition("#")
        name, _, value = assignment.strip().partition("=")
        for placeholder, real in PLACEHOLDERS.items():
            value = value.replace(placeholder, real)
        lines[name] = (value, comment.strip().startswith("required"))
    return lines


SETTINGS = documented()


def start(env: dict[str, str]) -> None:
    """The gateway's start-up checks (`ticketgate serve` runs both before listening)."""
    check_replicas(load_settings(env))


def environment(key_file: Path, without: str = "") -> dict[str, str]:
    env = {name: value for name, (value, _) in SETTINGS.items() if name != without}
    if "AUTH_SIGNING_KEY_FILE" in env:
        env["AUTH_SIGNING_KEY_FILE"] = str(key_file)
    return env


def test_the_block_as_written_starts_three_replicas(key_file: Path) -> None:
    assert SETTINGS["SERVER_REPLICAS_EXPECTED"][0] == "3"
    settings = load_settings(environment(key_file))
    check_replicas(settings)
    assert settings.replicas_expected == 3
    assert not settings.is_development


@pytest.mark.parametrize("name", sorted(n for n, (_, req) in SETTINGS.items() if req))
def test_without_a_required_line_the_gateway_refuses_to_start(key_file: Path, name: str) -> None:
    with pytest.raises(ConfigError):
        start(environment(key_file, without=name))


@pytest.mark.parametrize("name", sorted(n for n, (_, req) in SETTINGS.items() if not req))
def test_an_unmarked_line_is_not_required_and_the_page_says_what_then(
    key_file: Path, name: str
) -> None:
    start(environment(key_file, without=name))
    table = DOC[DOC.index(HEADING) :]
    table = table[table.index("| missing | effect |") :]
    lines = table.splitlines()[2:]
    cells = [line.split("|")[1] for line in lines[: lines.index("")]]
    rows = [re.findall(r"`([A-Z_*]+)`", cell) for cell in cells]
    assert any(fnmatch.fnmatch(name, pattern) for names in rows for pattern in names), name


def test_compose_and_the_production_overlay_set_every_line() -> None:
    gateway = rendered_compose()["services"]["gateway"]["environment"]
    assert set(SETTINGS) <= set(gateway)
    docs = render(TARGETS["production"])
    names = set(config_of(docs))
    names |= {e["name"] for e in container(one(docs, "Deployment", "ticketgate-gateway"))["env"]}
    assert set(SETTINGS) <= names
