"""Registry/factory: every name builds, unknown names fail with the list of known ones."""

from __future__ import annotations

import pytest

from saliency_ros.models import create_model, get_entry, list_models
from saliency_ros.models.skd import SpatioTemporalStudent
from saliency_ros.models.sod import SODNet


def test_known_models() -> None:
    assert list_models() == ["skd_ss", "skd_sst", "skd_st", "sod_effl0", "sod_effl1", "sod_effl2", "sod_r50"]


def test_factory_builds_each_family() -> None:
    sst = create_model("skd_sst", input_size=32)
    assert isinstance(sst, SpatioTemporalStudent) and sst.input_size == 32
    sod = create_model("sod_r50")
    assert isinstance(sod, SODNet) and sod.config.backbone == "resnet50" and not sod.config.pretrained
    assert get_entry("sod_effl0").inputs == ("image",)


def test_bad_names_and_sizes_are_rejected() -> None:
    with pytest.raises(KeyError, match="known: skd_ss"):
        create_model("skd_big")
    with pytest.raises(ValueError, match="32, 64 or 128"):
        create_model("skd_ss", input_size=48)
