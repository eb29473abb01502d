"""The study's RL ablations: `dvc exp run -S ...` per variant, results in metrics/ablations.json.

`python -m vrlib.ablations` (or `make ablations`) runs each variant of ABLATIONS against the
committed params (it reruns rft, eval and analysis; data, base and SFT come from the cache),
keeps each experiment's `metrics/eval.json`, then restores the committed study. The README's
ablation table is `table(...)` of the file it writes, checked by a test.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from vrlib.data import atomic_write_json
from vrlib.evaluate import headline

ABLATIONS: dict[str, list[str]] = {
    "grpo (no shuffled rollouts)": ["rft.algo=grpo"],
    "t_grpo, bonus on the reward (Video-R1)": ["rft.bonus_mode=reward"],
    "no SFT cold start": ["rft.init=base"],
    "loss_type dr_grpo": ["rft.loss_type=dr_grpo"],
    "relative reward (hypothesis)": ["rft.relative=true"],
}
"""name -> `dvc exp run -S` overrides of the committed params.yaml."""

OUT = Path("metrics/ablations.json")
FOCUS = "order"
"""The order-dependent task family T-GRPO is for (vrlib/tasks.py)."""
# The table's p / p~ are the mean accuracies of the ordered and the shuffled-frame rollouts
# over the run: p ~ p~ means the policy answers as well without the frame order.


LOGGED = ("tgrpo/advantage_changed", "tgrpo/p", "tgrpo/p_shuffled", "relative/gap", "policy/kl")
"""Step logs of the RFT run kept with each variant, as their mean over steps."""


def log_means(dvclive_dir: str | Path = "dvclive/rft") -> dict[str, float]:
    """Mean over steps of the LOGGED metrics a run wrote (DVCLive's `<name>.tsv`: step, value)."""
    means = {}
    for name in LOGGED:
        path = Path(dvclive_dir) / "plots/metrics" / f"{name}.tsv"
        if path.is_file():
            values = [float(line.split("\t")[1]) for line in path.read_text().splitlines()[1:]]
            means[name] = sum(values) / len(values)
    return means


def mean_over_tasks(model_metrics: dict) -> float:
    return sum(headline(m) for m in model_metrics.values()) / len(model_metrics)


def table(ablations: dict) -> str:
    """A row per variant: RFT's mean over tasks and on `order`, each with its gain over SFT."""
    lines = ["| variant | `dvc exp run -S` | mean over tasks: rft (sft) | gain | order: rft (sft) | gain "
             "| T-GRPO bonus changed the advantage | p / p~ |",
             "|---|---|---|---|---|---|---|---|"]
    for name, run in ablations.items():
        sft, rft = run["eval"]["sft"], run["eval"]["rft"]
        m_sft, m_rft = mean_over_tasks(sft), mean_over_tasks(rft)
        o_sft, o_rft = headline(sft[FOCUS]), headline(rft[FOCUS])
        sets = " ".join(f"`{s}`" for s in run["set"]) or "(committed params)"
        log = run.get("log", {})
        changed = f"{100 * log['tgrpo/advantage_changed']:.1f}%" if "tgrpo/advantage_changed" in log else "-"
        p = f"{log['tgrpo/p']:.3f} / {log['tgrpo/p_shuffled']:.3f}" if "tgrpo/p" in log else "-"
        lines.append(f"| {name} | {sets} | {m_rft:.1f} ({m_sft:.1f}) | {m_rft - m_sft:+.1f} | "
                     f"{o_rft:.1f} ({o_sft:.1f}) | {o_rft - o_sft:+.1f} | {changed} | {p} |")
    return "\n".join(lines)


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    results = {"committed params.yaml": {"set": [], "eval": json.loads(Path("metrics/eval.json").read_text()),
                                         "log": log_means()}}
    try:
        for name, sets in ABLATIONS.items():
            _run(["git", "checkout", "--", "params.yaml"])
            _run(["dvc", "exp", "run", *[a for s in sets for a in ("-S", s)]])
            results[name] = {"set": sets, "eval": json.loads(Path("metrics/eval.json").read_text()),
                             "log": log_means()}
            atomic_write_json(OUT, results)  # kept if a later one fails
    finally:  # back to the committed study: params, lock, and its outputs from the cache
        _run(["git", "checkout", "--", "params.yaml", "dvc.lock", "metrics/eval.json", "metrics/eval_settings.json",
              "metrics/analysis.json", "dvclive"])
        _run(["dvc", "checkout", "--force"])
    print(table(results))


if __name__ == "__main__":
    sys.exit(main())
