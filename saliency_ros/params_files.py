"""ROS 2 parameters files read without ROS: what the nodes will run with, for the offline and
live evaluation and for `saliency-ros run` deciding which nodes to start. Files layer as
several `--params-file` arguments do: a later file overrides an earlier one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def node_parameters(params_files: Path | Sequence[Path], node: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The `ros__parameters` of `node` in ROS 2 parameters files (any of the node-name forms
    a file may use), over `defaults`; a later file overrides an earlier one, as with several
    `--params-file` arguments."""
    values = dict(defaults)
    for params_file in [params_files] if isinstance(params_files, (str, Path)) else params_files:
        data = yaml.safe_load(Path(params_file).read_text()) or {}
        for key in ("/**", f"/**/{node}", node, f"/{node}"):
            values.update((data.get(key) or {}).get("ros__parameters") or {})
    return values


def params_label(params_files: Path | Sequence[Path]) -> str:
    """The parameters files of a run as reports name them: `a.yaml + b.yaml` when layered."""
    files = [params_files] if isinstance(params_files, (str, Path)) else params_files
    return " + ".join(str(f) for f in files)
