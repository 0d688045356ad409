"""The confidence network C_θ(s) = sigmoid(MLP_θ(s)): a plain ``nn.Module``.

MARC's architecture: Linear → ReLU blocks of widths 64 → 32 → 16, then a Linear to one logit;
the sigmoid is applied by :meth:`ConfidenceMLP.confidence` (the loss works on confidences in
(0, 1), because the margin γ is measured in confidence units).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .config import FitConfig


class ConfidenceMLP(nn.Module):
    """MLP_θ: features (batch, n_features) → logit (batch,).

    Parameters
    ----------
    n_features : int
        Width of the input (``FeatureLayout.n_features``).
    hidden_sizes : sequence of int, default=(64, 32, 16)
    """

    def __init__(self, n_features: int, hidden_sizes: Sequence[int] = FitConfig.hidden_sizes):
        super().__init__()
        widths = [int(n_features), *[int(h) for h in hidden_sizes]]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, n_features) → (batch, 1) → (batch,)
        return self.net(x).squeeze(-1)

    def confidence(self, x: torch.Tensor) -> torch.Tensor:
        """C_θ(x) in (0, 1), shape (batch,)."""
        return torch.sigmoid(self.forward(x))

    def weight_matrices(self) -> list[torch.Tensor]:
        """The Linear layers' weights, input to output, each (out_features, in_features)."""
        return [m.weight for m in self.net if isinstance(m, nn.Linear)]
