"""The study end to end: `dvc repro` at a tiny budget in a temporary copy, and bad input.

Run: `.venv/bin/pytest tests/test_pipeline.py` (slow: a few minutes on 2 cores).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_BUDGET = {
    "data": {"n_sft": 11, "n_rl": 11, "n_eval": 11, "n_val": 11},  # 1 per family
    "base": {"probe_videos": 4, "probe_batch": 4},  # the committed tiny base (models/tiny-base), probed on 4 videos
    "sft": {"steps": 4, "batch_size": 4},
    "rft": {"steps": 2, "prompts_per_step": 2, "group_size": 2, "max_completion_length": 8,
            "checkpoint_every": 1, "algo": "t_grpo", "relative": True},
    "evaluation": {"max_new_tokens": 16, "batch_size": 8},
    "analysis": {"n_show": 1},
}


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A git copy of the tracked tree with the tiny budget merged into params.yaml."""
    work = tmp_path_factory.mktemp("study")
    files = run(["git", "ls-files", "-co", "--exclude-standard"], ROOT).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(("metrics/", "dvc.lock")):
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, work / f)
    params = yaml.safe_load((work / "params.yaml").read_text())
    for section, values in TINY_BUDGET.items():
        params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], work)
    run(["git", "add", "-A"], work)
    run(["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", "study"], work)
    return work


@pytest.mark.slow
def test_dvc_repro_runs_the_whole_study(study):
    run(["dvc", "repro"], study)
    base = json.loads((study / "metrics/base.json").read_text())
    assert base["probes"]["n"] == 4 and set(base) == {"params", "probes", "probes_shuffled", "probes_swapped"}
    assert json.loads((study / "models/base/pointer.json").read_text())["path"] == "models/tiny-base"
    metrics = json.loads((study / "metrics/eval.json").read_text())
    assert set(metrics) == {"base", "sft", "rft", "rft_tcr"}  # rft_tcr: RFT with two passes (TCR)
    setup = json.loads((study / "metrics/eval_settings.json").read_text())
    assert (setup["fps"], setup["max_frames"], setup["decoding"]) == (2.0, 16, "greedy")
    assert setup["tcr"]["items"] == 11
    order = json.loads((study / "metrics/eval_order.json").read_text())["differences"]
    assert set(order) == {"sft - sft shuffled", "rft - rft shuffled"} and "order" in order["rft - rft shuffled"]
    families = yaml.safe_load((study / "params.yaml").read_text())["data"]["families"]
    for model in metrics.values():
        assert set(model) == set(families)  # every task family is evaluated
        assert all(m["n"] == 1 for m in model.values())
        assert {"mIoU", "R@0.3", "R@0.5", "R@0.7", "format"} <= set(model["grounding"])
    for name in ("base", "sft", "rft", "rft_tcr"):
        assert len((study / f"eval/traces/{name}.jsonl").read_text().splitlines()) == 11
    for name in ("base", "sft", "rft"):  # the validation split, where choices are made
        assert len((study / f"eval/traces/val/{name}.jsonl").read_text().splitlines()) == 11
    assert set(json.loads((study / "metrics/val.json").read_text())) == {"base", "sft", "rft"}
    for split in ("eval", "val"):  # every reported difference; one item per family: no interval
        diffs = json.loads((study / f"metrics/{split}_diffs.json").read_text())
        assert diffs["split"] == split and "rft - sft" in diffs["differences"]
        assert set(diffs["differences"]["rft - sft"]) == {"over tasks"} | set(families)
    analysis = json.loads((study / "metrics/analysis.json").read_text())
    for name, counts in analysis["taxonomy"].items():  # every item gets one reason
        assert sum(counts.values()) == 11, name
    data = json.loads((study / "metrics/data.json").read_text())
    assert 0 < data["rl"]["kim_pairs"] <= 10  # videos whose key frames can be hidden; not the image
    assert (study / "dvc.lock").is_file()
    assert (study / "reports/06_error_analysis.ipynb").is_file()
    assert (study / "dvclive/rft/plots/metrics/reward/accuracy/mean.tsv").is_file()
    assert len(list((study / "checkpoints/rft").glob("step_00002-*.pt"))) == 1
    assert json.loads((study / "models/rft/stack.json").read_text()) == {"below": ["models/sft"]}
    assert (study / "dvclive/rft/plots/metrics/tgrpo/advantage_changed.tsv").is_file()
    assert (study / "dvclive/rft/plots/metrics/relative/gap.tsv").is_file()
    assert json.loads((study / "metrics/grpo_by_hand.json").read_text())["issue51"]
    assert not (study / "notebooks/reports").exists()  # every kernel started in notebooks/ and moved up
    # nothing changed -> nothing runs, and DVC says so
    again = run(["dvc", "repro"], study)
    assert "Running stage" not in again.stdout, again.stdout
    assert "up to date" in run(["dvc", "status"], study).stdout
    # RFT retrained from scratch gives the same outputs: dvc.lock holds no timings, and after
    # `git checkout dvc.lock` nothing downstream would rerun
    run(["git", "add", "dvc.lock"], study)
    run(["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", "lock"], study)
    shutil.rmtree(study / "checkpoints/rft")
    rerun = run(["dvc", "repro", "-f", "-s", "rft"], study)
    assert "training from step 0 of 2: no checkpoint yet" in rerun.stdout and "rft  step 2/2" in rerun.stdout, rerun.stdout
    run(["git", "diff", "--exit-code", "dvc.lock"], study)
    assert "up to date" in run(["dvc", "status"], study).stdout
    # an experiment with another beta reruns rft onwards, not the data or the models before;
    # with 2 processes the notebook runs the loop under `accelerate launch`
    exp = run(["dvc", "exp", "run", "-S", "rft.beta=0.0", "-S", "rft.num_processes=2"], study)
    assert "Running stage 'rft'" in exp.stdout and "Running stage 'data'" not in exp.stdout
    assert len(json.loads((study / "models/rft/history.json").read_text())) == 2


