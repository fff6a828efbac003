"""Regenerate docs/screenshot.svg: ``guesser play --file assets/demo/dog_bark.ogg``, results screen, 100×32.

Uses the shipped models (assets/models/index.json, or --models) when they exist.
Before they do, ``--stand-in`` draws the same screens with a fixed, plausible
answer for the clip (not a model's output), so the picture can be made
anywhere: rerun without it once the models are trained.

    python docs/screenshot.py [--stand-in] [--models INDEX] [--clip assets/demo/dog_bark.ogg]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class StandIn:
    """A fixed answer for the demo dog (labels, families, two "models"), labelled as such on screen."""

    def known_labels(self) -> list[str]:
        from guesser.labels import default_label_space

        return list(default_label_space().vocabulary.names)

    def predict(self, waveform, sample_rate, *, timeline=False):
        import numpy as np

        from guesser.ensemble import ModelOutput, Prediction, Scored
        from guesser.labels import FAMILIES_6, default_label_space

        def rank(top, names):
            scores = dict(top)
            rest = [n for n in names if n not in scores]
            return [Scored(n, s) for n, s in top] + [Scored(n, 0.02 * (1 - i / len(rest))) for i, n in enumerate(rest)]

        names = default_label_space().vocabulary.names
        labels = rank([("Dog", 0.86), ("Bark", 0.81), ("Domestic_animals_and_pets", 0.74), ("Animal", 0.7),
                       ("Growling", 0.21), ("Speech", 0.08)], names)
        fams = rank([("Animal", 0.83), ("Human sounds", 0.1), ("Sounds of things", 0.05)], FAMILIES_6)
        models = [ModelOutput("stand-in labels", "cnn4", "labels", labels),
                  ModelOutput("stand-in families", "cnn6", "families", fams)]
        return Prediction(labels, fams, models, 1.0, np.asarray(waveform).shape[-1] / sample_rate)


async def shoot(clip: Path, models: list[Path] | None, stand_in: bool, out: Path) -> None:
    from guesser.recorder import NullPlayer
    from guesser.tui.app import GuesserApp, file_settings
    from guesser.tui.screens.results import ResultsScreen
    from guesser.tui.session import Settings

    backend, seconds = file_settings(clip, 6.0)
    backend.speed = 4.0
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(seconds=seconds, file=clip, backend=backend, models=models, countdown=0, player=NullPlayer(),
                        save_dir=tmp, highscores=tmp / "hs.json")
    if stand_in:
        settings.load_ensemble = lambda _: StandIn()
    app = GuesserApp(settings)
    async with app.run_test(size=(100, 32)) as pilot:
        deadline = time.monotonic() + 120
        while app.ensemble is None or not app.audio_ok:
            assert app.models_error is None, app.models_error
            assert time.monotonic() < deadline
            await pilot.pause(0.05)
        await pilot.press("space")
        while not isinstance(app.screen, ResultsScreen):
            assert time.monotonic() < deadline
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        out.write_text(app.export_screenshot(title="guesser play --file dog_bark.ogg"))
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=ROOT / "assets" / "demo" / "dog_bark.ogg")
    ap.add_argument("--models", type=Path, action="append")
    ap.add_argument("--stand-in", action="store_true", help="a fixed answer instead of models (before they exist)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.svg")
    a = ap.parse_args()
    asyncio.run(shoot(a.clip, a.models, a.stand_in, a.out))


if __name__ == "__main__":
    main()
