"""Recipes: one small TOML file per member variant, read into checked dataclasses.

A recipe says which architecture learns which task on which front-end, and
how (loss, optimiser, schedule, sampling, augmentation). Unknown keys and
out-of-range values are :class:`RecipeError` naming the file and the key, so a
typo never silently trains the default. ``trainer/recipes/*.toml`` are the
shipped ones; ``guesser train one PATH`` takes any file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from guesser.errors import RecipeError
from guesser.features import COMPACT, PANNS, SEED_CNN, FeatureConfig
from guesser.models import REGISTRY, TASKS
from trainer.augment import AugmentConfig

PRESETS = {"seed": SEED_CNN, "compact": COMPACT, "panns": PANNS}


@dataclass(frozen=True)
class FeatureSettings:
    preset: str = "seed"
    clip_seconds: float | None = None  # None: the preset's
    norm: str | None = None  # None: the preset's
    short: str | None = None  # tile | pad | noise (None: the preset's): how a clip shorter than the window is filled

    def config(self) -> FeatureConfig:
        base = PRESETS[self.preset]
        return replace(
            base,
            clip_seconds=self.clip_seconds if self.clip_seconds is not None else base.clip_seconds,
            norm=self.norm if self.norm is not None else base.norm,
            short=self.short if self.short is not None else base.short,
        )


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw
    scheduler: str = "plateau"  # plateau | cosine | none
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    warmup_epochs: int = 0
    min_lr: float = 1e-5
    early_stop: int = 8  # epochs without a better val score; 0: never
    loss: str = "bce"  # bce | focal | ce
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    prior_bias: bool = False
    pos_weight: str = "none"  # none | sqrt | inverse
    pos_weight_cap: float = 10.0
    oversample: bool = False
    oversample_power: float = 0.5
    random_crop: bool = True
    ema_decay: float = 0.0  # >0: validate and keep an exponential moving average of the weights (e.g. 0.999)
    ema_warmup: bool = False  # ramp the EMA decay as (1+n)/(10+n) up to ema_decay: short runs are not held at init
    crop_seconds: float = 0.0  # train on shorter crops than the inference window (0: the window); global-pooling models only
    families: str = "6"  # for the families task: "6" or "5"
    seed: int = 0
    pretrained: str = ""  # path to an official PANNs Cnn6 checkpoint (cnn6 only)
    init: str = ""  # a guesser checkpoint of the same architecture and classes to fine-tune from (or widen: trainer/widen.py)
    precision: str = "auto"  # auto | fp32 | bf16
    val_every: int = 1
    distill: str = ""  # teacher: "shipped" or a models index/folder/checkpoint; "" = hard labels only (trainer/distill.py)
    distill_weight: float = 0.5  # loss = (1 - w) * hard-label loss + w * distillation loss
    label_smoothing: float = 0.0  # labels task: a train clip's positive targets become 1 - ε (trainer/batch.py)
    smooth_groups: str = ""  # "FILE.csv:COLUMN=A,B": smooth only the train clips of those groups; "" = every clip


@dataclass(frozen=True)
class Recipe:
    name: str
    member: str
    arch: str
    task: str
    description: str = ""
    features: FeatureSettings = field(default_factory=FeatureSettings)
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def with_train(self, **changes) -> "Recipe":
        return replace(self, train=replace(self.train, **{k: v for k, v in changes.items() if v is not None}))

    @classmethod
    def from_dict(cls, d: dict, source: str = "<recipe>") -> "Recipe":
        d = dict(d)
        sections = {"features": FeatureSettings, "train": TrainConfig, "augment": AugmentConfig}
        kwargs: dict[str, Any] = {}
        for key, typ in sections.items():
            kwargs[key] = _build(typ, d.pop(key, {}) or {}, f"{source} [{key}]")
        kwargs["model"] = dict(d.pop("model", {}) or {})
        top = {f.name for f in fields(cls)} - set(sections) - {"model"}
        unknown = set(d) - top
        if unknown:
            raise RecipeError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
        for req in ("name", "member", "arch", "task"):
            if req not in d:
                raise RecipeError(f"{source}: missing required key {req!r}")
        recipe = cls(**d, **kwargs)
        recipe.validate(source)
        return recipe

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        p = Path(path)
        if not p.is_file():
            shipped = _shipped_path(str(path))
            if shipped is None:
                raise RecipeError(f"{path}: no such recipe file or shipped recipe ({', '.join(shipped_names())})")
            p = shipped
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise RecipeError(f"{p}: not valid TOML ({e})") from None
        return cls.from_dict(data, str(p))

    def validate(self, source: str) -> None:
        t = self.train
        checks = [
            (self.arch in REGISTRY, f"arch must be one of {', '.join(REGISTRY)}"),
            (self.task in TASKS, f"task must be one of {', '.join(TASKS)}"),
            (self.features.preset in PRESETS, f"features.preset must be one of {', '.join(PRESETS)}"),
            (self.features.norm in (None, "global", "per_mel", "none"), "features.norm must be global, per_mel or none"),
            (self.features.short in (None, "tile", "pad", "noise"), "features.short must be tile, pad or noise"),
            (t.epochs >= 1, "train.epochs must be >= 1"),
            (t.batch_size >= 1, "train.batch_size must be >= 1"),
            (0 < t.lr < 1, "train.lr must be in (0, 1)"),
            (t.optimizer in ("adam", "adamw"), "train.optimizer must be adam or adamw"),
            (t.scheduler in ("plateau", "cosine", "none"), "train.scheduler must be plateau, cosine or none"),
            (t.loss in ("bce", "focal", "ce"), "train.loss must be bce, focal or ce"),
            ((t.loss == "ce") == (self.task == "families"), "families use loss 'ce'; labels use 'bce' or 'focal'"),
            (t.pos_weight in ("none", "sqrt", "inverse"), "train.pos_weight must be none, sqrt or inverse"),
            (t.families in ("5", "6"), "train.families must be '5' or '6'"),
            (0 <= t.ema_decay < 1, "train.ema_decay must be in [0, 1)"),
            (t.crop_seconds == 0 or (self.arch == "cnn6" and t.crop_seconds > 0),
             "train.crop_seconds is only for cnn6 (the seed CNNs' 4×4 pooling must see the inference window)"),
            (t.precision in ("auto", "fp32", "bf16"), "train.precision must be auto, fp32 or bf16"),
            (0 <= t.distill_weight <= 1, "train.distill_weight must be in [0, 1]"),
            (0 <= t.label_smoothing < 1, "train.label_smoothing must be in [0, 1)"),
            (t.label_smoothing == 0 or self.task == "labels", "train.label_smoothing is for the labels task"),
            (not t.smooth_groups or (t.label_smoothing > 0 and "=" in t.smooth_groups),
             "train.smooth_groups needs label_smoothing > 0 and the form FILE.csv:COLUMN=GROUP[,GROUP]"),
            (not t.pretrained or self.arch == "cnn6", "train.pretrained is only for cnn6 (PANNs weights)"),
            (all(0 <= v <= 1 for v in self.augment.probabilities.values()), "augment probabilities must be in [0, 1]"),
            (self.augment.background_snr_min <= self.augment.background_snr_max, "augment.background_snr_min must be <= background_snr_max"),
            (0 < self.augment.reverb_t60_min <= self.augment.reverb_t60_max, "augment.reverb_t60_min must be > 0 and <= reverb_t60_max"),
            (self.augment.reverb_drr_min <= self.augment.reverb_drr_max, "augment.reverb_drr_min must be <= reverb_drr_max"),
            (self.augment.shift_frames >= 0 and self.augment.eq_db >= 0, "augment.shift_frames and eq_db must be >= 0"),
            (0 <= self.augment.highpass_max_frac <= 1, "augment.highpass_max_frac must be in [0, 1]"),
            (self.augment.mixup_alpha >= 0, "augment.mixup_alpha must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise RecipeError(f"{source}: {msg}")
        self._check_model(source)

    def _check_model(self, source: str) -> None:
        """[model] knobs must be ones the architecture takes, and cnn6's bn0 must match the mel bins."""
        from guesser.models import build_model

        try:
            build_model(self.arch, 2, **self.model)
        except (TypeError, ValueError) as e:
            raise RecipeError(f"{source} [model]: not accepted by {self.arch} ({e})") from None
        if self.arch == "cnn6" and self.model.get("n_mels", 64) != self.feature_config().n_mels:
            raise RecipeError(f"{source} [model]: n_mels must equal the front-end's {self.feature_config().n_mels} "
                              "mel bins (use features.preset = 'panns' for PANNs weights)")

    def feature_config(self) -> FeatureConfig:
        return self.features.config()


def _build(typ, values: dict, source: str):
    if not isinstance(values, dict):
        raise RecipeError(f"{source}: must be a table")
    names = {f.name: f for f in fields(typ)}
    unknown = set(values) - set(names)
    if unknown:
        raise RecipeError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
    for k, v in values.items():
        default = names[k].default
        if default is not dataclasses.MISSING and default is not None and not _same_kind(default, v):
            raise RecipeError(f"{source}: {k} must be {type(default).__name__}, got {v!r}")
    return typ(**values)


def _same_kind(default, v) -> bool:
    if isinstance(default, bool):
        return isinstance(v, bool)
    if isinstance(default, float):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if isinstance(default, int):
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, type(default))


def _recipes_dir() -> Path:
    return Path(__file__).resolve().parent / "recipes"


def shipped_names() -> list[str]:
    return sorted(p.stem for p in _recipes_dir().glob("*.toml"))


def _shipped_path(name: str) -> Path | None:
    p = _recipes_dir() / f"{Path(name).stem}.toml"
    return p if p.is_file() else None


def shipped_recipes() -> list[Recipe]:
    return [Recipe.load(_recipes_dir() / f"{n}.toml") for n in shipped_names()]
