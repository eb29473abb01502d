"""Task families of the synthetic world: one question generator per kind of task in the papers.

Each family maps (seed, index) to an `Item`: the frames to write, the question in the answer
format of the real dataset it stands for (docs/design.md, the data contract), a short chain of thought,
and the key frames the answer depends on (VideoPerceiver's key-information-missing videos).
Choices inside a family use streams of `world.scene_rng(seed, index, stream)`, so items are
reproducible one by one and the global RNG is never touched.

| family | stands for | problem_type |
|---|---|---|
| grounding | Charades-STA | temporal grounding |
| tracking | GoT-10k as VideoChat-R1 uses it | tracking |
| choice | Video-R1 multiple choice (order-free: colour, shape) | multiple choice |
| order | temporal-order MC (which first, which way): T-GRPO's case | multiple choice |
| count | Video-R1 numerical (counting appearances) | numerical |
| distance | Video-R1 regression (how far a shape moves) | regression |
| ocr | Video-R1 OCR (a word shown in some frames) | OCR |
| describe | Video-R1 free-form (what happens) | free-form |
| gqa | NExT-GQA (letter + evidence spans) | grounded QA |
| cups | VideoReasonBench (recall / infer / predict a hidden ball) | numerical, multiple choice |
| image | Video-R1's image data (one frame) | numerical, multiple choice |
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from vrlib import world
from vrlib.world import SLOTS, Actor, Scene


@dataclass
class WorldSpec:
    """How items are rendered: the `data` params the generators read."""

    duration: int = 8  # seconds
    fps: int = 4  # render rate
    size: int = 112  # pixels
    track_boxes: int = 4  # boxes asked per tracking item (VideoChat-R1: 8)

    @classmethod
    def of(cls, dcfg) -> "WorldSpec":
        """The world params.yaml's `data` section (`config.DataParams`) describes."""
        return cls(duration=dcfg.duration, fps=dcfg.render_fps, size=dcfg.size, track_boxes=dcfg.track_boxes)


@dataclass
class Item:
    """One generated question with its media, before it becomes a `data.Sample`."""

    frames: np.ndarray  # (T, H, W, 3) uint8; T == 1 for an image
    data_type: str  # "video" | "image"
    kind: str  # question kind within the family, e.g. "first" or "direction" for order
    problem: str  # the question only; `prompts.user_text` adds options and the answer format
    problem_type: str
    solution: str
    process: str  # "<think>...</think>"
    options: list[str] = field(default_factory=list)
    key_frames: list[int] = field(default_factory=list)  # frames the answer depends on


def letters(options: list[str]) -> list[str]:
    """["red", "blue"] -> ["A. red", "B. blue"] (Video-R1's option format)."""
    return [f"{chr(65 + i)}. {o}" for i, o in enumerate(options)]


def _choice(rng: np.random.Generator, answer: str, pool, k: int) -> tuple[list[str], str]:
    """k options containing `answer`, in random order; returns (options, answer letter)."""
    others = [o for o in pool if o != answer]
    picked = [answer, *rng.choice(others, size=k - 1, replace=False).tolist()]
    order = rng.permutation(k)
    opts = [picked[i] for i in order]
    return letters(opts), chr(65 + opts.index(answer))


def _scene(seed: int, index: int, spec: WorldSpec, ok=lambda s: True, n_actors=(1, 3)) -> Scene:
    """The item's scene: `make_scene` itself if it satisfies `ok`, else the first redraw that does."""
    for attempt in range(1000):
        rng = world.scene_rng(seed, index) if attempt == 0 else world.scene_rng(seed, index, 100 + attempt)
        scene = world.draw_scene(rng, duration=spec.duration, fps=spec.fps, size=spec.size,
                                 n_actors=n_actors)
        if ok(scene):
            return scene
    raise RuntimeError(f"no scene for ({seed}, {index}) satisfies the family's constraint")


def _name(a: Actor) -> str:
    return f"{a.colour} {a.shape}"


def _moving(a: Actor) -> bool:
    return (a.x0, a.y0) != (a.x1, a.y1)


