"""The label file format (webhook/labels.py) and RFC 3339 handling it relies on."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from coredns_anomaly.webhook.labels import (
    COLUMNS,
    LabelFileError,
    LabelRecord,
    dumps_label_file,
    read_label_file,
    write_label_file,
)
from coredns_anomaly.webhook.timefmt import ZERO_TIME, format_rfc3339, parse_rfc3339, storage_key

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)
HEADER = ",".join(COLUMNS)


def rec(**kw) -> LabelRecord:
    base = {
        "instance": "10.0.0.1:9153",
        "start": T0,
        "end": T0 + timedelta(minutes=10),
        "verdict": "anomaly",
    }
    return LabelRecord(**{**base, **kw})


def test_round_trip_through_a_file(tmp_path):
    records = [
        rec(
            anomaly_class="upstream_latency",
            alertname="CoreDNSAnomaly",
            fingerprint="ab12",
            comment='a, "quoted"\nline',
        ),
        rec(verdict="false_alarm", instance="10.0.0.2:9153"),
        rec(instance="*", source="weak", alertname="CoreDNSErrorsHigh"),
    ]
    path = tmp_path / "labels.csv"
    assert write_label_file(path, records) == 3
    assert read_label_file(path) == records
    assert path.read_text().splitlines()[0] == HEADER
    assert "2026-11-22T03:00:00Z" in path.read_text()


def test_stream_io_and_documented_example():
    text = (
        f"{HEADER}\n"
        "10.0.0.1:9153,2026-11-22T03:00:00Z,2026-11-22T03:20:00Z,anomaly,upstream_latency,verified,CoreDNSAnomaly,3f2a,\n"
        "10.0.0.2:9153,2026-11-22T04:00:00Z,2026-11-22T04:05:00Z,false_alarm,,verified,CoreDNSAnomaly,,deploy\n"
        "*,2026-11-22T05:00:00+01:00,2026-11-22T04:30:00Z,anomaly,,weak,CoreDNSErrorsHigh,,\n"
    )
    records = read_label_file(io.StringIO(text))
    assert [r.verdict for r in records] == ["anomaly", "false_alarm", "anomaly"]
    assert records[0].anomaly_class == "upstream_latency"
    assert records[2].start == datetime(
        2026, 11, 22, 4, 0, tzinfo=timezone.utc
    )  # offset normalised
    out = io.StringIO()
    write_label_file(out, records)
    assert read_label_file(io.StringIO(out.getvalue())) == records


def test_comments_blank_lines_column_order_and_optional_columns():
    text = (
        "# exported by hand\n\n"
        "verdict,source,end,start,instance\n"
        "anomaly,verified,2026-11-22T03:10:00Z,2026-11-22T03:00:00Z,dns-1:53\n\n"
    )
    (r,) = read_label_file(io.StringIO(text))
    assert r.instance == "dns-1:53" and r.anomaly_class == "" and r.alertname == ""


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        (
            "x,2026-11-22T03:00:00Z,2026-11-22T03:10:00Z,maybe,,verified,,,",
            "line 2: field 'verdict'",
        ),
        ("x,yesterday,2026-11-22T03:10:00Z,anomaly,,verified,,,", "line 2: field 'start'"),
        ("x,2026-11-22T03:00:00Z,2026-11-22T02:00:00Z,anomaly,,verified,,,", "line 2: field 'end'"),
        (
            "x,2026-11-22T03:00:00Z,2026-11-22T03:10:00Z,anomaly,,guessed,,,",
            "line 2: field 'source'",
        ),
        (
            ",2026-11-22T03:00:00Z,2026-11-22T03:10:00Z,anomaly,,verified,,,",
            "line 2: field 'instance'",
        ),
        (
            "x,2026-11-22T03:00:00Z,2026-11-22T03:10:00Z,false_alarm,upstream,verified,,,",
            "field 'class'",
        ),
        (
            "x,2026-11-22T03:00:00Z,2026-11-22T03:10:00Z,anomaly,bad class!,verified,,,",
            "field 'class'",
        ),
        ("x,2026-11-22T03:00:00Z,2026-11-22T03:10:00Z,anomaly,,verified", "expected 9 fields"),
    ],
)
def test_errors_name_line_and_field(row, needle):
    with pytest.raises(LabelFileError) as exc:
        read_label_file(io.StringIO(f"{HEADER}\n{row}\n"))
    assert needle in str(exc.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty file"),
        ("instance,start,end,verdict,source,colour\n", "unknown column(s) 'colour'"),
        ("instance,start,end,source\n", "missing required column(s) verdict"),
        ("instance,start,end,verdict,source,source\n", "duplicate column(s) source"),
    ],
)
def test_header_errors(text, needle):
    with pytest.raises(LabelFileError) as exc:
        read_label_file(io.StringIO(text))
    assert needle in str(exc.value)


def test_error_names_the_file_and_physical_line(tmp_path):
    path = tmp_path / "bad.csv"
    good = "x,2026-11-22T03:00:00Z,2026-11-22T03:10:00Z,anomaly,,verified,,,"
    path.write_text(f"# c\n{HEADER}\n{good}\n\n{good.replace('verified', 'nope')}\n")
    with pytest.raises(LabelFileError, match=rf"{path}, line 5: field 'source'"):
        read_label_file(path)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(f"{HEADER}\n".encode() + "é,".encode("latin-1"))
    with pytest.raises(LabelFileError, match="not UTF-8"):
        read_label_file(path)


def test_record_validation_in_code():
    with pytest.raises(ValueError, match="verdict"):
        rec(verdict="yes")
    with pytest.raises(ValueError, match="timezone-aware"):
        rec(start=datetime(2026, 1, 1))
    assert rec(start=T0.astimezone(timezone(timedelta(hours=2)))).start.tzinfo == timezone.utc


def test_atomic_write_leaves_no_temp_files(tmp_path):
    write_label_file(tmp_path / "l.csv", [rec()])
    assert [p.name for p in tmp_path.iterdir()] == ["l.csv"]
    assert dumps_label_file([]) == HEADER + "\n"


def test_labels_module_is_stdlib_only():
    """training imports it; it must not pull Flask, jsonschema or prometheus_client."""
    code = (
        "import sys; import coredns_anomaly.webhook.labels as l; "
        "bad = [m for m in ('flask', 'jsonschema', 'prometheus_client', 'werkzeug', 'yaml') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T03:00:00Z", datetime(2026, 11, 22, 3, tzinfo=timezone.utc)),
        (
            "2026-11-22T03:00:00.123456789Z",
            datetime(2026, 11, 22, 3, 0, 0, 123456, tzinfo=timezone.utc),
        ),
        ("2026-11-22T05:30:00+02:30", datetime(2026, 11, 22, 3, tzinfo=timezone.utc)),
        ("0001-01-01T00:00:00Z", ZERO_TIME),
    ],
)
def test_parse_rfc3339(text, expected):
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-22",
        "2026-11-22T03:00:00",
        "2026-13-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
        "2026-11-22T03:00:00+25:00",
        "2026-11-22T03:00:00.Z",
        "２026-11-22T03:00:00Z",
    ],
)
def test_parse_rfc3339_rejects(text):
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_formats():
    assert format_rfc3339(T0) == "2026-11-22T03:00:00Z"
    assert format_rfc3339(T0.replace(microsecond=120000)) == "2026-11-22T03:00:00.12Z"
    assert storage_key(ZERO_TIME) == "0001-01-01T00:00:00.000000Z"
    assert parse_rfc3339(format_rfc3339(ZERO_TIME)) == ZERO_TIME
