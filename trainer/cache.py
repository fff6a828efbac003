"""The consolidated, memory-mapped log-mel cache: its layout, and the reader training uses.

The student project kept one tensor file per clip (51k files, ~8 GB) that were
slow to copy and to open. Here every split is one float16 array of all its
frames plus an index of offsets, lengths and targets::

    CACHE/<feature key>/
      features.json               the FeatureConfig the frames were made with (no stats)
      train.frames.npy            float16, 1-D: clip after clip, each an [M, T] block (np.load(mmap_mode="r"))
      train.index.npz             fnames, offsets, lengths (in frames), targets [N, 200] uint8, vocabulary
      val.* eval.*
      stats.json                  mean/std of the train split (global and per mel bin)
      report.json                 clips that were skipped, and why
      manifest.json               written last: the cache is complete
      plan.json, parts/           only while building: what is being built, finished chunks
      .<split>.merge.npz, .<split>.frames.npy.partial   only while merging (parts are consumed as they are appended)

The builder (workers, plan, locks, merge) is :mod:`trainer.cache_build`.

Each clip is stored mel-major (``[M, T]``, the shape a model sees), so a
training crop is M contiguous row slices and one float16 -> float32
conversion, with no transpose: reading a batch costs a third of what it costs
from time-major frames. Caches of layout 1 (time-major ``[sum T, M]``) still open.
"""

from __future__ import annotations

import json
import mmap
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from guesser.errors import DataError
from guesser.features import PAD_DB, FeatureConfig, ShortPolicy, centre_start, noise_fill

RELEASE_BYTES = 64 << 20  # drop the mapped pages from this process after blocks of this many bytes were read (CachedSplit)
CACHE_VERSION = 2  # 2: clips stored as mel-major [M, T] blocks; 1: time-major [sum T, M] (still readable)
READABLE_VERSIONS = (1, 2)


def cache_dir(out: str | Path, cfg: FeatureConfig) -> Path:
    return Path(out) / cfg.key


def is_complete(d: Path) -> bool:
    return (d / "manifest.json").is_file()


