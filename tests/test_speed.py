"""vrlib.speed's GRPO step timing at the tiny size, the Qwen2.5-VL shapes it builds, the GPU
check script that runs it, the launch files for several GPUs and nodes (accelerate configs,
SLURM script), and the strict CPU mode's comparison (its table, its settings reaching torch, one
setting's run at the tiny size).

Run: `.venv/bin/pytest tests/test_speed.py`
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vrlib import speed

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "vrlib" / "launch"
TINY_GRPO = ["grpo", "--shape", "tiny", "--steps", "1", "--warmup", "0", "--completion", "8",
             "--frames", "4", "--max-pixels", "3136"]
"""The grpo benchmark at the tiny shape, a few seconds on a CPU."""


def table(out: str) -> dict[str, str]:
    """The rows of the markdown table `speed` prints, header row first."""
    return dict(re.findall(r"^\| (.+?) \| (.+?) \|$", out, re.M))


# ----------------------------------------------------------------------------- the benchmark
def test_decode_bound_by_hand():
    # 4 tokens; each step reads 100 B of weights + 2 B per context token for each of 4 sequences;
    # mean context 10 + 4/2 = 12: 4 * (100 + 4 * 2 * 12) B at 1000 B/s = 0.784 s
    b = speed.DecodeBound(weight_bytes=100, kv_bytes_per_token=2, bandwidth=1000.0)
    assert b.seconds(4, prompt=10, completion=4) == pytest.approx(0.784)
    assert b.seconds(4, prompt=10, completion=4, extra_weight_bytes=50) == pytest.approx(0.984)


def test_decode_weight_bytes_count_what_a_step_reads(tiny_dir):
    import bitsandbytes as bnb

    from vrlib.model import load_model

    full = load_model(tiny_dir)
    lm = full.model.language_model
    read = sum(p.numel() for m in (lm.layers, lm.norm) for p in m.parameters()) + full.lm_head.weight.numel()
    assert speed.decode_weight_bytes(full) == (4 * read, 0)  # fp32; no vision tower, no embedding
    nf4 = load_model(tiny_dir, load_in_4bit=True)
    linears = [m for m in nf4.model.language_model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    nbytes, quantized = speed.decode_weight_bytes(nf4)
    assert quantized == sum(m.in_features * m.out_features for m in linears)
    assert 4 * (read - quantized) + quantized // 2 < nbytes < 4 * read  # + absmax constants


@pytest.mark.parametrize("shape, count, published", [("qwen2.5-vl-7b", 8_292_166_656, 8.29e9),
                                                     ("qwen2.5-vl-3b", 3_754_622_976, 3.75e9)])
def test_qwen_shapes_have_the_published_parameter_counts(shape, count, published):
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(speed.qwen_config(shape))
    n = sum(p.numel() for p in model.parameters())
    assert n == count and abs(n - published) / published < 0.01
    assert (model.lm_head.weight is model.get_input_embeddings().weight) == (shape == "qwen2.5-vl-3b")


def test_qwen_config_takes_the_tokenizer_ids_but_keeps_the_real_vocabulary():
    from vrlib.model import train_tokenizer

    tok = train_tokenizer(["Which shape moves first? <answer>A</answer>"] * 10, 300)
    config = speed.qwen_config("qwen2.5-vl-7b", tok)
    assert config.text_config.vocab_size == 152064 > len(tok)
    assert config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert config.text_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert speed.qwen_config("qwen2.5-vl-7b").video_token_id == 151656  # Qwen's own without one


@pytest.mark.parametrize("faster", [[], ["--static-cache"],
                                    pytest.param(["--static-cache", "--compile"], marks=pytest.mark.slow)])
def test_grpo_bench_prints_every_row(capsys, faster):
    speed.main([*TINY_GRPO, "--bandwidth-gbs", "20", *faster])
    out = capsys.readouterr().out
    rows = table(out)
    assert list(rows)[1:] == list(speed.GRPO_ROWS)  # after the header row
    assert "command: `python -m vrlib.speed grpo --shape tiny" in out
    for row in speed.GRPO_ROWS[1:-2]:
        float(rows[row].split()[0])  # every number parses (all but the GPU memory)
    assert rows["completion tokens per rollout (measured mean)"] == "8 (8)"  # min_new_tokens held
    assert rows["rollouts per prompt (ordered + shuffled)"] == "8 + 4"  # T-GRPO: G = 8, + G/2
    gen, update = (float(rows[f"{k} share of the step"]) for k in ("generation", "update"))
    assert gen > 0 and update > 0 and gen + update <= 1.0 + 1e-6
    if not torch.cuda.is_available():
        assert rows["peak GPU memory (GiB)"] == rows["peak GPU memory reserved (GiB)"] == "n/a"


def test_grpo_bench_runs_without_av_or_decord(tmp_path):
    """The GPU machine has neither av nor decord: the grpo benchmark needs neither (its videos
    are frames made in memory), nor the study's dvc, dvclive, papermill or rouge_score."""
    code = ("import sys; sys.modules['av'] = sys.modules['decord'] = None  # importing them fails\n"
            "from vrlib.speed import main\n"
            f"main({TINY_GRPO + ['--json', str(tmp_path / 'grpo.json')]!r})\n"
            "print([m for m in ('av', 'decord', 'dvc', 'dvclive', 'papermill', 'rouge_score') if sys.modules.get(m)])")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert list(table(run.stdout))[1:] == list(speed.GRPO_ROWS)
    assert run.stdout.splitlines()[-1] == "[]"  # none of them imported
    assert json.loads((tmp_path / "grpo.json").read_text())["rows"] == dict(list(table(run.stdout).items())[1:])
    assert "step 0: " in run.stderr  # each step's time, as it ends


