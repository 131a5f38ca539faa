"""`knd` command line: one command per pipeline stage, plus prediction and serving.

Heavy libraries (torch, dvclive, wandb) are imported inside the commands, so `knd --help`
answers instantly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from knd.errors import KndError
from knd.paths import HELD_OUT_MODEL, RELEASE_MODEL

app = typer.Typer(
    help="Speech emotion recognition on RAVDESS: pipeline stages, prediction and serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Params = Annotated[Path, typer.Option("--params", help="Parameters file (composed by DVC).")]
Model = Annotated[Path, typer.Option("--model", help="Trained checkpoint.")]
DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_MODEL = RELEASE_MODEL


@app.callback()
def options(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also log details.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings only.")] = False,
) -> None:
    """Speech emotion recognition on RAVDESS: pipeline stages, prediction and serving."""
    from knd.logs import LEVELS, setup

    if verbose and quiet:
        raise typer.BadParameter("--verbose and --quiet exclude each other")
    level = LEVELS["verbose" if verbose else "quiet" if quiet else "normal"]
    ctx.with_resource(setup(level))


def _config(path: Path, overrides: list[str] | None = None):
    from knd.config import load_config

    return load_config(path, overrides or ())


@app.command()
def download(
    params: Params = DEFAULT_PARAMS,
    raw_dir: Annotated[Path, typer.Option(help="Where the clips are extracted.")] = Path(
        "data/raw"
    ),
) -> None:
    """Fill data/raw from data.source: RAVDESS (data.url, checked against data.md5), a local
    archive or folder (data.path), or manifests (data.manifest)."""
    from knd.data.download import fetch_data

    fetch_data(_config(params).data, raw_dir)


@app.command("make-dataset")
def make_dataset(params: Params = DEFAULT_PARAMS) -> None:
    """Decode every clip, compute features, assign splits: data/raw -> data/processed."""
    from knd.data.make_dataset import make_dataset as run

    run(_config(params))


Corpus = Literal["ravdess", "crema-d", "tess", "savee", "emodb"]


@app.command()
def manifest(
    folder: Annotated[Path, typer.Argument(help="A corpus's audio folder (searched recursively).")],
    corpus: Annotated[Corpus, typer.Option(help="The corpus, whose file-name scheme is read.")],
    out: Annotated[Path, typer.Option(help="Manifest to write; its paths are relative to it.")] = (
        Path("manifest.csv")
    ),
) -> None:
    """Write a manifest (path,label,speaker,corpus,gender) from a folder of a known corpus.

    Labels become knd's emotion names (neutral calm happy sad angry fearful disgust surprised);
    one with no counterpart, such as EmoDB's boredom, keeps its own. Files whose names do not
    follow the scheme are reported and left out.
    """
    from collections import Counter

    from knd.data.corpora import write_corpus_manifest

    rows = write_corpus_manifest(folder, corpus, out)
    speakers = len({r["speaker"] for r in rows})
    labels = ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["label"] for r in rows).items()))
    typer.echo(f"{out}: {len(rows)} clips of {speakers} speakers ({labels})")


@app.command()
def train(params: Params = DEFAULT_PARAMS) -> None:
    """Train on the split's training actors -> models/heldout.pt (also under torchrun for DDP)."""
    from knd.training.train import train as run

    run(_config(params))


@app.command()
def release(params: Params = DEFAULT_PARAMS) -> None:
    """Train on every actor (from scratch, or on from models/heldout.pt) -> models/model.pt."""
    from knd.training.release import release as run

    run(_config(params))


@app.command()
def evaluate(params: Params = DEFAULT_PARAMS) -> None:
    """Test-split metrics -> reports/metrics.json, evaluation.json, predictions.csv."""
    from knd.training.evaluate import evaluate as run

    run(cfg=_config(params))


@app.command()
def plot() -> None:
    """Figures -> reports/figures/*.png."""
    from knd.reporting.plot import plot as run

    run()


@app.command()
def cv(
    params: Params = DEFAULT_PARAMS,
    fold: Annotated[list[int] | None, typer.Option(help="Run only these folds.")] = None,
    out: Annotated[Path, typer.Option(help="Fold models and cv.json.")] = Path("reports/cv"),
    release: Annotated[
        bool,
        typer.Option(
            "--release",
            help="Also measure the release recipe: `knd release`'s model (release.start: from "
            "scratch, or the fold model continued) on each fold's training and any validation "
            "actors, scored on the same test actors.",
        ),
    ] = False,
    seed: Annotated[
        list[int] | None,
        typer.Option(
            help="Repeat the whole cross-validation with each of these training seeds "
            "(train.seed), in OUT/seed<S>/, and report the mean and spread over seeds in "
            "OUT/seeds.json: the seed alone moves a fold mean by about 3 UAR points.",
        ),
    ] = None,
    robustness: Annotated[
        bool,
        typer.Option(
            "--robustness",
            help="Also score each fold model on its test actors under every condition of "
            "`knd robustness` (audio from data/raw; about a minute a fold) and report each "
            "condition's UAR drop as mean ± std over folds (and seeds).",
        ),
    ] = False,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-S",
            metavar="KEY=VALUE",
            help="Change one parameter for this run, as `dvc exp run -S` does for the pipeline "
            "(e.g. -S split.k=10 -S train.lr=0.001); cv.json records every parameter used.",
        ),
    ] = None,
) -> None:
    """k-fold cross-validation by actor (split.k folds) -> mean ± std UAR, WA, macro F1."""
    from knd.training.cv import cross_validate, cross_validate_seeds

    cfg = _config(params, overrides)
    options = {"out_dir": out, "folds": fold, "release": release, "robustness": robustness}
    if seed:
        cross_validate_seeds(cfg, seed, **options)
    else:
        cross_validate(cfg, **options)


