"""The ``guesser`` command line: parse, then call one function elsewhere.

Imports are lazy (inside each command) so ``guesser --help`` and
``guesser classify`` start fast and never import the trainer. Every
:class:`~guesser.errors.GuesserError` becomes one red line on stderr and a
non-zero exit; Ctrl-C exits 130 without a traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    name="guesser",
    help="What did I just hear? Ranked AudioSet labels and families for a sound.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
train_app = typer.Typer(help="Train models: one recipe, or every member's variants.", no_args_is_help=True)
app.add_typer(train_app, name="train")


def friendly(fn):
    """Turn a GuesserError into one red line + exit code, also under typer's CliRunner.

    Every command first checks that torch and torchaudio load (:mod:`guesser.stack`):
    a mismatched pair is one line naming the versions and the repair command.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from guesser.errors import GuesserError
        from guesser.stack import check_stack

        try:
            check_stack()
            return fn(*args, **kwargs)
        except GuesserError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(130) from None

    return wrapper


def _parse_shard(shard: str | None) -> tuple[int, int]:
    import os

    from guesser.errors import GuesserError

    if shard is None:
        rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
        return (int(rank), int(world)) if rank is not None and world is not None else (0, 1)
    try:
        i, n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise GuesserError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise GuesserError(f"--shard {shard}: need 0 <= i < n")
    return i, n


# ---------------------------------------------------------------- data