@dataclass
class CachedSplit:
    """One split of a finished cache: frames are memory-mapped, so opening it costs nothing."""

    name: str
    frames: np.ndarray  # float16 memmap: 1-D [M, T] blocks (layout 2) or [sum T, M] (layout 1)
    fnames: np.ndarray
    offsets: np.ndarray  # in frames
    lengths: np.ndarray  # in frames
    targets: np.ndarray  # uint8 [N, 200]
    vocabulary: tuple[str, ...]
    n_mels: int | None = None  # needed for layout 2; layout 1 carries it in its shape
    _plain: np.ndarray = field(init=False, repr=False, compare=False)
    _read: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.frames.ndim == 2:
            self.n_mels = int(self.frames.shape[1])
        elif self.n_mels is None:
            raise ValueError("n_mels is needed to read 1-D (layout 2) frames")
        self._plain = self.frames.view(np.ndarray)  # slicing a memmap makes costlier memmap objects

    def _touched(self, nbytes: int) -> None:
        """Count the bytes of the blocks read through the map; every RELEASE_BYTES, unmap the pages from this process.

        Every page of a memory map that a process has read counts towards its
        resident set until the kernel needs the memory back: one epoch over
        FSD50K's train split would show 6 GB of RSS (and evaluation the eval
        split's 1.7 GB) although nothing is allocated. ``MADV_DONTNEED`` on a
        read-only file mapping only drops this process's page-table entries;
        the data stays in the page cache, so the next read of it is a minor
        fault, not a disk read. The kernel maps more than was read (read-around:
        ~0.6 MB per FSD50K clip whose block is 0.17 MB), so RSS stays at a few
        times RELEASE_BYTES, at any data size.
        """
        self._read += nbytes
        if self._read < RELEASE_BYTES:
            return
        self._read = 0
        mm = getattr(self.frames, "_mmap", None)  # np.memmap's mapping; None for an in-memory array
        if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            try:
                mm.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):  # a closed map, or a platform that refuses: only memory accounting
                pass

    def __len__(self) -> int:
        return len(self.fnames)

    def block(self, i: int) -> np.ndarray:
        """Clip i's float16 [M, T] frames: a view into the memory map, nothing read yet."""
        o, n = int(self.offsets[i]), int(self.lengths[i])
        if self._plain.ndim == 2:
            return self._plain[o : o + n].T
        m = self.n_mels
        return self._plain[o * m : (o + n) * m].reshape(m, n)

    def blocks(self):
        """Every clip's [M, T] float16 view, in order."""
        return (self.block(i) for i in range(len(self)))

    def clip(self, i: int) -> np.ndarray:
        """Full log-mel of clip i as float32 [M, T]."""
        blk = self.block(i)
        self._touched(blk.nbytes)
        return np.ascontiguousarray(blk, dtype=np.float32)

    def crops(
        self, indices, n_frames: int, rng: np.random.Generator | None = None, policy: ShortPolicy = "tile"
    ) -> np.ndarray:
        """float32 [B, M, n_frames] windows: random crops with ``rng``, else what the app computes.

        Without ``rng`` every window equals :func:`guesser.features.fit_frames`
        of the clip (centre crop; short clips tiled or padded by ``policy``), so
        the model is trained on what the app shows it. With ``rng`` a long clip
        gets a random crop, a short one a random tile phase (``tile``) or a
        random place in the silent window (``pad``): the short-clip analogues.
        All starts are drawn in one call, so a batch costs B row-slice copies
        and one float16 -> float32 conversion.
        """
        import torch

        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        lengths = self.lengths[idx].astype(np.int64)
        long = lengths >= n_frames
        if rng is None:
            starts = centre_start(lengths, n_frames)  # fit_frames' crop: 0 for a short clip
        else:
            short_range = n_frames - lengths + 1 if policy in ("pad", "noise") else lengths
            starts = rng.integers(0, np.where(long, lengths - n_frames + 1, short_range))
        out = np.empty((len(idx), self.n_mels, n_frames), np.float16)
        for b, (i, n, s) in enumerate(zip(idx.tolist(), lengths.tolist(), starts.tolist())):
            blk = self.block(i)
            if n >= n_frames:
                out[b] = blk[:, s : s + n_frames]
            elif policy == "pad":
                out[b] = PAD_DB  # exact in float16
                out[b, :, s : s + n] = blk
            elif policy == "noise":  # the clip at a random place in its own noise floor (float16-exact)
                out[b] = noise_fill(torch.from_numpy(np.asarray(blk, np.float32)), n_frames).numpy()
                out[b, :, s : s + n] = blk
            else:  # the clip repeated from phase s: blk[s:], then whole copies, then a head
                k = min(n - s, n_frames)
                out[b, :, :k] = blk[:, s : s + k]
                while k < n_frames:
                    step = min(n, n_frames - k)
                    out[b, :, k : k + step] = blk[:, :step]
                    k += step
        self._touched(int(lengths.sum()) * self.n_mels * 2)  # whole blocks: a crop of every row touches every page
        # torch's float16 -> float32 copy is vectorised (numpy's astype is ~15x slower); copy_ into a fresh
        # tensor is ~2x faster than .float()
        result = torch.empty(out.shape, dtype=torch.float32)
        result.copy_(torch.from_numpy(out))
        return result.numpy()


