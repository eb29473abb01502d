"""The documented tables of the study, made from its metrics: the README's overview and the
tables of docs/results.md.

The tests check the committed pages against the committed metrics (read from git), so a
user's own `make study`, whose numbers differ a little on another CPU, does not fail them.
`make tables` (`python -m vrlib.tables`) writes the tables of the metrics in the working tree
into the pages, for a user who wants them to show their own run; the prose around the tables
still quotes the committed run. The RL ablations' tables come from `make ablations`; the claims
table from `make claims` (metrics/claims.json), which runs this after it.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable

from vrlib.claims import configs_table, formats_table, times_table
from vrlib.claims import table as claims_table
from vrlib.evaluate import overview_table, results_table, sizes_table
from vrlib.pretrain import probes_table


def documented(read: Callable[[str], str]) -> dict[str, list[str]]:
    """page -> the tables it shows, made from the metrics files `read(path)` returns the text of.
    The claims table shows each claim as not yet run until metrics/claims.json exists; then
    docs/results.md also shows what its runs cost."""
    metrics = json.loads(read("metrics/eval.json"))  # the test split
    diffs = {split: json.loads(read(f"metrics/{split}_diffs.json")) for split in ("eval", "val")}
    try:
        result = json.loads(read("metrics/claims.json"))  # `make claims`: seeds x items
    except FileNotFoundError:
        result = None
    claims = claims_table(result)
    overview = overview_table(metrics, diffs["eval"])
    probes = probes_table(json.loads(read("metrics/base.json")))  # the base stage: does it see?
    costs = [times_table(result), formats_table(result)] if result else []  # minutes, well-formed answers
    return {"README.md": [probes, claims, overview],
            "docs/results.md": [probes, claims, configs_table(), *costs, overview, results_table(metrics, "grounding"),
                                sizes_table([diffs["eval"], diffs["val"]])]}  # what each comparison can detect


def committed(root: str | Path = ".") -> Callable[[str], str]:
    """A reader of files as the last commit holds them (`git show HEAD:path`); outside a git
    checkout, of the files themselves."""
    def read(path: str) -> str:
        out = subprocess.run(["git", "-C", str(root), "show", f"HEAD:{path}"], capture_output=True, text=True)
        return out.stdout if out.returncode == 0 else (Path(root) / path).read_text()
    return read


def replace_table(text: str, table: str, where: str = "") -> str:
    """`text` with its one markdown table whose header row is `table`'s replaced by `table`."""
    lines, header = text.split("\n"), table.split("\n")[0]
    starts = [i for i, line in enumerate(lines) if line == header and (i == 0 or not lines[i - 1].startswith("|"))]
    if len(starts) != 1:
        raise ValueError(f"{where}: {len(starts)} tables with the header {header!r}, expected one")
    end = starts[0]
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[:starts[0]] + table.split("\n") + lines[end:])


def main(root: str | Path = ".") -> None:
    """Write the tables of the working tree's metrics into the pages that show them."""
    root = Path(root)
    for page, tables in documented(lambda path: (root / path).read_text()).items():
        text = (root / page).read_text()
        for table in tables:
            text = replace_table(text, table, page)
        (root / page).write_text(text)
        print(f"{page}: {len(tables)} table(s) from metrics/ (the prose still quotes the committed run)")


if __name__ == "__main__":
    main()