# ----------------------------------------------------------------------------- strict mode
def strict_row(setting: str, seconds: float, weights: str) -> dict:
    return {"setting": setting, "capability": "X", "threads": 2, "s_per_step": seconds, "first_step_s": 2.0,
            "loss": 1.0, "weights_sha256": weights, "inputs_sha256": "in", "env": speed.STRICT_SETTINGS[setting]}


def test_strict_table_and_verdict_by_hand():
    # default and avx2 differ (a), strict and strict on avx2 agree (b); strict takes 1.5 s for 1.2 s
    rows = [strict_row("default", 1.2, "a1"), strict_row("avx2", 1.0, "a2"),
            strict_row("strict", 1.5, "b"), strict_row("strict, avx2 machine", 1.5, "b")]
    lines, verdict = speed.strict_table(rows)
    cells = [line.strip("| ").split(" | ") for line in lines[2:]]
    assert [c[0] for c in cells] == list(speed.STRICT_SETTINGS)
    assert [c[3] for c in cells] == ["1.00", "0.83", "1.25", "1.25"]  # x default
    assert [c[4:6] for c in cells] == [["yes", "no"], ["no", "no"], ["no", "yes"], ["no", "yes"]]
    assert verdict == {"strict_cost": pytest.approx(1.25), "strict_same_across_isas": "yes",
                       "default_same_across_isas": "no"}


def test_strict_env_drops_the_other_settings_variables(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "AVX512")  # a shell's own: not inherited by the default run
    assert "MKL_CBWR" not in speed.strict_env("default")
    assert speed.strict_env("strict")["MKL_CBWR"] == "COMPATIBLE"
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    run = subprocess.run([sys.executable, "-c", code], env=speed.strict_env("strict"), capture_output=True, text=True)
    assert run.stdout.strip() == "DEFAULT"  # torch reads it at start: no vector kernels


