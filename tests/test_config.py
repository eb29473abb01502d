"""params.yaml parsing, the environment files, and what must agree with what: the dataclass
defaults with params.yaml, each dvc.yaml stage's deps with the modules its notebook imports, the
documented tables with the committed metrics.

Run: `.venv/bin/pytest tests/test_config.py`
"""
from __future__ import annotations

import ast
import dataclasses
import json
import tomllib
from pathlib import Path

import pytest
import yaml

from vrlib import config, sources
from vrlib.config import ParamsError, Params, parse

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_parses_and_matches_the_dataclass_defaults_keys():
    params = config.load(ROOT / "params.yaml")
    assert isinstance(params, Params)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    # every section of the file names every field, so the file documents the whole study
    for section in ("data", "base", "sft", "rft", "evaluation", "analysis"):
        fields = set(getattr(params, section).__dataclass_fields__)
        assert set(raw[section]) == fields, section


def test_the_dataclass_defaults_are_the_study_at_tiny_scale(tmp_path):
    """`RFTParams()` in a test or a notebook is the study's configuration, field by field."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "scale": "tiny"}))
    loaded, defaults = config.load(tmp_path / "params.yaml"), Params()
    assert loaded.seed == defaults.seed
    differ = [f"{name}.{f.name}: params.yaml {getattr(getattr(loaded, name), f.name)!r}, "
              f"default {getattr(getattr(defaults, name), f.name)!r}"
              for name in config.SECTIONS for f in dataclasses.fields(getattr(defaults, name))
              if getattr(getattr(loaded, name), f.name) != getattr(getattr(defaults, name), f.name)]
    assert not differ, "change the default in vrlib/config.py or the value in params.yaml:\n" + "\n".join(differ)


def test_every_config_field_has_a_docstring():
    """A string right under each field: what it means, its unit, where its value comes from."""
    tree = ast.parse((ROOT / "vrlib/config.py").read_text())
    missing = []
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        for i, stmt in enumerate(cls.body):
            if isinstance(stmt, ast.AnnAssign):
                after = cls.body[i + 1] if i + 1 < len(cls.body) else None
                if not (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                        and isinstance(after.value.value, str)):
                    missing.append(f"{cls.name}.{stmt.target.id}")
    assert not missing, f"fields without a docstring in vrlib/config.py: {', '.join(missing)}"


# ----------------------------------------------------------------------------- dvc.yaml deps
def notebook_source(path: Path) -> str:
    """A notebook's code cells as one Python source, IPython magics left out."""
    cells = json.loads(path.read_text())["cells"]
    lines = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code").splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith(("!", "%")))


def test_every_stage_deps_on_the_vrlib_modules_its_notebook_imports():
    """A change in a module reruns exactly the stages that run it: dvc.yaml's vrlib deps are
    what the imports say (`vrlib.sources.closure`: through other vrlib modules, imports inside
    functions included), neither fewer (a stale result) nor more (a needless rerun)."""
    import re

    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    variables = {k: v for d in pipeline.get("vars", []) if isinstance(d, dict) for k, v in d.items()}
    wrong = []
    for name, stage in pipeline["stages"].items():
        notebooks = [d for d in stage["deps"] if d.startswith("notebooks/")]
        assert len(notebooks) == 1, f"stage {name}: one notebook in deps, got {notebooks}"
        cmd = re.sub(r"\$\{(\w+)\}", lambda m: str(variables[m.group(1)]), stage["cmd"])
        runs = "".join(f"import {m}\n" for m in re.findall(r"-m (vrlib\.\w+)", cmd))  # the runner
        code = sources.closure(notebook_source(ROOT / notebooks[0]) + "\n" + runs)
        needed = {p.relative_to(ROOT).as_posix() for p in code}
        listed = {d for d in stage["deps"] if d.startswith("vrlib/") and d.endswith(".py")}
        if needed - listed:
            wrong.append(f"{name}: add {sorted(needed - listed)}")
        if listed - needed:
            wrong.append(f"{name}: remove {sorted(listed - needed)} (not imported)")
    assert not wrong, "dvc.yaml deps disagree with the notebooks' imports:\n" + "\n".join(wrong)



def test_every_stage_notebook_declares_the_params_its_stage_lists():
    """papermill injects the params.yaml sections a notebook's parameters cell declares
    (`vrlib.stage.run`), and DVC reruns a stage when the params it lists change: the two are the
    same names in the same order (`data.fps` lists the section `data`), or an edit of a section
    the notebook reads would not rerun it."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    wrong = []
    for name, stage in stages.items():
        notebook = next(d for d in stage["deps"] if d.startswith("notebooks/"))
        cell = json.loads((ROOT / notebook).read_text())["cells"][1]
        declared = [node.targets[0].id for node in ast.parse("".join(cell["source"])).body]
        listed = list(dict.fromkeys(p.split(".")[0] for p in stage.get("params", [])))
        if declared != listed:
            wrong.append(f"{name}: {notebook} declares {declared}, dvc.yaml lists {listed}")
    assert not wrong, "notebook parameters and stage params disagree:\n" + "\n".join(wrong)


def reruns(edited: str) -> set[str]:
    """The stages `dvc repro` reruns after an edit of the file `edited`: those that list it in
    their deps, then every stage with a dep on (or inside) an out of a stage that reruns."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    paths = lambda items: [next(iter(i)) if isinstance(i, dict) else i for i in items or []]  # noqa: E731
    outs = {name: paths(s.get("outs")) + paths(s.get("metrics")) for name, s in stages.items()}
    todo = {name for name, s in stages.items() if edited in paths(s["deps"])}
    done = set()
    while todo:
        done |= todo
        made = [o for name in todo for o in outs[name]]
        todo = {name for name, s in stages.items() if name not in done
                and any(d == o or d.startswith(o.rstrip("/") + "/") for d in paths(s["deps"]) for o in made)}
    return done


