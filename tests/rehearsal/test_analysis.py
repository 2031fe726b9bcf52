"""The report's definitions on hand-made journeys: what counts as an inversion and how it is
attributed, the moment a fan could enter, ETA error, ghosts."""

from __future__ import annotations

from ticketgate.rehearsal.analysis import (
    eligible_moment,
    eta_samples,
    fairness,
    ghosts,
    wait_events,
)
from ticketgate.rehearsal.driver import RunResult
from ticketgate.rehearsal.record import FanRecord, Poll, Stats
from ticketgate.rehearsal.scenario import QueueFacts, Scenario


def fan(n: int, joined: float, granted: float | None = None, kind: str = "stay") -> FanRecord:
    record = FanRecord(n, kind, joined)
    record.join_sent, record.join_recv = joined, joined + 0.01
    if granted is not None:
        record.grant_sent, record.grant_recv = granted - 0.01, granted
    record.state = "done"
    return record


def poll(at: float, position: int, ready: bool, eta: int = 0) -> Poll:
    return Poll(at, at + 0.01, "ready" if ready else "waiting", position, eta, ready)


def run(records: list[FanRecord], rule: str = "window", capacity: int = 10) -> RunResult:
    scenario = Scenario(
        queue=QueueFacts(rule=rule, bucket_capacity=capacity, heartbeat_ttl_sec=10)  # type: ignore[arg-type]
    )
    return RunResult(scenario, records, Stats(), "2026-01-01T00:00:00+00:00", 60.0, 1.0,
                     False, False, 1)  # fmt: skip


def test_no_inversion_when_the_earlier_fan_was_never_told_to_wait_after_the_grant() -> None:
    a = fan(0, 0.0, granted=5.0)
    a.polls = [poll(1.0, 2, False, 3), poll(4.5, 1, True)]
    b = fan(1, 1.0, granted=4.0)  # got in first, but A was ready at its next poll
    b.polls = [poll(3.0, 2, True)]
    assert fairness(run([a, b]))["inversions"] == 0


def test_a_fan_told_to_wait_after_a_later_joiner_got_in_is_an_inversion() -> None:
    a = fan(0, 0.0, granted=9.0)
    a.polls = [poll(1.0, 1, True), poll(6.0, 1, True)]
    a.refusals = [(1.1, 1.12, "ADMISSION_THROTTLED"), (6.1, 6.12, "ADMISSION_THROTTLED")]
    b = fan(1, 1.0, granted=4.0)
    b.polls = [poll(3.0, 2, True)]
    report = fairness(run([a, b]))
    assert report["inversions"] == 1
    assert report["explained"] == {"window_bucket": 1}
    assert report["unexplained"] == 0
    (listed,) = report["listed"]
    assert (listed["overtaken_fan"], listed["overtaking_fan"]) == (0, 1)
    assert listed["a_told_to_wait_sec"] == 6.1


def test_outside_the_window_an_inversion_is_flagged() -> None:
    a = fan(0, 0.0, granted=20.0)
    a.polls = [poll(6.0, 150, False, 10)]  # far back, told to wait, after B's grant
    b = fan(1, 1.0, granted=4.0)
    report = fairness(run([a, b]))
    assert report["unexplained"] == 1


def test_overlapping_joins_have_no_order_and_are_never_compared() -> None:
    a = fan(0, 0.0, granted=9.0)
    a.polls = [poll(6.0, 150, False, 10)]
    b = fan(1, 0.005, granted=4.0)  # sent before A's join answer arrived
    assert fairness(run([a, b]))["inversions"] == 0


def test_under_a_frontier_overtaking_within_the_bucket_capacity_is_explained() -> None:
    a = fan(0, 0.0, granted=20.0)
    a.polls = [poll(6.0, 3, False, 2)]
    between = [fan(n, 0.1 * n, granted=30.0) for n in range(1, 4)]
    b = fan(9, 1.0, granted=4.0)
    explained = fairness(run([a, *between, b], rule="frontier", capacity=10))
    assert explained["explained"] == {"bounded_overtaking": 1}
    assert explained["max_places_overtaken"] == 4  # three still waiting between them, + 1
    flagged = fairness(run([a, *between, b], rule="frontier", capacity=3))
    assert flagged["unexplained"] == 1


