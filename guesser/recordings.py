"""Saving a recording as ``<stem>.wav`` + ``<stem>.json`` (the ensemble's answer).

Why WAV + a JSON beside it: ``guesser classify`` reads the WAV back like any
file, and the JSON (:meth:`Prediction.to_json` plus how it was made, and the
game's target when there was one, which is a label a person vouched for) is
what a later labelling or fine-tuning step needs. 16-bit PCM keeps files small
and readable everywhere.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from guesser.errors import GuesserError


def _stem(when: datetime, label: str | None) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label or "recording").strip("-").lower() or "recording"
    return f"{when:%Y%m%d-%H%M%S}-{slug}"


def save_recording(folder: str | Path, samples: np.ndarray, samplerate: int, prediction: Any | None = None, *,
                   source: str = "microphone", target: str | None = None,
                   when: datetime | None = None) -> tuple[Path, Path]:
    """Write the WAV and its JSON into ``folder`` (created); returns both paths. Never overwrites."""
    import soundfile as sf

    from guesser.fileio import atomic_write, atomic_write_text, shown

    when = when or datetime.now()
    folder = Path(folder).expanduser()
    top = prediction.labels[0].name if prediction is not None and prediction.labels else None
    stem = _stem(when, target or top)
    x = np.clip(np.asarray(samples, np.float32).reshape(-1), -1.0, 1.0)

    def write_wav(p: Path) -> None:
        with open(p, "wb") as f:  # a file object: a folder whose name is not UTF-8 works too
            sf.write(f, x, int(samplerate), subtype="PCM_16", format="WAV")

    try:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(10_000):
            wav = folder / (f"{stem}.wav" if i == 0 else f"{stem}-{i}.wav")
            js = wav.with_suffix(".json")
            if js.exists():
                continue
            # exclusive create: two app instances saving in the same second never overwrite each other
            try:
                atomic_write(wav, write_wav, exclusive=True)
            except FileExistsError:
                continue
            doc: dict[str, Any] = (prediction.to_json(file=wav.name, top_k=0) if prediction is not None
                                   else {"file": wav.name})
            doc.update({"source": source, "sample_rate": int(samplerate),
                        "recorded_at": when.isoformat(timespec="seconds")})
            if target is not None:
                doc["target"] = target
            try:
                atomic_write_text(js, json.dumps(doc, indent=1), exclusive=True)
            except FileExistsError:  # someone else's JSON under this name: ours moves on, with its WAV
                wav.unlink(missing_ok=True)
                continue
            return wav, js
        raise GuesserError(f"cannot save into {shown(folder)}: no free file name for {stem}")
    except OSError as e:
        raise GuesserError(f"cannot save into {shown(folder)}: {e.strerror or e}") from None
