"""vrlib.schema: the names every stage shares, in a module that imports nothing from vrlib."""
from __future__ import annotations

import subprocess
import sys

import pytest

from vrlib import answers, config, data, evaluate, schema, tasks


def test_schema_imports_nothing_from_vrlib():
    code = "import sys, vrlib.schema; print(sorted(m for m in sys.modules if m.startswith('vrlib')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['vrlib', 'vrlib.schema']"


def test_the_data_stage_reads_its_schema_and_checks_solutions_without_the_rewards():
    """The importers check a solution with vrlib.answers: a changed reward does not rerun the data stage."""
    code = "import sys, vrlib.data, vrlib.importers; print('vrlib.rewards' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_module_uses_the_schema_names():
    assert data.Sample is schema.Sample and data.PROBLEM_TYPES is schema.PROBLEM_TYPES
    assert set(answers.PARSERS) == set(schema.PROBLEM_TYPES)
    assert list(tasks.FAMILIES) == [*schema.FAMILIES, "inventory"]  # the generators, named alike
    assert list(config.DataParams().families) == list(schema.FAMILIES)


def test_tables_read_the_models_in_the_study_order():
    metrics = {name: {} for name in ("rft_tcr", "other", "rft", "base", "sft")}
    assert evaluate._models(metrics) == [*schema.MODELS, "other"]


def test_data_params_name_the_known_splits_for_an_unknown_import():
    with pytest.raises(config.ParamsError, match="data.imports.*test.*known: sft, rl, val, eval"):
        config.DataParams(imports={"test": []})
