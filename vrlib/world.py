"""The synthetic "video world": coloured shapes that appear, move and vanish.

Everything is a pure function of (seed, index), so any scene, its video and its question
can be regenerated exactly, and a tiny model can learn it on a CPU. The index-th scene
uses the index-th child of `SeedSequence(seed)` (numpy's `spawn`), never the global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# RGB values far apart, so colours stay distinct after H.264/yuv420p and downscaling.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 30),
    "blue": (40, 70, 240),
    "yellow": (240, 220, 30),
    "purple": (170, 40, 220),
    "white": (240, 240, 240),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
MOTIONS: tuple[str, ...] = ("stays", "left", "right", "up", "down")
BACKGROUND = (24, 24, 24)  # dark grey, far from every colour above



@dataclass
class Actor:
    """One shape; visible on [start, end) seconds, moving linearly from (x0, y0) to (x1, y1)."""

    colour: str
    shape: str
    start: int  # seconds, first visible
    end: int  # seconds, gone from here on
    x0: int  # pixel centre at `start`
    y0: int
    x1: int  # pixel centre at `end`
    y1: int
    size: int  # pixels, side of the shape's bounding box


@dataclass
class Scene:
    duration: int  # seconds
    fps: int  # render rate; frame k is at k / fps seconds
    width: int
    height: int
    actors: list[Actor] = field(default_factory=list)


def scene_rng(seed: int, index: int, stream: int | None = None) -> np.random.Generator:
    """The index-th child of `SeedSequence(seed)`; `stream` picks a grandchild for a second use."""
    key = (index,) if stream is None else (index, stream)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def make_scene(
    seed: int,
    index: int,
    *,
    duration: int = 8,
    fps: int = 4,
    size: int = 112,
    n_actors: tuple[int, int] = (1, 3),
) -> Scene:
    """Draw 1-3 actors with distinct colours and distinct shapes, so a question names one.

    make_scene(0, 0) is Scene(duration=8, fps=4, width=112, height=112, actors=[
      Actor('yellow', 'square', start=5, end=7, x0=84, y0=15, x1=84, y1=74, size=25),
      Actor('red', 'circle', start=2, end=6, x0=38, y0=96, x1=38, y1=45, size=25),
      Actor('green', 'triangle', start=0, end=8, x0=22, y0=16, x1=22, y1=16, size=25)])
    (pinned in tests/test_world.py).
    """
    return draw_scene(scene_rng(seed, index), duration=duration, fps=fps, size=size,
                      n_actors=n_actors)


def draw_scene(rng: np.random.Generator, *, duration: int = 8, fps: int = 4, size: int = 112,
               n_actors: tuple[int, int] = (1, 3)) -> Scene:
    """`make_scene` from a given generator: task families redraw with their own streams."""
    lo, hi = n_actors
    if not 1 <= lo <= hi <= min(len(COLOURS), len(SHAPES)):
        raise ValueError(f"n_actors must satisfy 1 <= lo <= hi <= {len(SHAPES)}, got {n_actors}")
    if duration < 1:
        raise ValueError(f"duration must be >= 1 second, got {duration}")
    n = int(rng.integers(lo, hi + 1))
    colours = rng.choice(list(COLOURS), size=n, replace=False)
    shapes = rng.choice(list(SHAPES), size=n, replace=False)
    side = round(0.22 * size)  # ~22% of the frame: still ~12 px after downscaling to 56x56
    actors = []
    for colour, shape in zip(colours, shapes):
        start = int(rng.integers(0, duration))  # uniform in [0, duration - 1]
        end = start + int(rng.integers(1, duration - start + 1))  # length in [1, duration - start]
        x0, y0, x1, y1 = draw_path(rng, str(rng.choice(MOTIONS)), side, size)
        actors.append(Actor(str(colour), str(shape), start, end, x0, y0, x1, y1, side))
    return Scene(duration=duration, fps=fps, width=size, height=size, actors=actors)


def draw_path(rng: np.random.Generator, motion: str, side: int, size: int) -> tuple[int, int, int, int]:
    """Start and end centres that keep the whole shape in frame and move >= 30% of it."""
    lo, hi = side // 2, size - 1 - side // 2  # centre range
    shift = round(0.3 * size)
    a = int(rng.integers(lo, hi - shift + 1))
    b = int(rng.integers(a + shift, hi + 1))  # a < b, b - a >= shift
    x, y = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    return {
        "stays": (x, y, x, y),
        "left": (b, y, a, y),
        "right": (a, y, b, y),
        "up": (x, b, x, a),  # image y grows downwards
        "down": (x, a, x, b),
    }[motion]


def motion(actor: Actor) -> str:
    """The caption word for an actor's movement, read from its coordinates."""
    dx, dy = actor.x1 - actor.x0, actor.y1 - actor.y0
    if dx == dy == 0:
        return "stays"
    if abs(dx) >= abs(dy):
        return "moves right" if dx > 0 else "moves left"
    return "moves down" if dy > 0 else "moves up"


