"""Pure functions behind the augmentation and normalisation transforms.

The transforms in :mod:`monai_fusion.transforms.intensity`, :mod:`~monai_fusion.transforms.patches`
and :mod:`~monai_fusion.transforms.spatial` are thin: they resolve keys, modalities, metadata and
random draws, and call these functions on plain channel-first tensors ``(C, *spatial)``. Every
function here can be tested alone; random ones take a ``numpy.random.RandomState`` (MONAI's
``self.R``) so that a seeded transform is reproducible.
"""

from monai_fusion.transforms.functional.intensity import (
    CT_WINDOWS,
    MODALITIES,
    LinearMap,
    add_gaussian_noise,
    add_poisson_noise,
    add_rician_noise,
    adjust_gamma_contrast,
    apply_linear_map,
    canonical_modality,
    cormack_to_hounsfield,
    equalize_adaptive_histogram,
    equalize_histogram,
    hounsfield_to_cormack,
    match_histogram,
    percentile_map,
    resolve_ct_window,
    robust_maximum,
    suv_map,
    window_map,
    zscore_map,
)
from monai_fusion.transforms.functional.patches import (
    INFORMATION_METHODS,
    class_balanced_weights,
    information_map,
    local_entropy,
    gradient_magnitude,
    foreground_map,
    patch_mean,
    squeeze_slice,
    valid_centre_slices,
)

__all__ = [
    "CT_WINDOWS", "MODALITIES", "LinearMap", "add_gaussian_noise", "add_poisson_noise", "add_rician_noise",
    "adjust_gamma_contrast", "apply_linear_map", "canonical_modality", "cormack_to_hounsfield",
    "equalize_adaptive_histogram", "equalize_histogram", "hounsfield_to_cormack", "match_histogram",
    "percentile_map", "resolve_ct_window", "robust_maximum", "suv_map", "window_map", "zscore_map",
    "INFORMATION_METHODS", "class_balanced_weights", "information_map", "local_entropy", "gradient_magnitude", "foreground_map",
    "patch_mean", "squeeze_slice", "valid_centre_slices",
]
