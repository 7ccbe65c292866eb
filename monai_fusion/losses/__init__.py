"""Unsupervised fusion losses (no reference fused image exists): intensity, gradient, structure
(SSIM), edge preservation (smooth Q^AB/F), perceptual and dual-discriminator adversarial terms,
and their weighted sum.

Example:
    >>> import torch
    >>> from monai_fusion.losses import FusionLoss
    >>> image = torch.rand(1, 2, 32, 32)
    >>> float(FusionLoss("mri-pet")(image[:, :1], image)) > 0
    True
"""

from monai_fusion.losses.adversarial import DualDiscriminatorLoss, PatchDiscriminator
from monai_fusion.losses.fusion import (
    TASK_WEIGHTS,
    EdgePreservationLoss,
    FusionLoss,
    GradientLoss,
    IntensityLoss,
    PerceptualLoss,
    StructureLoss,
    sobel_gradients,
)

__all__ = [
    "TASK_WEIGHTS",
    "DualDiscriminatorLoss",
    "PatchDiscriminator",
    "EdgePreservationLoss",
    "FusionLoss",
    "GradientLoss",
    "IntensityLoss",
    "PerceptualLoss",
    "StructureLoss",
    "sobel_gradients",
]
