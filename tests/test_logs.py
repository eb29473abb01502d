"""What a stage prints and records besides its results (vrlib.logs): the machine a result was
measured on, and progress lines with the time left.

Run: `.venv/bin/pytest tests/test_logs.py`
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from vrlib import logs

ROOT = Path(__file__).resolve().parents[1]


def test_machine_names_the_cpu_and_the_kernels_torch_picked(tmp_path, monkeypatch):
    """Issue 24: float kernels differ between CPU kinds, so a result records which it came from."""
    got = logs.machine()
    assert got["cpu"] and got["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert got["torch"] == torch.__version__
    monkeypatch.setattr(logs, "Path", lambda _: tmp_path / "absent")  # no /proc/cpuinfo (macOS)
    assert logs.cpu_name()


def test_machine_imports_nothing_heavy_until_called():
    """`vrlib.logs` is imported by every training stage and by `make pretrain` for `cpu_name`:
    importing it loads neither torch nor transformers."""
    code = "import sys, vrlib.logs; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout.replace("'", '"')) == []


def test_the_eval_stage_records_the_machine_with_its_settings():
    """metrics/eval_settings.json holds the CPU kind next to the frames and decoding settings."""
    cells = json.loads((ROOT / "notebooks/05_eval.ipynb").read_text())["cells"]
    source = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert 'atomic_write_json("metrics/eval_settings.json", setup | machine())' in source


def test_a_stage_of_several_phases_says_its_time_left(monkeypatch):
    """Issue 26: eval decodes several models on two splits; each progress line and each phase's
    first line say the time left in the whole stage, at the pace of the phases that ran (a phase
    read back from an earlier run takes no time and does not count)."""
    import io

    clock = iter(range(100))
    monkeypatch.setattr(logs.time, "perf_counter", lambda: float(next(clock)))
    out = io.StringIO()
    stage = logs.Stage("eval", {"base on eval": 4, "sft on eval": 4, "rft_tcr on eval": 8}, out=out)
    with stage.phase("base on eval"):  # read back: no progress
        pass
    with stage.phase("sft on eval"):   # 2 batches of 2 items, 1 s each (the clock ticks once a call)
        show = logs.progress("eval sft", 2, keys=(), unit="batch", out=out)
        show(0, {}), show(1, {})
    assert stage.done == 8 and stage.left() == 8 * 0.5  # 2 s for 4 items: 8 items left
    with stage.phase("rft_tcr on eval", passes=2):  # answers twice: each pass is half its work
        for _ in range(2):
            show = logs.progress("eval rft_tcr", 2, keys=(), unit="batch", out=out)
            show(0, {}), show(1, {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "eval: base on eval (1/3)" and lines[1] == "eval: sft on eval (2/3)"
    assert lines[3] == "eval sft  batch 2/2  1.0 s/batch, ~0s left, stage ~4s left", lines
    assert lines[4] == "eval: rft_tcr on eval (3/3), stage ~4s left"
    assert stage.done == 16 and lines[-1].endswith("stage ~0s left")


def test_show_is_a_notebook_output_not_the_stage_log(capsys):
    """What `show` writes is not a stream papermill copies to the terminal: in a kernel it is a
    display output; outside one it prints."""
    logs.show("a", [1, 2])
    assert capsys.readouterr().out == "a [1, 2]\n"


def test_stage_notebooks_print_no_traces_dicts_or_arrays():
    """The stage notebooks keep their terminal output to progress and one-line results: every
    `print` is an f-string or a plain string (no dict, list, array or trace), traces go to `show`."""
    import ast

    wrong = []
    for path in sorted((ROOT / "notebooks").glob("0[3-7]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        tree = ast.parse("\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print":
                sentence = lambda a: (isinstance(a, (ast.JoinedStr, ast.Constant))  # noqa: E731
                                      or isinstance(a, ast.IfExp) and sentence(a.body) and sentence(a.orelse)
                                      or isinstance(a, ast.Call) and getattr(a.func, "attr", "") == "join")
                if not all(sentence(a) for a in node.args):
                    wrong.append(f"{path.name}: {ast.unparse(node)[:90]}")
    assert not wrong, "print a sentence, show the rest:\n" + "\n".join(wrong)
