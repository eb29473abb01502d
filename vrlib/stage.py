"""Run a stage's notebook the way a reader runs it in JupyterLab: the kernel starts in
`notebooks/`, and the notebook's first cell moves to the study's folder (`enter`).

`dvc repro` calls `python -m vrlib.stage notebooks/04_rft.ipynb reports/04_rft.ipynb`: papermill
executes the notebook with the params.yaml sections its `parameters` cell declares (no
"unknown parameter" noise for the others), and streams what the cells print to the terminal,
so a long stage shows its progress lines while it runs. The executed copy in `reports/` is a
log, not a DVC output: it differs on every run (timings) and no stage reads it.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import yaml

QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]
"""ipykernel warns that it talks to papermill over TCP on localhost without encryption; nothing
a user can act on."""


NOTICES = ("The given NumPy array is not writable",  # transformers' processor copies the frame
           "Tight layout not applied")                 # matplotlib, on the data card's long labels
"""Library warnings a user of the study cannot act on, each checked harmless; FutureWarnings
(torch and transformers deprecations) are silenced as a category."""


LOG_NOTICES = {"bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community",
               "DeepSpeed": "Setting accelerator to CPU"}
"""Log records a user cannot act on, by logger: one message each (see quiet); the loggers'
other records, warnings and errors included, still print."""


class _Without(logging.Filter):
    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return self.message not in record.getMessage()


def quiet() -> None:
    """Silence what a study run prints that means nothing to its user (issue: "a study run that
    shows where it is"); called by `enter`, the first cell of every notebook:
    - NOTICES and FutureWarnings (see NOTICES);
    - bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community": it offers
      to fetch a faster CPU kernel from the Hugging Face Hub, which a study never does at run
      time; its own AVX512 kernel runs instead;
    - DeepSpeed's "Setting accelerator to CPU" when no GPU is there (that is the embedded study);
      a filter, not DS_ACCELERATOR=cpu, so that DeepSpeed still finds an MPS or XPU device.
    The study's own progress lines and every error still print."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    for notice in NOTICES:
        warnings.filterwarnings("ignore", message=notice, category=UserWarning)
    for name, message in LOG_NOTICES.items():  # filters, kept when a library sets its logger's level
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Without) and f.message == message for f in logger.filters):
            logger.addFilter(_Without(message))


def root(start: str | os.PathLike | None = None) -> Path:
    """The study's folder: the nearest folder at or above `start` (default: the working
    directory) holding params.yaml."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").exists():
            return folder
    raise FileNotFoundError(f"no params.yaml in {here} or above: open the notebooks from the vrlib study folder")


def enter() -> Path:
    """Make the study's folder the working directory (the notebooks' paths are relative to it),
    wherever the kernel started: `notebooks/` in JupyterLab, anywhere under papermill; and
    `quiet` the library notices."""
    quiet()
    folder = root()
    os.chdir(folder)
    return folder


def from_params(**injected):
    """The values papermill injected, in the order given; each left None (the notebook opened in
    JupyterLab) is read from the study's params.yaml instead, as `run` would inject it, with any
    `dvc exp run -S` edit (it writes params.yaml before running a stage). A notebook's second cell:
    `seed, scale, data = from_params(seed=seed, scale=scale, data=data)`."""
    missing = [name for name, value in injected.items() if value is None]
    if not missing:
        return tuple(injected.values())
    path = root() / "params.yaml"
    values = yaml.safe_load(path.read_text()) or {}
    for name in missing:
        if name not in values:
            raise KeyError(f"{path} has no {name!r}; its keys: {', '.join(values)}")
    return tuple(values[name] if value is None else value for name, value in injected.items())


NOTEBOOK_METADATA = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}}
"""A stage notebook's metadata as committed; JupyterLab writes its kernel's on opening."""


def committed_form(nb: dict) -> dict:
    """`nb` (an nbformat 4 dict) as the study commits its notebooks, changed in place: no outputs
    or execution counts, no cell metadata but the tags, NOTEBOOK_METADATA."""
    nb["metadata"] = {k: dict(v) for k, v in NOTEBOOK_METADATA.items()}
    for cell in nb["cells"]:
        cell["metadata"] = {"tags": cell["metadata"]["tags"]} if cell.get("metadata", {}).get("tags") else {}
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def pre_save(model: dict, path: str, contents_manager, **kwargs) -> None:
    """Jupyter's pre_save_hook under `make lab` (jupyter_server_config.py): a notebook of the
    study's `notebooks/` is saved in its committed form, so that opening, running and saving it
    leaves `git status` and `dvc status` clean (it is a dep of its stage) unless a cell was
    edited. Its outputs stay in the open tab; `dvc repro` keeps an executed copy in reports/."""
    if model.get("type") != "notebook" or not model.get("content"):
        return
    folder = (Path(contents_manager.root_dir) / path).resolve().parent
    if folder.name == "notebooks" and (folder.parent / "params.yaml").exists():
        committed_form(model["content"])


def run(notebook: str | os.PathLike, output: str | os.PathLike, params: str | os.PathLike = "params.yaml",
        *, stream=sys.stdout) -> None:
    """Execute `notebook` into `output` with the kernel in the notebook's folder."""
    import papermill

    notebook, output = Path(notebook), Path(output)
    values = yaml.safe_load(Path(params).read_text()) or {}
    declared = papermill.inspect_notebook(str(notebook))
    output.parent.mkdir(parents=True, exist_ok=True)
    (Path("reports") / "figures").mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(notebook), str(output), parameters={k: v for k, v in values.items() if k in declared},
        kernel_name="python3", cwd=str(notebook.parent), progress_bar=False,
        stdout_file=stream, stderr_file=sys.stderr, extra_arguments=QUIET_KERNEL)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="run one stage's notebook (what dvc.yaml's cmd calls)")
    ap.add_argument("notebook")
    ap.add_argument("output")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    print(f"== {args.notebook} -> {args.output}", flush=True)
    run(args.notebook, args.output, args.params)


if __name__ == "__main__":
    main()
