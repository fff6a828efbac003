"""Net2WiderNet (Chen et al. 2016): start a wider seed CNN from a trained narrow one, function preserved.

Why: a wider cnn4 (``[model] width = 2``) trained from scratch needs as many
epochs as the narrow one took over all its cycles before it is any use, and
the 8 epochs we gave it reached val mAP 0.54. Widened from the trained model
instead, it starts where that model stands and spends its fine-tuning on what
the extra channels can add.

How: every hidden channel ``j`` of the wide network copies channel
``j mod C`` of the narrow one (its filter, bias and BatchNorm statistics), and
the layer that reads those channels divides each copy's incoming weight by
the number of copies, so the sum it computes is unchanged. ReLU, max-pool and
the adaptive average pool act per channel, so the wide network computes the
same function. Copies would then receive identical gradients and stay copies
for ever; a little noise (``noise`` times the layer's weight spread) on the
copies' own filters breaks the tie, as the paper does.
"""

from __future__ import annotations

import torch

_CONV = "features.{}.0.{}"
_BN = "features.{}.1.{}"
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _n_blocks(state: dict[str, torch.Tensor]) -> int:
    n = 0
    while _CONV.format(n, "weight") in state:
        n += 1
    return n


def _source(n_old: int, n_new: int) -> torch.Tensor:
    """Which narrow channel each wide channel copies: ``j mod n_old`` (the first ``n_old`` are the originals)."""
    if n_new % n_old:
        raise ValueError(f"can only widen by a whole factor: {n_old} channels into {n_new}")
    return torch.arange(n_new) % n_old


def widen_state_dict(narrow: dict[str, torch.Tensor], wide: dict[str, torch.Tensor], *,
                     noise: float = 0.01, seed: int = 0) -> dict[str, torch.Tensor]:
    """The weights of ``wide`` (a state dict giving the target shapes) computed from ``narrow``'s.

    Both are :class:`guesser.models.seed_cnns.SeedCnn` state dicts with the
    same number of blocks and the same head after its first layer. With
    ``noise=0`` the wide network computes exactly what the narrow one does.
    """
    gen = torch.Generator().manual_seed(seed)
    blocks = _n_blocks(narrow)
    if blocks == 0 or blocks != _n_blocks(wide):
        raise ValueError(f"not the same kind of network: {blocks} and {_n_blocks(wide)} conv blocks")
    out = {k: v.clone() for k, v in narrow.items()}
    prev_src: torch.Tensor | None = None  # which narrow input channel each wide input channel copies
    for b in range(blocks):
        w_old = narrow[_CONV.format(b, "weight")]
        n_old, n_new = w_old.shape[0], wide[_CONV.format(b, "weight")].shape[0]
        src = _source(n_old, n_new)
        w = w_old[src]  # copy the filters
        if prev_src is not None:  # read widened inputs: split each input's weight among its copies
            copies = torch.bincount(prev_src)[prev_src].to(w.dtype)
            w = w[:, prev_src] / copies.view(1, -1, 1, 1)
        if noise > 0 and n_new > n_old:
            spread = float(w_old.std())
            w[n_old:] += noise * spread * torch.randn(w[n_old:].shape, generator=gen, dtype=w.dtype)
        out[_CONV.format(b, "weight")] = w
        out[_CONV.format(b, "bias")] = narrow[_CONV.format(b, "bias")][src]
        for k in _BN_KEYS:
            out[_BN.format(b, k)] = narrow[_BN.format(b, k)][src]
        prev_src = src
    # the head's first layer reads the flattened [C, 4, 4] map: feature c*16 + s
    head_w = narrow["head.0.weight"]
    cells = head_w.shape[1] // int(narrow[_CONV.format(blocks - 1, "weight")].shape[0])
    feat_src = (prev_src.view(-1, 1) * cells + torch.arange(cells).view(1, -1)).flatten()
    copies = torch.bincount(prev_src)[prev_src].repeat_interleave(cells).to(head_w.dtype)
    out["head.0.weight"] = head_w[:, feat_src] / copies.view(1, -1)
    for k, v in wide.items():
        if k not in out or out[k].shape != v.shape:
            raise ValueError(f"{k}: the narrow network gives {tuple(out[k].shape) if k in out else 'nothing'}, "
                             f"the wide one needs {tuple(v.shape)}")
    return out
