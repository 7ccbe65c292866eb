"""The Harvard datalists (patient-wise split) and the helpers the bundle configs call."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_fusion.errors import InputError
from monai_fusion.workflows.bundle_config import fragment_transforms, input_spatial_dims, latest_checkpoint
from monai_fusion.workflows.harvard import VALIDATION_PATIENTS, harvard_datalist, harvard_patient


@pytest.fixture
def harvard(tmp_path):
    """``<tmp>/harvard/spect-mri``: patients 3 (two slices), 4 and 35 (validation); one MRI without its SPECT."""
    root = tmp_path / "harvard"
    for name in ("3001", "3002", "4010", "35020"):
        for modality in ("mri", "spect"):
            path = root / "spect-mri" / modality / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "spect-mri" / "mri" / "3003.png")
    return root


def test_split_is_by_patient_and_pairs_only(harvard):
    train = harvard_datalist(harvard, "spect-mri", "train")
    validation = harvard_datalist(harvard, "spect-mri", "validation")
    assert [item["patient"] for item in train] == ["3", "3"]
    assert sorted(item["patient"] for item in validation) == ["35", "4"]
    assert set(train[0]) == {"mri", "spect", "patient"} and train[0]["spect"].endswith("spect/3001.png")
    assert len(harvard_datalist(harvard.parent, "spect-mri")) == 4  # the shared data folder works too
    assert len(harvard_datalist(harvard, "spect-mri", "train", max_items=1)) == 1
    assert set(VALIDATION_PATIENTS) == {"4", "30", "35", "37"} and harvard_patient("a/35020.png") == "35"


def test_bad_input_gives_one_line_errors(harvard):
    with pytest.raises(InputError, match="unknown Harvard task"):
        harvard_datalist(harvard, "mri-ct")
    with pytest.raises(InputError, match="unknown split"):
        harvard_datalist(harvard, "spect-mri", "test")
    with pytest.raises(InputError, match="no Harvard ct-mri pairs"):
        harvard_datalist(harvard, "ct-mri")
    with pytest.raises(InputError, match="is empty"):
        harvard_datalist(harvard, "spect-mri", "validation", validation_patients=("99",))


def test_bundle_config_helpers(tmp_path):
    assert input_spatial_dims([{"mri": "a.PNG"}, {"mri": "b.png"}]) == 2
    assert input_spatial_dims([{"mri": "a.nii.gz"}, {"mri": "dicom_folder"}]) == 3
    with pytest.raises(InputError, match="mixes 2D images and volumes"):
        input_spatial_dims([{"mri": "a.png"}, {"mri": "b.nii.gz"}])
    with pytest.raises(InputError, match="empty"):
        input_spatial_dims([])
    with pytest.raises(InputError, match="not found"):
        fragment_transforms(tmp_path / "none.json", "stack")
    assert latest_checkpoint(tmp_path / "missing") is None
    for epoch in (2, 10):
        (tmp_path / f"checkpoint_epoch={epoch}.pt").touch()
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint_epoch=10.pt")
