"""The ``guesser`` command line: parse, then call one function elsewhere.

Imports are lazy (inside each command) so ``guesser --help`` and
``guesser classify`` start fast and never import the trainer. Every
:class:`~guesser.errors.GuesserError` becomes one red line on stderr and a
non-zero exit; Ctrl-C exits 130 without a traceback; standard output that
cannot be written (``> /dev/full``, a closed pipe) is one line and exit 1; any
other exception is one line naming a log file with its traceback, exit 70
(:mod:`guesser.crashlog`).

Path arguments are declared ``readable=False``: click's own check would turn
one unreadable file among many into a usage error that stops the whole
command; guesser checks each file itself when it opens it (one line for that
file, the others still processed).
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
    """Turn any exception into one red line + exit code, also under typer's CliRunner.

    Every command first checks that torch and torchaudio load (:mod:`guesser.stack`):
    a mismatched pair is one line naming the versions and the repair command.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from guesser.errors import GuesserError, OutputError
        from guesser.stack import check_stack

        try:
            _sane_width()
            check_stack()
            result = fn(*args, **kwargs)
            _flush_stdout()
            return result
        except (typer.Exit, typer.Abort, _ClickException) as e:  # typer's own exits and usage errors
            try:
                _flush_stdout()
            except OutputError as out:  # a success whose output was lost is not a success
                if getattr(e, "exit_code", 1) == 0:
                    _error(str(out))
                    raise typer.Exit(out.exit_code) from None
            raise
        except GuesserError as e:
            if isinstance(e, OutputError):
                _silence_stdout()
            _error(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            _error("interrupted", colour=typer.colors.YELLOW, prefix="")
            raise typer.Exit(130) from None
        except MemoryError as e:
            from guesser.crashlog import write_log

            log = write_log(e)
            _error("out of memory" + (f" (details in {log})" if log else ""))
            raise typer.Exit(1) from None
        except OSError as e:
            import errno

            if e.errno in (errno.EPIPE, errno.ENOSPC, errno.EDQUOT, errno.EIO) and not e.filename:
                _silence_stdout()  # stdout (or the disk behind it) is gone: say so once, on stderr
                _error(f"cannot write the output ({e.strerror or e})")
                raise typer.Exit(1) from None
            _crash(e)
        except Exception as e:  # noqa: BLE001 - the last line of defence
            _crash(e)

    return wrapper


try:  # typer >= 0.22 vendors click
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - an older typer on plain click
    from click.exceptions import ClickException as _ClickException


MIN_COLUMNS = 40
"""The narrowest output guesser lays out (``COLUMNS=0`` or ``--width -50`` would print nothing at all)."""


def _sane_width() -> None:
    """A ``COLUMNS`` below :data:`MIN_COLUMNS` (rich, typer and plotext read it) is raised to it."""
    import os

    cols = os.environ.get("COLUMNS", "").strip()
    if cols.lstrip("-").isdigit() and int(cols) < MIN_COLUMNS:
        os.environ["COLUMNS"] = str(MIN_COLUMNS)


def _error(message: str, colour=typer.colors.RED, prefix: str = "error: ") -> None:
    from guesser.fileio import printable

    try:
        typer.secho(f"{prefix}{printable(message)}", fg=colour, err=True)
    except OSError:  # stderr gone too: the exit code still tells
        pass


def _crash(e: BaseException):
    from guesser.crashlog import report
    from guesser.errors import InternalError

    _error(report(e))
    raise typer.Exit(InternalError.exit_code) from None


def _flush_stdout() -> None:
    """Flush stdout now, so a full disk behind it is reported here and not as noise at interpreter exit."""
    try:
        sys.stdout.flush()
    except OSError as e:
        _silence_stdout()
        from guesser.errors import OutputError

        raise OutputError(f"cannot write the output ({e.strerror or e})") from None
    except ValueError:  # closed (CliRunner after its run)
        pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null: Python's final flush would otherwise print a second, unhandled error."""
    import os

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (CliRunner): nothing to redirect
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def _parse_shard(shard: str | None) -> tuple[int, int]:
    """``--shard i/n``, else torchrun's RANK/WORLD_SIZE (both or neither), else (0, 1); checked either way."""
    import os

    from guesser.errors import GuesserError

    if shard is None:
        rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
        if rank is None and world is None:
            return 0, 1
        where = f"RANK={rank!r} WORLD_SIZE={world!r} (from the environment, as torchrun sets them)"
        if rank is None or world is None:
            raise GuesserError(f"{where}: set both or neither, or pass --shard i/n")
        try:
            i, n = int(rank.strip()), int(world.strip())
        except ValueError:
            raise GuesserError(f"{where}: both must be whole numbers; or pass --shard i/n") from None
        if not (n >= 1 and 0 <= i < n):
            raise GuesserError(f"{where}: need 0 <= RANK < WORLD_SIZE")
        return i, n
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
    data_root: Path = typer.Argument(..., readable=False, help="FSD50K root (FSD50K.ground_truth/, FSD50K.dev_audio/, FSD50K.eval_audio/)."),
    out: Path = typer.Option(Path("cache"), "--out", "-o", readable=False, help="Cache folder (one subfolder per feature setting)."),
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
    cache: Path = typer.Option(Path("cache"), "--cache", readable=False, help="Cache folder made by 'guesser preprocess'."),
    data: Optional[Path] = typer.Option(None, "--data", readable=False, help="FSD50K root: build a missing cache first."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", readable=False, help="Run folder (default runs/<recipe>)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the recipe's epochs."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 …"),
    pretrained: Optional[Path] = typer.Option(None, "--pretrained", readable=False, help="Official PANNs Cnn6 checkpoint (cnn6 recipes)."),
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
    cache: Path = typer.Option(Path("cache"), "--cache", readable=False, help="Cache folder (built here if --data is given and it is missing)."),
    data: Optional[Path] = typer.Option(None, "--data", readable=False, help="FSD50K root, to build the caches the recipes need."),
    out: Path = typer.Option(Path("runs"), "--out", "-o", readable=False, help="Folder for all runs and the models index."),
    recipes: Optional[str] = typer.Option(None, "--recipes", help="Comma-separated subset of recipes (default: all shipped)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override every recipe's epochs."),
    device: str = typer.Option("auto", "--device"),
    pretrained: Optional[Path] = typer.Option(None, "--pretrained", readable=False, help="Official PANNs Cnn6 checkpoint for cnn6 recipes."),
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
    cache: Path = typer.Option(Path("cache"), "--cache", readable=False),
    out: Path = typer.Option(Path("runs/tune"), "--out", "-o", readable=False, help="Study folder: SQLite storage, trial runs, best recipe."),
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
    runs: List[Path] = typer.Argument(None, readable=False, help="Run folders or checkpoints (default: the members' best in runs/index.json)."),
    cache: Path = typer.Option(Path("cache"), "--cache", readable=False),
    split: str = typer.Option("eval", "--split", help="eval or val."),
    index: Path = typer.Option(Path("runs/index.json"), "--index", readable=False, help="Models index for the default."),
    ensemble: bool = typer.Option(True, "--ensemble/--no-ensemble", help="Also score the ensemble of the evaluated models."),
    groups: Optional[str] = typer.Option(None, "--groups", help="Score per group too: FILE.csv:COLUMN mapping fname to a group (e.g. sources.csv:origin)."),
    synthetic: Optional[str] = typer.Option(None, "--synthetic", help="Groups that are not real recordings (comma-separated; default gm,speech,mix)."),
    write_index: bool = typer.Option(False, "--write-index", help="Record the family weights chosen on val in --index (the app reads them)."),
) -> None:
    """Score runs on the eval split; results JSON saved next to each checkpoint (never inside the installed package)."""
    from trainer.evaluate import run_evaluate

    syn = tuple(s.strip() for s in synthetic.split(",") if s.strip()) if synthetic is not None else None
    run_evaluate(runs or [], cache=cache, split=split, index=index, ensemble=ensemble, write_index=write_index,
                 groups=groups, synthetic=syn)


@app.command()
@friendly
def select(
    runs: List[Path] = typer.Argument(..., readable=False, help="Candidate run folders or checkpoints (any member, old or new)."),
    cache: Path = typer.Option(Path("cache"), "--cache", readable=False),
    out: Path = typer.Option(Path("runs/selected.json"), "--out", "-o", readable=False, help="The models index to write."),
    max_steps: int = typer.Option(12, "--max-steps", min=1, help="Most models (with repeats) in the ensemble."),
) -> None:
    """Pick the ensemble's members and weights on val by greedy forward selection (Caruana); write a models index."""
    from trainer.select import run_select

    run_select(runs, Path(cache), out, max_steps=max_steps)


@app.command()
@friendly
def report(
    runs: List[Path] = typer.Argument(None, readable=False, help="Run folders (default: every run under runs/)."),
    root: Path = typer.Option(Path("runs"), "--root", readable=False, help="Where to look for runs by default."),
    html: Optional[Path] = typer.Option(None, "--html", readable=False, help="Also export the report as HTML."),
    width: Optional[int] = typer.Option(None, "--width", min=MIN_COLUMNS, clamp=True,
                                        help=f"Terminal width for charts (at least {MIN_COLUMNS})."),
) -> None:
    """Leaderboard, best/worst labels, loss and ROC curves, confusion matrices, in the terminal."""
    from trainer.report import run_report

    run_report(runs or [], root=root, html=html, width=width)


@app.command()
@friendly
def export(
    index: Path = typer.Argument(Path("runs/index.json"), readable=False, help="Models index (or its folder) from 'guesser train multi'."),
    out: Path = typer.Option(Path("assets/models"), "--out", "-o", readable=False, help="Folder for the exported models and index."),
    background: Optional[Path] = typer.Option(None, "--background", readable=False, help="Cache folder: also embed a background sample of its train clips (what 'guesser teach' fits against)."),
) -> None:
    """Copy each member's best model as fp16 safetensors with a new index (how assets/models is made)."""
    from trainer.export import export_models

    exported = export_models(index, out)
    if background is not None:
        from trainer.background_sample import build_background

        typer.echo(f"background sample: {build_background(exported, background)}")


# ---------------------------------------------------------------- inference


@app.command()
@friendly
def classify(
    paths: List[Path] = typer.Argument(..., readable=False, help="Audio or video files, or folders (anything libsndfile or FFmpeg decodes)."),
    json_out: bool = typer.Option(False, "--json", help="JSON Lines on stdout, one object per file."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Labels to show (0 = all 200)."),
    models: Optional[List[Path]] = typer.Option(None, "--models", "-m", readable=False, help="Models index or checkpoint(s); repeatable."),
    timeline: bool = typer.Option(False, "--timeline", help="Per-window top labels for long files."),
    events: bool = typer.Option(False, "--events", help="The sounds heard, with start and end (label, family, start s, end s, peak score)."),
) -> None:
    """Rank labels and families for each file with the ensemble."""
    from guesser.classify import run_classify

    raise typer.Exit(run_classify(paths, json_out=json_out, top_k=top_k, models=models, timeline=timeline,
                                  events=events))


@app.command()
@friendly
def models(
    models: Optional[List[Path]] = typer.Option(None, "--models", "-m", readable=False, help="Models index or checkpoint(s)."),
) -> None:
    """Show the models the ensemble would use, with their scores and the labels they know."""
    from guesser.classify import run_models

    run_models(models)


@app.command()
@friendly
def play(
    file: Optional[Path] = typer.Option(None, "--file", "-f", readable=False, help="Run the guessing flow on a file instead of the microphone."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Input device (index or name)."),
    seconds: float = typer.Option(6.0, "--seconds", "-s", help="Recording length."),
    models: Optional[List[Path]] = typer.Option(None, "--models", "-m", readable=False, help="Models index or checkpoint(s)."),
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
    seconds: float = typer.Option(6.0, "--seconds", "-s", help="How much of the newest audio each answer looks at."),
    hop: Optional[float] = typer.Option(None, "--hop", help="Seconds between answers [default: 0.125]; a late one "
                                        "is skipped, never queued."),
    top_k: int = typer.Option(5, "--top-k", "-k"),
    models: Optional[List[Path]] = typer.Option(None, "--models", "-m", readable=False),
) -> None:
    """Headless microphone guesser (shares the app's recorder): classify what the microphone hears."""
    from guesser.listen import run_listen

    raise typer.Exit(run_listen(once=once, json_out=json_out, device=device, seconds=seconds, hop=hop, top_k=top_k,
                                models=models))


@app.command()
@friendly
def teach(
    name: Optional[str] = typer.Argument(None, help="Name of your sound (e.g. kettle, 'my doorbell')."),
    files: List[Path] = typer.Argument(None, readable=False, help="3–20 example recordings of it."),
    record: int = typer.Option(0, "--record", "-r", help="Record N takes from the microphone instead (3–20)."),
    seconds: float = typer.Option(3.0, "--seconds", "-s", help="Length of each recorded take."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Input device (index or name)."),
    list_labels: bool = typer.Option(False, "--list", help="List your personal labels."),
    forget: Optional[str] = typer.Option(None, "--forget", help="Delete the personal label NAME."),
    reembed: Optional[str] = typer.Option(None, "--reembed", help="Embed NAME's stored clips again with the installed models."),
    replace: bool = typer.Option(False, "--replace", help="Replace an existing personal label of that name."),
    models: Optional[List[Path]] = typer.Option(None, "--models", "-m", readable=False, help="Models index or checkpoint(s)."),
) -> None:
    """Teach guesser a sound of your own from a few examples; classify, listen and play then show it."""
    from guesser.personal.command import run_teach

    raise typer.Exit(run_teach(name, files or [], record=record, seconds=seconds, device=device,
                               list_labels=list_labels, forget=forget, reembed_name=reembed, replace=replace,
                               models=models))


def main() -> None:
    """Console entry point (errors are handled per command by :func:`friendly`).

    Before any command: a standard stream that was closed (``>&-``) is opened
    on the null device, so that no file guesser opens can take its number and
    receive its output, and every stream writes what its encoding cannot as
    escapes (``PYTHONIOENCODING=ascii``) instead of failing. The work is done;
    a closed stdout or stderr then makes the exit code 1.
    """
    closed = _reopen_closed_streams()
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        app()
    except SystemExit as e:
        if closed and e.code in (0, None):
            _error(f"standard {' and '.join(closed)} closed: what it printed was lost")
            sys.exit(1)
        raise


def _reopen_closed_streams() -> list[str]:
    """Open the null device in place of closed standard streams; the names of those that were closed."""
    import os

    closed = []
    for fd, name in ((0, "input"), (1, "output"), (2, "error")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        if fd:
            closed.append(name)
            setattr(sys, ("stdout", "stderr")[fd - 1], open(fd, "w", encoding="utf-8", closefd=False))  # noqa: SIM115
    return closed


if __name__ == "__main__":  # pragma: no cover
    main()
