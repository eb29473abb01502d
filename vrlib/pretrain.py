"""Perception pretraining of the embedded tiny Qwen2.5-VL, run once (`make pretrain`) and shipped.

A Video-R1 run starts from Qwen2.5-VL's weights; nobody pretrains Qwen inside it. The embedded
study does the same: this module builds the tokenizer and a tiny Qwen2.5-VL (the real classes and
processor), teaches it to see the synthetic world, and writes a checkpoint directory with a
`card.json` (recipe, seeds, steps, wall time, probe scores, the weights' sha256) that git tracks
and `base.pretrained_dir` names. The study loads it as it loads a real checkpoint.

Two phases, as a real VLM's stages, all weights training in both, after an optional phase 0
(`vision_steps`: the vision tower alone, naming the shape and colour under each object, the
stand-in for the separately pretrained encoder a real VLM starts from): (1) perception, on MP4
videos of the world (an inventory of every shape with its times) mixed with single frames
(the shapes in the frame: shape is a small part of the video's text, the frames make it dense
and cost an eighth of a video), cosine decay to 0; (2) at a low rate, perception again with a
few items of every task family in each batch, answered as plain text (a real VLM's
instruction data). The first phase's checkpoints are named by its own keys only, so a change
to the second phase starts from them. A second phase at 1e-3 with the vision frozen and half
task items (recipe d013d70f) cost the probes more than it taught.
Every example is drawn from the world's seed streams named below, disjoint from the study's
splits, and decoded from MP4 by the study's own path (`data.load_media`), so the frames are the
ones the study feeds the model, compression artefacts included.

Resumable: a checkpoint (weights, optimizer, schedule, step) every `checkpoint_every` steps;
the batch of step k is drawn from rng (seed, k), so a resumed run gives the same weights, bit
for bit, as an uninterrupted one (tests/test_pretrain.py).

The probes say whether a base sees, and reads the video in order: greedy inventories of
held-out videos scored against the scenes (`probe`), again with the frames shuffled and with
another video's frames.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml

from vrlib import tasks, video, world
from vrlib.data import atomic_write_json, digest, load_media, split_seed, world_record
from vrlib.logs import cpu_name, machine, progress
from vrlib.prompts import encode_examples, plain_target, user_text
from vrlib.schema import Sample

STREAMS = ("pretrain/videos", "pretrain/tasks", "pretrain/probe", "pretrain/probe_val", "pretrain/corpus")
"""The world streams of pretraining (`data.split_seed(data_seed, name)`): training videos and
frames, plain-text task items, the probes' held-out videos, the probes' validation videos
(checked during training, every choice made on them), and text-only items for the tokenizer.
No study split uses these names, so no scene is shared with sft, rl, val or eval."""

LIST = "List the shapes with their times."
LIST_FRAME = "List the shapes in the image."


def prompt(data_type: str = "video") -> Sample:
    """The inventory question (a video) or the frame question (an image); also the probes' prompt."""
    return Sample(problem_id="inventory", problem=LIST if data_type == "video" else LIST_FRAME,
                  data_type=data_type, problem_type="free-form", options=[], solution="",
                  path="", data_source="world/inventory", duration=0.0, fps=0.0)


def frame_inventory(scene: world.Scene, t: float) -> str:
    """The shapes visible at time t, by colour: "the blue square. the red circle." ("no shapes.")."""
    here = sorted((a for a in scene.actors if a.start <= t < a.end), key=lambda a: a.colour)
    return " ".join(f"the {a.colour} {a.shape}." for a in here) or "no shapes."


# ----------------------------------------------------------------------------- the world, decoded
@dataclass
class Videos:
    """n world scenes and their frames as the study decodes them (MP4 -> decord -> 2 fps)."""

    scenes: list
    frames: np.ndarray  # (n, T, H, W, 3) uint8, a memmap when cached on disk
    fps: float          # the sampled rate, the same for every video of the world
    timestamps: np.ndarray  # (T,) seconds of each sampled frame

    def clip(self, i: int, frames: np.ndarray | None = None) -> video.Clip:
        f = self.frames[i] if frames is None else frames
        return video.Clip(frames=np.asarray(f), fps=self.fps, indices=np.arange(len(f)),
                          timestamps=self.timestamps, duration=self.scenes[0].duration,
                          native_fps=float(self.scenes[0].fps), path="")


