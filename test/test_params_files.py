"""Parameters files read without ROS: node-name forms, layering, report labels."""

from __future__ import annotations

from pathlib import Path

import yaml

from saliency_ros.params_files import node_parameters, params_label
from test.conftest import REPO


def test_later_files_override_earlier_ones_in_every_name_form(tmp_path: Path) -> None:
    base, top = tmp_path / "base.yaml", tmp_path / "top.yaml"
    base.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"threads": 1, "a": 1}},
                                    "/**/saliency_node": {"ros__parameters": {"model": "x.onnx"}}}))
    top.write_text(yaml.safe_dump({"saliency_node": {"ros__parameters": {"model": "y.onnx", "a": 2}},
                                   "objects_node": {"ros__parameters": {"threads": 9}}}))
    defaults = {"threads": 2, "model": "d.onnx", "a": 0, "b": 0}
    assert node_parameters(base, "saliency_node", defaults) == {"threads": 1, "model": "x.onnx", "a": 1, "b": 0}
    assert node_parameters([base, top], "saliency_node", defaults) == {"threads": 1, "model": "y.onnx", "a": 2, "b": 0}
    assert node_parameters([top, base], "saliency_node", defaults)["model"] == "x.onnx"
    assert node_parameters([base, top], "objects_node", defaults)["threads"] == 9
    assert params_label([base, top]) == f"{base} + {top}" and params_label(base) == str(base)


def test_shared_inference_file_switches_the_saliency_node_only() -> None:
    files = [REPO / "config" / "drone.yaml", REPO / "config" / "shared_inference.yaml"]
    shared = node_parameters(files, "saliency_node", {})
    objects = node_parameters(files[0], "objects_node", {})
    assert shared["publish_objects"] is True and shared["model"] == objects["model"]
    assert shared["motion_prior"] > 0  # /saliency keeps the prior of the two-node default
    assert node_parameters(files, "objects_node", {}) == objects
