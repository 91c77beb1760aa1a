"""Students and the SOD net read back from their ONNX files and exported again at another input shape."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from saliency_ros.cli import main
from saliency_ros.models import create_model
from saliency_ros.models.skd import SKDWidths
from saliency_ros.runtime.engine import Engine
from saliency_ros.runtime.model_card import sha256_file
from saliency_ros.training.common import LoopConfig, ResumableSampler, Runtime, fit, folded_batchnorms, unfold_batchnorms
from saliency_ros.training.data.synthetic import write_synthetic_dataset
from saliency_ros.training.export import export_model, export_untrained, input_shape
from saliency_ros.training.reshape import sod_from_onnx, student_from_onnx
from saliency_ros.training.sod import stage1_loss
from test.sources.test_boxes import write_box_clip


def _reshape_args(tmp_path: Path, models: Path, export: str) -> list[str]:
    """`saliency-ros train reshape` arguments over generated train/val clips and a box clip
    (four boxes, one out of view), with the recipe's `export` section as given."""
    data = tmp_path / "data"
    write_synthetic_dataset(data / "train", 2, 6, 128, 96, seed=0)
    write_synthetic_dataset(data / "val", 1, 5, 128, 96, seed=1)
    write_box_clip(data / "boxes" / "clip", ["28,20,8,8", "0,0,4,4", "NaN,NaN,NaN,NaN", "29.5,21,6.5,6"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"seed: 0\ndata: {{train: [{data / 'train'}], val: {data / 'val'}, boxes: [{data / 'boxes'}]}}\n"
                      f"sod: {{model: sod_effl0, input_size: 64}}\nskd: {{sizes: [32]}}\nexport: {export}\n")
    return ["train", "reshape", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--models-dir", str(models)]


@pytest.mark.parametrize("dilations", [(1, 1, 1, 1), (2, 4, 2, 4)])
def test_a_student_read_back_from_onnx_is_the_exported_one_at_any_shape(tmp_path: Path,
                                                                        dilations: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    widths = SKDWidths(dilations=dilations)
    square = export_model(create_model("skd_sst", input_size=32, widths=widths), "skd_sst", 32, tmp_path).onnx_path
    net = student_from_onnx(square)
    assert net.widths == widths  # the card's architecture, dilations included
    # Exported again at 16:9 from the read-back weights: the same function on a 24 x 44 input.
    wide = export_model(net, "skd_sst", 32, tmp_path / "wide", aspect=1.75).onnx_path
    assert (Engine(wide).card.input.height, Engine(wide).card.input.width) == (24, 44)
    for path, (h, w) in ((square, (32, 32)), (wide, (24, 44))):
        cur, prev = (np.random.default_rng(i).standard_normal((1, 3, h, w)).astype(np.float32) for i in (1, 2))
        with torch.no_grad():
            expected = net(torch.from_numpy(cur), torch.from_numpy(prev)).numpy()
        np.testing.assert_allclose(Engine(path)(current=cur, previous=prev), expected, atol=1e-5)


def test_only_fp32_student_exports_can_be_read_back(tmp_path: Path) -> None:
    sod = export_untrained("sod_effl0", 64, tmp_path).onnx_path
    with pytest.raises(ValueError, match="not an fp32 SKD student export"):
        student_from_onnx(sod)


def test_a_sod_net_read_back_from_onnx_is_the_exported_one_at_any_shape(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = create_model("sod_effl0", pretrained=False).eval()
    with torch.no_grad():  # statistics and slopes far from their initial values, so folding them shows
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(-0.5, 0.5)
    square = export_model(net, "sod_effl0", 64, tmp_path).onnx_path
    back = sod_from_onnx(square)
    wide = export_model(back, "sod_effl0", 64, tmp_path / "wide", shape=(64, 96)).onnx_path
    assert (Engine(wide).card.input.height, Engine(wide).card.input.width) == (64, 96)
    for path, (h, w) in ((square, (64, 64)), (wide, (64, 96))):
        image = np.random.default_rng(h + w).standard_normal((1, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            expected = net.deploy()(torch.from_numpy(image)).numpy()
        np.testing.assert_allclose(Engine(path)(image=image), expected, atol=1e-5)


class _Images(torch.utils.data.Dataset):
    """Random 64 x 64 images as the SOD stage-1 loss reads them."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(i)
        return {"current": torch.randn(3, 64, 64, generator=gen), "mask": torch.rand(1, 64, 64, generator=gen).round()}


def test_a_read_back_sod_net_trains_on_from_its_unfolded_batchnorms(tmp_path: Path) -> None:
    """Read back from ONNX, every trunk BatchNorm is a folded identity: right in eval mode,
    wrong in train mode, where it normalises by the batch. Unfolded, the eval-mode net is the
    same function and the train-mode one matches it; `fit` unfolds before its first step."""
    torch.manual_seed(0)
    back = sod_from_onnx(export_untrained("sod_effl0", 64, tmp_path).onnx_path)
    folded = folded_batchnorms(back)
    trunk = [n for n, m in back.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and n.startswith("trunk.")]
    assert folded and set(trunk) <= set(folded)
    assert not folded_batchnorms(create_model("sod_effl0", pretrained=False))  # fresh layers: variance 1
    images = _Images()
    x = torch.stack([images[i]["current"] for i in range(8)])
    with torch.no_grad():
        before = back.deploy().eval()(x)
        as_read = copy.deepcopy(back).train().deploy()(x)  # a copy: train mode updates the statistics
    assert float((as_read - before).abs().mean()) > 0.05  # train mode changes the function

    reread = sod_from_onnx(export_untrained("sod_effl0", 64, tmp_path / "again").onnx_path)
    unfolded = unfold_batchnorms(back, images, stage1_loss(), batch_size=8, device=torch.device("cpu"), batches=4)
    assert set(trunk) <= set(unfolded) and not set(trunk) & set(folded_batchnorms(back))
    with torch.no_grad():
        torch.testing.assert_close(back.deploy().eval()(x), before, atol=1e-5, rtol=1e-4)
        back.train()
        assert float((back.deploy()(x) - before).abs().mean()) < 0.02

    # fit's first step (its loss is taken in train mode, before the update) sees the eval-mode net.
    first = {k: torch.stack([images[i][k] for i in list(ResumableSampler(len(images), seed=0))[:8]])
             for k in ("current", "mask")}
    with torch.no_grad():
        eval_loss = float(stage1_loss()(reread.eval(), first))
        folded_loss = float(stage1_loss()(copy.deepcopy(reread).train(), first))
    cfg = LoopConfig(iterations=1, batch_size=8, lr=1e-9, optimizer="adam", workers=0)
    step = fit(reread, images, stage1_loss(), cfg, Runtime(torch.device("cpu"), amp=False), tmp_path / "fit", "fit")
    assert abs(step.last_loss - eval_loss) < 0.2 * abs(folded_loss - eval_loss), (step.last_loss, eval_loss, folded_loss)


def test_only_fp32_sod_exports_can_be_read_back_and_shapes_follow_the_stride(tmp_path: Path) -> None:
    student = export_untrained("skd_sst", 32, tmp_path).onnx_path
    with pytest.raises(ValueError, match="not an fp32 SOD net export"):
        sod_from_onnx(student)
    assert input_shape("sod_effl0", 256, shape=(192, 320)) == (192, 320)
    with pytest.raises(ValueError, match="multiples of 32"):
        input_shape("sod_effl0", 256, shape=(192, 336))
    with pytest.raises(ValueError, match="not an aspect"):
        input_shape("sod_effl0", 256, aspect=1.75)


@pytest.mark.slow
def test_train_reshape_rewrites_the_students_scored_and_leaves_the_sod_net(tmp_path: Path) -> None:
    models = tmp_path / "models"
    sod = export_untrained("sod_effl0", 64, models).onnx_path
    # A student with a training record, as `train all` writes it (random weights: plumbing only).
    square = export_untrained("skd_sst", 32, tmp_path / "untrained").onnx_path
    old = {"status": "trained", "metrics": {"val": {"fbeta_max": 0.5}}}
    export_model(student_from_onnx(square), "skd_sst", 32, models, old)
    args = _reshape_args(tmp_path, models, "{int8: true, calibration_pairs: 4, student_shape: {32: [24, 40]}}")
    sod_files = {p.name: sha256_file(p) for p in models.glob("sod*")}
    assert main(args) == 0

    student = models / "skd_sst_32.onnx"
    card = Engine(student).card  # checks the hash of the rewritten file
    assert (card.input.height, card.input.width) == (24, 40)
    training = json.loads(student.with_suffix(".json").read_text())["training"]
    assert training["reshaped"]["input"] == [24, 40]
    assert training["reshaped"]["from"]["input"] == [32, 32] and training["reshaped"]["from"]["metrics"] == old["metrics"]
    assert training["metrics"]["val"]["frames"] == 4  # five frames, the first without a previous one
    assert training["metrics"]["boxes"]["box_frames"] == 2 and "baselines" in training["metrics"]["boxes"]
    report = json.loads((tmp_path / "run" / "quantized" / "report.json").read_text())
    assert set(report["models"]["skd_sst_32.onnx"]) >= {"fp32", "int8", "within_tolerance"}
    assert {p.name: sha256_file(p) for p in models.glob("sod*")} == sod_files
    assert not (tmp_path / "run" / "quantized" / f"{sod.stem}_int8.onnx").exists()

    # At the recipe's shape already: nothing is exported, scored or quantized again.
    before = sha256_file(student)
    (tmp_path / "run" / "quantized" / "report.json").unlink()
    assert main(args) == 0
    assert sha256_file(student) == before and not (tmp_path / "run" / "quantized" / "report.json").exists()


def _sod_beside_a_student(tmp_path: Path) -> tuple[Path, Path, dict]:
    """models/ with a SOD net that has a training record, as `train all` writes it, and a
    student (random weights: plumbing only); returns the folder, the SOD file and its record."""
    models = tmp_path / "models"
    untrained = export_untrained("sod_effl0", 64, tmp_path / "untrained").onnx_path
    old = {"status": "trained", "metrics": {"val": {"fbeta_max": 0.5}}}
    sod = export_model(sod_from_onnx(untrained), "sod_effl0", 64, models, old).onnx_path
    export_untrained("skd_sst", 32, models)
    return models, sod, old


@pytest.mark.slow
def test_train_reshape_rewrites_the_sod_net_scored_and_quantized_and_leaves_the_students(tmp_path: Path) -> None:
    models, sod, old = _sod_beside_a_student(tmp_path)
    args = _reshape_args(tmp_path, models, "{int8: true, calibration_pairs: 4, sod_shape: [64, 96]}")
    student_files = {p.name: sha256_file(p) for p in models.glob("skd*")}
    assert main(args) == 0

    card = Engine(sod).card  # checks the hash of the rewritten file
    assert (card.input.height, card.input.width) == (64, 96)
    training = json.loads(sod.with_suffix(".json").read_text())["training"]
    assert training["reshaped"]["from"]["input"] == [64, 64] and training["reshaped"]["from"]["metrics"] == old["metrics"]
    assert training["metrics"]["val"]["frames"] == 5  # one frame is enough for the SOD net
    # Four box frames, one out of view: three scored (a student scores two, from the second frame).
    assert training["metrics"]["boxes"]["box_frames"] == 3 and "baselines" in training["metrics"]["boxes"]
    report = json.loads((tmp_path / "run" / "quantized" / "report.json").read_text())
    assert set(report["models"]) == {sod.name} and set(report["models"][sod.name]) >= {"fp32", "int8", "within_tolerance"}
    assert {p.name: sha256_file(p) for p in models.glob("skd*")} == student_files


@pytest.mark.slow
def test_train_reshape_writes_the_sod_net_again_for_saliency_scored_as_saliency(tmp_path: Path) -> None:
    """export.saliency_shape: the SOD net exported again (`<stem>_<h>x<w>.onnx`), scored by the
    saliency pipeline (every frame: it reads one) and quantized as a
    /saliency model; its fp32 file stays in the run folder, only the INT8 copy ships (when it
    keeps to the rule); the other files are left alone; made once per SOD file."""
    models, sod, _ = _sod_beside_a_student(tmp_path)
    args = _reshape_args(tmp_path, models, "{int8: true, calibration_pairs: 4, saliency_shape: [32, 64]}")
    before = {p.name: sha256_file(p) for p in models.iterdir()}
    assert main(args) == 0

    fp32 = tmp_path / "run" / "reshape" / "saliency" / "scored" / "sod_effl0_64_32x64.onnx"
    card = Engine(fp32).card
    assert (card.input.height, card.input.width) == (32, 64) and list(card.input.names) == ["image"]
    training = json.loads(fp32.with_suffix(".json").read_text())["training"]
    assert training["reshaped"]["from"]["sha256"] == sha256_file(sod) and training["reshaped"]["input"] == [32, 64]
    assert training["metrics"]["val"]["frames"] == 5  # one frame is enough, as for the SOD net
    assert training["metrics"]["boxes"]["box_frames"] == 3
    report = json.loads((tmp_path / "run" / "quantized" / "report.json").read_text())
    assert set(report["models"]) == {fp32.name}
    shipped = report["models"][fp32.name]["within_tolerance"]
    assert {p.name for p in models.iterdir()} - set(before) == (
        {"sod_effl0_64_32x64_int8.onnx", "sod_effl0_64_32x64_int8.json"} if shipped else set())
    assert {p.name: sha256_file(p) for p in models.iterdir() if p.name in before} == before

    (tmp_path / "run" / "quantized" / "report.json").unlink()
    assert main(args) == 0  # the same SOD file: nothing to do once its copy shipped
    assert (tmp_path / "run" / "quantized" / "report.json").exists() is not shipped


def test_saliency_models_are_told_by_their_file_names() -> None:
    from saliency_ros.training.export import is_saliency_model, saliency_sod_file

    assert saliency_sod_file("sod_effl0_256.onnx", (128, 256)) == "sod_effl0_256_128x256.onnx"
    for name in ("skd_sst_128.onnx", "skd_sst_64_int8.onnx", "sod_effl0_256_128x256.onnx", "sod_effl0_256_128x256_int8.onnx"):
        assert is_saliency_model(Path(name)), name
    for name in ("sod_effl0_256.onnx", "sod_effl0_256_int8.onnx", "skd_ss_64.onnx"):
        assert not is_saliency_model(Path(name)), name
