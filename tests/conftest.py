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
    """One item of every task family (real MP4s, one PNG), written and read back through the
    JSONL contract; item 0 is temporal grounding."""
    from vrlib.data import build_split, load_split, write_jsonl
    from vrlib.tasks import FAMILIES, WorldSpec

    root = tmp_path_factory.mktemp("data")
    families = {f: 1 for f in FAMILIES if f != "inventory"}
    write_jsonl(root / "eval.jsonl", build_split(root, "eval", 0, len(families), families=families,
                                                 spec=WorldSpec(), kim=True))
    samples, clips = load_split(root / "eval.jsonl", fps=2.0, min_frames=4, max_frames=16)
    return root, samples, clips


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, world_split):
    """A random-weight tiny Qwen2.5-VL checkpoint directory (model + processor)."""
    from vrlib.model import TinyShape, build_tiny
    from vrlib.prompts import user_text

    _, samples, _ = world_split
    corpus = [user_text(s) for s in samples] + [s.process + s.solution for s in samples]
    out = tmp_path_factory.mktemp("models") / "base"
    build_tiny(out, corpus * 4, max_pixels=56 * 56, seed=0, shape=TinyShape(vocab_size=400))
    return out
