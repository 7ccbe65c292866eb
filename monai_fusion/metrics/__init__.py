"""Objective fusion-quality metrics: exact, documented, fast (numpy/scipy, vectorised).

Every metric is a pure function of the sources A, B and the fused image F (no-reference metrics:
F only), numpy or torch, 2D ``(H, W)`` or 3D ``(D, H, W)``, any real dtype (uint8 is 0..255;
other values are used as given, nothing is rescaled unless a convention says so), returning a
Python float. :data:`METRICS` maps the names of published tables to functions with one signature
``(a, b, f, convention="default")``; :func:`compute_metrics` evaluates several at once;
:class:`FusionQualityMetric` wraps them for MONAI workflows.

Bad input raises :class:`monai_fusion.errors.InputError` with one line (mismatched shapes,
NaN/Inf, 1D/4D arrays, images smaller than a metric's window). Constant images give the
documented values below, never NaN. ``L`` is the *data range* of the triple: 255 when A, B and F
are all uint8, else ``max - min`` over the three (1 if that is 0).

Conventions
-----------
Published tables disagree on definitions; ``convention=`` picks one. ``default`` is our
documented, mathematically clean choice. ``benchmark`` reproduces the tables of CDDFuse-era
papers (CDDFuse ``utils/Evaluator.py``; for metrics it lacks, the MATLAB toolbox of Liu et al.
2012 / the authors' public code those papers cite); it assumes images on the 0..255 scale, as
those tables evaluate 8-bit PNGs. ``vifb`` reproduces the VIFB benchmark (Zhang et al., CVPRW
2020) for the metrics VIFB has and equals ``default`` elsewhere. "=" means "same as default".

=======  ============================================  =======================================  ==================================
metric   default                                       benchmark                                vifb
=======  ============================================  =======================================  ==================================
EN       bits; 256 equal bins over F's min..max        bits; levels round(F) clipped to 0..255  bits; levels floor(F), clipped
SD       population standard deviation                 =                                        =
SF       sqrt(sum over axes of the mean squared        = (CDDFuse)                              each squared sum / (H W)
         first difference)
AG       forward differences, mean over                np.gradient, mean over H W               gradient, sum / ((H-1)(W-1))
         (H-1)(W-1): a ramp of slope s gives s/sqrt 2
EI       mean Sobel magnitude, replicated border       =                                        =
MI       MI(A,F) + MI(B,F) in bits, 256 bins           nats; levels round(x) (= sklearn         nats; min-max to 0..255, rounded
         per image                                     mutual_info_score on 8-bit images)
NMI      Hossny 2008, 256 bins per image               levels round(x)                          =
Q_NCIE   paper: equal-count rank grid, b = 256         Liu toolbox: grey-level histograms       = benchmark
                                                       (normalize1), logs base 256
FMI_*    Fast-FMI (fmi.m), 3x3 windows;                gradient feature = horizontal            =
         gradient feature = magnitude                  derivative (MATLAB gradient(I))
SSIM     Wang: Gaussian 11 / 1.5, constants            skimage, data_range = 2, 7x7 box,        Wang, L = 255; SUM
         from L; MEAN over the two sources             sample covariance; SUM over sources
MS_SSIM  Wang, 5 scales, L; mean of the two            =                                        L = 255
MSE      (MSE(A,F) + MSE(B,F)) / 2                     =                                        =
RMSE     sqrt(MSE)                                     =                                        mean of sqrt(SSE) / N (VIFB quirk)
PSNR     10 log10(L^2 / MSE)                           10 log10(max(F)^2 / MSE)                 20 log10(255 / sqrt(VIFB RMSE))
Qabf     Sobel (replicated border), G = min/max,       Qabf.m: zero-padded Sobel, atan          = benchmark
         angle between gradient lines                  (not atan2), G = g_F where g_X == g_F
VIF      VIFp(A,F) + VIFp(B,F), triple scaled          values as given (noise variance 2)       = benchmark
         to 0..255 by L
VIFF     Han 2013 (VIFF_Public.m), triple              values as given                          = benchmark
         scaled to 0..255 by L
SCD      corr2(F-B, A) + corr2(F-A, B)                 =                                        =
CC       (corr2(A,F) + corr2(B,F)) / 2                 =                                        =
Q_Y      Yang: 7x7 Gaussian SSIM, constants            toolbox: C1 = C2 = 2e-16                 =
         from L
Q_CB     Chen-Blum (toolbox), continuous               rounded (normalize1) scaling             = benchmark
         0..255 scaling
Q_W      Piella: Wang SSIM, variance saliency,         toolbox: L = 255, windows flat in        =
         constants from L                              both sources weigh 0.5
Q_E      Q_W(A,B,F) Q_W(A',B',F'), Sobel edges         Prewitt edges (zero padding),            =
                                                       L = 255
Q_P      Zhao: Kovesi phase congruency,                values as given                          = benchmark
         triple scaled to 0..255 by L
=======  ============================================  =======================================  ==================================

Qabf uses Tg = 0.9994, kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22, Da = 0.8 in every convention.
Where the published code is numerically undefined we deviate, and say so in the docstring: the
"round" histogram levels clip to 0..255 instead of wrapping, non-integer inputs to the benchmark
MI are rounded (the PNG round-trip of the published pipeline), MS-SSIM clips negative
contrast-structure terms to 0, Q_Y (benchmark) zeroes the variance of exactly flat windows, Q_CB
treats round-off contrast (< 1e-8) as none, phase congruency is 0 where no filter responds, and
the FMI edge feature approximates MATLAB's ``edge`` thinning.

Constant images (F = A = B = c, default convention): EN, SD, SF, AG, EI, MI, MSE, RMSE, CC,
SCD = 0 (the correlation of a constant image is defined as 0); SSIM, MS-SSIM, Q_NCIE, VIFF,
FMI_*, Q_Y, Q_CB, Q_W, Q_E, Q_P = 1; NMI = 2 and VIF = 2 (two perfect terms); PSNR = +inf;
Qabf = Q(G=1, A=1) ~ 0.9748, the value of perfect edge transfer (no source edge to lose). In
the benchmark and vifb conventions SSIM = 2 (summed), Q_NCIE = 1 - log_256 3 ~ 0.8019 (the
toolbox gives a constant image entropy 0, hence NCC 0), and Qabf depends on c because zero
padding turns the image border into edges.

3D volumes: volumetric for EN, SD, SF, AG, EI, MI, NMI, Q_NCIE, MSE, RMSE, PSNR, CC, SCD,
SSIM (3D window when D >= window width, else per slice) and default Qabf (3D Sobel); pooled
slice sums for VIF, VIFF and benchmark Qabf; mean over non-empty slices (A, B, F not all
constant) for FMI_*, MS_SSIM, Q_Y, Q_CB, Q_W, Q_E, Q_P.

Higher is better for every metric except MSE and RMSE (:data:`HIGHER_IS_BETTER`).
"""

