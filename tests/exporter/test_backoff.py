"""A failing target sits out steps (exporter/backoff.py): retried at once after one failure,
every ~16 s at most while it stays broken, at once again after one answer."""

from __future__ import annotations

import pytest

from coredns_anomaly.exporter.backoff import MAX_BACKOFF_SECONDS, Backoff


def schedule(b: Backoff, outcomes: list[bool], step: float) -> list[str]:
    """Per step: 'ok', 'fail' (scraped) or '-' (sat out), failing while outcomes say so."""
    out, k = [], 0
    while k < len(outcomes):
        if b.due("t"):
            b.record("t", outcomes[k], "timeout", step)
            out.append("ok" if outcomes[k] else "fail")
            k += 1
        else:
            out.append("-")
    return out


def test_a_failing_target_is_tried_exponentially_less_often_up_to_the_cap():
    got = schedule(Backoff(), [False] * 6 + [True, True], step=2.0)
    # 1 failure: retried at once; 2: one step out; 3: three; then the cap (16 s = 8 steps)
    assert got == (
        ["fail", "fail", "-", "fail"] + ["-"] * 3 + ["fail"] + ["-"] * 7 + ["fail"]
        + ["-"] * 7 + ["fail"] + ["-"] * 7 + ["ok", "ok"]
    )  # fmt: skip


@pytest.mark.parametrize("step", [2.0, 5.0, 15.0, 30.0])
def test_the_cap_is_in_seconds_whatever_the_step(step):
    b = Backoff()
    got = schedule(b, [False] * 12, step)
    gaps = [len(g) for g in "".join("x" if s == "fail" else "." for s in got).split("x")[1:-1]]
    assert max(gaps) * step <= MAX_BACKOFF_SECONDS
    if step >= MAX_BACKOFF_SECONDS:
        assert gaps == [0] * len(gaps), "a long step is never sat out"


def test_one_answer_resets_and_a_target_that_left_is_forgotten():
    b = Backoff()
    for _ in range(3):
        b.record("t", False, "parse", 2.0)
    assert not b.due("t") and "failed 3 scrapes in a row (last: parse)" in b.why("t")
    b.record("t", True, "", 2.0)
    assert b.due("t") and b.failing == 0
    b.record("u", False, "connection", 2.0)
    b.forget({"t"})
    assert b.failing == 0
