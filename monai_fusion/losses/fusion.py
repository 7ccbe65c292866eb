"""Unsupervised fusion losses: there is no reference fused image, so every term compares the fused
image with both sources.

Terms (each a ``torch.nn.Module`` taking ``(fused, a, b)``, all ``(N, 1, *spatial)`` on 0..1, 2D or 3D):

* :class:`IntensityLoss` - L1 to the per-voxel maximum of the sources: bright structures of either
  modality (bone, uptake, soft tissue) survive at full contrast.
* :class:`GradientLoss` - L1 between the fused gradient magnitude and the larger of the sources':
  the texture of whichever source is sharper, the DenseFuse/U2Fusion-era texture term.
* :class:`StructureLoss` - ``1 - SSIM`` to each source (MONAI's Gaussian-window SSIM), averaged.
* :class:`EdgePreservationLoss` - ``1 - Q``, Q a differentiable version of Xydeas & Petrovic's
  Q^AB/F edge-preservation index: per pixel, how much of each source's edge strength and
  orientation the fused image keeps, weighted by that source's edge strength. The index's own
  sigmoid constants are used; the hard ``min(gA/gF, gF/gA)`` becomes ``2 gA gF / (gA^2 + gF^2)``
  and the orientation difference becomes ``|cos|`` of the angle between gradient vectors, both
  smooth and equal to the original at agreement.
* :class:`PerceptualLoss` - distance between our frozen pretrained encoder's features of the fused
  image and the per-level larger-activity features of the sources (optional; off by default).
* ``"adversarial"`` - :class:`~monai_fusion.losses.adversarial.DualDiscriminatorLoss`, DDcGAN's
  two discriminators (fused vs A, fused vs B) trained inside the term (optional; off by default;
  B is compared at half resolution for PET and SPECT).

:class:`FusionLoss` sums them with per-task weights (:data:`TASK_WEIGHTS`), the recipe the
bundles train with. Write the weights you use in your experiment record: they decide which way
the gameable metrics move (``docs/networks.md``).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from monai_fusion.losses.adversarial import DualDiscriminatorLoss

__all__ = [
    "TASK_WEIGHTS",
    "ADVERSARIAL_B_POOL",
    "EdgePreservationLoss",
    "FusionLoss",
    "GradientLoss",
    "IntensityLoss",
    "PerceptualLoss",
    "StructureLoss",
    "sobel_gradients",
]

#: Per-task weights of the loss terms (intensity, gradient, structure, edge, perceptual, adversarial).
TASK_WEIGHTS: dict[str, dict[str, float]] = {
    "ct-mri": {"intensity": 2.0, "gradient": 2.0, "structure": 0.5, "edge": 2.0, "perceptual": 0.0, "adversarial": 0.0},
    "mri-pet": {"intensity": 2.0, "gradient": 2.0, "structure": 0.5, "edge": 2.0, "perceptual": 0.0, "adversarial": 0.0},
    "mri-spect": {"intensity": 2.0, "gradient": 2.0, "structure": 0.5, "edge": 2.0, "perceptual": 0.0, "adversarial": 0.0},
}
#: Pooling of fused and B before the adversarial term's B discriminator: the functional images
#: carry no fine texture (DDcGAN compares its low-resolution source the same way).
ADVERSARIAL_B_POOL = {"ct-mri": 1, "mri-pet": 2, "mri-spect": 2}


def _check(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    if fused.shape != a.shape or a.shape != b.shape:
        raise ValueError(f"fused {tuple(fused.shape)}, a {tuple(a.shape)} and b {tuple(b.shape)} must have one shape")
    if fused.ndim not in (4, 5) or fused.shape[1] != 1:
        raise ValueError(f"expected (N, 1, H, W) or (N, 1, D, H, W) images, got {tuple(fused.shape)}")


def sobel_gradients(images: torch.Tensor) -> list[torch.Tensor]:
    """Sobel derivatives of ``(N, 1, *spatial)`` images along each spatial axis (replicate padding)."""
    dims = images.ndim - 2
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=images.dtype, device=images.device) / 4.0
    derive = torch.tensor([-1.0, 0.0, 1.0], dtype=images.dtype, device=images.device) / 2.0
    padded = F.pad(images, [1, 1] * dims, mode="replicate")
    conv = F.conv2d if dims == 2 else F.conv3d
    gradients = []
    for axis in range(dims):
        kernel = torch.ones([1] * dims, dtype=images.dtype, device=images.device)
        for other in range(dims):
            profile = derive if other == axis else smooth
            shape = [1] * dims
            shape[other] = 3
            kernel = kernel * profile.reshape(shape)
        gradients.append(conv(padded, kernel[None, None]))
    return gradients


_EPS = 1e-6
_EPS_ROOT = _EPS ** 0.5


def _magnitude(gradients: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum(g * g for g in gradients) + _EPS)


class IntensityLoss(nn.Module):
    """L1 between the fused image and the per-voxel maximum of the sources."""

    def forward(self, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check(fused, a, b)
        return (fused - torch.maximum(a, b)).abs().mean()


class GradientLoss(nn.Module):
    """L1 between the fused Sobel gradient magnitude and the larger of the sources'."""

    def forward(self, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check(fused, a, b)
        target = torch.maximum(_magnitude(sobel_gradients(a)), _magnitude(sobel_gradients(b)))
        return (_magnitude(sobel_gradients(fused)) - target).abs().mean()


class StructureLoss(nn.Module):
    """Mean of ``1 - SSIM(fused, a)`` and ``1 - SSIM(fused, b)`` (MONAI ``SSIMLoss``, data range 1)."""

    def __init__(self, spatial_dims: int = 2, win_size: int = 11) -> None:
        super().__init__()
        from monai.losses import SSIMLoss

        self.ssim = SSIMLoss(spatial_dims=spatial_dims, data_range=1.0, win_size=win_size)

    def forward(self, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check(fused, a, b)
        return 0.5 * (self.ssim(fused, a) + self.ssim(fused, b))


class EdgePreservationLoss(nn.Module):
    """``1 - Q``, Q a smooth Q^AB/F (Xydeas & Petrovic 2000): edge strength and orientation kept
    from each source, weighted by the source's edge strength (exponent ``L = 1``).

    Args:
        strength_constants: ``(T, k, D)`` of the edge-strength sigmoid (the index's 0.9994, -15, 0.5).
        orientation_constants: ``(T, k, D)`` of the orientation sigmoid (0.9879, -22, 0.8).
    """

    def __init__(self, strength_constants=(0.9994, -15.0, 0.5), orientation_constants=(0.9879, -22.0, 0.8)) -> None:
        super().__init__()
        self.strength_constants = tuple(float(c) for c in strength_constants)
        self.orientation_constants = tuple(float(c) for c in orientation_constants)

    @staticmethod
    def _sigmoid(x: torch.Tensor, constants: tuple[float, float, float]) -> torch.Tensor:
        top, slope, centre = constants
        return top / (1.0 + torch.exp(slope * (x - centre)))

    def preservation(self, source: list[torch.Tensor], fused: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q_XF, g_X)``: per-voxel preservation of a source's edges and the source's edge strength."""
        g_source, g_fused = _magnitude(source), _magnitude(fused)
        strength = 2.0 * g_source * g_fused / (g_source * g_source + g_fused * g_fused)
        cosine = sum(s * f for s, f in zip(source, fused)).abs() / (g_source * g_fused)
        preserved = self._sigmoid(strength, self.strength_constants) * self._sigmoid(cosine, self.orientation_constants)
        # flat voxels weigh nothing, as in the index (the epsilon only keeps the square root smooth)
        return preserved, g_source - _EPS_ROOT

    def forward(self, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check(fused, a, b)
        grad_fused = sobel_gradients(fused)
        q_a, w_a = self.preservation(sobel_gradients(a), grad_fused)
        q_b, w_b = self.preservation(sobel_gradients(b), grad_fused)
        dims = tuple(range(1, fused.ndim))
        index = (q_a * w_a + q_b * w_b).sum(dims) / (w_a + w_b).sum(dims).clamp_min(1e-8)
        return 1.0 - index.mean()


class PerceptualLoss(nn.Module):
    """L1 between frozen encoder features of the fused image and, per level and voxel, the features
    of the source with the larger l1 activity there. ``encoder``: a module returning a list of
    feature levels (default: our pretrained 2D :class:`~monai_fusion.networks.FusionEncoder`)."""

    def __init__(self, encoder: nn.Module | None = None) -> None:
        super().__init__()
        if encoder is None:
            from monai_fusion.networks import load_fusion_encoder

            encoder = load_fusion_encoder()
        self.encoder = encoder.eval()
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)

    def forward(self, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check(fused, a, b)
        n = a.shape[0]
        with torch.no_grad():
            sources = self.encoder(torch.cat([a, b], dim=0))
        total = fused.new_zeros(())
        for level_fused, level in zip(self.encoder(fused), sources):
            fa, fb = level[:n], level[n:]
            target = torch.where(fa.abs().sum(1, keepdim=True) >= fb.abs().sum(1, keepdim=True), fa, fb)
            total = total + (level_fused - target).abs().mean()
        return total / len(sources)


_TERMS = {"intensity": IntensityLoss, "gradient": GradientLoss, "structure": StructureLoss,
          "edge": EdgePreservationLoss, "perceptual": PerceptualLoss, "adversarial": DualDiscriminatorLoss}


class FusionLoss(nn.Module):
    """Weighted sum of the fusion loss terms; ``forward(fused, a, b)`` or ``forward(fused, image)``.

    The second form takes the network input ``image`` ``(N, 2, *spatial)`` (A, B as channels): the
    call MONAI's ``SupervisedTrainer`` makes as ``loss_function(pred, label)`` when the "label" is
    the input pair itself (no reference exists in unsupervised fusion).

    Args:
        task: a key of :data:`TASK_WEIGHTS` giving the default weights.
        weights: term name -> weight overriding the task's (0 switches a term off).
        spatial_dims: 2 or 3 (for the SSIM window).

    Example:
        >>> loss = FusionLoss("ct-mri")
        >>> image = torch.rand(2, 2, 32, 32)
        >>> float(loss(torch.maximum(image[:, :1], image[:, 1:]), image)) > 0
        True
    """

    def __init__(self, task: str = "ct-mri", weights: Mapping[str, float] | None = None, spatial_dims: int = 2) -> None:
        super().__init__()
        if task not in TASK_WEIGHTS:
            raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASK_WEIGHTS)}")
        chosen = dict(TASK_WEIGHTS[task])
        unknown = set(weights or {}) - set(_TERMS)
        if unknown:
            raise ValueError(f"unknown loss term(s) {sorted(unknown)}; terms are {sorted(_TERMS)}")
        chosen.update({k: float(v) for k, v in (weights or {}).items()})
        self.weights = {name: w for name, w in chosen.items() if w}
        self.terms = nn.ModuleDict({name: self._term(name, task, spatial_dims) for name in self.weights})
        self.last_terms: dict[str, float] = {}

    @staticmethod
    def _term(name: str, task: str, spatial_dims: int) -> nn.Module:
        if name == "structure":
            return StructureLoss(spatial_dims)
        if name == "adversarial":
            return DualDiscriminatorLoss(spatial_dims, b_pool=ADVERSARIAL_B_POOL[task])
        return _TERMS[name]()

    def forward(self, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if b is None:
            if a.shape[1] != 2:
                raise ValueError(f"with two arguments the second must be the (N, 2, ...) source pair, got {tuple(a.shape)}")
            a, b = a[:, 0:1], a[:, 1:2]
        total = fused.new_zeros(())
        values = {}
        for name, term in self.terms.items():
            value = term(fused, a, b)
            values[name] = float(value.detach())
            total = total + self.weights[name] * value
        self.last_terms = values
        return total
