"""The registry, ``compute_metrics`` and the MONAI wrapper ``FusionQualityMetric``: names, batches
in 2D and 3D, list inputs, reductions, reset, errors, and the speed budget of the full set."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from monai.metrics import CumulativeIterationMetric
from scipy import ndimage

from monai_fusion.errors import InputError
from monai_fusion.metrics import (
    CONVENTIONS,
    HIGHER_IS_BETTER,
    METRICS,
    NO_REFERENCE,
    FusionQualityMetric,
    compute_metrics,
)

NAMES = ["EN", "SD", "SF", "AG", "EI", "MI", "FMI_pixel", "FMI_edge", "FMI_gradient", "FMI_dct", "FMI_wavelet", "NMI",
         "Q_NCIE", "SSIM", "MS_SSIM", "MSE", "RMSE", "PSNR", "Qabf", "VIF", "VIFF", "SCD", "CC", "Q_Y", "Q_CB", "Q_W",
         "Q_E", "Q_P"]


def _batch(n=3, size=48, depth=None, seed=0):
    """(fused (N, 1, ...), sources (N, 2, ...)) of smooth random images on 0..255."""
    rng = np.random.default_rng(seed)
    shape = (n, 2) + ((depth,) if depth else ()) + (size, size)
    sources = ndimage.gaussian_filter(rng.uniform(0, 255, shape), sigma=[0, 0] + [1.5] * (len(shape) - 2))
    fused = sources.max(axis=1, keepdims=True)
    return torch.from_numpy(fused), torch.from_numpy(sources)


def test_registry_contents():
    assert list(METRICS) == NAMES
    assert NO_REFERENCE == {"EN", "SD", "SF", "AG", "EI"}
    assert CONVENTIONS == ("default", "benchmark", "vifb")
    assert set(HIGHER_IS_BETTER) == set(NAMES)
    assert [n for n, higher in HIGHER_IS_BETTER.items() if not higher] == ["MSE", "RMSE"]


def test_no_reference_entries_ignore_sources():
    f = np.random.default_rng(1).uniform(0, 255, (20, 20))
    for name in NO_REFERENCE:
        assert METRICS[name](None, None, f) == METRICS[name](f, f, f)
    assert compute_metrics(None, None, f, names=sorted(NO_REFERENCE)).keys() == set(NO_REFERENCE)


def test_compute_metrics_subset_and_errors():
    fused, sources = _batch(n=1)
    a, b, f = sources[0, 0], sources[0, 1], fused[0, 0]
    values = compute_metrics(a, b, f, names=["CC", "EN"], convention="benchmark")
    assert list(values) == ["CC", "EN"]
    assert values["CC"] == METRICS["CC"](a, b, f, convention="benchmark")
    with pytest.raises(InputError, match="unknown fusion metric"):
        compute_metrics(a, b, f, names=["EN", "Entropy"])
    with pytest.raises(InputError, match="same shape"):
        compute_metrics(a[:-1], b, f, names=["EN", "CC"])
    with pytest.raises(InputError, match="unknown metric convention"):
        compute_metrics(a, b, f, names=["EN"], convention="cddfuse")


def test_fusion_quality_metric_2d_batches_and_reset():
    metric = FusionQualityMetric(metrics=("EN", "MI", "SSIM", "Qabf"), convention="benchmark")
    assert isinstance(metric, CumulativeIterationMetric)
    batches = [_batch(n=2, seed=1), _batch(n=3, seed=2)]
    for fused, sources in batches:
        per_image = metric(y_pred=fused, y=sources)
        assert per_image.shape == (fused.shape[0], 4)
    result = metric.aggregate()
    assert list(result) == ["EN", "MI", "SSIM", "Qabf"]
    expected = {name: [] for name in result}
    for fused, sources in batches:
        for k in range(fused.shape[0]):
            values = compute_metrics(sources[k, 0], sources[k, 1], fused[k, 0], names=list(result), convention="benchmark")
            for name, value in values.items():
                expected[name].append(value)
    for name, value in result.items():
        assert value.ndim == 0
        assert float(value) == pytest.approx(np.mean(expected[name]), rel=1e-6)  # MONAI reduces in float32
    none = metric.aggregate(reduction="none")
    assert none["EN"].shape == (5,)
    metric.reset()
    with pytest.raises(InputError, match="no values to aggregate"):
        metric.aggregate()


def test_fusion_quality_metric_3d_and_lists():
    fused, sources = _batch(n=2, size=48, depth=4, seed=3)
    metric = FusionQualityMetric(metrics=("SD", "CC", "VIF"), reduction="sum")
    metric([f for f in fused], [s for s in sources])  # decollated channel-first items
    result = metric.aggregate()
    expected = sum(compute_metrics(sources[k, 0], sources[k, 1], fused[k, 0], names=["VIF"])["VIF"] for k in range(2))
    assert float(result["VIF"]) == pytest.approx(expected, rel=1e-6)


def test_fusion_quality_metric_default_columns_and_errors():
    assert FusionQualityMetric().metric_names == ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")
    with pytest.raises(InputError, match="unknown fusion metric"):
        FusionQualityMetric(metrics=("EN", "QABF"))
    with pytest.raises(InputError, match="unknown metric convention"):
        FusionQualityMetric(convention="matlab")
    fused, sources = _batch(n=2)
    metric = FusionQualityMetric(metrics=("EN",))
    with pytest.raises(InputError, match=r"y must hold the two sources"):
        metric(y_pred=fused, y=sources[:, :1])
    with pytest.raises(InputError, match=r"y_pred must be fused images"):
        metric(y_pred=sources, y=sources)
    with pytest.raises(InputError, match="needs the sources"):
        metric(y_pred=fused)


def test_full_set_is_fast_enough():
    """Every metric but the FMI family on one 256x256 triple: well under 1 s on 2 cores (the
    budget asserted here is generous so that a busy CI machine does not fail it)."""
    fused, sources = _batch(n=1, size=256, seed=4)
    a, b, f = sources[0, 0].numpy(), sources[0, 1].numpy(), fused[0, 0].numpy()
    names = [n for n in METRICS if not n.startswith("FMI")]
    compute_metrics(a, b, f, names=names)  # warm caches (filter banks, FFT plans)
    start = time.perf_counter()
    compute_metrics(a, b, f, names=names)
    assert time.perf_counter() - start < 2.5