def world_videos(seed: int, stream: str, n: int, spec: tasks.WorldSpec, *, fps: float,
                 min_frames: int, max_frames: int, cache: str | Path | None = None,
                 name: str = "") -> Videos:
    """Render n inventory scenes of `stream`, write each as MP4, decode it as the study does.

    With `cache`, the decoded frames are kept in `<cache>/<key>.npy` (written atomically), so a
    resumed or repeated run decodes nothing."""
    s = split_seed(seed, stream)
    scenes = [world.make_scene(s, i, duration=spec.duration, fps=spec.fps, size=spec.size) for i in range(n)]
    key = digest([seed, stream, n, asdict(spec), fps, min_frames, max_frames])
    path = Path(cache) / f"{stream.replace('/', '-')}-{key}.npy" if cache else None
    meta = path.with_suffix(".json") if path else None
    if path is not None and path.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        return Videos(scenes, np.load(path, mmap_mode="r"), info["fps"], np.array(info["timestamps"]))
    show = progress(f"pretrain: decode {name or stream}", n, keys=(), unit="video") if name else None
    out, clip = None, None
    with tempfile.TemporaryDirectory() as tmp:
        for i, scene in enumerate(scenes):
            mp4 = Path(tmp) / "v.mp4"
            video.write_mp4(mp4, world.render(scene), spec.fps)
            clip = load_media(mp4, "video", fps=fps, min_frames=min_frames, max_frames=max_frames)
            if out is None:
                out = np.empty((n, *clip.frames.shape), np.uint8)
            out[i] = clip.frames
            if show:
                show(i, {})
    vids = Videos(scenes, out, float(clip.fps), np.asarray(clip.timestamps))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with video.atomic_path(path) as tmp_path:
            with open(tmp_path, "wb") as f:
                np.save(f, out)
        atomic_write_json(meta, {"fps": vids.fps, "timestamps": vids.timestamps.tolist()})
    return vids


def task_items(seed: int, n: int, spec: tasks.WorldSpec, *, fps: float, min_frames: int,
               max_frames: int) -> tuple[list[Sample], list[video.Clip]]:
    """n items of every study family (not the inventory), round robin, decoded like the study's."""
    families = [f for f in tasks.FAMILIES if f != "inventory"]
    plan = tasks.mixture({f: 1 for f in families}, n)
    s = split_seed(seed, STREAMS[1])
    samples, clips = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            item = tasks.FAMILIES[plan[i]](s, i, spec)
            path = Path(tmp) / (f"{i}.png" if item.data_type == "image" else f"{i}.mp4")
            if item.data_type == "image":
                video.write_image(path, item.frames[0])
            else:
                video.write_mp4(path, item.frames, spec.fps)
            clips.append(load_media(path, item.data_type, fps=fps, min_frames=min_frames, max_frames=max_frames))
            samples.append(world_record(item, f"pretrain_task_{i:05d}", plan[i], spec, path=str(path)))
    return samples, clips


def corpus(seed: int, n: int, spec: tasks.WorldSpec) -> list[str]:
    """The tokenizer's text: the prompts and targets of pretraining and of n items per family
    from their own stream (the study's questions and chains of thought in the world's words)."""
    s = split_seed(seed, STREAMS[4])
    texts = [user_text(prompt("video")), user_text(prompt("image")), "no shapes."]
    for f, gen in tasks.FAMILIES.items():
        for i in range(n):
            if f == "inventory":
                scene = world.make_scene(s, i, duration=spec.duration, fps=spec.fps, size=spec.size)
                texts += [world.inventory(scene), frame_inventory(scene, float(i % spec.duration))]
                continue
            item = gen(s, i, spec)
            sample = Sample(problem_id="", problem=item.problem, data_type=item.data_type,
                            problem_type=item.problem_type, options=item.options, solution=item.solution,
                            path="", data_source="", duration=0.0, fps=0.0, process=item.process)
            texts += [user_text(sample), item.process + item.solution, plain_target(sample)]
    return texts


# ----------------------------------------------------------------------------- probes
_OBJECT = re.compile(r"the (\w+) (\w+) is first seen at (\d+(?:\.\d+)?) seconds and last seen before "
                     r"(\d+(?:\.\d+)?) seconds")


def read_inventory(text: str) -> list[tuple[str, str, float, float]]:
    """(colour, shape, start, end) of each object an inventory names; unreadable text names none.

    read_inventory("the red circle is first seen at 2.0 seconds and last seen before 5.0
    seconds, so ...") == [("red", "circle", 2.0, 5.0)]"""
    return [(c, s, float(a), float(b)) for c, s, a, b in _OBJECT.findall(text)]