from monai_fusion.metrics._inputs import CONVENTIONS
from monai_fusion.metrics.contrast import q_cb
from monai_fusion.metrics.feature_mi import (
    FMI_FEATURES,
    feature_mutual_information,
    fmi_dct,
    fmi_edge,
    fmi_gradient,
    fmi_pixel,
    fmi_wavelet,
)
from monai_fusion.metrics.fidelity import (
    correlation_coefficient,
    mean_squared_error,
    peak_signal_to_noise_ratio,
    root_mean_squared_error,
    sum_of_correlations_of_differences,
)
from monai_fusion.metrics.gradient import qabf
from monai_fusion.metrics.information import mutual_information, normalized_mutual_information, q_ncie
from monai_fusion.metrics.monai_metric import FusionQualityMetric
from monai_fusion.metrics.no_reference import (
    average_gradient,
    edge_intensity,
    entropy,
    spatial_frequency,
    standard_deviation,
)
from monai_fusion.metrics.phase import phase_congruency, q_p
from monai_fusion.metrics.registry import HIGHER_IS_BETTER, METRICS, NO_REFERENCE, compute_metrics
from monai_fusion.metrics.structural import multiscale_structural_similarity, q_e, q_w, q_y, structural_similarity
from monai_fusion.metrics.visual_information import viff, visual_information_fidelity

__all__ = [
    "CONVENTIONS",
    "FMI_FEATURES",
    "FusionQualityMetric",
    "HIGHER_IS_BETTER",
    "METRICS",
    "NO_REFERENCE",
    "average_gradient",
    "compute_metrics",
    "correlation_coefficient",
    "edge_intensity",
    "entropy",
    "feature_mutual_information",
    "fmi_dct",
    "fmi_edge",
    "fmi_gradient",
    "fmi_pixel",
    "fmi_wavelet",
    "mean_squared_error",
    "multiscale_structural_similarity",
    "mutual_information",
    "normalized_mutual_information",
    "peak_signal_to_noise_ratio",
    "phase_congruency",
    "q_cb",
    "q_e",
    "q_ncie",
    "q_p",
    "q_w",
    "q_y",
    "qabf",
    "root_mean_squared_error",
    "spatial_frequency",
    "standard_deviation",
    "structural_similarity",
    "sum_of_correlations_of_differences",
    "viff",
    "visual_information_fidelity",
]
