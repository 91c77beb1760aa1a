"""Model and config names resolve against the install share folder or the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from saliency_ros.paths import repo_root, resolve_data_file


def test_names_resolve_to_shipped_files() -> None:
    assert resolve_data_file("skd_sst_64.onnx", "models") == repo_root() / "models" / "skd_sst_64.onnx"
    assert resolve_data_file("drone.yaml", "config").read_text().startswith("#")


def test_absolute_path_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "x.onnx"
    assert resolve_data_file(str(path), "models") == path


def test_missing_name_lists_where_it_looked() -> None:
    with pytest.raises(FileNotFoundError, match="models/nope.onnx"):
        resolve_data_file("nope.onnx", "models")
