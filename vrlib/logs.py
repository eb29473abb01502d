"""Step logs: DVCLive's `dvclive/<stage>/plots/metrics/<name>.tsv` (one row per step), a
progress line on the terminal every few steps, which papermill streams while `dvc repro` runs,
and the machine a result was measured on."""
from __future__ import annotations

import contextlib
import platform
import sys
import time
from pathlib import Path
from typing import Callable


def dvclive_logger(live) -> Callable[[int, dict], None]:
    """An `on_step(step, metrics)` callback that writes every metric of a step to `live`."""
    def on_step(step: int, metrics: dict) -> None:
        for name, value in metrics.items():
            live.log_metric(name, value)
        live.next_step()
    return on_step


def untimed(metrics: dict) -> dict:
    """A step's metrics without `time/*`: what RFT's history and its DVCLive logs keep. The logs
    are an output of the rft stage (dvc.yaml), restored with the adapter it trained when DVC takes
    a run from its run cache, so they must be the same bytes for the same run; the timings stay
    in the returned history (`vrlib.speed`) and the progress line's s/step."""
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def progress(name: str, total: int, *, keys: tuple[str, ...] = ("train/loss",), lines: int = 10,
             unit: str = "step", out=None) -> Callable[[int, dict], None]:
    """An `on_step(step, metrics)` callback printing about `lines` lines over a run:
    `rft  step 8/40  reward/mean 0.69  policy/kl 0.0012  3.1 s/step, ~1m39s left`.
    Steps replayed from a checkpoint arrive at once and are not timed; the time left is
    measured from the first step seen, so steps skipped before it (resumed) do not count."""
    every, start = max(1, total // lines), {}

    def on_step(step: int, metrics: dict) -> None:
        now = time.perf_counter()
        start.setdefault("t", now)
        start.setdefault("step", step)
        if _PHASE:  # this run is a phase of a Stage: it counts toward the stage's time left
            _PHASE[-1].advance(now, 1 / total)
        done = step + 1
        if done % every and done != total:
            return
        timed = done - start["step"] - 1
        rate = (now - start["t"]) / timed if timed > 0 else float("nan")
        left = "" if rate != rate else f"  {rate:.1f} s/{unit}, ~{_clock(rate * (total - done))} left"
        stage = _PHASE[-1].left() if _PHASE else float("nan")
        left += "" if stage != stage else f", stage ~{_clock(stage)} left"
        shown = "".join(f"  {k} {metrics[k]:.4g}" for k in keys if k in metrics)
        print(f"{name}  {unit} {done}/{total}{shown}{left}", file=out or sys.stdout, flush=True)
    return on_step


@contextlib.contextmanager
def step_logs(name: str, total: int, live_dir: str | None, *, keys: tuple[str, ...] = ("train/loss",),
              main: bool = True, logged: Callable[[dict], dict] = dict):
    """The `on_step` of a training run: each step's metrics (as `logged` keeps them) to DVCLive in
    `live_dir`, and `progress` lines; on the main process only, the others log nothing."""
    with contextlib.ExitStack() as stack:
        callbacks = []
        if main and live_dir is not None:
            from dvclive import Live

            log = dvclive_logger(stack.enter_context(Live(live_dir, save_dvc_exp=False, dvcyaml=None)))
            callbacks.append(lambda step, metrics: log(step, logged(metrics)))
        if main:
            callbacks.append(progress(name, total, keys=keys))
        yield both(*callbacks)


_PHASE: list = []
"""The Stage whose phase runs now (Stage.phase), if any."""


class Stage:
    """A stage of several phases (eval: each model on each split) that says the time left in the
    whole stage, on every progress line and as each phase starts:
    `eval: sft on val (6/9), stage ~2m40s left` ... `eval sft  batch 2/3  4.1 s/batch, ~4s left, stage ~2m31s left`.
    `work` is each phase's size in one unit (items decoded). The pace is measured on the phases
    that ran (a phase read back from an earlier run shows no progress, costs no time, and is not
    counted), from each phase's start, so model loading counts."""

    def __init__(self, name: str, work: dict[str, float], *, out=None):
        self.name, self.work, self.out = name, dict(work), out
        self.done = self.timed = self.seconds = 0.0  # work done; work timed, in seconds
        self.last = time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str, passes: int = 1):
        """Around the calls that run phase `name` (a key of `work`); `passes`: how many progress
        runs go over its work (TCR answers twice)."""
        left = self.left()
        print(f"{self.name}: {name} ({list(self.work).index(name) + 1}/{len(self.work)})"
              + ("" if left != left else f", stage ~{_clock(left)} left"), file=self.out or sys.stdout, flush=True)
        done, self.last, self.share = self.done, time.perf_counter(), self.work[name] / passes
        _PHASE.append(self)
        try:
            yield self
        finally:
            _PHASE.pop()
            self.done = done + self.work[name]

    def advance(self, now: float, fraction: float) -> None:
        """A progress step of the running phase: `fraction` of one of its passes."""
        self.seconds += now - self.last
        self.timed += fraction * self.share
        self.done += fraction * self.share
        self.last = now

    def left(self) -> float:
        """Seconds left in the stage at the pace measured so far (nan before any)."""
        if not self.timed:
            return float("nan")
        return self.seconds / self.timed * max(sum(self.work.values()) - self.done, 0.0)


def show(*values, sep: str = " ") -> None:
    """`print` for what a reader looks at (traces, tables of tiny numbers): a notebook output
    (IPython's display) that papermill does not stream, so the stage's terminal log keeps its
    progress lines; outside a kernel, printed."""
    text = sep.join(map(str, values))
    try:
        from IPython import get_ipython
        from IPython.display import Pretty, display
    except ImportError:
        get_ipython = lambda: None  # noqa: E731
    if get_ipython() is None:
        print(text)
    else:
        display(Pretty(text))


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def both(*callbacks: Callable[[int, dict], None]) -> Callable[[int, dict], None]:
    """One `on_step` callback calling each of `callbacks` in turn (e.g. DVCLive and progress)."""
    def on_step(step: int, metrics: dict) -> None:
        for f in callbacks:
            f(step, metrics)
    return on_step


def cpu_name() -> str:
    """The CPU model (float kernels differ between CPU kinds: results are bit-exact on one kind)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What a result records of the machine that measured it: the CPU model and the vector kernels
    torch picked on it (`AVX512`, `AVX2`, ...); the same study gives the same bytes on the same
    kind only."""
    import torch

    return {"cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__}
