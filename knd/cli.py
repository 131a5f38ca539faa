"""`knd` command line: one command per pipeline stage, plus prediction and serving.

Heavy libraries (torch, dvclive, wandb) are imported inside the commands, so `knd --help`
answers instantly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from knd.errors import KndError

app = typer.Typer(
    help="Speech emotion recognition on RAVDESS: pipeline stages, prediction and serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Params = Annotated[Path, typer.Option("--params", help="Parameters file (composed by DVC).")]
Model = Annotated[Path, typer.Option("--model", help="Trained checkpoint.")]
DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_MODEL = Path("models/model.pt")


def _config(path: Path):
    from knd.config import load_config

    return load_config(path)


@app.command()
def download(
    params: Params = DEFAULT_PARAMS,
    raw_dir: Annotated[Path, typer.Option(help="Where the clips are extracted.")] = Path(
        "data/raw"
    ),
) -> None:
    """Fetch the RAVDESS archive (data.url), verify data.md5 and extract it."""
    from knd.download import download_and_extract

    cfg = _config(params)
    download_and_extract(cfg.data.url, cfg.data.md5 or None, raw_dir)


@app.command("make-dataset")
def make_dataset(params: Params = DEFAULT_PARAMS) -> None:
    """Decode every clip, compute features, assign splits: data/raw -> data/processed."""
    from knd.make_dataset import make_dataset as run

    run(_config(params))


@app.command()
def train(params: Params = DEFAULT_PARAMS) -> None:
    """Train the configured model -> models/model.pt (also under torchrun for DDP)."""
    from knd.train import train as run

    run(_config(params))


@app.command()
def evaluate() -> None:
    """Test-split metrics -> reports/metrics.json, evaluation.json, predictions.csv."""
    from knd.evaluate import evaluate as run

    run()


@app.command()
def plot() -> None:
    """Figures -> reports/figures/*.png."""
    from knd.plot import plot as run

    run()


def main() -> None:
    """Entry point: a `KndError` becomes one readable line and exit status 1."""
    try:
        app()
    except KndError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