def _frames_of(scene: Scene, actor: Actor) -> list[int]:
    return world.visible_frames(actor, scene.duration * scene.fps, scene.fps)


def _rarest(scene: Scene) -> Actor:
    """The actor seen for the shortest time: hiding it loses one event, not the whole video."""
    return min(scene.actors, key=lambda a: (a.end - a.start, a.colour))


# ----------------------------------------------------------------------------- families
def grounding(seed: int, index: int, spec: WorldSpec) -> Item:
    """When does one shape appear (Charades-STA: seconds).

    grounding(0, 0, WorldSpec()) asks "When does the red circle appear?" with solution
    "<answer>2.0 to 6.0</answer>" and process "<think>I look for the red circle. It is first
    seen at 2.0 seconds and last seen before 6.0 seconds, so it is visible from 2.0 to
    6.0.</think>".
    """
    scene = world.make_scene(seed, index, duration=spec.duration, fps=spec.fps, size=spec.size)
    target = scene.actors[int(world.scene_rng(seed, index, stream=1).integers(len(scene.actors)))]
    s, e = float(target.start), float(target.end)
    return Item(world.render(scene), "video", "span", f"When does the {_name(target)} appear?",
                "temporal grounding", f"<answer>{s:.1f} to {e:.1f}</answer>",
                f"<think>I look for the {_name(target)}. It is {world.seen(s, e)}</think>",
                key_frames=_frames_of(scene, target))


