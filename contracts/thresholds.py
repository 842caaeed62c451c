"""thresholds.json, the classic rules' learned thresholds: one writer, one reader.

Training writes it (`coredns-anomaly thresholds learn`, training/baselines/thresholds.py, through
`dumps`); the rules generator renders it (`coredns-anomaly rules classic --thresholds`, through
`read`). A JSON object:

- `window`: the rate window of every signal (a Prometheus duration, e.g. "1m");
- `for`: the one `for:` of every rule (a Prometheus duration; "0s" writes none);
- `signals`: {signal name (contracts/signals.py): {`threshold`, `normal_median`,
  `normal_q999`, `normal_max`, `normal_steps`, and `skipped` with the reason when no threshold
  can separate normal traffic}};
- provenance, read by people: `method`, `normal_train_minutes`, `validation` (the `for:`
  choice), `datasets`.

Stdlib only, like every contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ContractError
from .signals import BY_NAME

FILE = "thresholds.json"
LEARN = "coredns-anomaly thresholds learn --dataset DIR --out DIR"  # the writer, for messages
REQUIRED = ("window", "for", "signals")


class ThresholdsError(ContractError):
    """A thresholds.json the rules cannot be rendered from; the message names the fix."""


def dumps(doc: dict[str, Any]) -> str:
    """The file's text: sorted keys, so a relearned file diffs cleanly against the committed."""
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def write(doc: dict[str, Any], path: str | Path) -> Path:
    """Write thresholds.json at `path`, checked by the reader's rules first (nothing is written
    that `read` would refuse) and renamed into place whole."""
    path = Path(path)
    text = dumps(doc)
    check(json.loads(text), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def read(path: str | Path) -> dict[str, Any]:
    """thresholds.json as the writer wrote it; ThresholdsError if it is not usable."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ThresholdsError(f"{path} not found: learn it with `{LEARN}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ThresholdsError(f"{path} is not valid JSON: {exc}") from None
    return check(doc, path)


def check(doc: Any, path: Path) -> dict[str, Any]:
    """The reader's rules on a parsed document; ThresholdsError names the field and the fix."""
    for key in REQUIRED:
        if key not in (doc if isinstance(doc, dict) else {}):
            raise ThresholdsError(f"{path} lacks `{key}`: relearn with `{LEARN}`")
    unknown = sorted(set(doc["signals"]) - set(BY_NAME))
    if unknown:
        raise ThresholdsError(f"{path}: unknown signals {unknown}; relearn with this version")
    return doc
