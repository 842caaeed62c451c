"""The README's retraining example runs as written (on the shipped dataset)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_readme_retraining_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- retrain-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README lost its retraining example"
    code = m.group(1).replace('"models/my-model"', repr(str(tmp_path / "my-model")))
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    assert (tmp_path / "my-model" / "model.tflite").is_file()
    assert scope["result"]["pointwise"]["f1"] > 0.5
