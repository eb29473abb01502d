"""Run a few GRPO steps on the tiny model and save the adapter: `python tests/rft_script.py
MODEL SPLIT OUT [ddp|fsdp|zero2|zero3]` in one process, or under `accelerate launch` in several
(tests/test_rft.py).

`fsdp`: the model is sharded by accelerate's FSDP (version 1) wrapping. accelerate turns FSDP on
for GPUs only, so on CPU this sets the two fields of its state that `accelerate launch
--use_fsdp` would set (distributed type, plugin); everything after that (the wrapping in
`prepare`, gloo collectives, `get_state_dict`, FSDP's clipping) is accelerate's and torch's own.
`zero2`, `zero3`: launched with a DeepSpeed config; `vrlib.engine.make_accelerator` runs it on
DeepSpeed's CPU accelerator over gloo, as the rft stage does on a machine without a GPU."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from peft import get_peft_model_state_dict
from safetensors.torch import load_file

from vrlib.config import DataParams, RFTParams
from vrlib.data import load_split
from vrlib.model import add_lora, load_model, load_processor
from vrlib.engine import load_state, make_accelerator
from vrlib.rft import REWARD_FUNCS, load_kim_clips, train_grpo

# Rollouts of a random-weight model all score 0 on the real rewards (zero advantages); a reward
# that varies with the text gives a signal, and depends on nothing but the text.
REWARDS = {**REWARD_FUNCS, "varied": lambda text, sample: float(len(text) % 3)}
# ... on some problem types only, so that dynamic sampling drops the others' groups
PICKY = {"varied": lambda text, s: float(len(text) % 3) if s.problem_type in ("multiple choice", "OCR") else 0.0}
CONFIGS = {
    "grpo": RFTParams(steps=2, prompts_per_step=2, group_size=4, max_completion_length=8, lr=1e-2,
                      temperature=1.0, algo="t_grpo", relative=True, bonus_mode="advantage"),
    "dapo_batch": RFTParams(steps=2, prompts_per_step=2, group_size=4, max_completion_length=8,
                            lr=1e-2, temperature=1.0, algo="grpo", loss_type="dapo", scale_rewards="batch",
                            num_iterations=2),
    # DAPO's dynamic sampling with GSPO's sequence ratio: the kept groups differ per process
    "dynamic": RFTParams(steps=2, prompts_per_step=2, group_size=4, max_completion_length=8, lr=1e-2,
                         temperature=1.0, algo="grpo", dynamic_sampling=True, max_draws=6,
                         importance_sampling="sequence"),
}


def accelerator_for(mode: str) -> Accelerator:
    if mode.startswith("zero"):  # `accelerate launch --use_deepspeed`: DeepSpeed's CPU accelerator, gloo
        return make_accelerator()
    accelerator = Accelerator(cpu=True)
    if mode == "fsdp":
        for state in (PartialState(), accelerator.state):  # AcceleratorState() re-reads PartialState's
            state.distributed_type = DistributedType.FSDP
            state.device = torch.device("cpu")  # FSDP compares it with torch.cpu.current_device()
        accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin(
            fsdp_version=1, sharding_strategy="FULL_SHARD", use_orig_params=True,
            state_dict_type="FULL_STATE_DICT", sync_module_states=False)  # True needs a GPU
    return accelerator


def assert_live(accelerator, model, adapter: dict, mode: str) -> None:
    """Without sharding, the live weights must equal `adapter` (those written)."""
    if mode not in ("fsdp", "zero3"):
        live = get_peft_model_state_dict(accelerator.unwrap_model(model))
        assert all(torch.equal(live[k], v) for k, v in adapter.items())


def main(model_dir: str, split: str, out: str, mode: str = "ddp") -> None:
    torch.set_num_threads(1)
    accelerator = accelerator_for(mode)
    processor = load_processor(model_dir)
    dcfg = DataParams()
    samples, clips = load_split(split, fps=dcfg.fps, min_frames=dcfg.min_frames, max_frames=dcfg.max_frames)
    kim = load_kim_clips(samples, split, dcfg)
    result = {}
    # "resumed": grpo's two steps as one step, a checkpoint, then a second run from it
    runs = [*CONFIGS.items(), ("resumed", replace(CONFIGS["grpo"], steps=1)), ("resumed", CONFIGS["grpo"]),
            ("resumed_dynamic", replace(CONFIGS["dynamic"], steps=1)), ("resumed_dynamic", CONFIGS["dynamic"])]
    for name, cfg in runs:
        model = add_lora(load_model(model_dir), r=4, alpha=8, dropout=0.0, seed=0)
        saved = Path(out).with_suffix(f".{name}")
        history = train_grpo(model, processor, samples, clips, cfg, seed=0, kim_clips=kim,
                             reward_funcs=PICKY if "dynamic" in name else REWARDS, accelerator=accelerator, out=saved,
                             checkpoint_dir=Path(out).with_suffix(f".{name}_checkpoints") if name.startswith("resumed") else None)
        # the adapter as written (gathered from the shards under FSDP)
        result[name] = {"adapter": load_file(saved / "adapter_model.safetensors"),
                        "history": history, "processes": accelerator.num_processes}
        assert_live(accelerator, model, result[name]["adapter"], mode)
    # A NaN reward from the second step on: every engine stops there, before that update
    poisoned = []
    rewards = {**REWARDS, "nan": lambda text, sample: float("nan") if poisoned else 0.0}
    model = add_lora(load_model(model_dir), r=4, alpha=8, dropout=0.0, seed=0)
    checkpoint_dir = Path(out).with_suffix(".nan")
    try:
        train_grpo(model, processor, samples, clips, replace(CONFIGS["grpo"], checkpoint_every=1), seed=0,
                   kim_clips=kim, reward_funcs=rewards, accelerator=accelerator, checkpoint_dir=checkpoint_dir,
                   on_step=lambda step, metrics: poisoned.append(step))
        result["nan"] = {"error": ""}
    except FloatingPointError as err:
        state = load_state(checkpoint_dir, "run", 2)  # the last good one: after step 0
        result["nan"] = {"error": str(err), "step": state["step"], "adapter": state["adapter"]}
        assert_live(accelerator, model, state["adapter"], mode)  # still those of step 0
    if accelerator.is_main_process:
        torch.save(result, out)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(*sys.argv[1:5])
