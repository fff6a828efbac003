"""Losses against hand computations: focal loss, BCE positive weights, the prior-bias init, soft cross-entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer.losses import Criterion, focal_loss, positive_weights, prior_bias


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def focal_by_hand(logits, targets, alpha, gamma) -> float:
    """FL = -α_t (1 - p_t)^γ log(p_t) per entry (Lin et al. 2017), mean over entries; hard targets."""
    terms = []
    for z, t in zip(logits, targets):
        p = sigmoid(z)
        p_t = p if t == 1 else 1 - p
        a_t = alpha if t == 1 else 1 - alpha
        terms.append(-a_t * (1 - p_t) ** gamma * math.log(p_t))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 1.0), (0.9, 0.5)])
def test_focal_loss_matches_the_formula(alpha, gamma):
    logits = [2.0, -1.0, 0.3, -3.5, 4.0, 0.0]
    targets = [1, 0, 0, 1, 1, 0]
    got = focal_loss(torch.tensor([logits]), torch.tensor([targets], dtype=torch.float32), alpha, gamma)
    assert float(got) == pytest.approx(focal_by_hand(logits, targets, alpha, gamma), rel=1e-6)


def test_focal_with_gamma_0_and_no_alpha_is_bce():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(4, 7, generator=g), (torch.rand(4, 7, generator=g) > 0.5).float()
    bce = -(y * torch.log(torch.sigmoid(z)) + (1 - y) * torch.log(1 - torch.sigmoid(z))).mean()
    assert float(focal_loss(z, y, alpha=-1, gamma=0.0)) == pytest.approx(float(bce), rel=1e-5)


def test_focal_down_weights_easy_examples():
    """An easy positive (p = 0.95) loses more of its BCE than a hard one (p = 0.3): the point of γ."""
    easy, hard = torch.tensor([[math.log(0.95 / 0.05)]]), torch.tensor([[math.log(0.3 / 0.7)]])
    one = torch.ones(1, 1)
    ratio = lambda z: float(focal_loss(z, one, -1, 2.0)) / float(focal_loss(z, one, -1, 0.0))  # noqa: E731
    assert ratio(easy) == pytest.approx(0.05**2) and ratio(hard) == pytest.approx(0.7**2)


def test_positive_weights_by_hand():
    # 10 clips, label 0 in 1 clip, label 1 in 4, label 2 in none, label 3 in 9
    y = np.zeros((10, 4), bool)
    y[:1, 0] = True
    y[:4, 1] = True
    y[:9, 3] = True
    assert positive_weights(y, "none") is None
    inv = positive_weights(y, "inverse", cap=100.0)
    assert inv.tolist() == pytest.approx([9.0, 6 / 4, 1.0, 1.0])  # neg/pos; no positives -> 1; below 1 -> 1
    assert positive_weights(y, "inverse", cap=5.0).tolist() == pytest.approx([5.0, 1.5, 1.0, 1.0])
    assert positive_weights(y, "sqrt", cap=100.0).tolist() == pytest.approx([3.0, math.sqrt(1.5), 1.0, 1.0])


def test_bce_criterion_applies_positive_weights():
    z = torch.tensor([[0.5, -2.0], [1.5, 0.1]])
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    w = torch.tensor([3.0, 2.0])
    by_hand = 0.0
    for i in range(2):
        for k in range(2):
            p = sigmoid(float(z[i, k]))
            by_hand += -(float(w[k]) * float(y[i, k]) * math.log(p) + (1 - float(y[i, k])) * math.log(1 - p))
    assert float(Criterion("bce", w)(z, y)) == pytest.approx(by_hand / 4, rel=1e-6)
    assert float(Criterion("bce")(z, y)) < float(Criterion("bce", w)(z, y))


def test_prior_bias_is_the_logit_of_label_frequency():
    y = np.zeros((200, 3), np.float32)
    y[:50, 0] = 1  # 25 %
    y[:2, 1] = 1  # 1 %
    b = prior_bias(y, floor=1e-3)
    assert b.tolist() == pytest.approx([math.log(0.25 / 0.75), math.log(0.01 / 0.99), math.log(1e-3 / (1 - 1e-3))], rel=1e-5)
    assert torch.sigmoid(b)[:2].tolist() == pytest.approx([0.25, 0.01], rel=1e-5)


def test_cross_entropy_takes_soft_family_targets():
    z = torch.tensor([[1.0, 2.0, 0.5]])
    t = torch.tensor([[0.5, 0.5, 0.0]])  # a clip under two families
    log_p = [v - math.log(sum(math.exp(u) for u in (1.0, 2.0, 0.5))) for v in (1.0, 2.0, 0.5)]
    assert float(Criterion("ce")(z, t)) == pytest.approx(-(0.5 * log_p[0] + 0.5 * log_p[1]), rel=1e-6)


def test_criterion_computes_in_fp32_under_autocast():
    z = torch.tensor([[30.0, -30.0]], dtype=torch.bfloat16)
    loss = Criterion("focal")(z, torch.tensor([[1.0, 0.0]]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    with pytest.raises(ValueError):
        Criterion("hinge")
