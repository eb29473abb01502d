"""Run a few GRPO steps on the tiny model and save the adapter: `python tests/rft_script.py
MODEL SPLIT OUT` in one process, or under `accelerate launch` in several (tests/test_rft.py)."""
from __future__ import annotations

import sys

import torch
from accelerate import Accelerator
from peft import get_peft_model_state_dict

from vrlib.config import DataParams, RFTParams
from vrlib.data import load_split
from vrlib.model import add_lora, load_model, load_processor
from vrlib.rft import REWARD_FUNCS, load_kim_clips, train_grpo

# Rollouts of a random-weight model all score 0 on the real rewards (zero advantages); a reward
# that varies with the text gives a signal, and depends on nothing but the text.
REWARDS = {**REWARD_FUNCS, "varied": lambda text, sample: float(len(text) % 3)}
CONFIGS = {
    "grpo": RFTParams(steps=2, prompts_per_step=2, group_size=4, max_completion_length=8, lr=1e-2,
                      temperature=1.0, algo="t_grpo", relative=True, bonus_mode="advantage"),
    "dapo_batch": RFTParams(steps=2, prompts_per_step=2, group_size=4, max_completion_length=8,
                            lr=1e-2, temperature=1.0, loss_type="dapo", scale_rewards="batch",
                            num_iterations=2),
}


def main(model_dir: str, split: str, out: str) -> None:
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    processor = load_processor(model_dir)
    dcfg = DataParams()
    samples, clips = load_split(split, fps=dcfg.fps, min_frames=dcfg.min_frames, max_frames=dcfg.max_frames)
    kim = load_kim_clips(samples, split, dcfg)
    result = {}
    for name, cfg in CONFIGS.items():
        model = add_lora(load_model(model_dir), r=4, alpha=8, dropout=0.0, seed=0)
        history = train_grpo(model, processor, samples, clips, cfg, seed=0, kim_clips=kim,
                             reward_funcs=REWARDS, accelerator=accelerator)
        result[name] = {"adapter": get_peft_model_state_dict(accelerator.unwrap_model(model)),
                        "history": history, "processes": accelerator.num_processes}
    if accelerator.is_main_process:
        torch.save(result, out)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(*sys.argv[1:4])
