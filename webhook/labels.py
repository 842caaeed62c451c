"""The label file: engineers' verdicts (and weak labels) that ``train`` reads.

This module is the one definition of the format (docs/labels.md describes it for humans).
Stdlib only, because training imports it without Flask:

    from coredns_anomaly.webhook.labels import read_label_file, write_label_file, LabelRecord

CSV, UTF-8, header ``instance,start,end,verdict,class,source,alertname,fingerprint,comment``.

Cells come from alert senders and engineers' comments, and people open label files in
spreadsheets, so a cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR is written with a
leading single quote (OWASP's CSV-injection defence); a cell that itself starts with a quote
gets one more, so reading strips exactly one quote in front of those characters and a file
round-trips unchanged.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from coredns_anomaly.contracts.errors import ContractError
from coredns_anomaly.contracts.names import FALSE_ALARM, VERDICT_ANOMALY, VERDICTS
from coredns_anomaly.webhook.timefmt import format_rfc3339, parse_rfc3339

COLUMNS = (
    "instance",
    "start",
    "end",
    "verdict",
    "class",
    "source",
    "alertname",
    "fingerprint",
    "comment",
)
REQUIRED_COLUMNS = ("instance", "start", "end", "verdict", "source")
SOURCES = ("verified", "weak")


def label_rank(source: str, anomaly: bool, anomaly_class: str = "") -> int:
    """Which label wins where two cover the same step of one instance (higher wins, 0: not a
    label of the step at all). An engineer's verified anomaly (or the lab's ground truth) over
    a false-alarm verdict over a weak label: an alert of some other rule is a guess, and an
    engineer who looked has the last word. One rule, used wherever labels are merged."""
    if anomaly:
        return 1 if source == "weak" else 3
    return 2 if anomaly_class == FALSE_ALARM else 0


# An alert aggregated over instances (e.g. the CoreDNS mixin's CoreDNSErrorsHigh sums "without
# (instance, ...)") applies to every instance in its time range.
ALL_INSTANCES = "*"
CLASS_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")


def class_of_alert(alertname: str) -> str:
    """An alert name as a label class (CLASS_RE's alphabet; any other character becomes _):
    weak labels keep the name of the rule that made them."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", alertname)[:64] or "anomaly"


# First characters a spreadsheet may read as a formula (OWASP), and the escape itself.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED_START = (*_FORMULA_START, "'")


def escape_cell(value: str) -> str:
    """Prefix a quote to a cell a spreadsheet could run as a formula (or one starting with ')."""
    return "'" + value if value.startswith(_ESCAPED_START) else value


def unescape_cell(value: str) -> str:
    """Undo escape_cell; a quote before anything else is left alone (a hand-written file)."""
    return value[1:] if value.startswith("'") and value[1:].startswith(_ESCAPED_START) else value


class LabelFileError(ContractError):
    """A label file that cannot be read; the message names the file, line and field."""


@dataclass(frozen=True)
class LabelRecord:
    """One labelled time range of one CoreDNS instance (or of all of them: ``instance="*"``).

    ``anomaly_class`` is the CSV column ``class`` (a Python keyword); it is only set for
    verdict ``anomaly``. Times are aware datetimes, normalised to UTC.
    """

    instance: str
    start: datetime
    end: datetime
    verdict: str
    source: str = "verified"
    anomaly_class: str = ""
    alertname: str = ""
    fingerprint: str = ""
    comment: str = ""

    def __post_init__(self) -> None:
        problem = _check(self)
        if problem:
            field, message = problem
            raise ValueError(f"{field}: {message}")
        object.__setattr__(self, "start", self.start.astimezone(timezone.utc))
        object.__setattr__(self, "end", self.end.astimezone(timezone.utc))

    @property
    def is_anomaly(self) -> bool:
        return self.verdict == VERDICT_ANOMALY

    def to_row(self) -> dict[str, str]:
        """The CSV row, unescaped (write_label_file escapes)."""
        return {
            "instance": self.instance,
            "start": format_rfc3339(self.start),
            "end": format_rfc3339(self.end),
            "verdict": self.verdict,
            "class": self.anomaly_class,
            "source": self.source,
            "alertname": self.alertname,
            "fingerprint": self.fingerprint,
            "comment": self.comment,
        }


