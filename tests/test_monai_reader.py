"""FusionImageReader in MONAI's LoadImage(d), and the strict LoadVolume(d) twins."""

from __future__ import annotations

import numpy as np
import pytest
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from monai_fusion.errors import InputError
from monai_fusion.io import FusionImageReader, load_image
from monai_fusion.transforms import LoadVolume, LoadVolumeD, LoadVolumed
from tests.conftest import shared_path


def test_load_imaged_matches_load_image_on_real_series():
    chain = Compose([LoadImaged(keys=["ct", "t1"], reader=FusionImageReader()), EnsureChannelFirstd(keys=["ct", "t1"])])
    data = chain({"ct": str(shared_path("mridir", "ct")), "t1": str(shared_path("templates", "T1.nii"))})
    direct = load_image(shared_path("mridir", "ct"))
    assert isinstance(data["ct"], MetaTensor) and data["ct"].shape == (1, 512, 512, 103)
    np.testing.assert_allclose(data["ct"].affine.numpy(), direct.affine.numpy(), atol=1e-6)
    np.testing.assert_array_equal(data["ct"].numpy(), direct.numpy())
    assert data["ct"].meta["units"] == "HU"
    assert data["t1"].shape == (1, 91, 109, 91)


def test_load_volume_refuses_without_falling_back(synthetic_series):
    folder, _, _ = synthetic_series(n_slices=6, drop=(2,))
    with pytest.raises(InputError, match="missing"):
        LoadVolume()(str(folder))
    with pytest.raises(InputError, match="missing"):
        LoadVolumed(keys="ct")({"ct": str(folder)})


def test_load_volume_passes_options_and_returns_metadata(synthetic_series):
    folder, volume, _ = synthetic_series(n_slices=6, drop=(2,))
    with pytest.warns(UserWarning, match="resampled"):
        image, meta = LoadVolume(image_only=False, irregular_slices="resample")(str(folder))
    assert image.shape == (1, 4, 5, 6) and meta["units"] == "HU"
    np.testing.assert_allclose(image[0, :, :, 5].numpy(), volume[:, :, 5], rtol=1e-6)


def test_load_volumed_missing_keys_and_alias(synthetic_series):
    folder, _, _ = synthetic_series(n_slices=3)
    assert LoadVolumeD is LoadVolumed
    out = LoadVolumed(keys=["ct", "pet"], allow_missing_keys=True)({"ct": str(folder)})
    assert out["ct"].shape == (1, 4, 5, 3) and "pet" not in out
    with pytest.raises(KeyError):
        LoadVolumed(keys=["ct", "pet"])({"ct": str(folder)})


def test_suffix_check_and_single_path_rule():
    reader = FusionImageReader()
    assert reader.verify_suffix(["a.nii.gz", "b.nrrd", "c.dcm"])
    assert not reader.verify_suffix("notes.txt")
    with pytest.raises(InputError, match="2 paths given"):
        reader.read(["a.nii", "b.nii"])