def score_inventories(texts: list[str], scenes: list, tol: float = 0.5) -> dict:
    """The probes from greedy inventories of `scenes`' videos:
    - objects_f1: F1 of the named (colour, shape) set against the scene's, pooled over videos;
    - span_acc: share of true objects named with start and end each within `tol` seconds;
    - first_acc: on videos with >= 2 objects and one first to appear, the share whose object
      named with the earliest start (and only it) is that one."""
    tp = fp = fn = spans = n_obj = first_ok = n_first = 0
    for text, scene in zip(texts, scenes):
        named = {}
        for c, s, a, b in read_inventory(text):
            named.setdefault((c, s), (a, b))
        truth = {(a.colour, a.shape): (float(a.start), float(a.end)) for a in scene.actors}
        tp += len(named.keys() & truth.keys())
        fp += len(named.keys() - truth.keys())
        fn += len(truth.keys() - named.keys())
        n_obj += len(truth)
        spans += sum(k in named and abs(named[k][0] - t0) <= tol and abs(named[k][1] - t1) <= tol
                     for k, (t0, t1) in truth.items())
        starts = sorted(t0 for t0, _ in truth.values())
        if len(starts) >= 2 and starts[0] < starts[1]:
            n_first += 1
            first = min(truth, key=lambda k: truth[k][0])
            earliest = min((a for a, _ in named.values()), default=None)
            said = [k for k, (a, _) in named.items() if a == earliest]
            first_ok += said == [first]
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"n": len(texts), "objects_f1": round(f1, 4), "span_acc": round(spans / max(n_obj, 1), 4),
            "first_acc": round(first_ok / max(n_first, 1), 4), "n_first": n_first}


def inventories(model, processor, vids: Videos, order: str = "ordered", *, batch_size: int = 32,
                max_new_tokens: int = 160, seed: int = 0, name: str = "") -> list[str]:
    """Greedy inventories of every video: "ordered" frames, "shuffled" frames (a random order per
    video, other than the true one), or "swapped" (video i gets video i+1's frames)."""
    from vrlib.rollout import generate

    rng = np.random.default_rng(seed)
    clips = []
    for i in range(len(vids.scenes)):
        if order == "ordered":
            clips.append(vids.clip(i))
        elif order == "shuffled":
            clips.append(video.shuffle_clip(vids.clip(i), rng))
        elif order == "swapped":
            clips.append(vids.clip(i, vids.frames[(i + 1) % len(vids.scenes)]))
        else:
            raise ValueError(f"order must be ordered, shuffled or swapped, got {order!r}")
    texts = []
    show = progress(name, math.ceil(len(clips) / batch_size), keys=(), unit="batch", lines=4) if name else None
    for b, i in enumerate(range(0, len(clips), batch_size)):
        chunk = clips[i:i + batch_size]
        texts += generate(model, processor, [prompt()] * len(chunk), chunk, max_new_tokens=max_new_tokens,
                          do_sample=False).texts
        if show:
            show(b, {})
    return texts


def probe(model, processor, vids: Videos, *, orders=("ordered", "shuffled", "swapped"),
          batch_size: int = 32, name: str = "") -> dict:
    """{"probes": ..., "probes_shuffled": ..., "probes_swapped": ...} (score_inventories each)."""
    keys = {"ordered": "probes", "shuffled": "probes_shuffled", "swapped": "probes_swapped"}
    return {keys[o]: score_inventories(inventories(model, processor, vids, o, batch_size=batch_size,
                                                   name=f"{name} {o}" if name else ""), vids.scenes)
            for o in orders}


# ----------------------------------------------------------------------------- training
def param_groups(model, lr: float, vision_lr: float) -> list[dict]:
    """The vision tower (patch embedding, blocks, merger) at `vision_lr`, the rest at `lr`
    (nanoVLM gives its projector its own, larger rate)."""
    visual = {id(p) for p in model.model.visual.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if id(p) in visual], "lr": vision_lr},
            {"params": [p for p in params if id(p) not in visual], "lr": lr}]


def draw(step: int, seed: int, n_videos: int, batch_size: int, image_frac: float) -> list[tuple[int, int]]:
    """The examples of step `step`: (video, -1) for a whole video or (video, frame) for one of its
    frames as an image, from rng (seed, step) so a resumed run draws the same batches."""
    rng = np.random.default_rng([seed, step])
    idx = rng.choice(n_videos, size=batch_size, replace=False)
    frame = rng.integers(0, 1 << 30, size=batch_size)
    image = rng.random(batch_size) < image_frac
    return [(int(i), int(f) if im else -1) for i, f, im in zip(idx, frame, image)]


def perception_examples(vids: Videos, picks: list[tuple[int, int]]) -> tuple[list, list, list[str]]:
    """(samples, clips, targets) of `draw`'s picks: a video's inventory, or one frame's shapes."""
    samples, clips, targets = [], [], []
    for i, f in picks:
        scene = vids.scenes[i]
        if f < 0:
            samples.append(prompt("video"))
            clips.append(vids.clip(i))
            targets.append(world.inventory(scene))
        else:
            k = f % len(vids.timestamps)
            samples.append(prompt("image"))
            clips.append(replace(vids.clip(i, vids.frames[i][k:k + 1]), timestamps=vids.timestamps[k:k + 1],
                                 indices=np.array([k])))
            targets.append(frame_inventory(scene, float(vids.timestamps[k])))
    return samples, clips, targets


