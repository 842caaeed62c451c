"""Alertmanager webhook payload (version "4"): parse, validate, normalise.

The schema is strict about what we rely on (types, timestamps, fingerprints) and lenient about
what we do not (extra fields, optional ones absent), because a 4xx makes Alertmanager drop the
notification: rejecting a real payload would lose an alert.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from coredns_anomaly.webhook.timefmt import ZERO_TIME, parse_rfc3339, storage_key

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# SQLite's INTEGER is a signed 64-bit value: a larger number passes JSON but fails the INSERT
# (OverflowError), which would make the delivery fail forever; refuse it here with a 400.
MAX_INT = 2**63 - 1
_TIME = {"type": "string", "format": "date-time"}

ALERT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "labels", "startsAt", "fingerprint"],
    "properties": {
        "status": {"enum": ["firing", "resolved"]},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "startsAt": _TIME,
        "endsAt": _TIME,
        "generatorURL": {"type": "string"},
        "fingerprint": {"type": "string", "minLength": 1, "maxLength": 128},
    },
}

PAYLOAD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Alertmanager webhook payload, version 4",
    "type": "object",
    "required": ["version", "groupKey", "status", "receiver", "alerts"],
    "properties": {
        "version": {"const": "4"},
        "groupKey": {"type": "string", "minLength": 1},
        "truncatedAlerts": {"type": "integer", "minimum": 0, "maximum": MAX_INT},
        "status": {"enum": ["firing", "resolved"]},
        "receiver": {"type": "string"},
        "groupLabels": _STRING_MAP,
        "commonLabels": _STRING_MAP,
        "commonAnnotations": _STRING_MAP,
        "externalURL": {"type": "string"},
        "alerts": {"type": "array", "items": ALERT_SCHEMA},
    },
}

_formats = FormatChecker(formats=())


@_formats.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    if isinstance(value, str):
        parse_rfc3339(value)
    return True


_validator = Draft202012Validator(PAYLOAD_SCHEMA, format_checker=_formats)


class PayloadError(ValueError):
    """The delivery is not an acceptable payload; the message is the 400 response body."""


@dataclass(frozen=True)
class Alert:
    status: str
    fingerprint: str
    starts_at: str  # storage_key form (fixed-width UTC)
    ends_at: str | None  # None while firing (Alertmanager sends Go's zero time)
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str


@dataclass(frozen=True)
class Delivery:
    group_key: str
    status: str
    receiver: str
    external_url: str
    truncated_alerts: int
    alerts: list[Alert]
    body_sha256: str  # of the canonical JSON: a retried delivery hashes the same
    raw: str


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_delivery(body: bytes) -> Delivery:
    """bytes -> Delivery, or PayloadError saying what is wrong (first few problems)."""
    try:
        text = body.decode("utf-8")
        payload = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise PayloadError(
            f"invalid JSON: body is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    except RecursionError:
        raise PayloadError("invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise PayloadError(f"invalid JSON: {_clip(str(exc))}") from None
    if not conforms_quickly(payload):
        _validate_with_schema(payload)
    try:
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        canonical_bytes = canonical.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError("invalid JSON: a string contains an unpaired UTF-16 surrogate") from None
    return Delivery(
        group_key=payload["groupKey"],
        status=payload["status"],
        receiver=payload["receiver"],
        external_url=payload.get("externalURL", ""),
        truncated_alerts=int(payload.get("truncatedAlerts", 0)),
        alerts=[_alert(a) for a in payload["alerts"]],
        body_sha256=hashlib.sha256(canonical_bytes).hexdigest(),
        raw=text,
    )


def _validate_with_schema(payload: Any) -> None:
    """The authority: PAYLOAD_SCHEMA via jsonschema; raises PayloadError naming the first problems."""
    errors = sorted(_validator.iter_errors(payload), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        shown = "; ".join(f"{e.json_path}: {_clip(e.message)}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise PayloadError(f"payload does not match the Alertmanager webhook schema: {shown}{more}")


def conforms_quickly(p: Any) -> bool:
    """A strict, fast check: True only for payloads PAYLOAD_SCHEMA accepts.

    jsonschema spends ~0.5 ms on a typical delivery, a third of the receiver's CPU budget, so
    well-formed deliveries take this path; anything it does not accept (including valid but
    unusual payloads, e.g. truncatedAlerts sent as 1.0) goes to the schema, which decides and
    explains. tests/webhook/test_webhook_schema.py checks "True here implies valid there" with hypothesis.
    """
    if type(p) is not dict or p.get("version") != "4":
        return False
    group_key = p.get("groupKey")
    if type(group_key) is not str or not group_key or type(p.get("receiver")) is not str:
        return False
    if p.get("status") not in _STATUSES:
        return False
    if "truncatedAlerts" in p:
        n = p["truncatedAlerts"]
        if type(n) is not int or not 0 <= n <= MAX_INT:
            return False
    if "externalURL" in p and type(p["externalURL"]) is not str:
        return False
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        if key in p and not _string_map(p[key]):
            return False
    alerts = p.get("alerts")
    if type(alerts) is not list:
        return False
    for a in alerts:
        if type(a) is not dict or a.get("status") not in _STATUSES:
            return False
        if not _string_map(a.get("labels")):
            return False
        if "annotations" in a and not _string_map(a["annotations"]):
            return False
        fingerprint = a.get("fingerprint")
        if type(fingerprint) is not str or not 1 <= len(fingerprint) <= 128:
            return False
        if "generatorURL" in a and type(a["generatorURL"]) is not str:
            return False
        for key in ("startsAt", "endsAt"):
            if key in a or key == "startsAt":
                value = a.get(key)
                if type(value) is not str:
                    return False
                try:
                    parse_rfc3339(value)
                except ValueError:
                    return False
    return True


_STATUSES = ("firing", "resolved")


def _string_map(m: Any) -> bool:
    return type(m) is dict and all(type(v) is str for v in m.values())


def _alert(a: dict[str, Any]) -> Alert:
    ends: datetime | None = parse_rfc3339(a["endsAt"]) if "endsAt" in a else None
    if ends == ZERO_TIME or a["status"] == "firing":
        ends = None
    return Alert(
        status=a["status"],
        fingerprint=a["fingerprint"],
        starts_at=storage_key(parse_rfc3339(a["startsAt"])),
        ends_at=storage_key(ends) if ends is not None else None,
        labels=a["labels"],
        annotations=a.get("annotations", {}),
        generator_url=a.get("generatorURL", ""),
    )


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