@dataclass
class FeatureCache:
    directory: Path
    features: FeatureConfig
    stats: dict
    report: dict
    version: int = CACHE_VERSION

    @classmethod
    def open(cls, directory: str | Path) -> "FeatureCache":
        d = Path(directory)
        if not is_complete(d):
            hint = " (its build did not finish: rerun guesser preprocess to resume)" if (d / "features.json").exists() else ""
            raise DataError(f"{d}: not a finished guesser cache{hint}")
        try:
            version = int(json.loads((d / "manifest.json").read_text()).get("version", 0))
        except (OSError, ValueError, AttributeError, TypeError, RecursionError):
            version = 0
        if version not in READABLE_VERSIONS:
            raise DataError(f"{d}: cache layout {version} is not one this guesser reads "
                            f"({', '.join(map(str, READABLE_VERSIONS))}); delete it and rerun guesser preprocess")
        def read(name: str, kind: type) -> object:
            try:
                value = json.loads((d / name).read_text())
            except (OSError, ValueError, RecursionError) as e:
                raise _damaged(d, f"{name} unreadable ({type(e).__name__})") from None
            if not isinstance(value, kind):
                raise _damaged(d, f"{name} is not a JSON {kind.__name__}")
            return value

        try:
            cfg = FeatureConfig.from_dict(read("features.json", dict))
        except ValueError as e:
            raise _damaged(d, f"features.json: {e}") from None
        stats = read("stats.json", dict) if (d / "stats.json").exists() else {}
        report = read("report.json", dict)
        return cls(d, cfg, stats, report, version)

    def split(self, name: str) -> CachedSplit:
        """One split, checked against itself: a truncated or foreign file is a one-line DataError, never a crash later."""
        idx_path = self.directory / f"{name}.index.npz"
        if not idx_path.exists():
            raise DataError(f"{self.directory}: split {name!r} was not cached")
        try:
            with np.load(idx_path, allow_pickle=False) as idx:
                index = {k: idx[k] for k in ("fnames", "offsets", "lengths", "targets", "vocabulary")}
        except Exception as e:  # noqa: BLE001 - a zip/npy reader meets garbage in many ways
            raise _damaged(self.directory, f"{idx_path.name} unreadable ({type(e).__name__})") from None
        try:
            frames = np.load(self.directory / f"{name}.frames.npy", mmap_mode="r", allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - truncated: "mmap length is greater than file size"
            raise _damaged(self.directory, f"{name}.frames.npy unreadable ({type(e).__name__}: "
                                           f"{str(e).splitlines()[0] if str(e) else ''})") from None
        _check_index(self.directory, name, index, frames, self.features.n_mels)
        return CachedSplit(
            name,
            frames,
            index["fnames"],
            index["offsets"],
            index["lengths"],
            index["targets"],
            tuple(str(v) for v in index["vocabulary"]),
            n_mels=self.features.n_mels,
        )

    def feature_config(self, norm: str = "global") -> FeatureConfig:
        """The cache's FeatureConfig with the train statistics for ``norm`` filled in."""
        cfg = replace(self.features, norm=norm)
        if norm == "none":
            return cfg
        if not self.stats:
            raise DataError(f"{self.directory}: no train statistics (was the train split cached?)")
        try:
            s = self.stats[norm]
            return cfg.with_stats(s["mean"], s["std"]).validate()
        except (KeyError, TypeError, ValueError) as e:
            raise _damaged(self.directory, f"stats.json has no valid {norm!r} statistics ({e})") from None


def _damaged(d: Path, what: str) -> DataError:
    return DataError(f"{d}: a damaged cache ({what}); delete it and rerun guesser preprocess")


def _check_index(d: Path, name: str, index: dict, frames: np.ndarray, n_mels: int) -> None:
    """Shapes, dtypes and ranges of one split's index against its frames (cheap: no frame is read)."""
    fnames, offsets, lengths, targets, vocab = (index[k] for k in ("fnames", "offsets", "lengths", "targets", "vocabulary"))
    n = len(fnames) if fnames.ndim == 1 else -1
    problem = None
    if frames.dtype != np.float16 or frames.ndim not in (1, 2) or (frames.ndim == 2 and frames.shape[1] != n_mels):
        problem = f"{name}.frames.npy holds {frames.dtype} {frames.shape}, not float16 frames of {n_mels} mels"
    elif n < 0 or offsets.shape != (n,) or lengths.shape != (n,) or vocab.ndim != 1 or targets.shape != (n, len(vocab)):
        problem = f"{name}.index.npz arrays disagree in length"
    elif not (np.issubdtype(offsets.dtype, np.integer) and np.issubdtype(lengths.dtype, np.integer)):
        problem = f"{name}.index.npz offsets/lengths are not integers"
    elif n and (lengths.min() < 1 or offsets.min() < 0):
        problem = f"{name}.index.npz has negative offsets or empty clips"
    else:
        total = frames.shape[0] if frames.ndim == 2 else frames.shape[0] // max(n_mels, 1)
        if n and int((offsets.astype(np.int64) + lengths.astype(np.int64)).max()) > total:
            problem = f"{name}.frames.npy is shorter than its index says (truncated?)"
    if problem:
        raise _damaged(d, problem)


def find_cache(out: str | Path, cfg: FeatureConfig) -> FeatureCache:
    return FeatureCache.open(cache_dir(out, cfg))