def save_state(path: Path, model, optimizer, schedule, step: int, key: str, log: list) -> None:
    """Weights, optimizer, schedule and step, atomically (a kill never leaves a half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with video.atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "step": step, "key": key, "log": log}, tmp)


def _step(path: Path) -> int:
    return int(path.stem.split("step")[-1])


def latest_state(folder: Path, key: str, at_most: int) -> Path | None:
    """The last checkpoint of recipe `key` in `folder` at or below step `at_most`, or None."""
    found = sorted((p for p in folder.glob(f"{key}-step*.pt") if _step(p) <= at_most), key=_step)
    return found[-1] if found else None


def train_phase(model, batch_of, *, steps: int, groups: list[dict], grad_clip: float, warmup: int,
                state_dir: Path | None, key: str, checkpoint_every: int, total: int | None = None,
                on_step=None, keep: int = 2) -> list[dict]:
    """AdamW, linear warmup then cosine decay to 0 at `total` (default `steps`) steps,
    `batch_of(step)` -> encoded batch; resumes from the last checkpoint of `key` in `state_dir`
    (at or below `steps`). Returns one dict of metrics per step."""
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup, total or steps)
    params = [p for g in groups for p in g["params"]]
    start, log = 0, []
    last = latest_state(state_dir, key, steps) if state_dir else None
    if last is not None:
        state = torch.load(last, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, log = state["step"], state["log"]
        print(f"pretrain: resumed from {last} (step {start}/{steps})", flush=True)
    elif state_dir is not None:
        phase = key.rsplit("-", 1)[-1]
        others = [p for p in state_dir.glob(f"*-{phase}-step*.pt") if not p.name.startswith(f"{key}-")]
        why = f"({len(others)} checkpoints of other recipes ignored)" if others else "(no checkpoint of this recipe)"
        print(f"pretrain: fresh start of {key} {why}", flush=True)
    model.train()
    for step in range(start, steps):
        batch = batch_of(step)
        loss = model(**batch).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining loss is {loss.item()} at step {step}")
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        row = {"train/loss": loss.item(), "train/grad_norm": grad_norm.item(),
               "train/lr": schedule.get_last_lr()[-1]}
        log.append(row)
        if on_step is not None:
            on_step(step, row)
        done = step + 1
        if state_dir is not None and (done % checkpoint_every == 0 or done == steps):
            save_state(state_dir / f"{key}-step{done}.pt", model, optimizer, schedule, done, key, log)
            for old in sorted(state_dir.glob(f"{key}-step*.pt"), key=_step)[:-keep]:
                old.unlink()
    model.eval()
    return log


# ----------------------------------------------------------------------------- phase 0: the encoder
COLOURS = tuple(world.COLOURS)


def object_tokens(scene: world.Scene, timestamps, grid_thw, *, merge: int, temporal: int) -> list[tuple[int, int, int]]:
    """(merged token, shape, colour) for each object at each temporal patch whose frames all show
    it: the token whose `merge` x `merge` block of patches holds the object's centre, midway through
    the patch's frames. Qwen2.5-VL's merger emits one token per (temporal patch, row, column) of
    such blocks, in that order; the last frame repeats when the count falls short, as the processor
    pads it. `merge` and `temporal` are the processor's `merge_size` and `temporal_patch_size`."""
    t, h, w = (int(v) for v in grid_thw)
    rows, cols = h // merge, w // merge
    out = []
    for a in scene.actors:
        for k in range(t):
            times = [float(timestamps[min(temporal * k + j, len(timestamps) - 1)]) for j in range(temporal)]
            if not all(a.start <= x < a.end for x in times):
                continue
            cx, cy = world.position(a, (times[0] + times[-1]) / 2)
            r, c = min(int(cy * rows / scene.height), rows - 1), min(int(cx * cols / scene.width), cols - 1)
            out.append((k * rows * cols + r * cols + c, world.SHAPES.index(a.shape), COLOURS.index(a.colour)))
    return out


