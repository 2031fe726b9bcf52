"""Trace and request ids (edge/request_id.py): continued from traceparent, else new and random."""

from __future__ import annotations

import os
import re

import pytest

from ticketgate.edge.request_id import _RandomIds, request_id_from, trace_id_from

HEX32 = re.compile(r"[0-9a-f]{32}")
CALLER = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_valid_traceparent_is_continued() -> None:
    assert trace_id_from(f"00-{CALLER}-{SPAN}-01") == CALLER
    assert trace_id_from(f"  00-{CALLER}-{SPAN}-01 ") == CALLER


@pytest.mark.parametrize(
    "traceparent",
    ["", "garbage", f"00-{'0' * 32}-{SPAN}-01", f"00-{CALLER.upper()}-{SPAN}-01"],
)
def test_anything_else_starts_a_new_random_trace(traceparent: str) -> None:
    trace_id = trace_id_from(traceparent)
    assert HEX32.fullmatch(trace_id)
    assert trace_id != CALLER


def test_new_ids_never_repeat_across_many_blocks() -> None:
    """Ids come from the OS in blocks; every id, across refills, is a fresh one."""
    count = 10 * _RandomIds.BLOCK // 16
    ids = [trace_id_from("") for _ in range(count)]
    assert all(HEX32.fullmatch(trace_id) for trace_id in ids)
    assert len(set(ids)) == count


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_does_not_repeat_its_parents_ids() -> None:
    trace_id_from("")  # the parent holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without running the parent's teardown
        os.close(read)
        os.write(write, "".join(trace_id_from("") for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    parent = "".join(trace_id_from("") for _ in range(8))
    assert len(child) == len(parent) == 8 * 32
    assert not {child[i : i + 32] for i in range(0, 256, 32)} & {
        parent[i : i + 32] for i in range(0, 256, 32)
    }


def test_the_request_id_echoes_a_sane_caller_id_else_the_trace_id() -> None:
    assert request_id_from("order-7.retry:2", CALLER) == "order-7.retry:2"
    assert request_id_from("", CALLER) == CALLER
    assert request_id_from("has space", CALLER) == CALLER
    assert request_id_from("x" * 129, CALLER) == CALLER
