"""Shared fixtures: a real synthetic split on disk and a tiny Qwen2.5-VL built offline.

Run everything CI runs: `make test` (or `.venv/bin/pytest`); only the fast tiers:
`.venv/bin/pytest -m "not slow"`.
"""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def world_split(tmp_path_factory):
    """Eight grounding items with real MP4s, written and read back through the JSONL contract."""
    from vrlib.data import build_split, load_split, write_jsonl

    root = tmp_path_factory.mktemp("data")
    write_jsonl(root / "eval.jsonl", build_split(root, "eval", 0, 8, duration=8, fps=4, size=112))
    samples, clips = load_split(root / "eval.jsonl", fps=2.0, min_frames=4, max_frames=16)
    return root, samples, clips


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, world_split):
    """A random-weight tiny Qwen2.5-VL checkpoint directory (model + processor)."""
    from vrlib.model import TinyShape, build_tiny

    _, samples, _ = world_split
    corpus = [s.problem for s in samples] + [s.process + s.solution for s in samples]
    out = tmp_path_factory.mktemp("models") / "base"
    build_tiny(out, corpus * 4, max_pixels=56 * 56, seed=0, shape=TinyShape(vocab_size=400))
    return out