class VisionWarmup(torch.nn.Module):
    """Phase 0: the vision tower (patch embedding, blocks, merger) with a linear head on its merged
    tokens, trained to name the shape and colour under each object's centre token. Real VLMs start
    from an encoder pretrained apart (Qwen2.5-VL's ViT, LLaVA's CLIP): through the inventory's
    captions alone the tiny tower encodes shape slowly (a linear probe reads shape from the committed
    base's object tokens 65% of the time, colour 96%), and the base's errors are shapes. The head is
    dropped afterwards; the tower goes on training in both phases."""

    def __init__(self, visual):
        super().__init__()
        width = visual.merger.mlp[-1].out_features
        self.visual = visual
        self.norm = torch.nn.RMSNorm(width)
        self.head = torch.nn.Linear(width, len(world.SHAPES) + len(COLOURS))

    def forward(self, pixel_values_videos, video_grid_thw, token, shape, colour):
        from types import SimpleNamespace

        z = self.logits(pixel_values_videos, video_grid_thw, token)
        n = len(world.SHAPES)
        loss = (torch.nn.functional.cross_entropy(z[:, :n], shape)
                + torch.nn.functional.cross_entropy(z[:, n:], colour))
        return SimpleNamespace(loss=loss)

    def logits(self, pixel_values_videos, video_grid_thw, token):
        merged = self.visual(pixel_values_videos, grid_thw=video_grid_thw).pooler_output  # (tokens, width)
        return self.head(self.norm(merged[token]))  # (objects, shapes + colours)


