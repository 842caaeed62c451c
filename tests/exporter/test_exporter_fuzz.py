"""Fuzzing the page parser and the feature code with near-valid exposition text (>= 10,000
inputs in all, derandomized so CI is deterministic; the builder is exporter_fuzzlib.py).

Properties:
- `parse_needed` only ever raises PageError;
- whenever both `parse_needed` and the reference `parse_page` (prometheus-client) accept a
  text, they yield the same samples for the needed families (differential);
- any label value, escaped as the text format says, reads back unchanged in both parsers;
- FeatureState.update on any parsed page returns len(FEATURE_NAMES) values, finite or NaN.

Where the two parsers differ on *invalid* text, the test below
`test_where_the_parsers_differ_the_text_format_decides` pins which one is right and why.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter

import pytest
from exporter_fuzzlib import exposition, sample_line
from exporter_testlib import load_pages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coredns_anomaly.exporter.features import FEATURE_NAMES, NEEDED_NAMES, FeatureState
from coredns_anomaly.exporter.page import PageError, parse_needed, parse_page

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SEEDS = st.integers(0, 2**63 - 1)
STATS: Counter = Counter()
REAL = load_pages("normal")[:2] + load_pages("upstream_servfail")[:1]


def renamed_by_prometheus_client(text: str) -> set[str]:
    """prometheus-client renames the samples of `# TYPE x counter` written as `x` to `x_total`
    (its OpenMetrics heritage). The text format 0.0.4, Go's parser and the Prometheus server
    keep the name as written, and so does parse_needed, which is right; those names are left
    out of the comparison (CoreDNS's counters all end in _total, so real pages never hit it)."""
    return {
        m.group(1)
        for m in re.finditer(r"^# TYPE (\S+) counter", text, re.M)
        if not m.group(1).endswith("_total")
    }


def needed_samples(page, skip: set[str] = frozenset()) -> Counter:
    return Counter(
        (name, tuple(sorted(lb.items())), v)
        for name, rows in page.samples.items()
        if name in NEEDED_NAMES and name not in skip
        for lb, v in rows
    )


def both(text: str):
    """(parse_needed's page or None, parse_page's page or None); any other exception fails."""
    try:
        fast = parse_needed(text, NEEDED_NAMES)
    except PageError:
        fast = None
    try:
        ref = parse_page(text)
    except PageError:
        ref = None
    return fast, ref


@settings(FUZZ, max_examples=6000)
@given(SEEDS)
def test_parse_needed_raises_only_page_error_and_agrees_with_prometheus_client(seed):
    text = exposition(seed)
    STATS["inputs"] += 1
    fast, ref = both(text)
    if fast is None or ref is None:
        return
    STATS["both"] += 1
    skip = renamed_by_prometheus_client(text)
    a, b = needed_samples(fast, skip), needed_samples(ref, skip)
    assert a == b, f"parsers disagree on {text!r}:\nonly parse_needed {a - b}\nonly prometheus-client {b - a}"  # fmt: skip


@settings(FUZZ, max_examples=1500)
@given(st.sampled_from(range(len(REAL))), st.integers(-30000, 30000), SEEDS, st.integers(0, 400))
def test_real_pages_with_a_bad_line_or_a_cut_parse_alike(k, cut, seed, where):
    lines = REAL[k].split("\n")
    lines.insert(where, sample_line(random.Random(seed), 0.3))
    text = "\n".join(lines)
    if cut >= 0:
        text = text[:cut]
    STATS["inputs"] += 1
    fast, ref = both(text)
    if fast is not None and ref is not None:
        STATS["both"] += 1
        assert needed_samples(fast) == needed_samples(ref)


def escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@settings(FUZZ, max_examples=1000)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20), st.sampled_from(sorted(NEEDED_NAMES)))  # fmt: skip
def test_any_escaped_label_value_reads_back_unchanged(v, name):
    STATS["inputs"] += 1
    text = f'{name}{{rcode="{escape(v)}",proto="udp"}} 7\n'
    fast, ref = both(text)
    assert fast is not None and ref is not None, text
    assert fast.get(name) == [({"rcode": v, "proto": "udp"}, 7.0)]
    assert needed_samples(fast) == needed_samples(ref)


@settings(FUZZ, max_examples=3000)
@given(
    st.lists(st.tuples(SEEDS, st.floats(0, 1e4, allow_nan=False)), min_size=1, max_size=4),
    st.sampled_from([None, *range(len(REAL))]),
)
def test_feature_rows_are_finite_or_nan_for_any_parsed_page(steps, real):
    fs = FeatureState()
    texts = ([(REAL[real], 2.0)] if real is not None else []) + [
        (exposition(s), dt) for s, dt in steps
    ]
    ts = 0.0
    for text, dt in texts:
        STATS["inputs"] += 1
        try:
            page = parse_needed(text, NEEDED_NAMES)
        except PageError:
            continue
        ts += dt
        row = fs.update(page, ts)
        assert row.shape == (len(FEATURE_NAMES),)
        assert all(math.isnan(v) or math.isfinite(v) for v in row.tolist()), row


def test_zz_the_fuzzers_saw_enough_inputs():
    """Runs last in this file: the fuzzers above fed >= 10,000 inputs, and the differential
    tests compared many texts both parsers accept."""
    if STATS["inputs"] == 0:
        pytest.skip("run with the fuzz tests above (selected alone)")
    assert STATS["inputs"] >= 10_000, STATS
    assert STATS["both"] >= 1500, STATS


@pytest.mark.parametrize(
    "text, fast_ok, ref_ok, why",
    [
        # Valid per the text format ("tokens may be separated by blanks"); both read it.
        ('go_goroutines {a="b", c="d"} 7\n', True, True, "blanks between tokens"),
        ('go_goroutines{a="b"}7\n', True, True, "no blank needed after }"),
        ("go_goroutines\t7\t1700000000000\n", True, True, "tabs, and an integer timestamp"),
        ('go_goroutines{a="x\\qy"} 7\n', True, True, "an unknown escape is kept as written"),
        # Invalid per the text format; prometheus-client reads them, parse_needed refuses: a
        # Go parser (Prometheus itself) refuses them too.
        ("go_goroutines 7\r\n", False, True, "CRLF: \\r is not a blank, so the value is '7\\r'"),
        ("go_goroutines 7 1 2\n", False, True, "extra tokens after the timestamp"),
        ("go_goroutines 7 1.5\n", False, True, "timestamps are int64 milliseconds"),
        # Invalid; parse_needed is lenient (harmless: the numbers are read right).
        ("go_goroutines 1_000\n", True, False, "Python's float() reads digit separators"),
        ('go_goroutines{a="b"c="d"} 7\n', True, False, "labels without a comma"),
    ],
)
def test_where_the_parsers_differ_the_text_format_decides(text, fast_ok, ref_ok, why):
    fast, ref = both(text)
    assert (fast is not None, ref is not None) == (fast_ok, ref_ok), why


def test_counter_rename_by_prometheus_client_is_the_only_agreed_difference():
    text = "# TYPE go_goroutines counter\ngo_goroutines 7\n"
    fast, ref = both(text)
    assert fast.get("go_goroutines") == [({}, 7.0)]
    assert ref.get("go_goroutines_total") == [({}, 7.0)] and not ref.has("go_goroutines")