def tracking(seed: int, index: int, spec: WorldSpec) -> Item:
    """Boxes of one moving shape, visible throughout, at `track_boxes` times (first box given).

    As VideoChat-R1's GoT task: normalised [x0, y0, x1, y1], the first frame's box in the
    question, the last frame included; the answer must have exactly one box per time asked.
    """
    scene = _scene(seed, index, spec)
    rng = world.scene_rng(seed, index, stream=2)
    i = int(rng.integers(len(scene.actors)))
    a = scene.actors[i]
    motion = str(rng.choice(world.MOTIONS[1:]))  # a moving target
    x0, y0, x1, y1 = world.draw_path(rng, motion, a.size, spec.size)
    a = replace(a, start=0, end=spec.duration, x0=x0, y0=y0, x1=x1, y1=y1)
    scene.actors[i] = a
    n = spec.duration * spec.fps
    ks = np.linspace(0, n - 1, spec.track_boxes).round().astype(int)  # (track_boxes,)
    boxes = [[v / spec.size for v in world.box(a, k / spec.fps)] for k in ks]
    fmt = lambda b: "[" + ", ".join(f"{v:.2f}" for v in b) + "]"  # noqa: E731
    times = ", ".join(f"{k / spec.fps:.1f}" for k in ks)
    return Item(world.render(scene), "video", "boxes",
                f"Track the {_name(a)}. At 0.0 seconds its box is {fmt(boxes[0])}. "
                f"Give its box at {times} seconds.", "tracking",
                "<answer>[" + ", ".join(fmt(b) for b in boxes) + "]</answer>",
                f"<think>I follow the {_name(a)}; it {world.motion(a)}.</think>",
                key_frames=list(range(n // 4, 3 * n // 4)))  # the middle half: the path


def choice(seed: int, index: int, spec: WorldSpec) -> Item:
    """Multiple choice about what a shape looks like: answerable from any frame showing it."""
    scene = world.make_scene(seed, index, duration=spec.duration, fps=spec.fps, size=spec.size)
    rng = world.scene_rng(seed, index, stream=2)
    a = scene.actors[int(rng.integers(len(scene.actors)))]
    if rng.random() < 0.5:
        kind, problem = "colour", f"What colour is the {a.shape}?"
        options, letter = _choice(rng, a.colour, list(world.COLOURS), 4)
        think = f"<think>I find the {a.shape}. It is {a.colour}.</think>"
    else:
        kind, problem = "shape", f"What shape is the {a.colour} one?"
        options, letter = _choice(rng, a.shape, list(world.SHAPES), 3)
        think = f"<think>I find the {a.colour} shape. It is a {a.shape}.</think>"
    return Item(world.render(scene), "video", kind, problem, "multiple choice",
                f"<answer>{letter}</answer>", think, options, _frames_of(scene, a))


DIRECTIONS = ("left", "right", "up", "down")


def _order_matters(scene: Scene) -> bool:
    """Distinct starts, and the first to appear is not the last to vanish: played backwards,
    another shape appears first."""
    first = min(scene.actors, key=lambda a: a.start)
    return (len({a.start for a in scene.actors}) == len(scene.actors)
            and first.end < max(a.end for a in scene.actors))


def order(seed: int, index: int, spec: WorldSpec) -> Item:
    """Multiple choice whose answer depends on the order of frames: shuffle them and it changes.

    "first": which shape appears first (starts are distinct); "direction": which way a shape
    moves (reversing time reverses it). The questions T-GRPO's shuffled rollouts exist for.
    """
    rng = world.scene_rng(seed, index, stream=2)
    if rng.random() < 0.5:
        scene = _scene(seed, index, spec, n_actors=(2, 3), ok=_order_matters)
        by_start = sorted(scene.actors, key=lambda a: a.start)
        first, second = by_start[0], by_start[1]
        options, letter = _choice(rng, _name(first), [_name(a) for a in scene.actors],
                                  len(scene.actors))
        think = ("<think>" + " ".join(f"The {_name(a)} appears at {a.start:.1f} seconds."
                                      for a in by_start) + f" The {_name(first)} is first.</think>")
        key = [k for k in _frames_of(scene, first) if k < second.start * spec.fps]
        return Item(world.render(scene), "video", "first", "Which shape appears first?",
                    "multiple choice", f"<answer>{letter}</answer>", think, options, key)
    scene = _scene(seed, index, spec, ok=lambda s: any(_moving(a) for a in s.actors))
    movers = [a for a in scene.actors if _moving(a)]
    a = movers[int(rng.integers(len(movers)))]
    direction = world.motion(a).removeprefix("moves ")
    options = letters(list(DIRECTIONS))
    letter = chr(65 + DIRECTIONS.index(direction))
    think = (f"<think>The {_name(a)} starts at ({a.x0}, {a.y0}) and ends at ({a.x1}, {a.y1}), "
             f"so it moves {direction}.</think>")
    return Item(world.render(scene), "video", "direction", f"Which way does the {_name(a)} move?",
                "multiple choice", f"<answer>{letter}</answer>", think, options,
                _frames_of(scene, a)[1:])  # all but its first frame: the motion


def count(seed: int, index: int, spec: WorldSpec) -> Item:
    """How many shapes appear (Video-R1 numerical: counting events)."""
    scene = world.make_scene(seed, index, duration=spec.duration, fps=spec.fps, size=spec.size)
    names = [_name(a) for a in sorted(scene.actors, key=lambda a: (a.start, a.colour))]
    n = len(names)
    think = f"<think>I see the {', the '.join(names)}. That is {n}.</think>"
    rarest = _rarest(scene)
    return Item(world.render(scene), "video", "appearances", "How many shapes appear in the video?",
                "numerical", f"<answer>{n}</answer>", think,
                key_frames=_frames_of(scene, rarest))


def distance(seed: int, index: int, spec: WorldSpec) -> Item:
    """How far one shape moves, in percent of the frame width (Video-R1 regression)."""
    scene = _scene(seed, index, spec, ok=lambda s: any(_moving(a) for a in s.actors))
    movers = [a for a in scene.actors if _moving(a)]
    a = movers[int(world.scene_rng(seed, index, stream=2).integers(len(movers)))]
    pct = lambda v: round(100 * v / spec.size)  # noqa: E731
    d = round(100 * np.hypot(a.x1 - a.x0, a.y1 - a.y0) / spec.size)
    think = (f"<think>The {_name(a)} goes from ({pct(a.x0)}, {pct(a.y0)}) to "
             f"({pct(a.x1)}, {pct(a.y1)}) percent, so it moves {d}.</think>")
    return Item(world.render(scene), "video", "path",
                f"How far does the {_name(a)} move, in percent of the frame width?", "regression",
                f"<answer>{d}</answer>", think, key_frames=_frames_of(scene, a)[1:])


def ocr(seed: int, index: int, spec: WorldSpec) -> Item:
    """A word shown in some frames, over the shapes (Video-R1 OCR, scored by 1 - WER)."""
    scene = world.make_scene(seed, index, duration=spec.duration, fps=spec.fps, size=spec.size)
    rng = world.scene_rng(seed, index, stream=2)
    word = str(rng.choice(world.WORDS))
    scale = max(1, spec.size // 20)
    h, w = world.word_mask(word, scale).shape
    start = int(rng.integers(0, spec.duration - 1))
    end = start + int(rng.integers(2, spec.duration - start + 1))  # >= 2 s on screen
    left = int(rng.integers(0, spec.size - w + 1))
    top = int(rng.integers(0, spec.size - h + 1))
    frames = world.render(scene)
    shown = list(range(start * spec.fps, end * spec.fps))
    world.draw_word(frames, word, shown, left, top, scale)
    think = f"<think>Letters are shown from {start:.1f} to {end:.1f} seconds. They read {word}.</think>"
    return Item(frames, "video", "word", "What word is written in the video?", "OCR",
                f"<answer>{word}</answer>", think, key_frames=shown)


def describe(seed: int, index: int, spec: WorldSpec) -> Item:
    """Describe the events (Video-R1 free-form, scored by ROUGE)."""
    scene = world.make_scene(seed, index, duration=spec.duration, fps=spec.fps, size=spec.size)
    return Item(world.render(scene), "video", "events", "Describe what happens in the video.",
                "free-form", f"<answer>{world.caption(scene)}</answer>",
                "<think>I list the shapes in the order they appear.</think>",
                key_frames=_frames_of(scene, _rarest(scene)))


def gqa(seed: int, index: int, spec: WorldSpec) -> Item:
    """NExT-GQA style: a letter and the evidence spans (<glue>) it rests on."""
    scene = world.make_scene(seed, index, duration=spec.duration, fps=spec.fps, size=spec.size)
    rng = world.scene_rng(seed, index, stream=2)
    a = scene.actors[int(rng.integers(len(scene.actors)))]
    options, letter = _choice(rng, a.colour, list(world.COLOURS), 4)
    s, e = float(a.start), float(a.end)
    think = f"<think>The {a.shape} is visible from {s:.1f} to {e:.1f}. It is {a.colour}.</think>"
    return Item(world.render(scene), "video", "colour", f"What colour is the {a.shape}?",
                "grounded QA", f"<answer>{letter}</answer><glue>[({s:.1f}, {e:.1f})]</glue>", think,
                options, _frames_of(scene, a))


def cups(seed: int, index: int, spec: WorldSpec) -> Item:
    """VideoReasonBench's cup game: recall (how many swaps), infer (where is the ball now),
    predict (where after one more given swap). The ball is shown only in the first second."""
    rng = world.scene_rng(seed, index, stream=2)
    max_swaps = max(1, min(3, spec.duration - 2))
    pairs = [(0, 1), (0, 2), (1, 2)]
    swaps = [pairs[int(j)] for j in rng.integers(0, 3, size=int(rng.integers(1, max_swaps + 1)))]
    game = world.CupGame(ball=int(rng.integers(3)), swaps=swaps)
    frames = world.render_cups(game, duration=spec.duration, fps=spec.fps, size=spec.size)
    steps = [f"The ball starts under the {SLOTS[game.ball]} cup."]
    for i, (a, b) in enumerate(swaps, 1):
        steps.append(f"Swap {SLOTS[a]} and {SLOTS[b]}: {SLOTS[world.ball_after(game, i)]}.")
    end = world.ball_after(game)
    kind = ("recall", "infer", "predict")[int(rng.integers(3))]
    reveal = list(range(game.reveal * spec.fps))
    swapping = list(range(game.first_swap * spec.fps, (game.first_swap + len(swaps)) * spec.fps))
    if kind == "recall":
        return Item(frames, "video", kind, "How many times are two cups swapped?", "numerical",
                    f"<answer>{len(swaps)}</answer>",
                    "<think>" + " ".join(steps[1:]) + f" That is {len(swaps)}.</think>",
                    key_frames=swapping)
    options = letters([f"under the {s} cup" for s in SLOTS])
    if kind == "infer":
        return Item(frames, "video", kind, "Where is the ball at the end?", "multiple choice",
                    f"<answer>{chr(65 + end)}</answer>", "<think>" + " ".join(steps) + "</think>",
                    options, reveal)
    a, b = pairs[int(rng.integers(3))]
    after = b if end == a else a if end == b else end
    return Item(frames, "video", kind,
                f"If the {SLOTS[a]} and {SLOTS[b]} cups are swapped once more, where is the ball?",
                "multiple choice", f"<answer>{chr(65 + after)}</answer>",
                "<think>" + " ".join(steps) + f" Then swap {SLOTS[a]} and {SLOTS[b]}: "
                f"{SLOTS[after]}.</think>", options, reveal)


def image(seed: int, index: int, spec: WorldSpec) -> Item:
    """One frame as an image (Video-R1 mixes image data): count the shapes or name a colour."""
    scene = world.make_scene(seed, index, duration=spec.duration, fps=spec.fps, size=spec.size)
    rng = world.scene_rng(seed, index, stream=2)
    frames = world.render(scene)
    n = len(frames)
    shown = [[a for a in scene.actors if k in _frames_of(scene, a)] for k in range(n)]
    ks = [k for k in range(n) if shown[k]]
    k = ks[int(rng.integers(len(ks)))]
    here = sorted(shown[k], key=lambda a: a.colour)
    if rng.random() < 0.5:
        names = ", the ".join(_name(a) for a in here)
        return Item(frames[k:k + 1], "image", "count", "How many shapes are in the image?",
                    "numerical", f"<answer>{len(here)}</answer>",
                    f"<think>I see the {names}. That is {len(here)}.</think>")
    a = here[int(rng.integers(len(here)))]
    options, letter = _choice(rng, a.colour, list(world.COLOURS), 4)
    return Item(frames[k:k + 1], "image", "colour", f"What colour is the {a.shape}?",
                "multiple choice", f"<answer>{letter}</answer>",
                f"<think>I find the {a.shape}. It is {a.colour}.</think>", options)


def inventory(seed: int, index: int, spec: WorldSpec) -> Item:
    """Perception pretraining of the tiny base: every shape and when it is visible."""
    scene = world.make_scene(seed, index, duration=spec.duration, fps=spec.fps, size=spec.size)
    return Item(world.render(scene), "video", "list", "List the shapes with their times.",
                "free-form", f"<answer>{world.inventory(scene)}</answer>", "")


FAMILIES = {f.__name__: f for f in (grounding, tracking, choice, order, count, distance, ocr,
                                     describe, gqa, cups, image, inventory)}
"""Family name -> generator; the name is the middle part of `data_source` "world/<family>/<kind>"."""


def mixture(weights: dict[str, int], n: int) -> list[str]:
    """Family of each of n items: a fixed interleaved cycle, so every prefix is balanced.

    mixture({"grounding": 2, "ocr": 1}, 5) == ["grounding", "ocr", "grounding", "grounding", "ocr"]
    """
    unknown = sorted(set(weights) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown task families {unknown}; known: {', '.join(FAMILIES)}")
    if any(not isinstance(w, int) or w < 0 for w in weights.values()) or not any(weights.values()):
        raise ValueError(f"family weights must be integers >= 0, not all 0; got {weights}")
    cycle: list[str] = []
    for r in range(max(weights.values())):
        cycle += [f for f, w in weights.items() if w > r]
    return [cycle[i % len(cycle)] for i in range(n)]


def missing_key_frames(frames: np.ndarray, key_frames: list[int]) -> np.ndarray | None:
    """VideoPerceiver's key-information-missing video: each key frame replaced by the nearest
    frame that is not key (the earlier on a tie); None if no frame or every frame is key."""
    key = set(key_frames)
    keep = [k for k in range(len(frames)) if k not in key]
    if not key or not keep:
        return None
    keep_arr = np.array(keep)
    src = [k if k not in key else int(keep_arr[np.argmin(np.abs(keep_arr - k))])
           for k in range(len(frames))]
    return frames[src]