@app.command()
def report(
    revs: Annotated[
        list[str] | None, typer.Argument(help="Revisions or experiments to compare.")
    ] = None,
    diff: Annotated[bool, typer.Option(help="Compare (workspace vs HEAD without REVS).")] = False,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("reports/plots"),
) -> None:
    """DVC plots -> OUT/index.html that renders offline (REVS: `dvc plots diff`)."""
    from knd.reporting.report import report as run

    run(revs, diff, out)


AnyModel = Annotated[
    Path, typer.Option("--model", help="Checkpoint (.pt, PyTorch) or export (.onnx, no torch).")
]


@app.command()
def predict(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Audio files, or folders searched for .wav .flac .ogg .aif .aiff."),
    ],
    model: AnyModel = DEFAULT_MODEL,
    fmt: Annotated[
        Literal["table", "json", "csv"], typer.Option("--format", help="Output format.")
    ] = "table",
    top_k: Annotated[int, typer.Option(min=1, help="Probabilities shown in the table.")] = 3,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 32,
    timeline: Annotated[
        bool,
        typer.Option(
            "--timeline",
            help="Emotion of each speech segment (start, end in seconds) and each emotion's "
            "share of the speech time, instead of one label per file.",
        ),
    ] = False,
    embeddings: Annotated[
        bool,
        typer.Option(
            "--embeddings",
            help="Add each file's (or segment's) pooled embedding, the vector the model's last "
            "layer classifies, as the JSON field `embedding` (needs --format json).",
        ),
    ] = False,
) -> None:
    """Emotion of each audio file; exit status 1 if any input could not be read.

    Any sample rate or channel count (mixed to mono and resampled).

    Long clips: mean over windows of the training duration that overlap by at least 50%.

    Short clips: centre-padded with silence to the training duration, as in training.

    --timeline: speech is found by a voice-activity detector (silence is not classified), and
    segments longer than the training duration are cut into equal pieces no longer than it.
    CSV: a row per segment, then a `summary` row of shares per file.
    """
    from tqdm import tqdm

    from knd.audio import find_audio
    from knd.serving.predict import format_results, format_timelines, load_predictor, predict_files
    from knd.serving.timeline import timeline_files

    if embeddings and fmt != "json":
        raise KndError("--embeddings: embeddings are a JSON field; add --format json")
    predictor = load_predictor(model, batch_size)
    files = find_audio(paths)
    progress = dict(total=len(files), unit="file", file=sys.stderr, disable=len(files) < 2 or None)
    run, render = (
        (timeline_files, format_timelines) if timeline else (predict_files, format_results)
    )
    records = list(tqdm(run(predictor, files, embeddings), **progress))
    typer.echo(render(records, fmt, predictor.labels, top_k))
    if failed := sum("error" in r for r in records):
        raise KndError(f"{failed} of {len(records)} inputs could not be read")


@app.command()
def score(
    data: Annotated[
        Path, typer.Argument(help="A manifest (CSV), or a folder of a known corpus (--corpus).")
    ],
    model: AnyModel = DEFAULT_MODEL,
    corpus: Annotated[
        Corpus | None, typer.Option(help="The folder's corpus, whose file names give labels.")
    ] = None,
    fmt: Annotated[
        Literal["table", "json"], typer.Option("--format", help="Output format.")
    ] = "table",
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 32,
) -> None:
    """Score a model on a labelled set it did not train on: n, UAR, WA, macro F1, per-class
    recall and the confusion matrix.

    The model's labels are matched to the data's: calm counts as neutral where one side has no
    calm; data labels the model cannot output (e.g. boredom) are reported, not scored.
    """
    from knd.serving.score import format_score
    from knd.serving.score import score as run

    typer.echo(format_score(run(data, model, corpus, batch_size), fmt))


@app.command()
def robustness(
    model: AnyModel = HELD_OUT_MODEL,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 32,
) -> None:
    """Test-split UAR and WA under changed recording conditions -> reports/robustness.json.

    Scores the held-out model: the release (models/model.pt) has heard the test actors.

    Level, white and babble noise, reverberation, telephone band, another microphone's colouring,
    extra silence, cropping; a table is printed and reports/robustness.png drawn.
    """
    from knd.training.robustness import robustness as run

    run(model, batch_size=batch_size)


@app.command()
def serve(
    model: AnyModel = DEFAULT_MODEL,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted request body.")] = 20.0,
) -> None:
    """Web service: a page at /, POST /predict, GET /health, API docs at /docs."""
    import uvicorn

    from knd.serving.serve import MB, create_app

    uvicorn.run(create_app(model, round(max_upload_mb * MB)), host=host, port=port)


@app.command()
def export(
    model: Model = DEFAULT_MODEL,
    out: Annotated[Path, typer.Option(help="ONNX file to write.")] = Path("models/model.onnx"),
) -> None:
    """Checkpoint -> self-contained ONNX model: waveform in, probabilities out, no torch needed."""
    from knd.models.onnx_export import export_onnx

    difference = export_onnx(model, out)
    typer.echo(f"{out}: exported {model}; max probability difference {difference:.1e}")


def main() -> None:
    """Entry point: a `KndError` becomes one readable line and exit status 1."""
    try:
        app()
    except KndError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
