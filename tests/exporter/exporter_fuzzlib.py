"""Near-valid Prometheus exposition text from a seed, for the exporter's fuzz tests.

Hypothesis draws the seed (cheap to generate, so 10,000+ inputs fit in seconds) and this
builder turns it into text from the real families the features read, each line with a
chance of one defect: odd or invalid label names, the three legal escapes and broken ones,
unicode, NaN/Inf and garbage values, timestamps, comments, garbage lines, truncation."""

from __future__ import annotations

import random

from coredns_anomaly.exporter.features import NEEDED_NAMES

NEEDED = sorted(NEEDED_NAMES)
OTHER = ["go_goroutines_x", "coredns_dns_requests", "coredns_health_request_duration_seconds_bucket", "process_max_fds", "up", "a:b_c", "coredns_dns_requests_total_", "process_cpu_seconds_totalx"]  # fmt: skip
LABEL_NAMES = ["server", "zone", "proto", "type", "rcode", "le", "name", "proxy_name", "to", "plugin", "view", "family", "zones", "_x", "A9"]  # fmt: skip
BAD_LABEL_NAMES = ["1abc", "a-b", "", "a.b", '"quoted"', "a b"]
PLAIN_VALUES = ["forward", "dns://:53", ".", "udp", "tcp", "A", "AAAA", "1.1.1.1:53", "NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "0.001", "0.1", "+Inf", "cache", "", "x y", "a,b", "a=b", "{}", "#", "é☃"]  # fmt: skip
ESCAPES = ["\\\\", '\\"', "\\n"]
BAD_ESCAPES = ["\\q", '"', "\\", "\\x41", "\n", "\\t"]
VALUES = ["0", "1", "42", "1234567", "3.14", "1e3", "1E-3", "-5", ".5", "5.", "-0", "1.79532585645e+09", "NaN", "+Inf", "-Inf"]  # fmt: skip
ODD_VALUES = ["Inf", "nan", "inf", "+inf", "infinity", "+NaN", "0x10", "1_000", "", "x", "1,5", "--1", "1e", "∞", "12abc", "1e999", "00012"]  # fmt: skip
TIMESTAMPS = ["1700000000000", "-1", "0"]
ODD_TIMESTAMPS = ["1.5", "x", "-", "1e3", "+5"]
SEPS = [" ", " ", " ", " ", "\t", "  "]


def _label_value(r: random.Random, defect: bool) -> str:
    parts = [r.choice(PLAIN_VALUES) for _ in range(r.randint(0, 2))]
    if r.random() < 0.3:
        parts.insert(r.randint(0, len(parts)), r.choice(ESCAPES))
    if defect:
        parts.insert(r.randint(0, len(parts)), r.choice(BAD_ESCAPES))
    return "".join(parts)


def sample_line(r: random.Random, defect_rate: float) -> str:
    d = lambda: r.random() < defect_rate  # noqa: E731
    name = r.choice(OTHER) if r.random() < 0.15 else r.choice(NEEDED)
    n = r.choice([0, 1, 1, 2, 3, 4])
    pairs = [
        (r.choice(BAD_LABEL_NAMES) if d() else r.choice(LABEL_NAMES), _label_value(r, d()))
        for _ in range(n)
    ]
    if n and d():  # a duplicate label name
        pairs.append((pairs[0][0], "dup"))
    body = ""
    if pairs or r.random() < 0.2:
        comma = ", " if r.random() < 0.1 else ("" if d() else ",")
        body = "{" + comma.join(f'{k}="{v}"' for k, v in pairs)
        body += r.choice(["}", ",}", "", "}}", " }"]) if d() else "}"
    space = r.choice(["", "\t\t"]) if d() else r.choice(SEPS)
    value = r.choice(ODD_VALUES) if d() else r.choice(VALUES)
    line = name + (" " if d() else "") + body + space + value
    if r.random() < 0.15:
        line += r.choice(SEPS) + (r.choice(ODD_TIMESTAMPS) if d() else r.choice(TIMESTAMPS))
    if d():
        line += r.choice([" ", "\t", "\r", " # c", " 1 2"])
    return line


def comment(r: random.Random) -> str:
    name = r.choice(NEEDED)
    return r.choice(
        [
            f"# HELP {name} help text with \\\\ and \\n escapes",
            f"# TYPE {name} {r.choice(['counter', 'gauge', 'histogram', 'untyped', 'summary'])}",
            "#", "# a comment", "",
        ]
    )  # fmt: skip


def garbage(r: random.Random) -> str:
    alphabet = 'abc{}="\\ \t,#.:0123456789eE+-NaI\x00é'
    return "".join(r.choice(alphabet) for _ in range(r.randint(0, 30)))


def exposition(seed: int) -> str:
    """One text: mostly valid lines (a third of texts fully valid), a few defects."""
    r = random.Random(seed)
    defect_rate = r.choice([0.0, 0.0, 0.02, 0.05, 0.2])
    lines = []
    for _ in range(r.randint(0, 12)):
        x = r.random()
        if x < 0.75:
            lines.append(sample_line(r, defect_rate))
        elif x < 0.93:
            lines.append(comment(r))
        elif defect_rate:
            lines.append(garbage(r))
    text = "\n".join(lines) + r.choice(["\n", "\n", "\n", "", "\n\n"])
    if defect_rate and r.random() < 0.2:  # truncated anywhere
        text = text[: r.randint(0, len(text))]
    return text