@pytest.mark.slow
def test_unknown_params_key_stops_the_stage(study, tmp_path):
    bad = tmp_path / "params.yaml"
    params = yaml.safe_load((study / "params.yaml").read_text())
    params["data"]["n_evall"] = 3
    bad.write_text(yaml.safe_dump(params))
    out = run(["papermill", "--cwd", str(study), "-f", str(bad), str(study / "notebooks/01_data.ipynb"),
               str(tmp_path / "out.ipynb")], study, check=False)
    assert out.returncode != 0
    assert "data.n_evall" in out.stderr and "n_eval" in out.stderr


def test_bad_input_names_the_culprit(world_split, tmp_path):
    """What every stage calls to read a split: each bad input stops it with file and place."""
    from vrlib.data import RecordError, load_split, read_jsonl
    from vrlib.video import VideoDecodeError

    root, samples, _ = world_split
    split = tmp_path / "split"
    shutil.copytree(root, split)
    kw = dict(fps=2.0, min_frames=4, max_frames=16)
    (split / samples[1].path).write_bytes(b"\x00not an mp4" * 100)
    with pytest.raises(VideoDecodeError, match=samples[1].path):
        load_split(split / "eval.jsonl", **kw)
    (split / samples[1].path).unlink()
    with pytest.raises(FileNotFoundError, match=samples[1].path):
        load_split(split / "eval.jsonl", **kw)
    lines = (split / "eval.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"solution": "<answer>', '"solution": "')
    (split / "eval.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=r"eval.jsonl:3: field 'solution'"):
        read_jsonl(split / "eval.jsonl")


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("on_bad_media", ["skip", "stop"])
def test_data_stage_imports_real_formats_and_counts_bad_media(study, tmp_path, on_bad_media):
    """`data.imports` replaces a world split by a real annotation file; a missing video is
    skipped and counted, or stops the stage naming its path. Under skip, the real VideoChat-R1
    Charades file with inverted moments (`data.on_bad_record: skip`) leaves its bad records
    listed, file:where:why, in metrics/data.json."""
    from vrlib import video, world

    from conftest import REAL_DATA

    inverted = REAL_DATA / "videochat_r1/charades_train_inverted_moments.json"

    media = tmp_path / "charades"
    for i, vid in enumerate(["3MSZA", "AO8RW"]):  # Y6R7T.mp4 is missing
        video.write_mp4(media / f"{vid}.mp4", world.render(world.make_scene(0, i, duration=2)), 4)
    params = yaml.safe_load((study / "params.yaml").read_text())
    params["data"] |= {"n_sft": 4, "n_rl": 4, "on_bad_media": on_bad_media,
                       "on_bad_record": on_bad_media,
                       "imports": {"eval": [{"format": "charades_sta", "media_root": str(media),
                                             "path": str(ROOT / "tests/fixtures/importers/charades_sta.txt")},
                                            {"format": "videochat_r1_grounding", "media_root": str(media),
                                             "path": str(inverted)}]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "metrics").mkdir()
    out = run(["papermill", "--cwd", str(tmp_path), "-f", str(tmp_path / "params.yaml"),
               str(study / "notebooks/01_data.ipynb"), str(tmp_path / "out.ipynb")], study, check=False)
    if on_bad_media == "stop":
        assert out.returncode != 0 and str(media / "Y6R7T.mp4") in out.stderr
        assert not (tmp_path / "data/eval.jsonl").exists()  # nothing half-written
        return
    assert out.returncode == 0, out.stderr[-3000:]
    counts = json.loads((tmp_path / "metrics/data.json").read_text())
    assert counts["eval"]["skipped_bad_media"] == 2  # Y6R7T.mp4, and the inverted file's one good moment's
    bad = counts["eval"]["skipped_bad_records"]
    assert len(bad) == 4 and all(r.startswith(f"{inverted}:") and "field 'timestamps[" in r for r in bad)
    assert counts["sft"]["skipped_bad_records"] == []
    assert counts["eval"]["n"] == 3 and counts["eval"]["family"] == {"Charades-STA": 3}
    assert counts["sft"]["n"] == 4  # the other splits still come from the world


def test_a_notebook_opened_in_notebooks_works_in_the_study_folder(tmp_path, monkeypatch):
    """JupyterLab starts the kernel in notebooks/; the first cell's `enter()` moves to the
    folder with params.yaml, so `data/eval.jsonl` means the same as under `dvc repro`."""
    from vrlib import stage

    (tmp_path / "params.yaml").write_text("seed: 0\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert stage.enter() == tmp_path.resolve() and Path.cwd() == tmp_path.resolve()
    monkeypatch.chdir("/")
    with pytest.raises(FileNotFoundError, match="params.yaml"):
        stage.root()


def test_progress_prints_about_ten_lines_with_the_time_left():
    import io

    from vrlib.logs import progress

    out = io.StringIO()
    show = progress("rft", 40, keys=("reward/mean", "absent"), out=out)
    for step in range(40):
        show(step, {"reward/mean": step / 40})
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("rft  step 4/40  reward/mean 0.075  ")
    assert lines[0].endswith(" left") and "s/step, ~" in lines[0] and lines[-1].endswith("~0s left")
    out = io.StringIO()
    show = progress("eval sft", 3, keys=(), unit="batch", out=out)
    show(2, {})  # a resumed decode: the first two batches were read back, the last one is the first seen
    assert out.getvalue() == "eval sft  batch 3/3\n"


def test_quiet_silences_the_library_notices_and_nothing_else():
    """What a study run used to print between its progress lines (issue: a study run that shows
    where it is); other warnings and log lines still show."""
    import logging
    import warnings

    from vrlib import stage

    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stage.quiet()
        for name in ("bitsandbytes.backends.cpu.ops", "DeepSpeed"):
            logging.getLogger(name).addHandler(handler)
        try:
            logging.getLogger("bitsandbytes.backends.cpu.ops").warning(
                "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'")
            logging.getLogger("DeepSpeed").warning("Setting accelerator to CPU. If you have GPU ...")
            logging.getLogger("DeepSpeed").warning("something else")
            logging.getLogger("bitsandbytes.backends.cpu.ops").warning("another bitsandbytes warning")
            logging.getLogger("DeepSpeed").setLevel(logging.WARNING)  # DeepSpeed's import does this
            logging.getLogger("DeepSpeed").warning("Setting accelerator to CPU. If you have GPU ...")
        finally:
            for name in ("bitsandbytes.backends.cpu.ops", "DeepSpeed"):
                logging.getLogger(name).removeHandler(handler)
        warnings.warn("The given NumPy array is not writable, and PyTorch ...", UserWarning)
        warnings.warn("deprecated in v6", FutureWarning)
        warnings.warn("a warning of the study's own", UserWarning)
    stage.quiet()  # a second notebook cell or launched process: one filter per logger still
    assert sum(isinstance(f, stage._Without) for f in logging.getLogger("DeepSpeed").filters) == 1
    assert [r.getMessage() for r in seen] == ["something else", "another bitsandbytes warning"]
    assert [str(w.message) for w in caught] == ["a warning of the study's own"]
