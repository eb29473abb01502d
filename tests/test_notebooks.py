"""The stage notebooks as a reader opens them in JupyterLab (`make lab`): they read the pipeline's
params when papermill injects nothing, say before running what running them here does, and a
save leaves their DVC stage up to date.

Run: `.venv/bin/pytest tests/test_notebooks.py`
"""
from __future__ import annotations

import ast
import asyncio
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from vrlib import stage

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


# ----------------------------------------------------------------------------- params
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_reads_params_yaml_for_what_papermill_did_not_inject(path):
    """The parameters cell leaves every name None (papermill replaces it under `dvc repro`); the
    next cell hands each of them, in order, to `from_params`, which reads params.yaml for a None."""
    declared = [node.targets[0].id for node in ast.parse("".join(cells(path)[1]["source"])).body]
    values = [node.value.value for node in ast.parse("".join(cells(path)[1]["source"])).body]
    assert declared and values == [None] * len(declared), f"{path.name}: parameters default to None"
    call = next(node for node in ast.walk(ast.parse("".join(cells(path)[2]["source"])))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "from_params")
    assert [k.arg for k in call.keywords] == declared, f"{path.name}: from_params gets every parameter"
    assert [k.value.id for k in call.keywords] == declared


def test_from_params_reads_the_study_params_yaml_edits_included(tmp_path, monkeypatch):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["rft"]["beta"] = 0.0  # what `dvc exp run -S rft.beta=0.0` writes before it runs a stage
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # where JupyterLab starts the kernel
    seed, scale, rft = stage.from_params(seed=None, scale=None, rft=None)
    assert (seed, scale, rft) == (raw["seed"], raw["scale"], raw["rft"]) and rft["beta"] == 0.0
    assert stage.from_params(seed=7, rft={"beta": 1.0}) == (7, {"beta": 1.0})  # injected: kept
    with pytest.raises(KeyError, match="has no 'evaluaton'"):
        stage.from_params(evaluaton=None)


# ----------------------------------------------------------------------------- first cells
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_says_what_running_it_here_does_before_it_runs(path):
    """What it writes, how long it takes on 2 cores, and whether running it here retrains (with
    the `dvc repro` that runs it through the pipeline instead)."""
    first = "".join(cells(path)[0]["source"])
    assert "Writes" in first and "2 cores" in first, path.name
    assert "Running it here" in first and f"dvc repro {stage_of(path)}" in first, path.name


def stage_of(path: Path) -> str:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return next(name for name, s in stages.items() if f"notebooks/{path.name}" in s["deps"])


# ----------------------------------------------------------------------------- saving in JupyterLab
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_is_committed_in_the_form_jupyterlab_saves(path):
    """Else the first save in JupyterLab would change the file, and its stage would rerun."""
    nb = nbformat.reads(path.read_text(), as_version=4)
    assert path.read_text() == nbformat.writes(stage.committed_form(nb)) + "\n", (
        f"{path.name}: save it in its committed form: python -c \"import nbformat; from vrlib.stage import "
        f"committed_form; p='notebooks/{path.name}'; nb=nbformat.read(p, 4); nbformat.write(committed_form(nb), p)\"")


def as_jupyterlab_sends_it(nb: dict) -> dict:
    """The body of JupyterLab's save after opening and running the notebook: outputs, execution
    counts, the kernel's kernelspec and language_info, the cell metadata it adds."""
    nb = copy.deepcopy(nb)
    nb["metadata"] = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                      "language_info": {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                                        "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                                        "pygments_lexer": "ipython3", "version": "3.11.9"}}
    for k, cell in enumerate(nb["cells"]):
        cell["metadata"] = {**cell["metadata"], "scrolled": True, "jupyter": {"outputs_hidden": False},
                            "execution": {"iopub.execute_input": "2025-01-01T00:00:00.000Z"}}
        if cell["cell_type"] == "code":
            cell["execution_count"] = k
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": f"cell {k}\n"},
                               {"output_type": "execute_result", "execution_count": k, "metadata": {},
                                "data": {"text/plain": f"{k}"}}]
    return {"type": "notebook", "format": "json", "content": nb}


def test_a_notebook_saved_by_jupyterlab_leaves_its_stage_up_to_date(tmp_path):
    """Through the contents manager JupyterLab saves with, configured by make lab's config file."""
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from traitlets.config.loader import PyFileConfigLoader

    name = "07_grpo_by_hand.ipynb"
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / name, tmp_path / "notebooks" / name)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"grpo_by_hand": {
        "cmd": "true", "deps": [f"notebooks/{name}"], "params": ["seed"]}}}))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dvc = lambda *args: subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, env=env, capture_output=True,  # noqa: E731
                                       text=True, check=True).stdout
    dvc("init", "--no-scm", "-q")
    dvc("commit", "-f", "-q")  # the stage recorded as run, its notebook as committed
    assert "up to date" in dvc("status")

    config = PyFileConfigLoader("jupyter_server_config.py", path=str(ROOT)).load_config()
    manager = AsyncLargeFileManager(config=config, root_dir=str(tmp_path / "notebooks"))
    committed = (tmp_path / "notebooks" / name).read_text()
    opened = asyncio.run(manager.get(name, content=True))
    asyncio.run(manager.save(as_jupyterlab_sends_it(opened["content"]), name))
    assert (tmp_path / "notebooks" / name).read_text() == committed
    assert "up to date" in dvc("status")

    edited = as_jupyterlab_sends_it(opened["content"])  # a code cell edited: that is a change
    edited["content"]["cells"][2]["source"] += "\nprint('mine')"
    asyncio.run(manager.save(edited, name))
    assert "changed deps" in dvc("status")


def test_make_lab_kernels_talk_over_unix_sockets():
    """ipykernel warns "Kernel is running over TCP without encryption" on every TCP start; the
    kernels of `make lab` use IPC, which it recommends."""
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("jupyter_server_config.py", path=str(ROOT)).load_config()
    assert config.KernelManager.transport == "ipc"
    assert "jupyter_server_config.py" in (ROOT / "Makefile").read_text()
