"""The plumbing under the GRPO loop: process groups and engines (DDP, FSDP, DeepSpeed ZeRO),
what each makes of backward, clipping, the update and the adapter's weights, and the
checkpoint files a run resumes from. `vrlib.rft` reads as the algorithm; this file is why
it can run on one CPU or on several GPUs and nodes unchanged (nanochat's `common.py`).
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np
import torch

from vrlib.model import TRAINED, save_checkpoint
from vrlib.video import atomic_path


class Engine:
    """The few collective operations a GRPO step needs: one process, or an Accelerator running DDP,
    FSDP (version 1) or DeepSpeed ZeRO (stages 1-3). Under DeepSpeed the loop owns the update:
    accelerate's `backward` would step the engine after every micro-batch, while a GRPO step here
    is one micro-batch per question, one update, and a finite check before it, so `backward` and
    `step` go to the engine directly, with DeepSpeed's `managed_gradient_accumulation: false`."""

    def __init__(self, accelerator=None):
        self.acc = accelerator
        self.n = 1 if accelerator is None else accelerator.num_processes
        self.rank = 0 if accelerator is None else accelerator.process_index
        from accelerate.utils import DistributedType

        kind = None if accelerator is None else accelerator.distributed_type
        self.fsdp = kind == DistributedType.FSDP
        self.deepspeed = kind == DistributedType.DEEPSPEED
        self.zero3 = self.deepspeed and accelerator.state.deepspeed_plugin.zero_stage == 3
        self.engine = "fsdp" if self.fsdp else "deepspeed" if self.deepspeed else "torch"
        """What an optimizer state in a checkpoint is: torch's, or a list of each process's shard."""

    def configure(self, model, grad_clip: float) -> None:
        """Before `accelerator.prepare`. FSDP: LoRA weights (fp32, trainable) in units of their
        own, then the layers (peft's docs). DeepSpeed: the loop marks the accumulation boundary
        (each backward only accumulates; `step` reduces, clips at grad_clip, skips a
        non-finite norm, updates); the batch sizes are nominal, there is no data loader."""
        if self.fsdp:
            from peft.utils.other import fsdp_auto_wrap_policy

            self.acc.state.fsdp_plugin.auto_wrap_policy = fsdp_auto_wrap_policy(self.unwrap(model))
        if self.deepspeed:
            ds = self.acc.state.deepspeed_plugin.deepspeed_config
            ds.update(train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, train_batch_size=self.n,
                      gradient_clipping=grad_clip, managed_gradient_accumulation=False)
            if ds.get("bf16", {}).get("enabled") in (True, "auto"):
                ds["bf16"]["check_grad_overflow"] = True  # a NaN gradient skips the update
            if self.zero3:  # the adapter is gathered whole for checkpoints (accelerator.get_state_dict)
                ds.setdefault("zero_optimization", {})["stage3_gather_16bit_weights_on_model_save"] = True

    def prepare(self, model, optimizer, grad_clip: float, state: dict | None = None):
        """The model and optimizer as this engine runs them, a checkpoint's `state` loaded in: the
        adapter before wrapping (every process holds the whole model), the optimizer state after
        (under FSDP it is sharded like the wrapped model)."""
        if state is not None:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model, state["adapter"])
        if self.acc is not None:
            self.configure(model, grad_clip)
            model, optimizer = self.acc.prepare(model, optimizer)
        if state is not None:
            self.load_optimizer_state(optimizer, state)
        return model, optimizer

    def gather(self, x: torch.Tensor) -> torch.Tensor:  # concatenated in process order
        return x if self.n == 1 else self.acc.gather(x.to(self.acc.device)).cpu()

    def most(self, n: int) -> int:  # the largest n over processes
        return int(self.gather(torch.tensor([n])).max()) if self.n > 1 else n

    def sum(self, values: dict[str, float]) -> dict[str, float]:  # each value summed over processes
        return dict(zip(values, self.gather(torch.tensor([list(values.values())])).sum(0).tolist()))

    def wait(self) -> None:
        if self.acc is not None:
            self.acc.wait_for_everyone()

    def backward(self, model, loss: torch.Tensor) -> None:
        if self.deepspeed:  # accumulate only; the loss already carries the batch's normaliser
            model.backward(loss, scale_wrt_gas=False)
        else:
            loss.backward() if self.acc is None else self.acc.backward(loss)

    def no_sync(self, model, last: bool):
        quiet = self.n == 1 or last or self.deepspeed  # DeepSpeed: the boundary is `step`
        return contextlib.nullcontext() if quiet else self.acc.no_sync(model)

    def unwrap(self, model):
        return model if self.acc is None else self.acc.unwrap_model(model)

    def full_weights(self, model):
        """Around a forward of the unwrapped model (generation, the no-grad forwards). Under FSDP
        the root unit's weights (embeddings, final norm, lm_head, vision merger) are sharded
        outside the wrapper's forward: gather them (TRL does the same); the layers' own units
        gather theirs in their forward. Under ZeRO-3 every weight is gathered for the rollouts
        at once, as TRL does (layer by layer generation would gather each layer per token)."""
        if self.fsdp:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            return FSDP.summon_full_params(model, recurse=False, writeback=False)
        if self.zero3:
            import deepspeed

            return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
        return contextlib.nullcontext()

    def update(self, model, optimizer, params: list, max_norm: float, total_loss: float) -> torch.Tensor:
        """Clip to max_norm and step; the gradient norm before clipping. A non-finite loss or
        norm raises FloatingPointError with nothing applied. FSDP's gradients are sharded, and its
        own clip reduces the norm over processes (accelerate's clip_grad_norm_ finds the model by
        comparing parameter lists, which fails once a process has prepared two models); DeepSpeed
        clips and checks inside its step, and skips an update whose norm is not finite."""
        if self.deepspeed:
            norm = float("nan")
            if np.isfinite(total_loss):
                model.step()
                norm = model.get_global_grad_norm() if model.was_step_applied() else float("nan")
            grad_norm = torch.as_tensor(float(norm))
        else:
            grad_norm = model.clip_grad_norm_(max_norm) if self.fsdp else \
                torch.nn.utils.clip_grad_norm_(params, max_norm)
        if not (np.isfinite(total_loss) and torch.isfinite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(f"GRPO loss {total_loss} / gradient norm {grad_norm.item()} "
                                     "is not finite; the update was not applied")
        if not self.deepspeed:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return grad_norm

    @property
    def gathers_adapter(self) -> bool:
        """Whether the adapter is sharded, so that every process must take part in reading it."""
        return self.fsdp or self.zero3

    def adapter_state(self, model) -> dict:
        """The trained adapter's weights, whole (on every process when they are replicated; on
        process 0 under FSDP and ZeRO-3, where every process must call this: the shards are
        gathered)."""
        from peft import get_peft_model_state_dict

        if not self.gathers_adapter:
            return get_peft_model_state_dict(self.unwrap(model))
        full = self.acc.get_state_dict(model)  # gathered, with the wrappers' names removed
        if self.rank != 0:
            return {}
        # peft's get_peft_model_state_dict(state_dict=full) finds the LoRA weights by module name,
        # and inside FSDP's nested units those names carry `_fsdp_wrapped_module.`, so it selects
        # nothing: select the trained weights here, named as peft names them (adapter name removed)
        trained = {n.replace("_fsdp_wrapped_module.", "") for n, p in self.unwrap(model).named_parameters()
                   if p.requires_grad}
        return {k.replace(f".{TRAINED}.", "."): v for k, v in full.items() if k in trained}

    def save(self, checkpoint_dir: str | os.PathLike, fingerprint: str, step: int, model, optimizer, *,
             history: list[dict], keep: int) -> None:
        """The run's state after `step` steps (`save_state`); every process calls it: under FSDP
        and DeepSpeed the adapter and optimizer states are gathered."""
        adapter, optim = self.adapter_state(model), self.optimizer_state(optimizer)
        if self.rank == 0:
            save_state(checkpoint_dir, fingerprint, step, adapter=adapter, optimizer=optim, engine=self.engine,
                       history=history, keep=keep)
        self.wait()

    def save_adapter(self, model, out: str | os.PathLike) -> None:
        """The trained adapter in peft's format at `out`; every process calls it (under FSDP and
        ZeRO-3 the adapter is gathered)."""
        adapter = self.adapter_state(model) if self.gathers_adapter else None
        if self.rank == 0:
            save_checkpoint(self.unwrap(model), None, out, adapter=adapter)
        self.wait()

    def optimizer_state(self, optimizer) -> dict | list[dict]:
        """The optimizer's state. Under FSDP and DeepSpeed every process must call this: it is the
        list of each process's own shard, which process 0 gets. FSDP.optim_state_dict, which would
        gather it whole, wrote exp_avg_sq in place of exp_avg for the LoRA B weights here (torch
        2.15, use_orig_params), so the shards are kept as they are; ZeRO's state is per process."""
        if self.engine == "torch":
            return optimizer.state_dict()
        from accelerate.utils import gather_object, send_to_device

        own = send_to_device(optimizer.state_dict(), "cpu")  # pickled to process 0
        return gather_object([own])

    def load_optimizer_state(self, optimizer, state: dict) -> None:
        engine = state.get("engine", "torch")  # checkpoints before FSDP have none
        shards = state["optimizer"] if engine != "torch" else None
        if engine != self.engine or (shards is not None and len(shards) != self.n):
            raise ValueError(
                f"the checkpoint's optimizer state was written by {len(shards) if shards else 1} "
                f"{engine} process(es); resume it the same way (rft.accelerate_config, "
                "rft.num_processes) or move it away")
        if self.deepspeed:  # ZeRO reads its own shard; fp32 master weights from it, not from the bf16 model
            optimizer.optimizer.load_state_dict(shards, load_from_fp32_weights=True)
        else:
            optimizer.load_state_dict(state["optimizer"] if shards is None else shards[self.rank])


# ----------------------------------------------------------------------------- checkpoint files
def checkpoints(checkpoint_dir: str | os.PathLike, fingerprint: str) -> list[tuple[int, Path]]:
    """A run's checkpoints `step_<n>-<fingerprint>.pt` as (n, path), oldest first."""
    found = Path(checkpoint_dir).glob(f"step_*-{fingerprint}.pt")
    return sorted((int(p.name[len("step_"):].split("-")[0]), p) for p in found)


def save_state(checkpoint_dir: str | os.PathLike, fingerprint: str, step: int, *, adapter: dict,
               optimizer: dict | list, engine: str, history: list[dict], keep: int) -> Path:
    """Write the state after `step` steps and remove this run's older checkpoints below it, but
    the `keep` newest; those of later steps (a longer run with the same fingerprint) stay.
    `adapter` and `optimizer` as `Engine.adapter_state` / `optimizer_state` give them; `engine`
    says what the optimizer state is ("torch": torch's; "fsdp", "deepspeed": a list of each
    process's shard)."""
    path = Path(checkpoint_dir) / f"step_{step:05d}-{fingerprint}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "fingerprint": fingerprint, "history": history, "adapter": adapter,
             "optimizer": optimizer, "engine": engine}
    with atomic_path(path) as tmp:  # a crash while writing leaves the previous checkpoint intact
        torch.save(state, tmp)
    below = [p for n, p in checkpoints(checkpoint_dir, fingerprint) if n <= step]
    for old in below[:-max(1, keep)]:
        old.unlink()
    return path


