"""Package layout: manifest, entry points, shipped models, and the torch-free on-board side."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Modules that run on the drone (ARCHITECTURE.md rule 1): never torch.
ONBOARD = ["runtime", "nodes", "sources", "evaluation"]


def test_package_xml_is_format_3_ament_python() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "saliency_ros"
    assert root.findtext("license") == "Apache-2.0"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.iter("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs"} <= deps
    assert (REPO / "resource" / "saliency_ros").is_file()
    assert "Apache License" in (REPO / "LICENSE").read_text()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0] if node.level == 0 else "")
            if node.module.startswith("saliency_ros."):
                names.add(node.module)
    return names


ONBOARD_FILES = ["image_codec.py", "frame_buffer.py", "paths.py", "newest_slot.py", "stream_stats.py"]


@pytest.mark.parametrize("sub", ONBOARD + ONBOARD_FILES)
def test_onboard_modules_never_import_torch(sub: str) -> None:
    target = REPO / "saliency_ros" / sub
    paths = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert paths and all(p.exists() for p in paths), f"nothing to scan at {target}"
    for path in paths:
        imports = _imports(path)
        assert "torch" not in imports, f"{path} imports torch"
        bad = {i for i in imports if i.startswith(("saliency_ros.models", "saliency_ros.training"))}
        assert not bad, f"{path} imports training-side modules {bad}"


def test_runtime_imports_without_torch_installed() -> None:
    """Import the on-board side in a fresh interpreter where `import torch` fails."""
    code = (
        "import importlib.abc, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError('torch is not installed here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import saliency_ros.cli, saliency_ros.runtime.engine, saliency_ros.runtime.preprocess\n"
        "import saliency_ros.runtime.timing, saliency_ros.image_codec, saliency_ros.frame_buffer\n"
        "import saliency_ros.sources.synthetic, saliency_ros.sources.files, saliency_ros.evaluation.metrics\n"
        "import saliency_ros.nodes.bringup, saliency_ros.runtime.overlay\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_shipped_models_are_trained_and_match_their_cards() -> None:
    """Nothing random lives in models/: every ONNX there has a card saying it was trained."""
    from saliency_ros.runtime.model_card import card_path_for, load_card

    import numpy as np

    from saliency_ros.runtime.engine import Engine

    onnx_files = sorted((REPO / "models").glob("*.onnx"))
    for onnx_path in onnx_files:
        card = load_card(card_path_for(onnx_path))
        assert card.trained, f"{onnx_path} is not trained weights"
        assert json.loads(card_path_for(onnx_path).read_text())["training"]["metrics"]
        engine = Engine(onnx_path, card=card)
        spec = card.input
        out = engine(**{n: np.zeros((1, 3, spec.height, spec.width), np.float32) for n in spec.names})
        assert out.shape == (1, 1, spec.height, spec.width) and 0 <= out.min() <= out.max() <= 1
    assert sum(p.stat().st_size for p in onnx_files) <= 30e6, "shipped weights exceed 30 MB"
    orphans = {p.stem for p in (REPO / "models").glob("*.json")} - {p.stem for p in onnx_files}
    assert not orphans, f"cards without models: {orphans}"


def test_shipped_sod_files_were_made_by_todays_recipe() -> None:
    """One source of truth for how the weights were made: each SOD file's card holds the recipe
    that made it, and that is config/training/drone.yaml as committed. A recipe change without
    regenerated models/ (or new weights without their recipe) fails here. The students' cards
    name an older recipe on purpose (README, Training: the session-4 students stay), so they
    are not compared."""
    from saliency_ros.training.recipe import load_recipe

    # What `train all` writes into a card (the recipe file as parsed, `Recipe.source`), as JSON
    # reads it back: integer keys become strings.
    as_in_a_card = json.loads(json.dumps(load_recipe(REPO / "config" / "training" / "drone.yaml").source))
    cards = sorted((REPO / "models").glob("sod_*.json"))
    assert len(cards) == 3
    for path in cards:
        training = json.loads(path.read_text())["training"]
        assert training["recipe"] == as_in_a_card, path.name
        assert training["command"].startswith("saliency-ros train all --recipe config/training/drone.yaml"), path.name


def test_console_entry_point_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "saliency_ros.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "export" in out.stdout


def test_cli_refuses_untrained_export_into_models() -> None:
    from saliency_ros.cli import main

    assert main(["export", "--out", str(REPO / "models")]) == 2
