"""Step logs through DVCLive: `dvclive/<stage>/plots/metrics/<name>.tsv`, one row per step."""
from __future__ import annotations

from typing import Callable


def dvclive_logger(live) -> Callable[[int, dict], None]:
    """An `on_step(step, metrics)` callback that writes every metric of a step to `live`."""
    def on_step(step: int, metrics: dict) -> None:
        for name, value in metrics.items():
            live.log_metric(name, value)
        live.next_step()
    return on_step