def fresh_reason(checkpoint_dir: str | os.PathLike, fingerprint: str, steps: int) -> str:
    """Why a run resumes nothing: this recipe's checkpoints are all past `steps` (a 20-step run
    never loads step 40's weights), or those there were written by another recipe, or none."""
    same = [n for n, _ in checkpoints(checkpoint_dir, fingerprint)]
    if same:
        return (f"this recipe's checkpoints (step {', '.join(map(str, same))}) are all past rft.steps={steps}, "
                f"and a shorter run never loads later weights")
    other = len(list(Path(checkpoint_dir).glob("step_*.pt")))
    if other:
        return (f"the {other} checkpoint{'s' * (other > 1)} there came from other params, inputs or vrlib "
                f"code (another fingerprint: a changed reward trains afresh)")
    return "no checkpoint yet"


def load_state(checkpoint_dir: str | os.PathLike, fingerprint: str, max_step: int) -> dict | None:
    """The newest checkpoint of this fingerprint at or below `max_step`, or None: a 20-step
    run after a 40-step one must not load step 40's weights."""
    import pickle

    found = [p for n, p in checkpoints(checkpoint_dir, fingerprint) if n <= max_step]
    if not found:
        return None
    try:
        with torch.serialization.safe_globals(_zero_state_classes()):
            return torch.load(found[-1], map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # DeepSpeed's classes are allowed only in a DeepSpeed run
        raise ValueError(f"{found[-1]} cannot be read here ({err.__class__.__name__}); a checkpoint "
                         "written under DeepSpeed resumes only under DeepSpeed (rft.accelerate_config) "
                         "with as many processes: run it so, or move it away") from err


def _zero_state_classes() -> list:
    """What a ZeRO optimizer's state pickles besides tensors (DeepSpeed loads its own checkpoints
    with weights_only=False). A run under DeepSpeed has imported it; any other needs none."""
    if "deepspeed" not in sys.modules:
        return []
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


# ----------------------------------------------------------------------------- launching
def launch_command(module: str, num_processes: int, accelerate_config: str = "",
                   params_path: str = "params.yaml") -> list[str]:
    """`accelerate launch -m <module> --params <params_path>` with `num_processes` processes:
    `accelerate_config` when given, else DDP on the local devices (gloo without GPUs)."""
    how = ["--config_file", accelerate_config] if accelerate_config else \
        ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return [sys.executable, "-m", "accelerate.commands.launch", *how,
            "--num_processes", str(num_processes), "-m", module, "--params", params_path]


def make_accelerator():
    """The Accelerator of this process, as `accelerate launch` set it up: on GPUs, or on the CPU
    (gloo). accelerate turns DeepSpeed on for accelerators only; without a GPU it is run on
    DeepSpeed's CPU accelerator (`DS_ACCELERATOR=cpu`) over gloo, as the tests do, instead of
    silently falling back to DDP."""
    from accelerate import Accelerator, PartialState

    if torch.cuda.is_available():
        return Accelerator()
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        PartialState(backend="gloo")  # the shared state the Accelerator below takes up
        return Accelerator()
    return Accelerator(cpu=True)
