"""The background sample: pooled embeddings of a few thousand corpus clips, shipped beside the models.

A personal label's classifier learns "not this sound" from these (:mod:`.probe`):
each model's :class:`~.probe.View` of each clip (pooled embedding and probabilities).
They must come from the very models the app runs, so the file names each
model with the SHA-256 of its checkpoint, and a sample is used only with the
models it was made with. ``guesser export --background CACHE`` writes it
(:mod:`trainer.background_sample`); the labels of each clip travel along, so
the few-shot benchmark can take a class's own clips out of the background.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from guesser.errors import GuesserError
from guesser.personal.probe import View
from guesser.personal.store import ModelStamp, read_stamped, stamps_of

KIND = "background-sample"
BACKGROUND_NAME = "background.safetensors"
MAX_BACKGROUND_VALUES = 200_000_000
"""Far more than a sample holds (2,500 clips: ~2.3 million values): a bigger header is damage, refused unread."""


class NoBackgroundError(GuesserError):
    """These models have no background sample: personal labels cannot be taught with them."""


@dataclass
class BackgroundSample:
    models: tuple[ModelStamp, ...]
    views: dict[str, View]  # model name -> its view of the clips (float32 here, fp16 on disk)
    fnames: np.ndarray  # [N] corpus clip ids (str)
    targets: np.ndarray  # [N, L] uint8 multi-hot over ``vocabulary``
    vocabulary: tuple[str, ...]
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.fnames)

    def header(self) -> dict:
        return {"kind": KIND, "models": [s.to_json() for s in self.models],
                "fnames": [str(f) for f in self.fnames], "vocabulary": list(self.vocabulary)}

    def tensors(self) -> dict:
        import torch

        out = {}
        for k, v in self.views.items():
            out.update(v.tensors(k, np.float16))  # half the bytes: 4.5 MB for 2,500 clips
        out["targets"] = torch.from_numpy(np.asarray(self.targets, np.uint8))
        return out

    def write(self, path: str | Path) -> Path:
        from guesser.checkpoint import save_checkpoint

        save_checkpoint(path, self.tensors(), self.header())
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> "BackgroundSample":
        from guesser.errors import CheckpointError

        tensors, meta, models, views = read_stamped(Path(path), KIND, "background sample", MAX_BACKGROUND_VALUES)
        try:
            fnames = np.asarray([str(f) for f in meta["fnames"]])
            targets = tensors["targets"].numpy()
            vocab = tuple(str(v) for v in meta["vocabulary"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable background sample ({e})") from None
        if (any(len(v.pooled) != len(fnames) or len(v) != len(fnames) for v in views.values())
                or targets.shape != (len(fnames), len(vocab))):
            raise CheckpointError(f"{path}: not a readable background sample (inconsistent shapes)")
        return cls(models, views, fnames, targets, vocab, Path(path))

    def without(self, labels: Sequence[str]) -> "BackgroundSample":
        """The sample minus every clip carrying one of ``labels`` (the benchmark's harder protocol)."""
        cols = [self.vocabulary.index(n) for n in labels if n in self.vocabulary]
        keep = ~self.targets[:, cols].any(axis=1) if cols else np.ones(len(self), bool)
        return BackgroundSample(self.models, {k: v.rows(keep) for k, v in self.views.items()}, self.fnames[keep],
                                self.targets[keep], self.vocabulary, self.path)


def find_background(models: Sequence[Any]) -> BackgroundSample:
    """The background sample made with exactly these loaded models (looked for beside their checkpoints)."""
    want = stamps_of(models)
    seen: list[Path] = []
    for folder in dict.fromkeys(Path(m.path).resolve().parent for m in models):
        path = folder / BACKGROUND_NAME
        if not path.is_file():
            continue
        seen.append(path)
        sample = BackgroundSample.read(path)
        if set(want) <= set(sample.models):
            return sample
    where = f" ({', '.join(map(str, seen))} was made with other models)" if seen else ""
    raise NoBackgroundError(
        "these models have no background sample, so personal labels cannot be taught with them"
        f"{where}: use the shipped models, or make one with 'guesser export --background CACHE'")