def _check(r: LabelRecord) -> tuple[str, str] | None:
    """Return (field, problem) for the first invalid field, else None."""
    if not isinstance(r.instance, str) or not r.instance.strip():
        return "instance", "must not be empty (use '*' for all instances)"
    for name in ("start", "end"):
        value = getattr(r, name)
        if not isinstance(value, datetime) or value.tzinfo is None:
            return name, "must be a timezone-aware datetime"
    if r.end < r.start:
        return "end", f"{format_rfc3339(r.end)} is before start {format_rfc3339(r.start)}"
    if r.verdict not in VERDICTS:
        return "verdict", f"{r.verdict!r} is not one of {', '.join(VERDICTS)}"
    if r.source not in SOURCES:
        return "source", f"{r.source!r} is not one of {', '.join(SOURCES)}"
    if r.anomaly_class:
        if r.verdict != VERDICT_ANOMALY:
            return "class", f"only allowed with verdict {VERDICT_ANOMALY!r}"
        if not CLASS_RE.match(r.anomaly_class):
            return "class", f"{r.anomaly_class!r} is not a class name ([A-Za-z0-9_.:-], 1-64)"
    for name in ("alertname", "fingerprint", "comment"):
        if not isinstance(getattr(r, name), str):
            return name, "must be a string"
    return None


def write_label_file(
    path_or_stream: str | os.PathLike[str] | IO[str], records: Iterable[LabelRecord]
) -> int:
    """Write records as a label file; returns the count. Paths are replaced atomically."""
    if hasattr(path_or_stream, "write"):
        return _write(path_or_stream, records)  # type: ignore[arg-type]
    path = Path(path_or_stream)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            n = _write(fh, records)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def _write(stream: IO[str], records: Iterable[LabelRecord]) -> int:
    stream.write(_csv_line(COLUMNS))
    n = 0
    for record in records:
        row = record.to_row()
        stream.write(_csv_line([escape_cell(row[c]) for c in COLUMNS]))
        n += 1
    return n


def _csv_line(cells: Iterable[str]) -> str:
    """One RFC 4180 line ending in LF, as csv.writer writes it, except that a cell holding a
    lone CR is quoted too (csv.writer with an LF terminator leaves it bare, and the file then
    cannot be read back)."""
    out = []
    for cell in cells:
        if any(c in cell for c in ',"\r\n'):
            cell = '"' + cell.replace('"', '""') + '"'
        out.append(cell)
    return ",".join(out) + "\n"


def dumps_label_file(records: Iterable[LabelRecord]) -> str:
    buf = io.StringIO()
    _write(buf, records)
    return buf.getvalue()


def read_label_file(path_or_stream: str | os.PathLike[str] | IO[str]) -> list[LabelRecord]:
    """Read and validate a label file; LabelFileError names line and field of the first problem.

    Blank lines and lines starting with '#' are ignored; columns may come in any order, optional
    ones may be left out, unknown ones are an error (a typo would otherwise drop data silently).
    """
    if hasattr(path_or_stream, "read"):
        name = getattr(path_or_stream, "name", "<stream>")
        return _read(path_or_stream, str(name))  # type: ignore[arg-type]
    try:
        with open(path_or_stream, encoding="utf-8-sig", newline="") as fh:
            return _read(fh, str(path_or_stream))
    except UnicodeDecodeError as exc:
        raise LabelFileError(
            f"{path_or_stream}: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None


def _read(stream: IO[str], name: str) -> list[LabelRecord]:
    reader = csv.reader(stream, strict=True)
    header: list[str] | None = None
    records: list[LabelRecord] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = _check_header(row, name, line)
                continue
            if len(row) != len(header):
                raise LabelFileError(
                    f"{name}, line {line}: expected {len(header)} fields like the header, got {len(row)}"
                )
            cells = [unescape_cell(cell) for cell in row]
            records.append(_record(dict(zip(header, cells, strict=True)), name, line))
    except csv.Error as exc:
        raise LabelFileError(f"{name}, line {reader.line_num}: malformed CSV: {exc}") from None
    if header is None:
        raise LabelFileError(f"{name}: empty file, expected the header {','.join(COLUMNS)}")
    return records


def _check_header(row: list[str], name: str, line: int) -> list[str]:
    header = [cell.strip() for cell in row]
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise LabelFileError(
            f"{name}, line {line}: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"the columns are {','.join(COLUMNS)}"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise LabelFileError(
            f"{name}, line {line}: missing required column(s) {', '.join(missing)}"
        )
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise LabelFileError(f"{name}, line {line}: duplicate column(s) {', '.join(dupes)}")
    return header


def _record(row: dict[str, str], name: str, line: int) -> LabelRecord:
    def fail(field: str, message: str) -> LabelFileError:
        return LabelFileError(f"{name}, line {line}: field {field!r}: {message}")

    times = {}
    for field in ("start", "end"):
        try:
            times[field] = parse_rfc3339(row[field].strip())
        except ValueError as exc:
            raise fail(field, str(exc)) from None
    values = {
        "instance": row["instance"].strip(),
        "start": times["start"],
        "end": times["end"],
        "verdict": row["verdict"].strip(),
        "source": row["source"].strip(),
        "anomaly_class": row.get("class", "").strip(),
        "alertname": row.get("alertname", "").strip(),
        "fingerprint": row.get("fingerprint", "").strip(),
        "comment": row.get("comment", ""),
    }
    try:
        return LabelRecord(**values)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        column = "class" if field == "anomaly_class" else field
        raise fail(column, message) from None
