"""Fuzzing model.json: whatever a bundle holds, load_bundle serves it or refuses it with one
BundleError of one line (issue 13: `anomaly_types: [1]`, `feature_names: 5`, `versions: []`
and JSON nested 100,000 deep crashed a running exporter on hot reload).

Every field of the real models/default/model.json (dict keys, and the first and last item of
lists) is deleted or replaced by values of every JSON type: null, booleans, zero, negative,
fractional, huge (1e308, an integer of 400 digits, one of 5,000 digits that Python refuses to
convert, the literal 1e999 that reads as infinity), NaN, strings, empty and odd lists and
objects, and a document nested 40 deep. Whole files are also broken: 100,000-deep nesting,
truncation, bytes that are not UTF-8, a top-level array, a 5 MB file.

For each: load_bundle returns a Bundle that the exporter can use (its version, kind, meta
comparison and type lookup work) or raises BundleError, on one line, from an explicit check
(never the last-resort net that turns unforeseen exceptions into BundleError). The fast suite
draws a rotating subset of 5 values per field (~900 loads, ~2 s); `-m integration`
runs every value on every field (~5,000 loads). A refused hot reload keeps the old bundle serving.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from exporter_testlib import MODEL_DIR, Timeline, bump_mtime, copy_model

from coredns_anomaly.exporter.bundle import Bundle, BundleError, load_bundle

SAFETY_NET = "the bundle could not be read ("
# Placeholders for JSON text json.dumps will not write: replaced in the serialized document.
RAW = {"@INF@": "1e999", "@NEGINF@": "-1e999", "@BIGINT@": "1" + "0" * 400, "@HUGEINT@": "9" * 5000}


def _deep(n: int) -> Any:
    doc: Any = 1
    for _ in range(n):
        doc = [doc]
    return doc


VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2, 0.5, -0.0, 1e308, -1e308, float("nan"), "@INF@", "@NEGINF@",
    "@BIGINT@", "@HUGEINT@", "", "x", "2", [], [1], ["a"], [[1, 2], [3]], {}, {"a": 1},
    {"names": 1}, _deep(40),
]  # fmt: skip
DELETE = object()


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every field path: dict keys, and the first and last item of each list."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list) and doc:
        for i in sorted({0, len(doc) - 1}):
            out.append((*prefix, i))
            out += paths(doc[i], (*prefix, i))
    return out


def mutated(meta: dict, path: tuple, value: Any) -> str:
    doc = copy.deepcopy(meta)
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    if value is DELETE:
        if isinstance(cur, dict):
            del cur[path[-1]]
        else:
            cur.pop(path[-1])
    else:
        cur[path[-1]] = value
    text = json.dumps(doc)
    for placeholder, raw in RAW.items():
        text = text.replace(f'"{placeholder}"', raw)
    return text


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return copy_model(tmp_path_factory.mktemp("fuzz") / "model")


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((MODEL_DIR / "model.json").read_text())


STATS: Counter = Counter()


def judge(model: Path, what: str) -> None:
    """load_bundle on the bundle at `model`: a usable Bundle or one explicit one-line refusal."""
    STATS["loads"] += 1
    try:
        b = load_bundle(model)
    except BundleError as exc:
        msg = str(exc)
        assert "\n" not in msg and 0 < len(msg) <= 2000, (what, msg)
        assert SAFETY_NET not in msg, f"{what}: no explicit check caught it: {msg}"
        STATS["refused"] += 1
        return
    except Exception as exc:  # noqa: BLE001 - the property under test
        pytest.fail(f"{what}: load_bundle raised {type(exc).__name__}: {exc}")
    # what the exporter does with a loaded bundle: labels, the reload comparison, types
    assert isinstance(b, Bundle)
    assert isinstance(b.version, str) and isinstance(b.kind, str)
    assert f"{b.step_seconds:g}" and str(b.window)
    assert b.meta == copy.deepcopy(b.meta)
    Z = np.zeros((2, b.window, b.n_features), np.float32)
    assert len(b.nearest_types(Z)) == 2
    STATS["served"] += 1


def run(meta: dict, scratch: Path, every_value: bool) -> None:
    for i, path in enumerate(paths(meta)):
        values = [DELETE, *VALUES]
        if not every_value:  # a rotating subset: every value is used on many fields
            values = [values[(i * 5 + k) % len(values)] for k in range(5)]
        for v in values:
            (scratch / "model.json").write_text(mutated(meta, path, v))
            judge(scratch, f"{'.'.join(map(str, path))} = {'<deleted>' if v is DELETE else repr(v)[:40]}")  # fmt: skip


def test_every_field_fuzzed_is_served_or_refused_on_one_line(meta, scratch):
    run(meta, scratch, every_value=False)
    assert STATS["loads"] >= 800 and STATS["refused"] >= 200 and STATS["served"] >= 100, STATS


@pytest.mark.integration
def test_every_field_with_every_value(meta, scratch):
    run(meta, scratch, every_value=True)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("anomaly_types", [1], "`anomaly_types` is [1], must be an object"),
        ("feature_names", 5, "`feature_names` is 5, must be a list"),
        ("versions", [], "`versions` is [], must be an object"),
        ("window", "@INF@", "`window` is inf"),
        ("step_seconds", "@HUGEINT@", "is not valid JSON"),
        ("decision_debounce_steps", -3, "`decision_debounce_steps` is -3"),
        ("schema_version", True, "schema_version True is not one"),
        ("model_kind", {"a": 1}, "`model_kind` is {'a': 1}, must be a string"),
        ("sha256", None, "`sha256` is None"),
    ],
)
def test_the_fields_of_issue_13_are_refused_naming_the_field(meta, scratch, field, value, words):
    (scratch / "model.json").write_text(mutated(meta, (field,), value))
    with pytest.raises(BundleError) as info:
        load_bundle(scratch)
    assert words in str(info.value) and "\n" not in str(info.value)


WHOLE_FILES = {
    "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "an object nested 100,000 deep": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "a field nested 40 deep": None,  # built from the real file below
    "truncated": None,
    "not UTF-8": b"\xff\xfe{\x00",
    "a top-level array": "[1, 2]",
    "empty": "",
    "5 MB": '{"x": "' + "a" * 5_000_000 + '"}',
}


@pytest.mark.parametrize("case", list(WHOLE_FILES))
def test_whole_broken_files_are_refused_on_one_line(meta, scratch, case):
    content = WHOLE_FILES[case]
    if case == "a field nested 40 deep":
        content = json.dumps({**meta, "evaluation": _deep(40)})
    elif case == "truncated":
        content = json.dumps(meta)[:5000]
    if isinstance(content, bytes):
        (scratch / "model.json").write_bytes(content)
    else:
        (scratch / "model.json").write_text(content)
    with pytest.raises(BundleError) as info:
        load_bundle(scratch)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) <= 2000 and SAFETY_NET not in msg, msg


def test_a_model_json_that_is_a_directory_is_refused(scratch):
    (scratch / "model.json").unlink()
    (scratch / "model.json").mkdir()
    try:
        with pytest.raises(BundleError, match="model.json is missing"):
            load_bundle(scratch)
    finally:
        (scratch / "model.json").rmdir()
        shutil.copy(MODEL_DIR / "model.json", scratch / "model.json")


@pytest.mark.parametrize(
    "breaker",
    [
        lambda m: {**m, "anomaly_types": [1]},
        lambda m: {**m, "feature_names": 5},
        lambda m: {**m, "versions": []},
        lambda m: _deep(100_000),
    ],
    ids=["anomaly_types: [1]", "feature_names: 5", "versions: []", "nested 100,000 deep"],
)
def test_a_refused_hot_reload_keeps_the_old_model_serving(
    tmp_path, page_server, make_exporter, bundle, breaker
):
    model = copy_model(tmp_path / "model")
    page_server.timeline("/metrics", Timeline("normal"))
    x = make_exporter(model=str(model), targets=[page_server.instance()])
    x.run_step()
    meta = json.loads((model / "model.json").read_text())
    broken = breaker(meta)
    text = "[" * 100_000 + "]" * 100_000 if isinstance(broken, list) else json.dumps(broken)
    (model / "model.json").write_text(text)
    bump_mtime(model / "model.json")
    x.run_step()  # reload attempted before the step: refused, the step still runs
    assert x.reloads["failure"] == 1 and not x.last_reload_ok
    assert x.engine.bundle.sha256 == bundle.sha256 and x.steps == 2
    (model / "model.json").write_text(json.dumps(meta))
    bump_mtime(model / "model.json")
    x.run_step()
    assert x.last_reload_ok and x.steps == 3
