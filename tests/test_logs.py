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
