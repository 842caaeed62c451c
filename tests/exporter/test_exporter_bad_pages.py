"""Bad page content, fed straight to the engine (the text is what matters, not the transport):
malformed, truncated, huge, NaN/Inf, duplicates, counter resets, a CoreDNS restart, a missing
plugin. Never a crash, errors counted, and no false alarm where the traffic itself is normal."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from exporter_testlib import Timeline, load_pages, rewrite, samples_of

from coredns_anomaly.exporter.engine import Engine, Observation
from coredns_anomaly.exporter.features import FEATURE_NAMES, NEEDED_NAMES, FeatureState
from coredns_anomaly.exporter.page import MAX_PAGE_BYTES, PageError, parse_needed, parse_page

IDX = {n: i for i, n in enumerate(FEATURE_NAMES)}


def replay(bundle, texts, instance: str = "x") -> tuple[Engine, list]:
    """Run the engine over one instance's pages, one model step apart; verdicts per step."""
    eng = Engine(bundle)
    verdicts = []
    for k, text in enumerate(texts):
        eng.step([Observation(instance, 1000.0 + k * bundle.step_seconds, text=text)])
        verdicts.append(eng.states[instance].verdict)
    return eng, verdicts


def calm(verdicts) -> list[float]:
    """Scores of the scored steps; asserts every scored step is calm (coredns_anomaly 0)."""
    scores = [v.score for v in verdicts if v is not None]
    assert scores, "no step was scored"
    assert all(not v.anomaly for v in verdicts if v is not None), scores
    assert max(scores) < 1.0, scores
    return scores


def test_normal_real_pages_are_scored_calm(bundle):
    tl = Timeline("normal")
    _, verdicts = replay(bundle, [tl.page(k) for k in range(bundle.window + 12)])
    assert verdicts[bundle.window - 2] is None and verdicts[bundle.window - 1] is not None
    calm(verdicts)


@pytest.mark.parametrize("move_start_time", [True, False], ids=["start_time_moves", "only_counters_drop"])  # fmt: skip
@pytest.mark.parametrize("when", ["early", "last_step_of_the_first_window", "while_scored"])
def test_a_coredns_restart_raises_no_false_alarm(bundle, when, move_start_time):
    W = bundle.window
    at = {"early": 3, "last_step_of_the_first_window": W - 1, "while_scored": W + 3}[when]
    tl = Timeline("normal").restart(at)
    texts = [tl.page(k) for k in range(W + 12)]
    if not move_start_time:  # an exporter-side view where process_start_time_seconds is absent
        texts = [re.sub(r"\nprocess_start_time_seconds [^\n]*", "", t) for t in texts]
    before, after = samples_of(texts[at - 1]), samples_of(texts[at])
    req = 'coredns_dns_requests_total{family="1",proto="udp",server="dns://127.0.0.1:39877",type="A",view="",zone="."}'
    assert after[req] < before[req] / 3, "the replay did not re-base the counters"
    eng, verdicts = replay(bundle, texts)
    st = eng.states["x"]
    assert st.up and not st.errors
    calm(verdicts)
    # the step across the restart still has a positive, ordinary request rate
    fs = FeatureState()
    for k in range(at + 1):
        row = fs.update(parse_page(texts[k]), 1000.0 + 2.0 * k)
    rate = math.expm1(row[IDX["dns_requests_rate"]])
    assert 50 < rate < 1000, rate


def test_one_counter_going_down_is_a_reset_not_a_negative_rate(bundle):
    tl = Timeline("normal")
    n, at = bundle.window + 8, bundle.window // 2
    texts = [tl.page(k) for k in range(n)]
    # only the response counters restart from zero at step `at` (e.g. a metric re-registered)
    base = samples_of(texts[at - 1])
    for k in range(at, n):
        texts[k] = rewrite(
            texts[k],
            lambda key, name, v: (
                v - base.get(key, 0.0) * 0.999 if name == "coredns_dns_responses_total" else v
            ),
        )
    fs = FeatureState()
    rows = [fs.update(parse_needed(t, NEEDED_NAMES), 2.0 * k) for k, t in enumerate(texts)]
    shares = np.array(rows)[1:, IDX["dns_rcode_noerror_share"]]
    assert np.all((shares >= 0) & (shares <= 1.5)), shares
    _, verdicts = replay(bundle, texts)
    assert all(v is None or math.isfinite(v.score) for v in verdicts)