def test_a_reward_edit_reruns_rft_eval_and_analysis_and_nothing_upstream():
    """docs/change-a-reward.md's promise: the training reward is RFT's alone (base, SFT and GRPO by
    hand do not import it, and the evaluation scores with vrlib.scoring, not with the reward);
    the evaluation's metric reruns the evaluation and the analysis only. `dvc status` lists the
    stages whose own deps changed (rft); `dvc repro` then reruns those below it."""
    assert reruns("vrlib/rewards.py") == {"rft", "eval", "analysis"}
    assert reruns("vrlib/evaluate.py") == {"eval", "analysis"}
    assert reruns("vrlib/scoring.py") == {"rft", "eval", "analysis"}  # the score the reward pays by default
    assert reruns("vrlib/analysis.py") == {"analysis"}

def test_the_import_closure_follows_imports_inside_functions_and_through_modules():
    assert sources.imported("def f():\n    from vrlib.grpo import policy_loss\n") == {"vrlib.grpo"}
    assert sources.imported("from vrlib import config, rft as loop\nimport vrlib.video") == {
        "vrlib.config", "vrlib.rft", "vrlib.video"}
    assert sources.imported("import torch\nfrom vrlib import nothing_here") == set()
    # the analysis notebook imports explore, which imports evaluate, which imports rollout
    names = {p.name for p in sources.closure(notebook_source(ROOT / "notebooks/06_error_analysis.ipynb"))}
    assert {"explore.py", "evaluate.py", "rollout.py"} <= names
    assert {p.name for p in sources.closure("import vrlib.stage")} >= {"stage.py"}  # `python -m vrlib.stage`


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ParamsError) as err:
        parse(config.RFTParams, {"betta": 0.1}, "rft")
    assert "rft.betta" in str(err.value) and "beta" in str(err.value)
    with pytest.raises(ParamsError, match="known keys: scale, presets, seed"):
        parse(Params, {"sedd": 1})


def test_wrong_kind_is_an_error_and_ints_pass_as_floats():
    with pytest.raises(ParamsError, match="rft.beta"):
        parse(Params, {"rft": {"beta": "high"}})
    with pytest.raises(ParamsError, match="sft.steps"):
        parse(Params, {"sft": {"steps": 1.5}})
    assert parse(Params, {"rft": {"beta": 0}}).rft.beta == 0.0
    # PyYAML reads 1e-4 (no dot) as a string: a float key takes it as the number it spells
    assert parse(Params, yaml.safe_load("rft: {beta: 1e-4}")).rft.beta == 1e-4
    with pytest.raises(ParamsError, match="rft.beta"):
        parse(Params, {"rft": {"beta": "1e-4x"}})


def test_sft_sizes_below_one_are_an_error():
    with pytest.raises(ParamsError, match=r"sft.length_groups=0; each must be at least 1"):
        parse(Params, {"sft": {"length_groups": 0}})
    with pytest.raises(ParamsError, match=r"sft.steps=0, sft.batch_size=0"):
        parse(Params, {"sft": {"steps": 0, "batch_size": 0}})


def requirement_names(specs):
    return {s.split(";")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower() for s in specs}


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    declared = project["project"]["dependencies"]
    assert [p for p in pip if p in declared] == declared, "same specifiers, same order"
    extra = set(pip) - set(declared)
    assert extra == {"pytest>=8", "-e ."}
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python.split("=")[1] >= project["project"]["requires-python"].split(",")[0][2:]


def test_lock_pins_every_dependency():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"].lower() for p in lock["package"]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert requirement_names(project["project"]["dependencies"]) <= locked


# ----------------------------------------------------------------------------- documented tables
def test_results_tables_are_generated_from_the_committed_metrics():
    """Committed pages against committed metrics (git HEAD): a user's own study run, whose numbers
    differ a little on another CPU, changes neither (`make tables` puts theirs in the pages)."""
    from vrlib.tables import committed, documented

    read = committed(ROOT)
    for page, tables in documented(read).items():
        for table in tables:
            assert table in read(page), f"{page}: a table differs from the committed metrics (make tables)"