@app.command()
@friendly
def preprocess(
    data_root: Path = typer.Argument(..., help="FSD50K root (FSD50K.ground_truth/, FSD50K.dev_audio/, FSD50K.eval_audio/)."),
    out: Path = typer.Option(Path("cache"), "--out", "-o", help="Cache folder (one subfolder per feature setting)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Worker processes (default: all cores, shared by torchrun's local ranks)."),
    features: str = typer.Option("recipes", "--features", help="Front-ends to build: recipes (what 'guesser train multi' needs), all, or presets seed, compact, panns (comma-separated)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Build only shard i of n (i/n); defaults to torchrun's RANK/WORLD_SIZE."),
    merge_only: bool = typer.Option(False, "--merge", help="Only merge the parts that shards have built."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Decode every clip once and write one memory-mapped log-mel store per split (resumable)."""
    from trainer.preprocess import run_preprocess

    run_preprocess(data_root, out, jobs=jobs, features=features, shard=_parse_shard(shard), merge_only=merge_only, progress=progress)


# ---------------------------------------------------------------- training


@train_app.command("one")
@friendly
def train_one(
    recipe: str = typer.Argument(..., help="A shipped recipe name (see 'guesser train list') or a TOML file."),
    cache: Path = typer.Option(Path("cache"), "--cache", help="Cache folder made by 'guesser preprocess'."),
    data: Optional[Path] = typer.Option(None, "--data", help="FSD50K root: build a missing cache first."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default runs/<recipe>)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the recipe's epochs."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 …"),
    pretrained: Optional[Path] = typer.Option(None, "--pretrained", help="Official PANNs Cnn6 checkpoint (cnn6 recipes)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    checkpoint_every: int = typer.Option(0, "--checkpoint-every", min=0,
                                         help="Also save the resumable state every N steps (default: every epoch)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train one recipe; writes best/last checkpoints, metrics.jsonl and run.json. Works under torchrun (DDP)."""
    from trainer.multi import train_recipe

    train_recipe(recipe, cache=cache, data=data, out=out, epochs=epochs, batch_size=batch_size, device=device,
                 pretrained=pretrained, resume=resume, progress=progress, checkpoint_every=checkpoint_every)


@train_app.command("multi")
@friendly
def train_multi(
    cache: Path = typer.Option(Path("cache"), "--cache", help="Cache folder (built here if --data is given and it is missing)."),
    data: Optional[Path] = typer.Option(None, "--data", help="FSD50K root, to build the caches the recipes need."),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder for all runs and the models index."),
    recipes: Optional[str] = typer.Option(None, "--recipes", help="Comma-separated subset of recipes (default: all shipped)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override every recipe's epochs."),
    device: str = typer.Option("auto", "--device"),
    pretrained: Optional[Path] = typer.Option(None, "--pretrained", help="Official PANNs Cnn6 checkpoint for cnn6 recipes."),
    resume: bool = typer.Option(False, "--resume", help="Skip finished runs and continue interrupted ones."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Fit every member's variants in turn, then record each member's best (by validation) in OUT/index.json."""
    from trainer.multi import train_all

    train_all(cache=cache, data=data, out=out, recipes=recipes, epochs=epochs, device=device, pretrained=pretrained,
              resume=resume, progress=progress)


@train_app.command("list")
@friendly
def train_list() -> None:
    """List the shipped recipes."""
    from trainer.multi import print_recipes

    print_recipes()


@app.command()
@friendly
def tune(
    recipe: str = typer.Argument(..., help="Recipe to tune (name or TOML file)."),
    trials: int = typer.Option(20, "--trials", "-n"),
    cache: Path = typer.Option(Path("cache"), "--cache"),
    out: Path = typer.Option(Path("runs/tune"), "--out", "-o", help="Study folder: SQLite storage, trial runs, best recipe."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs per trial (default: the recipe's)."),
    device: str = typer.Option("auto", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Optuna TPE + MedianPruner over lr, dropout, batch size and augmentation; resumable (SQLite).

    --trials is the study's total: rerunning the command continues it. The best
    trial is written to OUT/best_recipe.toml (needs the 'tune' extra: pip install 'guesser[tune]').
    """
    from trainer.tune import run_tuning

    run_tuning(recipe, trials=trials, cache=cache, out=out, epochs=epochs, device=device, progress=progress)


# ---------------------------------------------------------------- evaluation


@app.command()
@friendly
def evaluate(
    runs: List[Path] = typer.Argument(None, help="Run folders or checkpoints (default: the members' best in runs/index.json)."),
    cache: Path = typer.Option(Path("cache"), "--cache"),
    split: str = typer.Option("eval", "--split", help="eval or val."),
    index: Path = typer.Option(Path("runs/index.json"), "--index", help="Models index for the default."),
    ensemble: bool = typer.Option(True, "--ensemble/--no-ensemble", help="Also score the ensemble of the evaluated models."),
    groups: Optional[str] = typer.Option(None, "--groups", help="Score per group too: FILE.csv:COLUMN mapping fname to a group (e.g. sources.csv:origin)."),
    synthetic: Optional[str] = typer.Option(None, "--synthetic", help="Groups that are not real recordings (comma-separated; default gm,speech,mix)."),
) -> None:
    """Score runs on the eval split; results JSON saved next to each checkpoint."""
    from trainer.evaluate import run_evaluate

    syn = tuple(s.strip() for s in synthetic.split(",") if s.strip()) if synthetic is not None else None
    run_evaluate(runs or [], cache=cache, split=split, index=index, ensemble=ensemble, groups=groups, synthetic=syn)


@app.command()
@friendly
def select(
    runs: List[Path] = typer.Argument(..., help="Candidate run folders or checkpoints (any member, old or new)."),
    cache: Path = typer.Option(Path("cache"), "--cache"),
    out: Path = typer.Option(Path("runs/selected.json"), "--out", "-o", help="The models index to write."),
    max_steps: int = typer.Option(12, "--max-steps", min=1, help="Most models (with repeats) in the ensemble."),
) -> None:
    """Pick the ensemble's members and weights on val by greedy forward selection (Caruana); write a models index."""
    from trainer.select import run_select

    run_select(runs, Path(cache), out, max_steps=max_steps)


@app.command()
@friendly
def report(
    runs: List[Path] = typer.Argument(None, help="Run folders (default: every run under runs/)."),
    root: Path = typer.Option(Path("runs"), "--root", help="Where to look for runs by default."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also export the report as HTML."),
    width: Optional[int] = typer.Option(None, "--width", help="Terminal width for charts."),
) -> None:
    """Leaderboard, best/worst labels, loss and ROC curves, confusion matrices, in the terminal."""
    from trainer.report import run_report

    run_report(runs or [], root=root, html=html, width=width)


@app.command()
@friendly
def export(
    index: Path = typer.Argument(Path("runs/index.json"), help="Models index (or its folder) from 'guesser train multi'."),
    out: Path = typer.Option(Path("assets/models"), "--out", "-o", help="Folder for the exported models and index."),
) -> None:
    """Copy each member's best model as fp16 safetensors with a new index (how assets/models is made)."""
    from trainer.export import export_models

    export_models(index, out)


# ---------------------------------------------------------------- inference


@app.command()
@friendly
def classify(
    paths: List[Path] = typer.Argument(..., help="Audio files or folders (any format soundfile reads)."),
    json_out: bool = typer.Option(False, "--json", help="JSON Lines on stdout, one object per file."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Labels to show (0 = all 200)."),
    models: Optional[List[Path]] = typer.Option(None, "--models", "-m", help="Models index or checkpoint(s); repeatable."),
    timeline: bool = typer.Option(False, "--timeline", help="Per-window top labels for long files."),
) -> None:
    """Rank labels and families for each file with the ensemble."""
    from guesser.classify import run_classify

    raise typer.Exit(run_classify(paths, json_out=json_out, top_k=top_k, models=models, timeline=timeline))


@app.command()
@friendly
def models(
    models: Optional[List[Path]] = typer.Option(None, "--models", "-m", help="Models index or checkpoint(s)."),
) -> None:
    """Show the models the ensemble would use, with their scores and the labels they know."""
    from guesser.classify import run_models

    run_models(models)


@app.command()
@friendly
def play(
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Run the guessing flow on a file instead of the microphone."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Input device (index or name)."),
    seconds: float = typer.Option(6.0, "--seconds", "-s", help="Recording length."),
    models: Optional[List[Path]] = typer.Option(None, "--models", "-m", help="Models index or checkpoint(s)."),
) -> None:
    """The sound guesser: record, see the spectrogram, get ranked guesses; includes the game."""
    from guesser.tui.app import run_app

    run_app(file=file, device=device, seconds=seconds, models=models)


@app.command()
@friendly
def listen(
    once: bool = typer.Option(False, "--once", help="Record one window, print, exit."),
    json_out: bool = typer.Option(False, "--json", help="JSON Lines output."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Input device (index or name)."),
    seconds: float = typer.Option(6.0, "--seconds", "-s"),
    top_k: int = typer.Option(5, "--top-k", "-k"),
    models: Optional[List[Path]] = typer.Option(None, "--models", "-m"),
) -> None:
    """Headless microphone guesser (shares the app's recorder): classify what the microphone hears."""
    from guesser.listen import run_listen

    raise typer.Exit(run_listen(once=once, json_out=json_out, device=device, seconds=seconds, top_k=top_k, models=models))


def main() -> None:
    """Console entry point (errors are handled per command by :func:`friendly`)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