@pytest.mark.parametrize(
    "family",
    ["coredns_cache_", "coredns_proxy_", "coredns_dns_request_duration_seconds", "process_"],
)
def test_a_missing_plugin_masks_its_features_without_a_crash(bundle, family):
    tl = Timeline("normal")
    drop = lambda key, name, v: None if name.startswith(family) else v  # noqa: E731
    texts = [rewrite(tl.page(k), drop) for k in range(bundle.window + 4)]
    if family in ("coredns_cache_", "coredns_proxy_"):  # and the plugin is not enabled at all
        plugin = "cache" if "cache" in family else "forward"
        texts = [t.replace(f'name="{plugin}"', 'name="gone"') for t in texts]
    eng, verdicts = replay(bundle, texts)
    st = eng.states["x"]
    assert st.up and not st.errors
    last = st.rows[-1]
    masked = {
        "coredns_cache_": "cache_hit_ratio",
        "coredns_proxy_": "upstream_latency_p50",
        "coredns_dns_request_duration_seconds": "dns_latency_p50",
        "process_": "process_cpu_cores",
    }[family]
    assert math.isnan(last[IDX[masked]]), f"{masked} should be masked"
    assert math.isfinite(last[IDX["dns_requests_rate"]])
    assert verdicts[-1] is not None and math.isfinite(verdicts[-1].score)


def test_nan_and_inf_samples_are_dropped_not_propagated(bundle):
    tl = Timeline("normal")
    poison = {"process_resident_memory_bytes": "NaN", "go_goroutines": "+Inf", "process_open_fds": "-Inf"}  # fmt: skip
    texts = []
    for k in range(bundle.window + 4):
        t = tl.page(k)
        for name, val in poison.items():
            t, n = re.subn(rf"\n{name} [^\n]*", f"\n{name} {val}", t)
            assert n == 1
        texts.append(t)
    page = parse_needed(texts[0], NEEDED_NAMES)
    assert page.dropped_nonfinite == 3 and not page.has("go_goroutines")
    eng, verdicts = replay(bundle, texts)
    st = eng.states["x"]
    assert st.up
    for name in ("process_memory", "go_goroutines", "process_open_fds"):
        assert math.isnan(st.rows[-1][IDX[name]])
    assert np.isfinite(st.rows[-1][IDX["dns_requests_rate"]])
    assert verdicts[-1] is not None and math.isfinite(verdicts[-1].score)


def test_duplicate_series_do_not_crash(bundle):
    tl = Timeline("normal")

    def dup(t: str) -> str:  # every needed sample line twice
        out = []
        for line in t.split("\n"):
            out.append(line)
            if line and line[0] != "#" and re.split(r"[{ ]", line, maxsplit=1)[0] in NEEDED_NAMES:
                out.append(line)
        return "\n".join(out)

    texts = [dup(tl.page(k)) for k in range(bundle.window + 4)]
    ref = parse_page(texts[0])
    fast = parse_needed(texts[0], NEEDED_NAMES)
    assert len(fast.get("coredns_dns_requests_total")) == 2 * len(
        parse_page(tl.page(0)).get("coredns_dns_requests_total")
    )
    assert len(ref.get("coredns_dns_requests_total")) == len(fast.get("coredns_dns_requests_total"))
    eng, verdicts = replay(bundle, texts)
    assert eng.states["x"].up
    # duplicated on every page, so the rates are doubled but shares are unchanged
    assert verdicts[-1] is not None and math.isfinite(verdicts[-1].score)


def test_malformed_truncated_and_huge_pages_count_parse_errors(bundle):
    real = load_pages("normal")
    eng = Engine(bundle)
    bad = {
        "broken label": real[0].replace('rcode="NOERROR"', 'rcode="NOERROR', 1),
        "bad value": re.sub(r"\ngo_goroutines [^\n]*", "\ngo_goroutines twelve", real[0]),
        "truncated mid-line": real[0][: real[0].index("coredns_dns_requests_total{") + 40],
        "huge": real[0] + "# " + "x" * MAX_PAGE_BYTES + "\n",
        "not metrics": "<html><body>login</body></html>",
        "binary": "\x00\xff\x10garbage\x00" * 100,
    }
    for k, (what, text) in enumerate(bad.items()):
        with pytest.raises(PageError):
            parse_needed(text, NEEDED_NAMES)
        eng.step([Observation("x", 1000.0 + 2 * k, text=text), Observation("ok", 1000.0 + 2 * k, text=real[k % 6])])  # fmt: skip
        assert not eng.states["x"].up, what
        assert eng.states["ok"].up, what
    assert eng.states["x"].errors == {"parse": len(bad)}
    # garbage in a family the features never read is skipped, not an error
    noisy = real[0] + "go_memstats_weird{a=b c 1 2 3\n"
    assert parse_needed(noisy, NEEDED_NAMES).has("coredns_dns_requests_total")


def test_truncation_at_any_line_boundary_is_a_smaller_page_not_an_error():
    real = load_pages("normal")[0]
    lines = real.split("\n")
    for cut in range(0, len(lines), 7):
        text = "\n".join(lines[:cut])
        try:
            page = parse_needed(text, NEEDED_NAMES)
        except PageError as exc:
            assert "no CoreDNS metrics" in str(exc)
            continue
        row = FeatureState().update(page, 0.0)
        assert row.shape == (len(FEATURE_NAMES),)
