"""Model cards and the engine's checks: every failure names the file and the expectation."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from saliency_ros.runtime.engine import Engine, EngineError
from saliency_ros.runtime.model_card import InputSpec, ModelCardError, load_card, sha256_file
from saliency_ros.runtime.preprocess import to_input


@pytest.fixture
def sst_copy(exported, tmp_path: Path) -> Path:
    _, result = exported[("skd_sst", 32)]
    onnx_path = tmp_path / result.onnx_path.name
    shutil.copy(result.onnx_path, onnx_path)
    shutil.copy(result.card_path, tmp_path / result.card_path.name)
    return onnx_path


def test_sha256_mismatch_is_reported(sst_copy: Path) -> None:
    with sst_copy.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelCardError, match="sha256"):
        load_card(sst_copy.with_suffix(".json"))


def test_missing_and_corrupt_model_files(sst_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        Engine(tmp_path / "nope.onnx")
    card = json.loads(sst_copy.with_suffix(".json").read_text())
    sst_copy.write_bytes(b"not an onnx file")
    card["sha256"] = sha256_file(sst_copy)
    sst_copy.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(EngineError, match="could not be loaded"):
        Engine(sst_copy)


def test_wrong_shaped_model_names_file_and_expected_input(sst_copy: Path) -> None:
    card_path = sst_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["input"]["height"] = card["input"]["width"] = 64
    card_path.write_text(json.dumps(card))
    with pytest.raises(EngineError, match=r"expects inputs \['current', 'previous'\] of Nx3x64x64"):
        Engine(sst_copy)


def test_bad_card_fields(sst_copy: Path) -> None:
    card_path = sst_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["input"]["resize"] = "cubic"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="input.resize"):
        load_card(card_path)
    card_path.write_text("{")
    with pytest.raises(ModelCardError, match="not valid JSON"):
        load_card(card_path)


def test_preprocess_follows_the_card() -> None:
    spec = InputSpec(names=("image",), height=2, width=2, color="RGB", scale=1 / 255,
                     mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0), resize="area")
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    out = to_input(bgr, spec)
    assert out.shape == (1, 3, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0, 0], [(0 - 0.5) / 0.5, (0 - 0.25) / 0.25, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        to_input(np.zeros((4, 4), np.uint8), spec)


@pytest.mark.parametrize("edit, field", [
    (lambda c: c.update(input=[1, 2]), "field input: "),
    (lambda c: c["input"].update(mean=0.5), "field input.mean: "),
    (lambda c: c["output"].pop("meaning"), "field output: 'meaning' is a required property"),
    (lambda c: c["input"].update(height=0), "field input.height: "),
    (lambda c: c["input"]["std"].__setitem__(1, 0.0), "field input.std.1: "),
    (lambda c: c.update(file="../elsewhere/model.onnx"), "field file: "),
])
def test_malformed_card_names_the_file_and_the_field(sst_copy: Path, edit, field: str) -> None:
    card_path = sst_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    edit(card)
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match=re.escape(f"model card {card_path}: {field}")):
        load_card(card_path)
    with pytest.raises(ModelCardError, match=re.escape(str(card_path))):
        Engine(sst_copy)


def test_checksum_covers_the_bytes_loaded_not_the_file_named(sst_copy: Path) -> None:
    """Altered weights under another name, beside a copy of the genuine card, are refused."""
    genuine_card = sst_copy.with_suffix(".json")
    evil = sst_copy.with_name("evil.onnx")
    data = bytearray(sst_copy.read_bytes())
    data[-100] ^= 0xFF
    evil.write_bytes(bytes(data))
    shutil.copy(genuine_card, evil.with_suffix(".json"))  # still names the genuine file
    assert load_card(evil.with_suffix(".json")).file == sst_copy.name  # the genuine file checks out
    with pytest.raises(EngineError, match=f"{evil}.*sha256"):
        Engine(evil)
    Engine(sst_copy)  # the genuine pair still loads


def test_a_folder_or_fifo_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(EngineError, match="is a directory"):
        Engine(tmp_path / "dir.onnx")
    os.mkfifo(tmp_path / "fifo.onnx")
    with pytest.raises(EngineError, match="not a regular file"):
        Engine(tmp_path / "fifo.onnx")  # would block forever if opened


def test_a_model_with_two_outputs_is_refused_by_name(sst_copy: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(sst_copy))
    model.graph.output.append(onnx.helper.make_tensor_value_info(model.graph.input[0].name, onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(sst_copy))
    card_path = sst_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["sha256"] = sha256_file(sst_copy)
    card_path.write_text(json.dumps(card))
    with pytest.raises(EngineError, match=f"{sst_copy} must have the one output 'saliency'.*'current'"):
        Engine(sst_copy)
