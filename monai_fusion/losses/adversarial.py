"""Dual-discriminator adversarial term (DDcGAN-style) as one more fusion loss term.

DDcGAN (Ma et al., IEEE TIP 2020) trains the fusion network against two discriminators: one learns
to tell the fused image from source A, the other from source B, and the generator is rewarded when
neither can, i.e. when the fused image carries the look of both sources. Here that is a loss term
like the others (:class:`DualDiscriminatorLoss`), so the same network, trainer and bundle recipe
train with or without it (``FusionLoss(weights={"adversarial": 0.1})``) instead of a separate GAN
training program.

How the game is played inside a loss:

* every call in training mode (``module.training`` and gradients enabled) first takes **one
  discriminator step** on the detached fused batch: least-squares GAN losses
  ``(D_a(a) - 1)^2 + D_a(f)^2`` and the same for ``D_b``, with the term's own Adam optimiser;
* it then returns the **generator term** ``(D_a(f) - 1)^2 + (D_b(f) - 1)^2`` (means over the
  patch outputs), computed with the discriminators' parameters frozen, so the trainer's backward
  pass reaches only the fusion network.

Least squares rather than the log loss: it keeps gradients alive when a discriminator wins early,
the usual failure of GAN training on small data. ``b_pool`` compares fused and B at a lower
resolution (average pooling), as DDcGAN does for its low-resolution source: PET and SPECT carry
no fine texture, and a discriminator at full resolution would teach the network to drop the MRI's.

The discriminators' weights live in the module's ``state_dict`` (they are checkpointed with the
loss when a trainer saves it); the optimiser state is not. In evaluation mode the term only scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PatchDiscriminator", "DualDiscriminatorLoss"]


class PatchDiscriminator(nn.Module):
    """A small PatchGAN-style critic: strided convolutions, one score per receptive field.

    ``(N, 1, *spatial)`` -> ``(N, 1, *spatial / 8)``; 2D or 3D. About 25 k parameters in 2D.
    """

    def __init__(self, spatial_dims: int = 2, channels: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        layers: list[nn.Module] = []
        previous = 1
        for width in channels:
            layers += [conv(previous, width, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            previous = width
        layers.append(conv(previous, 1, kernel_size=3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class DualDiscriminatorLoss(nn.Module):
    """Generator term of a dual-discriminator LSGAN; trains its discriminators as it goes.

    Args:
        spatial_dims: 2 or 3.
        learning_rate: Adam learning rate of the discriminators.
        b_pool: average-pooling factor applied to fused and B before ``D_b`` (1: full resolution).
        seed: initialisation seed of the discriminators (deterministic training).

    Example:
        >>> term = DualDiscriminatorLoss()
        >>> a, b = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
        >>> fused = torch.maximum(a, b).requires_grad_()
        >>> term(fused, a, b).backward()   # one discriminator step, then the generator term
        >>> fused.grad is not None and all(p.grad is None for p in term.parameters())
        True
    """

    def __init__(self, spatial_dims: int = 2, learning_rate: float = 1e-4, b_pool: int = 1, seed: int = 0) -> None:
        super().__init__()
        if b_pool < 1:
            raise ValueError(f"b_pool must be >= 1, got {b_pool}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.discriminator_a = PatchDiscriminator(spatial_dims)
            self.discriminator_b = PatchDiscriminator(spatial_dims)
        self.spatial_dims = spatial_dims
        self.learning_rate = learning_rate
        self.b_pool = b_pool
        self._optimiser: torch.optim.Optimizer | None = None
        self.last_discriminator_loss = float("nan")

    def _pool(self, image: torch.Tensor) -> torch.Tensor:
        if self.b_pool == 1:
            return image
        pool = F.avg_pool2d if self.spatial_dims == 2 else F.avg_pool3d
        return pool(image, self.b_pool)

    def _discriminator_step(self, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
        parameters = list(self.parameters())
        if self._optimiser is None or self._optimiser.param_groups[0]["params"][0].device != fused.device:
            self.to(fused.device)
            self._optimiser = torch.optim.Adam(parameters, lr=self.learning_rate, betas=(0.5, 0.999))
        real_a, fake_a = self.discriminator_a(a), self.discriminator_a(fused)
        real_b, fake_b = self.discriminator_b(self._pool(b)), self.discriminator_b(self._pool(fused))
        loss = ((real_a - 1) ** 2).mean() + (fake_a ** 2).mean() + ((real_b - 1) ** 2).mean() + (fake_b ** 2).mean()
        self._optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self._optimiser.step()
        self._optimiser.zero_grad(set_to_none=True)
        self.last_discriminator_loss = float(loss.detach())

    def forward(self, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if fused.ndim != self.spatial_dims + 2:
            raise ValueError(f"expected (N, 1, *spatial) images with {self.spatial_dims} spatial dims, got {tuple(fused.shape)}")
        if self.training and torch.is_grad_enabled():
            with torch.enable_grad():
                self._discriminator_step(fused.detach(), a.detach(), b.detach())
        elif next(self.parameters()).device != fused.device:
            self.to(fused.device)
        parameters = list(self.parameters())
        for p in parameters:
            p.requires_grad_(False)
        try:
            score_a = self.discriminator_a(fused)
            score_b = self.discriminator_b(self._pool(fused))
            return ((score_a - 1) ** 2).mean() + ((score_b - 1) ** 2).mean()
        finally:
            for p in parameters:
                p.requires_grad_(True)