def test_strict_bench_prints_the_table_and_writes_the_rows(monkeypatch, capsys, tmp_path):
    """The parent's path, its children stood in for: one per setting, in order, with its options."""
    calls = []

    def child(setting, *, steps, threads, tiny, params):
        calls.append((setting, steps, threads, tiny))
        strict = setting.startswith("strict")  # 1.8 s and the same weights; the default mode's differ
        return strict_row(setting, 1.8 if strict else 1.2, "b" if strict else setting)

    monkeypatch.setattr(speed, "run_strict_child", child)
    speed.main(["strict", "--steps", "3", "--threads", "2", "--tiny", "--json", str(tmp_path / "strict.json")])
    out = capsys.readouterr().out
    assert calls == [(s, 3, 2, True) for s in speed.STRICT_SETTINGS]
    assert "| strict, avx2 machine | X | 1.800 | 1.50 | no | yes | yes |" in out.splitlines()
    assert out.splitlines()[-1] == ("strict costs 1.50x; same weights across ISAs in strict mode: yes; "
                                    "default mode across ISAs: no")
    written = json.loads((tmp_path / "strict.json").read_text())
    assert [r["setting"] for r in written["rows"]] == list(speed.STRICT_SETTINGS)
    assert written["verdict"]["strict_cost"] == pytest.approx(1.5)


def tiny_strict_run(setting: str = "default") -> dict:
    return speed.strict_child(setting, steps=2, threads=torch.get_num_threads(), tiny=True,
                              params=str(ROOT / "params.yaml"))


def test_strict_child_is_deterministic_and_its_timing_changes_nothing():
    """One setting run twice gives the same weights bit for bit, and so does `pretrain.run`
    unwrapped: the timing wrapper leaves training alone."""
    from vrlib import config, pretrain

    first, second = tiny_strict_run(), tiny_strict_run()
    assert tuple(first) == speed.STRICT_ROWS and first["s_per_step"] > 0 and first["first_step_s"] > 0
    assert first["capability"] == torch.backends.cpu.get_cpu_capability()
    same = ("weights_sha256", "inputs_sha256", "loss")
    assert {k: first[k] for k in same} == {k: second[k] for k in same}
    params = config.load(ROOT / "params.yaml")
    cfg = dataclasses.replace(params.pretrain, **speed.STRICT_DATA | speed.STRICT_TINY)
    plain = pretrain.run(cfg, params.data, state_dir=None, live_dir=None, stop_after=2)
    assert pretrain.state_hash(plain["model"]) == first["weights_sha256"]
    assert plain["log"][-1]["train/loss"] == first["loss"]


@pytest.mark.slow
def test_strict_child_in_a_fresh_process_gives_this_ones_weights():
    """The parent's own path (`run_strict_child`: a fresh process, its JSON line read back)
    agrees with this process, about 30 s of imports and setup on 2 cores."""
    if any(k in os.environ for env in speed.STRICT_SETTINGS.values() for k in env):
        pytest.skip("this process runs with a strict-mode variable set: its run is not the default's")
    fresh = speed.run_strict_child("default", steps=2, threads=torch.get_num_threads(), tiny=True,
                                   params=str(ROOT / "params.yaml"))
    here = tiny_strict_run()
    same = ("weights_sha256", "inputs_sha256", "loss", "capability", "threads")
    assert {k: fresh[k] for k in same} == {k: here[k] for k in same}


# ----------------------------------------------------------------------------- the GPU check
GPU_CHECK = ROOT / "scripts" / "gpu_check.sh"


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(GPU_CHECK)], check=True)


@pytest.mark.slow
def test_gpu_check_runs_dry_on_the_cpu(tmp_path):
    """GPU_CHECK_DRY=1 runs the GPU check's steps at the tiny shape (about a minute): each one
    passes and writes the files the GPU run will."""
    env = dict(os.environ, GPU_CHECK_DRY="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # this python
    subprocess.run(["bash", str(GPU_CHECK), str(tmp_path)], env=env, check=True, capture_output=True)
    steps = json.loads((tmp_path / "steps.json").read_text())
    assert {name: s["exit"] for name, s in steps.items()} == {"env": 0, "grpo-7b": 0, "grpo-3b": 0, "pytest-gpu": 0}
    assert json.loads((tmp_path / "env.json").read_text())["python"] == platform.python_version()
    for name in ("grpo-7b", "grpo-3b"):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert list(result["rows"]) == list(speed.GRPO_ROWS)
        assert result["command"].startswith("python -m vrlib.speed grpo --shape tiny")
        assert "| step seconds per prompt |" in (tmp_path / f"{name}.log").read_text()
    assert "1 skipped" in (tmp_path / "pytest-gpu.log").read_text()  # no GPU here


# ----------------------------------------------------------------------------- launch files
@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"),
                                        ("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED")])