def test_make_tables_writes_the_working_metrics_into_the_pages(tmp_path):
    from vrlib import tables

    for path in ("README.md", "docs/results.md", "metrics/eval.json", "metrics/eval_diffs.json",
                 "metrics/val_diffs.json", "metrics/base.json"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(tables.committed(ROOT)(path))
    metrics = json.loads((tmp_path / "metrics/eval.json").read_text())
    metrics["rft"]["grounding"]["mIoU"] = 12.345  # another CPU's run
    (tmp_path / "metrics/eval.json").write_text(json.dumps(metrics))
    readme = (tmp_path / "README.md").read_text()
    tables.main(tmp_path)
    mine = tables.documented(lambda path: (tmp_path / path).read_text())
    for page, made in mine.items():
        text = (tmp_path / page).read_text()
        assert all(table in text for table in made), page
    after = (tmp_path / "README.md").read_text()
    assert "| 12.3 |" in after and after != readme
    assert len(after.splitlines()) == len(readme.splitlines())  # the table replaced, the rest kept
    tables.main(tmp_path)  # again: the same pages
    assert (tmp_path / "README.md").read_text() == after


def test_ablation_table_is_generated_from_the_committed_results():
    from vrlib.ablations import OUT, table
    from vrlib.tables import committed

    read = committed(ROOT)
    ablations = json.loads(read(str(OUT)))
    for split in ("val", "eval"):  # choices on val; the test split reported
        assert table(ablations, split) in read("docs/results.md")


def test_docs_links_point_to_files_that_exist():
    import re

    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which is missing"


# ----------------------------------------------------------------------------- scale presets
def test_scale_presets_switch_the_study_to_real_models_with_one_key(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert config.load(ROOT / "params.yaml").rft.max_completion_length == raw["rft"]["max_completion_length"]
    for scale, weights in (("qwen2.5-vl-7b", "Qwen2.5-VL-7B-Instruct"), ("qwen2.5-vl-3b", "Qwen2.5-VL-3B-Instruct")):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "scale": scale}))
        p = config.load(tmp_path / "params.yaml")
        assert p.base.pretrained_dir.endswith(weights) and p.base.dtype == "bfloat16"
        # Video-R1's settings (its run_grpo_video.sh and vendored vision_process.py): 2 fps, 4..16 frames of 128*28*28 px,
        # G = 8 (+ 4 shuffled with T-GRPO), 768-token completions, beta 0.04, one prompt per GPU
        assert (p.data.fps, p.data.min_frames, p.data.max_frames, p.data.max_pixels) == (2.0, 4, 16, 128 * 28 * 28)
        assert (p.rft.group_size, p.rft.algo, p.rft.max_completion_length, p.rft.beta) == (8, "t_grpo", 768, 0.04)
        assert (p.rft.prompts_per_step, p.rft.load_in_4bit, p.rft.gradient_checkpointing) == (1, True, True)
        assert (p.sft.batch_size, p.sft.grad_accum, p.sft.load_in_4bit) == (1, 2, True)
        assert p.data.n_eval == raw["data"]["n_eval"]  # what a preset does not name stays
        # the notebooks' way: papermill injects the sections, `section` applies the preset
        assert config.section("rft", raw["rft"], scale, raw["presets"]) == p.rft


def test_unknown_scale_or_misspelt_preset_key_names_the_known_ones(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    with pytest.raises(config.ParamsError, match="scale='qwen3-vl'.*known scales: tiny, qwen2.5-vl-7b"):
        config.section("rft", raw["rft"], "qwen3-vl", raw["presets"])
    bad = {**raw, "presets": {"big": {"rft": {"group_sise": 8}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(config.ParamsError, match=r"presets\.big\.rft\.group_sise.*group_size"):
        config.load(tmp_path / "params.yaml")  # at load, whatever the scale: not later on a GPU
    bad = {**raw, "presets": {"big": {"rtf": {}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(config.ParamsError, match="presets.big.rtf is not a section"):
        config.load(tmp_path / "params.yaml")


def test_every_stage_notebook_opens_with_what_it_teaches_and_keeps_prose_by_its_calls():
    """Every notebook reads in one order: title and "What you will learn", then the papermill parameters cell; prose
    between the calls (no run of two code cells without a word in between)."""
    import json

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        assert cells[0]["cell_type"] == "markdown", path.name
        assert "What you will learn" in "".join(cells[0]["source"]), path.name
        assert "parameters" in cells[1]["metadata"].get("tags", []), path.name
        kinds = [c["cell_type"] for c in cells[2:]]
        runs = "".join("c" if k == "code" else "m" for k in kinds)
        assert "ccc" not in runs, f"{path.name}: three code cells in a row without prose"


def test_an_unused_preset_does_not_constrain_the_current_scale(tmp_path):
    """Checking presets at load must not mix them with today's sections: 2 processes at tiny
    scale are fine although the 7b preset asks 1 prompt per step."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["rft"].update(num_processes=2, prompts_per_step=4)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert config.load(tmp_path / "params.yaml").rft.num_processes == 2


def test_every_notebook_cell_has_an_id():
    """nbformat warns on every run of a notebook whose cells lack ids (and will refuse it)."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        assert all("id" in c for c in cells), f"{path.name}: a cell without an id (nbformat.validator.normalize)"