def vision_batch(processor, vids: Videos, idx) -> dict:
    """The videos `idx` as the processor makes them, with each object's token (into the batch's
    merged tokens), shape and colour (`object_tokens`)."""
    out = processor.video_processor(videos=[np.asarray(vids.frames[i]) for i in idx], do_sample_frames=False,
                                    return_tensors="pt")
    grid, vp = out["video_grid_thw"], processor.video_processor
    offsets = np.concatenate([[0], np.cumsum((grid.prod(-1) // vp.merge_size ** 2).numpy())])
    rows = [(int(offsets[b]) + k, s, c) for b, i in enumerate(idx)
            for k, s, c in object_tokens(vids.scenes[i], vids.timestamps, grid[b], merge=vp.merge_size,
                                         temporal=vp.temporal_patch_size)]
    token, shape, colour = (torch.tensor(x) for x in zip(*rows))
    return {"pixel_values_videos": out["pixel_values_videos"], "video_grid_thw": grid,
            "token": token, "shape": shape, "colour": colour}


def vision_accuracy(warm: VisionWarmup, processor, vids: Videos, batch_size: int = 32) -> dict:
    """Share of objects whose shape, and whose colour, the phase-0 head names right on `vids`."""
    n, right = 0, np.zeros(2)
    with torch.no_grad():
        for i in range(0, len(vids.scenes), batch_size):
            b = vision_batch(processor, vids, range(i, min(i + batch_size, len(vids.scenes))))
            z = warm.logits(b["pixel_values_videos"], b["video_grid_thw"], b["token"])
            k = len(world.SHAPES)
            right += [(z[:, :k].argmax(1) == b["shape"]).sum().item(), (z[:, k:].argmax(1) == b["colour"]).sum().item()]
            n += len(b["token"])
    return {"shape_acc": round(right[0] / n, 4), "colour_acc": round(right[1] / n, 4), "n_objects": n}


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- the whole run
def shape_of(cfg) -> "TinyShape":
    from vrlib.model import TinyShape

    return TinyShape(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
                     intermediate_size=cfg.intermediate_size, vision_hidden_size=cfg.vision_hidden_size,
                     vision_depth=cfg.vision_depth, vision_init_std=cfg.vision_init_std)


def run(cfg, dcfg, *, state_dir: str | Path = "checkpoints/pretrain", live_dir: str | Path | None = "dvclive/pretrain",
        stop_after: int | None = None, frames: str | Path | None = None) -> dict:
    """`make pretrain`: the tiny base from nothing to `cfg.out_dir` (weights, processor, card.json).

    `cfg` is params.yaml's `pretrain` section, `dcfg` its `data` section (the world's size and the
    study's frame sampling, so the base sees what the study feeds it). `stop_after` ends after that
    many perception steps, without writing the base (the tests' "first steps"). The decoded frames
    are cached in `frames` (default `<state_dir>/frames`)."""
    from vrlib.model import build_tiny, save_checkpoint

    t0 = time.time()
    torch.manual_seed(cfg.seed)
    spec = tasks.WorldSpec.of(dcfg)
    sampling = dict(fps=dcfg.fps, min_frames=dcfg.min_frames, max_frames=dcfg.max_frames)
    recipe, key, perception_key = recipe_keys(cfg, spec, sampling)
    state_dir = Path(state_dir) if state_dir is not None else None
    cache = Path(frames) if frames is not None else state_dir / "frames" if state_dir is not None else None
    vids = world_videos(cfg.data_seed, STREAMS[0], cfg.n_videos, spec, cache=cache, name="train videos", **sampling)
    val = world_videos(cfg.data_seed, STREAMS[3], cfg.n_probe_val, spec, cache=cache, **sampling)
    task_samples, task_clips = task_items(cfg.data_seed, cfg.n_tasks, spec, **sampling)
    task_targets = [plain_target(s) for s in task_samples]
    tmp = Path(tempfile.mkdtemp(prefix="tiny-base-"))
    model, processor = build_tiny(tmp, corpus(cfg.data_seed, cfg.n_corpus, spec), max_pixels=dcfg.max_pixels,
                                  seed=cfg.seed, shape=shape_of(cfg))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"pretrain: {n_params / 1e6:.2f} M parameters, recipe {key} (perception {perception_key})", flush=True)

    def probe_val(every: int, last: int, offset: int = 0):
        def on_probe(step: int, row: dict) -> None:
            if (step + 1) % every == 0 or step + 1 == last:
                scores = score_inventories(inventories(model, processor, val, batch_size=cfg.probe_batch), val.scenes)
                row.update({f"probe_val/{k}": v for k, v in scores.items() if k in PROBE_KEYS})
                print(f"pretrain: step {offset + step + 1} val probes "
                      + "  ".join(f"{k} {scores[k]:.2f}" for k in PROBE_KEYS), flush=True)
                model.train()
        return on_probe

    def perception(step: int) -> dict:
        return encode_examples(processor, *perception_examples(
            vids, draw(step, cfg.seed, len(vids.scenes), cfg.batch_size, cfg.image_frac)))

    def on_first(step: int, row: dict) -> None:  # the first phase that runs: the card's first steps
        if step + 1 == FIRST_STEPS:
            row["first_steps_sha256"] = state_hash(model)

    vision = f"{phase_key(recipe, AFTER_VISION)}-vision"
    resumed = {"vision": _resumed(state_dir, vision, cfg.vision_steps),
               "perception": _resumed(state_dir, f"{perception_key}-perception", cfg.steps),
               "tasks": _resumed(state_dir, f"{key}-tasks", cfg.tasks_steps)}
    log0, vision_probe = [], None
    if cfg.vision_steps:
        warm = VisionWarmup(model.model.visual)
        show0 = progress("pretrain: vision", cfg.vision_steps, lines=10)
        steps0 = cfg.vision_steps if stop_after is None else min(stop_after, cfg.vision_steps)
        log0 = train_phase(warm, lambda step: vision_batch(processor, vids, np.random.default_rng(
                               [cfg.seed, 2, step]).choice(len(vids.scenes), size=cfg.batch_size, replace=False)),
                           steps=steps0, total=cfg.vision_steps, groups=[{"params": list(warm.parameters()),
                                                                          "lr": cfg.lr}],
                           grad_clip=cfg.grad_clip, warmup=cfg.warmup, state_dir=state_dir,
                           key=vision, checkpoint_every=cfg.checkpoint_every,
                           on_step=lambda s, r: (on_first(s, r), show0(s, r)))
        if stop_after is not None:
            shutil.rmtree(tmp)
            return {"model": model, "log": log0}
        vision_probe = vision_accuracy(warm, processor, val)
        print(f"pretrain: vision phase, val objects: shape {vision_probe['shape_acc']:.2f}  "
              f"colour {vision_probe['colour_acc']:.2f}", flush=True)
        log0 = [{k.replace("train/", "vision/"): v for k, v in row.items()} for row in log0]
    show = progress("pretrain: perception", cfg.steps, lines=max(10, cfg.steps // 100))
    steps = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    on_probe = probe_val(cfg.probe_every, cfg.steps)
    log1 = train_phase(model, perception, steps=steps, total=cfg.steps,
                       groups=param_groups(model, cfg.lr, cfg.vision_lr), grad_clip=cfg.grad_clip,
                       warmup=cfg.warmup, state_dir=state_dir, key=f"{perception_key}-perception",
                       checkpoint_every=cfg.checkpoint_every,
                       on_step=lambda s, r: (not cfg.vision_steps and on_first(s, r), show(s, r),
                                             stop_after is None and on_probe(s, r)))
    if stop_after is not None:
        shutil.rmtree(tmp)
        return {"model": model, "log": log1}

    def mixed(step: int) -> dict:
        # task items as plain text with perception, all weights at a low rate: a phase of task items
        # with the vision frozen at 1e-3 (recipe d013d70f) cost the probes more than it taught
        rng = np.random.default_rng([cfg.seed, 1, step])
        idx = rng.choice(len(task_samples), size=cfg.tasks_per_batch, replace=False)
        s, c, t = perception_examples(vids, draw(cfg.steps + step, cfg.seed, len(vids.scenes),
                                                 cfg.batch_size - cfg.tasks_per_batch, cfg.image_frac))
        return encode_examples(processor, [task_samples[i] for i in idx] + s, [task_clips[i] for i in idx] + c,
                               [task_targets[i] for i in idx] + t)

    show2 = progress("pretrain: tasks", cfg.tasks_steps, lines=10)
    on_probe2 = probe_val(cfg.tasks_probe_every, cfg.tasks_steps, offset=cfg.steps)
    log2 = train_phase(model, mixed, steps=cfg.tasks_steps, groups=param_groups(model, cfg.tasks_lr, cfg.tasks_lr),
                       grad_clip=cfg.grad_clip, warmup=max(1, cfg.tasks_steps // 10), state_dir=state_dir,
                       key=f"{key}-tasks", checkpoint_every=cfg.checkpoint_every,
                       on_step=lambda s, r: (show2(s, r), on_probe2(s, r)))
    held = world_videos(cfg.data_seed, STREAMS[2], cfg.n_probe, spec, cache=cache, **sampling)
    probes = probe(model, processor, held, batch_size=cfg.probe_batch, name="pretrain: probes")
    save_checkpoint(model, processor, tmp)
    weights = tmp / "model.safetensors"
    first = next(row for row in log0 + log1 if "first_steps_sha256" in row)
    card = {"params": n_params, "recipe": recipe, "recipe_key": key, "perception_key": perception_key,
            "steps": {"vision": cfg.vision_steps, "perception": cfg.steps, "tasks": cfg.tasks_steps},
            **({"vision_probe": vision_probe} if vision_probe else {}),
            "wall_time_s": round(time.time() - t0), "resumed_from": resumed, **machine(), **probes,
            "sha256": {"model.safetensors": sha256(weights)},
            "first_steps": {"steps": FIRST_STEPS, "sha256": first["first_steps_sha256"]}}
    atomic_write_json(tmp / "card.json", card)
    out = Path(cfg.out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    if live_dir:
        write_logs(live_dir, log0 + log1 + log2)
    print(f"pretrain: wrote {out} ({weights_mb(out):.1f} MB) in {(time.time() - t0) / 60:.1f} min", flush=True)
    return card


def recipe_keys(cfg, spec, sampling: dict) -> tuple[dict, str, str]:
    """(recipe, key, perception key): the recipe is what the weights depend on; its key names the
    second phase's checkpoints (another recipe never resumes them), the perception key the first
    phase's, from the recipe without the second phase's keys (a new second phase starts from them)."""
    recipe = {"pretrain": recipe_params(cfg), "world": asdict(spec), "sampling": sampling, "version": 2}
    return recipe, digest(recipe), phase_key(recipe, TASKS_PHASE)


def phase_key(recipe: dict, later: tuple[str, ...]) -> str:
    """The key of a phase's checkpoints: the recipe's digest without the `pretrain` keys of the
    phases after it (`later`), so a change to those resumes this phase's checkpoints."""
    return digest(recipe | {"pretrain": {k: v for k, v in recipe["pretrain"].items() if k not in later}})


def recipe_params(cfg) -> dict:
    """The `pretrain` keys the weights depend on (the card's recipe): not where they go, nor how
    often they are probed or checkpointed; `vision_steps` only when phase 0 runs, so the recipes
    from before it keep their keys."""
    out = asdict(cfg) | {"out_dir": None, "probe_every": None, "checkpoint_every": None, "tasks_probe_every": None}
    if not cfg.vision_steps:
        del out["vision_steps"]
    return out


def _resumed(state_dir: Path | None, key: str, steps: int) -> int:
    """The step a phase resumes from (0: a fresh start): `wall_time_s` covers the steps after it."""
    last = latest_state(state_dir, key, steps) if state_dir is not None else None
    return _step(last) if last is not None else 0


TASKS_PHASE = ("n_tasks", "tasks_per_batch", "tasks_steps", "tasks_lr", "tasks_probe_every")
"""The second phase's keys: the first phase's checkpoints do not depend on them."""
AFTER_VISION = ("image_frac", "steps", "vision_lr", "n_tasks", "n_probe", "n_probe_val", "probe_batch") + TASKS_PHASE
"""The keys phase 0 does not depend on: its checkpoints are named without them, so a change to the
phases after it starts from them."""
PROBE_KEYS = ("objects_f1", "span_acc", "first_acc")
FIRST_STEPS = 2
"""The card keeps the hash of the weights after this many perception steps, which a test recomputes."""


def state_hash(model) -> str:
    """sha256 of every weight's bytes, in name order: equal hashes, bit-identical weights."""
    return tensors_hash(model.state_dict())


def tensors_hash(tensors) -> str:
    """sha256 of each tensor's name and bytes, in name order (entries that are not tensors are
    left out): equal hashes, bit-identical weights or model inputs."""
    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        if isinstance(t, torch.Tensor):
            h.update(name.encode())
            h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def weights_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20


def write_logs(live_dir: str | Path, log: list[dict]) -> None:
    """The run's step log through DVCLive (`dvc plots`: loss, and the val probes over steps),
    written whole from the checkpointed log, so a resumed run's plots have no gaps or repeats."""
    from dvclive import Live

    shutil.rmtree(live_dir, ignore_errors=True)
    with Live(str(live_dir), save_dvc_exp=False, dvcyaml=None) as live:
        for row in log:
            for name, value in row.items():
                if isinstance(value, float) and not name.endswith("/lr") or name.startswith("probe_val/"):
                    live.log_metric(name, value)
            live.next_step()


def main(argv: list[str] | None = None) -> None:
    import argparse

    from vrlib import config
    from vrlib.stage import quiet

    quiet()
    ap = argparse.ArgumentParser(description="pretrain the embedded tiny base (params.yaml `pretrain`), resumable")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--trial", metavar="DIR", help="a trial of another recipe: its base, checkpoints and step "
                    "logs under DIR (models/tiny-base and dvclive/pretrain untouched), the decoded frames shared")
    ap.add_argument("sets", nargs="*", metavar="pretrain.key=value", help="overrides of params.yaml (with --trial)")
    args = ap.parse_args(argv)
    if args.sets and not args.trial:
        raise SystemExit("pretrain: overrides need --trial DIR: the committed base is params.yaml's recipe")
    params = config.load(args.params)
    sets = {}
    for spec in args.sets:  # as `dvc exp run -S`: each value read as YAML
        key, sep, value = spec.partition("=")
        if not sep or not key.startswith("pretrain."):
            raise SystemExit(f"pretrain: {spec!r} is not pretrain.key=value (only pretrain keys can be set)")
        sets[key.removeprefix("pretrain.")] = yaml.safe_load(value)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.trial:
        trial = Path(args.trial)
        cfg = config.parse(config.PretrainParams, asdict(params.pretrain) | sets | {"out_dir": str(trial / "base")},
                           "pretrain")
        card = run(cfg, params.data, state_dir=trial / "checkpoints", live_dir=trial / "dvclive",
                   frames="checkpoints/pretrain/frames")
    else:
        card = run(params.pretrain, params.data)
    print(json.dumps({k: card[k] for k in ("params", "probes", "probes_shuffled", "probes_swapped")}), flush=True)


if __name__ == "__main__":
    main()


CARD = "card.json"


def read_card(model_dir: str | Path) -> dict | None:
    """A pretrained tiny base's card, its weights checked against the card's sha256 (a clear
    error if they differ: the directory was changed after pretraining); None for a directory
    without a card (a real checkpoint)."""
    path = Path(model_dir) / CARD
    if not path.is_file():
        return None
    card = json.loads(path.read_text())
    for name, want in card["sha256"].items():
        got = sha256(Path(model_dir) / name)
        if got != want:
            raise ValueError(f"{Path(model_dir) / name}: sha256 {got[:12]}..., its {CARD} says {want[:12]}...: "
                             "the weights are not the pretrained ones; restore them (`git checkout -- "
                             f"{model_dir}`) or pretrain again (`make pretrain`)")
    return card


def probe_videos(card: dict, n: int, *, fps: float, min_frames: int, max_frames: int) -> Videos:
    """The probes' held-out videos of a carded base: its own world, its probe stream, decoded
    with the study's sampling (the frames the study feeds it)."""
    spec = tasks.WorldSpec(**card["recipe"]["world"])
    return world_videos(card["recipe"]["pretrain"]["data_seed"], STREAMS[2], n, spec, fps=fps,
                        min_frames=min_frames, max_frames=max_frames)


def probes_table(scores: dict) -> str:
    """metrics/base.json as the README's markdown table: the probes on the videos' own frames in
    order, shuffled, and another video's."""
    rows = [("the video's frames, in order", "probes"), ("its frames shuffled", "probes_shuffled"),
            ("another video's frames", "probes_swapped")]
    lines = ["| frames shown | n | objects_f1 | span_acc | first_acc |", "|---|---|---|---|---|"]
    for label, key in rows:
        p = scores.get(key)
        lines.append(f"| {label} | " + (" | ".join([str(p["n"])] + [f"{p[k]:.2f}" for k in PROBE_KEYS])
                                        if p else "- | not probed | | ") + " |")
    return "\n".join(lines)