def test_accelerate_configs_load_with_accelerate(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(LAUNCH / f"{name}.yaml"))
    assert config.distributed_type == kind
    assert (config.num_machines, config.machine_rank) == (1, 0)  # placeholders, overridden at launch
    if kind == "DEEPSPEED":
        ds = config.deepspeed_config
        assert ds["zero_stage"] == int(name[-1]) and config.mixed_precision == "bf16"
        assert ds["deepspeed_multinode_launcher"] == "standard"  # one launcher per node, no ssh


def test_fsdp_config_wraps_qwen_layers_for_qlora():
    import transformers.models.qwen2_5_vl.modeling_qwen2_5_vl as qwen
    from accelerate.commands.config.config_args import load_config_from_file

    fsdp = load_config_from_file(str(LAUNCH / "fsdp.yaml")).fsdp_config
    assert fsdp["fsdp_use_orig_params"] and fsdp["fsdp_cpu_ram_efficient_loading"]
    assert fsdp["fsdp_sync_module_states"] and fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    classes = fsdp["fsdp_transformer_layer_cls_to_wrap"].split(",")
    assert classes == ["Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock"]
    assert all(hasattr(qwen, c) for c in classes)


def test_slurm_script_parses():
    subprocess.run(["bash", "-n", str(LAUNCH / "slurm_rft.sh")], check=True)


def test_slurm_script_starts_one_accelerate_launch_per_node(tmp_path):
    """With stand-ins for scontrol, srun (two nodes) and python, the script's launch lines are
    what accelerate's own parser expects."""
    from accelerate.commands.launch import launch_command_parser

    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    stubs = {"scontrol": 'printf "gpu-a\\ngpu-b\\n"',
             "srun": 'while [[ $1 == --* ]]; do shift 2; done\nfor id in 0 1; do SLURM_NODEID=$id "$@"; done',
             "python": 'echo "$@" >> "$LOG"'}
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "LOG": str(log),
           "SLURM_JOB_NODELIST": "gpu-[a-b]", "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "4"}
    subprocess.run(["bash", str(LAUNCH / "slurm_rft.sh"), "zero3"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    calls = [line.split() for line in log.read_text().splitlines()]
    assert len(calls) == 2
    for rank, call in enumerate(calls):
        assert call[:2] == ["-m", "accelerate.commands.launch"]
        args = launch_command_parser().parse_args(call[2:])
        assert args.config_file == "vrlib/launch/zero3.yaml"
        assert (args.num_machines, args.machine_rank) == (2, rank)
        assert (args.num_processes, args.main_process_ip, args.main_process_port) == (8, "gpu-a", 29500)
        assert args.module and args.training_script == "vrlib.rft"
        assert args.training_script_args == ["--params", "params.yaml"]


def test_grpo_bench_runs_a_qwen_shape_shrunk(monkeypatch, capsys):
    """The 3B's path (its tokenizer ids, the real vocabulary, the vision tower's window
    attention, nf4 loading) with 1 text layer of width 64 and 1 vision block."""
    monkeypatch.setitem(speed.QWEN_TEXT, "qwen2.5-vl-3b", dict(
        speed.QWEN_TEXT["qwen2.5-vl-3b"], hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1))
    monkeypatch.setattr(speed, "QWEN_VISION", dict(speed.QWEN_VISION, depth=1, hidden_size=64,
                                                   intermediate_size=128, num_heads=2))
    monkeypatch.setitem(speed.QWEN_TEXT_COMMON, "rope_parameters", dict(
        speed.QWEN_TEXT_COMMON["rope_parameters"], mrope_section=[4, 6, 6]))
    speed.main(["grpo", "--shape", "qwen2.5-vl-3b", "--steps", "1", "--warmup", "0",
                "--completion", "4", "--frames", "4", "--max-pixels", "3136"])
    rows = table(capsys.readouterr().out)
    assert rows["completion tokens per rollout (measured mean)"] == "4 (4)"
    assert rows["model"].startswith("qwen2.5-vl-3b, 0.0")  # ~10 M, most of it the 151,936-row embedding
