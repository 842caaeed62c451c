"""Near-valid Prometheus and OpenMetrics exposition text from a seed, for the exporter's fuzz tests.

A seed (cheap to draw, so 10,000+ inputs fit in seconds) becomes text from the real families the
features read. Each line takes one of the forms prometheus-client reads (the plain form Go's
client writes, blanks or tabs between tokens, quoted label names, the `{"name", ...}` form,
OpenMetrics exemplars, integer or float timestamps), with indentation, CR or CRLF endings, and a
chance of one defect: odd or invalid label names, the three legal escapes and broken ones,
unicode and unicode blanks, NaN/Inf and garbage values, huge integers, bad timestamps and
exemplars, comments, garbage lines, truncation.

`openmetrics(seed)` builds a whole OpenMetrics page (families with TYPE, counters as `_total`
and `_created`, histograms with exemplars, `# EOF`), valid or with one defect.

`rule_name(line)` is parse_needed's documented rule for which lines it reads (docs/exporter.md,
"Parsing"), used to tell where a difference from prometheus-client is allowed.
"""

from __future__ import annotations

import random

from coredns_anomaly.exporter.features import NEEDED_NAMES

NEEDED = sorted(NEEDED_NAMES)
OTHER = ["go_goroutines_x", "coredns_dns_requests", "coredns_health_request_duration_seconds_bucket", "process_max_fds", "up", "a:b_c", "coredns_dns_requests_total_", "process_cpu_seconds_totalx"]  # fmt: skip
LABEL_NAMES = ["server", "zone", "proto", "type", "rcode", "le", "name", "proxy_name", "to", "plugin", "view", "family", "zones", "_x", "A9"]  # fmt: skip
BAD_LABEL_NAMES = ["1abc", "a-b", "", "a.b", '"quoted"', "a b", "__reserved", "__name__", "a:b"]
QUOTED_LABEL_NAMES = ['"a.b"', '"zone"', '"é x"']
PLAIN_VALUES = ["forward", "dns://:53", ".", "udp", "tcp", "A", "AAAA", "1.1.1.1:53", "NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "0.001", "0.1", "+Inf", "cache", "", "x y", "a,b", "a=b", "{}", "#", " # ", "}", "é☃"]  # fmt: skip
ESCAPES = ["\\\\", '\\"', "\\n"]
BAD_ESCAPES = ["\\q", '"', "\\", "\\x41", "\n", "\\t"]
VALUES = ["0", "1", "42", "1234567", "3.14", "1e3", "1E-3", "-5", ".5", "5.", "-0", "+5", "1.79532585645e+09", "NaN", "+Inf", "-Inf", "007"]  # fmt: skip
ODD_VALUES = ["Inf", "nan", "inf", "+inf", "infinity", "+NaN", "0x10", "1_000", "", "x", "1,5", "--1", "1e", "∞", "12abc", "1e999", "00012", "9" * 400, "١٢", "1 2"]  # fmt: skip
TIMESTAMPS = ["1700000000000", "-1", "0", "1.5", "1700000000.123", "1e3", "+5"]
ODD_TIMESTAMPS = ["x", "-", "1_0", "9" * 400, "{", "#", '"1"']
EXEMPLARS = [' # {trace_id="abc"} 1.0', ' # {trace_id="abc",span_id="x y"} 1 1700000000.5', " # {} 0", ' # {a="}"} 2e-3 17']  # fmt: skip
BAD_EXEMPLARS = [' # {trace_id="abc"}', ' #{a="b"} 1', '#{a="b"} 1', ' # {a="b"}1', ' # {a="b"} x', " # garbage", ' # {a="b"} 1 2 3', " #", ' # {a="b" 1', " # {a=b} 1"]  # fmt: skip
UNICODE_BLANKS = ["\u2003", "\xa0", "\x1c", "\x85", "\u3000", "\x0b", "\x0c", "\r"]
SEPS = [" ", " ", " ", " ", "\t", "  "]


def _label_value(r: random.Random, defect: bool) -> str:
    parts = [r.choice(PLAIN_VALUES) for _ in range(r.randint(0, 2))]
    if r.random() < 0.3:
        parts.insert(r.randint(0, len(parts)), r.choice(ESCAPES))
    if defect:
        parts.insert(r.randint(0, len(parts)), r.choice(BAD_ESCAPES))
    return "".join(parts)


def _blank(r: random.Random, blanks: bool) -> str:
    """Blanks between tokens: none in the plain form, any mix in the blank-tolerant one."""
    return r.choice(["", "", " ", "\t", "  ", " \t"]) if blanks else ""


def sample_line(r: random.Random, defect_rate: float) -> str:
    d = lambda: r.random() < defect_rate  # noqa: E731
    name = r.choice(OTHER) if r.random() < 0.15 else r.choice(NEEDED)
    blanks = r.random() < 0.15  # blanks around braces, `=` and commas
    n = r.choice([0, 1, 1, 2, 3, 4])
    pairs = []
    for _ in range(n):
        if d():
            lname = r.choice(BAD_LABEL_NAMES)
        elif r.random() < 0.05:
            lname = r.choice(QUOTED_LABEL_NAMES)
        else:
            lname = r.choice(LABEL_NAMES)
        pairs.append((lname, _label_value(r, d())))
    if n and d():  # a duplicate label name
        pairs.append((pairs[0][0], "dup"))
    form = r.random()
    in_braces = form < 0.04  # the UTF-8 form: {"name", labels} or {__name__="name", labels}
    if in_braces:
        first = f'"{name}"' if r.random() < 0.7 else f'__name__="{name}"'
        pairs_text = [first] + [
            f'{k}{_blank(r, blanks)}={_blank(r, blanks)}"{v}"' for k, v in pairs
        ]
    else:
        pairs_text = [f'{k}{_blank(r, blanks)}={_blank(r, blanks)}"{v}"' for k, v in pairs]
    body = ""
    if pairs_text or r.random() < 0.2:
        comma = ", " if r.random() < 0.1 else ("" if d() else ",")
        if blanks:
            comma = _blank(r, True) + comma + _blank(r, True)
        body = "{" + _blank(r, blanks) + comma.join(pairs_text) + _blank(r, blanks)
        if r.random() < 0.1:
            body += ","  # a trailing comma
        body += r.choice(["}", ",}", "", "}}", " }"]) if d() else "}"
    if blanks and body:
        body = _blank(r, True) + body
    space = r.choice(["", "\t\t"]) if d() else r.choice(SEPS)
    value = r.choice(ODD_VALUES) if d() else r.choice(VALUES)
    line = ("" if in_braces else name) + (" " if d() else "") + body + space + value
    if r.random() < 0.15:
        line += r.choice(SEPS) + (r.choice(ODD_TIMESTAMPS) if d() else r.choice(TIMESTAMPS))
    if r.random() < 0.15:  # exemplars, and near-exemplars, are where the forms meet
        line += r.choice(BAD_EXEMPLARS) if r.random() < 3 * defect_rate else r.choice(EXEMPLARS)
    if d():
        line += r.choice([" ", "\t", "\r", " # c", " 1 2"])
    if d():  # a unicode blank anywhere
        k = r.randint(0, len(line))
        line = line[:k] + r.choice(UNICODE_BLANKS) + line[k:]
    if r.random() < 0.05:  # indentation, as prometheus-client strips it
        line = r.choice([" ", "\t", "  ", "\xa0"]) + line
    return line


def comment(r: random.Random) -> str:
    name = r.choice(NEEDED)
    return r.choice(
        [
            f"# HELP {name} help text with \\\\ and \\n escapes",
            f"# TYPE {name} {r.choice(['counter', 'gauge', 'histogram', 'untyped', 'summary'])}",
            f"# TYPE {name}",  # malformed: prometheus-client refuses the page
            "#", "# a comment", "", "  # indented", "# EOF",
        ]
    )  # fmt: skip


def garbage(r: random.Random) -> str:
    alphabet = 'abc{}="\\ \t,#.:0123456789eE+-NaI\x00é\r\u2003'
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
    eol = "\r\n" if r.random() < 0.1 else "\n"
    text = eol.join(lines) + r.choice([eol, eol, eol, "", eol + eol])
    if defect_rate and r.random() < 0.2:  # truncated anywhere
        text = text[: r.randint(0, len(text))]
    return text


def _family(name: str) -> tuple[str, str]:
    """(OpenMetrics family, type) of a needed sample name."""
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            return name[: -len(suffix)], "histogram"
    if name.endswith("_total"):
        return name[: -len("_total")], "counter"
    return name, "gauge"


OM_FAMILIES = sorted({_family(n) for n in NEEDED})


def _om_labels(r: random.Random, extra: dict[str, str] | None = None) -> str:
    names = [n for n in LABEL_NAMES if n != "le"]  # le belongs to the buckets
    labels = {k: _label_value(r, False) for k in r.sample(names, r.randint(0, 3))}
    labels.update(extra or {})
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _om_tail(r: random.Random, value: str, exemplar: bool) -> str:
    tail = " " + value
    if r.random() < 0.2:
        tail += " " + r.choice(["1700000000", "1700000000.123", "1.5e9"])
    if exemplar and r.random() < 0.3:
        tail += f' # {{trace_id="{r.randrange(10**6):x}"}} {r.choice(["1", "0.5", "2e-3"])}'
        if r.random() < 0.5:
            tail += " 1700000000.25"
    return tail


def openmetrics(seed: int) -> tuple[str, bool]:
    """(An OpenMetrics page of a few needed families, whether it is valid): one line in three
    pages is replaced by a near-valid line or cut short."""
    r = random.Random(seed)
    defect = r.random() < 0.3
    out = []
    for fam, typ in r.sample(OM_FAMILIES, r.randint(1, 6)):
        out.append(f"# TYPE {fam} {typ}")
        if r.random() < 0.3:
            out.append(f"# HELP {fam} some help \\n text")
        seen = set()  # a series twice is no valid OpenMetrics (its parser keeps the first)
        for _ in range(r.randint(1, 2)):
            labels = _om_labels(r)
            if labels in seen:
                continue
            seen.add(labels)
            inner = labels[1:-1]
            if typ == "counter":
                out.append(f"{fam}_total{labels}{_om_tail(r, r.choice(['0', '5', '1.5e3']), True)}")
                if r.random() < 0.3:
                    out.append(f"{fam}_created{labels} 1700000000.5")
            elif typ == "gauge":
                out.append(
                    f"{fam}{labels}{_om_tail(r, r.choice(['0', '7', '-2.5', 'NaN']), False)}"
                )
            else:
                cum = 0
                for le in ("0.001", "0.1", "1.0", "+Inf"):
                    cum += r.randint(0, 5)
                    lb = "{" + (inner + "," if inner else "") + f'le="{le}"' + "}"
                    out.append(f"{fam}_bucket{lb}{_om_tail(r, str(cum), True)}")
                out.append(f"{fam}_count{labels} {cum}")
                out.append(f"{fam}_sum{labels} {cum * 0.01:.4f}")
    out.append("# EOF")
    if defect:
        k = r.randrange(len(out))
        out[k] = sample_line(r, 0.5) if r.random() < 0.7 else out[k][: r.randint(0, len(out[k]))]
    return "\n".join(out) + "\n", not defect


def rule_name(line: str) -> str:
    """The name parse_needed files a line under (its documented rule): the stripped line up to
    its first `{`, space or tab, unicode blanks after it removed; '' for a comment or a blank
    line, and for a line that opens with `{` (read by prometheus-client to learn its name)."""
    line = line.strip()
    if not line or line[0] == "#":
        return ""
    end = min((k for k in (line.find("{"), line.find(" "), line.find("\t")) if k >= 0), default=len(line))  # fmt: skip
    return line[:end].rstrip()