def shape_mask(shape: str, side: int) -> np.ndarray:
    """Boolean (side, side) mask of a filled shape, from pixel-centre coordinates."""
    c = (np.arange(side) + 0.5) / side  # (side,) in (0, 1)
    y, x = c[:, None], c[None, :]  # (side, 1), (1, side)
    if shape == "circle":
        return (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25
    if shape == "square":
        return np.ones((side, side), bool)
    if shape == "triangle":  # apex up, base at the bottom
        return np.abs(x - 0.5) <= y / 2
    raise ValueError(f"unknown shape {shape!r}, known: {SHAPES}")


def render(scene: Scene) -> np.ndarray:
    """Frames (duration * fps, H, W, 3) uint8; actor drawn at frame k iff start <= k / fps < end.

    Later actors are drawn over earlier ones where they overlap.
    """
    n = scene.duration * scene.fps
    frames = np.empty((n, scene.height, scene.width, 3), np.uint8)  # (T, H, W, 3)
    frames[:] = BACKGROUND
    t = np.arange(n) / scene.fps  # (T,) seconds
    for a in scene.actors:
        mask = shape_mask(a.shape, a.size)  # (s, s)
        colour = np.array(COLOURS[a.colour], np.uint8)
        for k in np.flatnonzero((a.start <= t) & (t < a.end)):
            left, top, _, _ = box(a, t[k])
            frames[k, top : top + a.size, left : left + a.size][mask] = colour
    return frames


def position(actor: Actor, t: float) -> tuple[int, int]:
    """Pixel centre at time t (seconds): linear from (x0, y0) at `start` to (x1, y1) at `end`."""
    alpha = (t - actor.start) / (actor.end - actor.start)
    return (round(actor.x0 + alpha * (actor.x1 - actor.x0)),
            round(actor.y0 + alpha * (actor.y1 - actor.y0)))


def box(actor: Actor, t: float) -> tuple[int, int, int, int]:
    """The drawn pixel box (left, top, right, bottom), right and bottom exclusive, at time t."""
    cx, cy = position(actor, t)
    left, top = cx - actor.size // 2, cy - actor.size // 2
    return left, top, left + actor.size, top + actor.size


def visible_frames(actor: Actor, n_frames: int, fps: int) -> list[int]:
    """Indices of the rendered frames that show the actor: start <= k / fps < end."""
    return [k for k in range(n_frames) if actor.start <= k / fps < actor.end]


def seen(start: float, end: float) -> str:
    """The words for when an actor is visible, shared by the chain of thought and `inventory`.

    seen(2, 6) == "first seen at 2.0 seconds and last seen before 6.0 seconds, so it is
    visible from 2.0 to 6.0." The tiny base learns these words in pretraining, so the SFT
    cold start (LoRA, embeddings frozen) only has to add the tags and the question.
    """
    return (f"first seen at {start:.1f} seconds and last seen before {end:.1f} seconds, "
            f"so it is visible from {start:.1f} to {end:.1f}.")


def inventory(scene: Scene) -> str:
    """Every actor by colour name, for perception pretraining: denser visual targets than
    `caption`, which left the tiny base video-blind within the study's budget.

    "the blue square is first seen at 0.0 seconds and last seen before 3.0 seconds, so it
    is visible from 0.0 to 3.0. the red circle is first seen at ..."
    """
    return " ".join(f"the {a.colour} {a.shape} is {seen(a.start, a.end)}"
                    for a in sorted(scene.actors, key=lambda a: a.colour))


def caption(scene: Scene) -> str:
    """One sentence per actor, by start time, for perception pretraining.

    "a red circle is seen from 2.0 to 5.0 and moves left. a blue square is seen from 5.0
    to 8.0 and stays."
    """
    actors = sorted(scene.actors, key=lambda a: (a.start, a.end, a.colour))
    return " ".join(
        f"a {a.colour} {a.shape} is seen from {a.start:.1f} to {a.end:.1f} and {motion(a)}."
        for a in actors
    )


# ----------------------------------------------------------------------------- text (OCR)
# A 3x5 bitmap font, upper case drawn from "#" cells: big blocky letters stay legible after
# downscaling to the model's 56x56 frames, and need no font file (reproducible anywhere).
FONT: dict[str, tuple[str, ...]] = {
    "a": (".#.", "#.#", "###", "#.#", "#.#"), "b": ("##.", "#.#", "##.", "#.#", "##."),
    "c": ("###", "#..", "#..", "#..", "###"), "d": ("##.", "#.#", "#.#", "#.#", "##."),
    "e": ("###", "#..", "##.", "#..", "###"), "g": ("###", "#..", "#.#", "#.#", "###"),
    "h": ("#.#", "#.#", "###", "#.#", "#.#"), "k": ("#.#", "##.", "#..", "##.", "#.#"),
    "m": ("#.#", "###", "###", "#.#", "#.#"), "n": ("##.", "#.#", "#.#", "#.#", "#.#"),
    "o": ("###", "#.#", "#.#", "#.#", "###"), "p": ("###", "#.#", "###", "#..", "#.."),
    "r": ("##.", "#.#", "##.", "#.#", "#.#"), "s": ("###", "#..", "###", "..#", "###"),
    "t": ("###", ".#.", ".#.", ".#.", ".#."), "u": ("#.#", "#.#", "#.#", "#.#", "###"),
    "x": ("#.#", "#.#", ".#.", "#.#", "#.#"), "y": ("#.#", "#.#", ".#.", ".#.", ".#."),
}
WORDS = ("cat", "dog", "sun", "box", "red", "cup", "hat", "map", "pen", "key", "bus", "toy")
TEXT_COLOUR = (30, 220, 220)  # cyan: no actor has it, so text and shapes never mix


def word_mask(word: str, scale: int) -> np.ndarray:
    """Boolean (5 * scale, (4 * len - 1) * scale) mask of a word; one blank column between letters."""
    rows = ["." .join(FONT[c][r] for c in word) for r in range(5)]  # (5, 4 * len - 1) cells
    cells = np.array([[ch == "#" for ch in row] for row in rows])
    return cells.repeat(scale, 0).repeat(scale, 1)


def draw_word(frames: np.ndarray, word: str, frame_ids, left: int, top: int, scale: int) -> None:
    """Paint `word` in TEXT_COLOUR (cyan) onto frames[frame_ids] (in place) with its corner at (left, top)."""
    mask = word_mask(word, scale)
    h, w = mask.shape
    for k in frame_ids:
        frames[k, top:top + h, left:left + w][mask] = TEXT_COLOUR


# ----------------------------------------------------------------------------- cups (latent state)
SLOTS = ("left", "middle", "right")


@dataclass
class CupGame:
    """VideoReasonBench-style latent state: a ball shown under one of three identical cups,
    then hidden while pairs of cups swap places, one swap per second from `first_swap`."""

    ball: int  # slot index (0 left, 1 middle, 2 right) of the cup over the ball at the start
    swaps: list[tuple[int, int]]  # slot pairs (a < b), in order
    reveal: int = 1  # seconds during which the ball is shown below its cup
    first_swap: int = 2  # seconds


def ball_after(game: CupGame, n_swaps: int | None = None) -> int:
    """Slot of the ball after the first n swaps (all by default)."""
    slot = game.ball
    for a, b in game.swaps[:n_swaps]:
        slot = b if slot == a else a if slot == b else slot
    return slot


def render_cups(game: CupGame, *, duration: int, fps: int, size: int) -> np.ndarray:
    """Frames (duration * fps, H, W, 3): white cups, a red ball below one during the reveal.

    In a swap the cup moving right arcs up and the one moving left arcs down, so identical
    cups stay tellable apart by their paths: the state is latent but trackable.
    """
    if game.first_swap + len(game.swaps) > duration:
        raise ValueError(f"{len(game.swaps)} swaps from {game.first_swap}s do not fit {duration}s")
    n = duration * fps
    frames = np.empty((n, size, size, 3), np.uint8)  # (T, H, W, 3)
    frames[:] = BACKGROUND
    side, ball_side = round(0.22 * size), round(0.14 * size)
    xs = [round(size * (1 + 2 * i) / 6) for i in range(3)]  # slot centres
    y, lift = round(0.4 * size), round(0.2 * size)
    cup, ball = shape_mask("square", side), shape_mask("circle", ball_side)

    def paint(k: int, mask: np.ndarray, cx: float, cy: float, colour: str) -> None:
        s = mask.shape[0]
        top, left = round(cy) - s // 2, round(cx) - s // 2
        frames[k, top:top + s, left:left + s][mask] = COLOURS[colour]

    for k in range(n):
        t = k / fps
        i = int(np.floor(t - game.first_swap))  # swap in progress, if 0 <= i < len(swaps)
        moving = game.swaps[i] if 0 <= i < len(game.swaps) else None
        for slot in range(3):
            cx, cy = xs[slot], y
            if moving and slot in moving:
                alpha = t - game.first_swap - i
                a, b = moving
                other = b if slot == a else a
                cx = xs[slot] + alpha * (xs[other] - xs[slot])
                cy = y - np.sin(np.pi * alpha) * lift * (1 if slot == a else -1)  # a moves right, up
            paint(k, cup, cx, cy, "white")
        if t < game.reveal:
            paint(k, ball, xs[game.ball], y + side, "red")
    return frames


# ----------------------------------------------------------------------------- reading frames
def observe(frames: np.ndarray, colour: str, *, tol: int = 60, min_pixels: int = 6
            ) -> tuple[np.ndarray, np.ndarray]:
    """Where a colour is in each frame: (T,) visible and (T, 2) centre (x, y), NaN if unseen.

    Reads decoded frames, so tests can check a question's answer against the pixels the model
    sees (e.g. that shuffling the frames changes the answer of an order question).
    """
    target = np.array(COLOURS[colour], np.int16)
    hit = (np.abs(frames.astype(np.int16) - target) < tol).all(-1)  # (T, H, W)
    visible = hit.sum((1, 2)) >= min_pixels  # (T,)
    centre = np.full((len(frames), 2), np.nan)
    for k in np.flatnonzero(visible):
        ys, xs = np.nonzero(hit[k])
        centre[k] = xs.mean(), ys.mean()
    return visible, centre
