"""Static checks of launch/drone.launch.py against setup.py and config/, read as Python source:
they run everywhere, also where launch is not installed. test/launch/ runs the file itself."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from test.conftest import REPO

LAUNCH = REPO / "launch" / "drone.launch.py"


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def _kw(call: ast.Call, key: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == key), None)


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "console_scripts":
                    entries = [e.value for e in v.elts]
                    return dict((s.strip() for s in e.split("=")) for e in entries)
    raise AssertionError("setup.py has no console_scripts")


TREE = ast.parse(LAUNCH.read_text())
NODES = _calls(TREE, "Node") + _calls(TREE, "LifecycleNode")
PARAMS = yaml.safe_load((REPO / "config" / "drone.yaml").read_text())


def test_declares_the_documented_arguments() -> None:
    names = {c.args[0].value for c in _calls(TREE, "DeclareLaunchArgument")}
    assert names == {"camera_topic", "namespace", "params_file", "use_sim_camera", "use_sim_time", "backend",
                     "shared_inference"}
    params_default = next(_kw(c, "default_value") for c in _calls(TREE, "DeclareLaunchArgument")
                          if c.args[0].value == "params_file")
    parts = [e.value for e in params_default.args[0].elts if isinstance(e, ast.Constant)]
    assert parts == ["config", "drone.yaml"]


def test_uses_real_launch_ros_imports() -> None:
    imports = {n.module for n in ast.walk(TREE) if isinstance(n, ast.ImportFrom)}
    assert {"launch", "launch_ros.actions", "launch_ros.substitutions"} <= imports
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in TREE.body)


@pytest.mark.parametrize("call", NODES, ids=lambda c: _kw(c, "name").value)
def test_each_node_matches_setup_and_config(call: ast.Call) -> None:
    scripts = _console_scripts()
    executable, name = _kw(call, "executable").value, _kw(call, "name").value
    assert executable in scripts, f"{executable} is not a console script in setup.py"
    module, func = scripts[executable].split(":")
    assert callable(getattr(importlib.import_module(module), func))
    assert f"/**/{name}" in PARAMS, f"config/drone.yaml has no section for {name}"
    params = _kw(call, "parameters")
    if isinstance(params, ast.Name):  # a list assigned once and shared by several nodes
        params = next(a.value for a in ast.walk(TREE) if isinstance(a, ast.Assign)
                      and getattr(a.targets[0], "id", None) == params.id)
    text = ast.unparse(params)
    assert text.startswith("[params_file")
    if name != "camera_source":  # perception nodes: the launch arguments' values last, over every file
        assert text.endswith("node_values]")
    assert _kw(call, "remappings") is not None and _kw(call, "namespace") is not None


def test_perception_nodes_are_lifecycle_nodes_and_camera_is_optional() -> None:
    lifecycle = {_kw(c, "name").value for c in _calls(TREE, "LifecycleNode")}
    assert lifecycle == {"saliency_node", "objects_node"}
    # shared_inference:=true swaps saliency_node for one with config/shared_inference.yaml over
    # params_file and leaves objects_node out; false gives exactly the two-node bring-up.
    conditions = {(_kw(c, "name").value, ast.unparse(_kw(c, "parameters")), ast.unparse(_kw(c, "condition")))
                  for c in _calls(TREE, "LifecycleNode")}
    assert conditions == {("saliency_node", "perception_params", "UnlessCondition(shared)"),
                          ("saliency_node", "shared_params", "IfCondition(shared)"),
                          ("objects_node", "perception_params", "UnlessCondition(shared)")}
    shared = next(a.value for a in ast.walk(TREE) if isinstance(a, ast.Assign)
                  and getattr(a.targets[0], "id", None) == "shared_params")
    assert "'shared_inference.yaml'" in ast.unparse(shared) and (REPO / "config" / "shared_inference.yaml").is_file()
    camera = next(c for c in _calls(TREE, "Node") if _kw(c, "name").value == "camera_source")
    assert "use_sim_camera" in ast.unparse(_kw(camera, "condition"))


def test_config_sets_only_declared_parameters_with_valid_values() -> None:
    from saliency_ros.nodes.base import COMMON_PARAMS
    from saliency_ros.nodes.camera_source import PARAMS as CAMERA
    from saliency_ros.nodes.objects_node import ObjectsNode
    from saliency_ros.nodes.saliency_node import SaliencyNode

    declared = {"saliency_node": {**COMMON_PARAMS, **SaliencyNode.PARAMS},
                "objects_node": {**COMMON_PARAMS, **ObjectsNode.PARAMS}, "camera_source": CAMERA}
    shared = yaml.safe_load((REPO / "config" / "shared_inference.yaml").read_text())
    assert set(shared) == {"/**/saliency_node"}
    for node, specs in declared.items():
        for values in (PARAMS[f"/**/{node}"]["ros__parameters"],
                       shared.get(f"/**/{node}", {}).get("ros__parameters", {})):
            assert set(values) <= set(specs), f"{node}: undeclared {set(values) - set(specs)}"
            for key, value in values.items():
                assert type(value) is type(specs[key].default), f"{node}.{key}: {value!r} has the wrong type"
                assert specs[key].problem(key, value) is None


def test_setup_installs_launch_config_and_models() -> None:
    text = (REPO / "setup.py").read_text()
    for pattern in ('glob("launch/*.launch.py")', 'glob("config/*.yaml")', 'glob("config/*.xml")',
                    'glob("models/*.onnx")'):
        assert pattern in text
    assert Path(REPO / "resource" / "saliency_ros").is_file()