def test_disturbed_fans_and_those_who_gave_up_are_not_compared() -> None:
    a = fan(0, 0.0, granted=20.0)
    a.polls = [poll(6.0, 150, False, 10)]
    a.disturbed = True
    ghost = fan(2, 0.0, kind="ghost")
    ghost.polls = [poll(6.0, 150, False, 10)]
    b = fan(1, 1.0, granted=4.0)
    assert fairness(run([a, ghost, b]))["inversions"] == 0


def test_the_turn_comes_at_the_first_ready_answer_after_the_last_wait() -> None:
    a = fan(0, 0.0, granted=12.0)
    a.polls = [poll(2.0, 30, False, 8), poll(9.0, 5, False, 1), poll(10.0, 1, True)]
    assert eligible_moment(a) == 10.01
    # A refused enter after the ready poll moves the turn to the next ready answer.
    a.refusals = [(10.1, 10.2, "ADMISSION_THROTTLED")]
    a.polls.append(poll(11.0, 1, True))
    assert eligible_moment(a) == 11.01
    assert [e[1] for e in wait_events(a)] == [
        "not_ready", "not_ready", "ADMISSION_THROTTLED"
    ]  # fmt: skip
    # Entered without ever being told "ready" (enter right after a wait): the grant.
    b = fan(1, 0.0, granted=5.0)
    b.polls = [poll(2.0, 3, False, 3)]
    assert eligible_moment(b) == 5.0


def test_eta_error_is_relative_to_the_true_wait_with_a_one_second_floor() -> None:
    a = fan(0, 0.0, granted=12.0)
    a.polls = [poll(0.0, 100, False, 12), poll(9.0, 5, False, 3), poll(10.0, 1, True)]
    moment = eligible_moment(a)
    (first, second) = eta_samples([a])
    assert first[3] == moment - 0.01
    assert abs(first[4] - abs(12 - first[3]) / first[3]) < 1e-9
    assert second[2] == 3
    assert abs(second[4] - abs(3 - second[3]) / 1.0) < 1e-9  # true wait < 1 s: floor


def test_a_poll_that_promised_no_eta_is_not_an_eta_sample() -> None:
    a = fan(0, 0.0, granted=12.0)
    paused = Poll(1.0, 1.01, "waiting", 40, -1, False)  # paused: eta_sec null
    a.polls = [paused, poll(5.0, 20, False, 4), poll(10.0, 1, True)]
    (sample,) = eta_samples([a])
    assert sample[2] == 4
    # Still a "keep waiting" answer for the fairness comparison.
    assert [e[0] for e in wait_events(a)] == [1.0, 5.0]


def test_ghosts_are_judged_by_their_one_probe() -> None:
    def ghost(n: int, outcome: str, probes: list[tuple[float, bool]]) -> FanRecord:
        record = fan(n, 0.0, kind="ghost")
        record.silent_at, record.outcome, record.probes = 1.0, outcome, probes
        return record

    report = ghosts(
        run(
            [
                ghost(0, "ghost_swept", [(-0.5, True)]),  # early, already gone
                ghost(1, "ghost_removed_by_probe", [(-0.2, False)]),  # early, still there
                ghost(2, "ghost_swept", [(0.05, True)]),  # at the deadline, gone
                ghost(3, "ghost_not_swept", [(0.05, False)]),  # at the deadline, still there
                ghost(4, "unfinished", []),  # the run ended first
            ]
        )
    )
    assert report["went_silent"] == 5
    assert report["swept_within_bound"] == 2
    assert report["not_swept_within_bound"] == 1
    assert report["still_there_at_early_probe"] == 1
    assert report["deadline_probes"] == 2
    assert report["unprobed"] == 1
    assert report["bound_sec"] == 11.0
    assert report["early_probes"]["share_swept"] == 0.5
    assert report["early_probes"]["offset_after_ttl_sec"] == [0.5, 0.8]
