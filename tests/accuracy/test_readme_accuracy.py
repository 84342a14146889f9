"""The README's "Why did my model lose accuracy?" section is executed as written."""
import pathlib
import re

import pytest

import eightbit as eb


def test_readme_accuracy_section_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Why did my model lose accuracy?", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    with pytest.warns(eb.QuantizationWarning, match="hurt the output most"):
        exec(compile(code, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    report, qm = namespace["report"], namespace["qm"]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert report.worst(1)[0].name in out
    # The budget's answer keeps a few nodes float32 and meets it; the default model did not.
    assert qm.float_nodes and any(t.meets_budget for t in qm.tradeoffs)
    assert not qm.tradeoffs[0].meets_budget and qm.tradeoffs[0].float_nodes == ()
    assert report.metric_int8 < 1 - 0.001
