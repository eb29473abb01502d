"""params.yaml parsing and the environment files.

Run: `.venv/bin/pytest tests/test_config.py`
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from vrlib import config
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


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ParamsError) as err:
        parse(config.RFTParams, {"betta": 0.1}, "rft")
    assert "rft.betta" in str(err.value) and "beta" in str(err.value)
    with pytest.raises(ParamsError, match="known keys: scale, seed"):
        parse(Params, {"sedd": 1})


def test_wrong_kind_is_an_error_and_ints_pass_as_floats():
    with pytest.raises(ParamsError, match="rft.beta"):
        parse(Params, {"rft": {"beta": "high"}})
    with pytest.raises(ParamsError, match="sft.steps"):
        parse(Params, {"sft": {"steps": 1.5}})
    assert parse(Params, {"rft": {"beta": 0}}).rft.beta == 0.0


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


def test_readme_results_table_is_generated_from_the_committed_metrics():
    import json

    from vrlib.evaluate import overview_table, results_table

    metrics = json.loads((ROOT / "metrics/eval.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert overview_table(metrics) in readme
    assert results_table(metrics, "grounding") in readme


def test_readme_ablation_table_is_generated_from_the_committed_results():
    import json

    from vrlib.ablations import OUT, table

    ablations = json.loads((ROOT / OUT).read_text())
    assert table(ablations) in (ROOT / "README.md").read_text()
