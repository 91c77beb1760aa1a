"""Where the package's files are: the source checkout, or the install share folder.

A colcon build installs models/, config/ and launch/ under share/saliency_ros (found through
the ament index); a pip venv (editable) reads them from the checkout. Nodes resolve relative
model and parameter file names against these folders, so `skd_sst_64.onnx` works either way.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "saliency_ros"


def repo_root() -> Path:
    """The source checkout this module was imported from (editable installs and tests)."""
    return Path(__file__).resolve().parents[1]


def share_dirs() -> list[Path]:
    """Folders that may hold models/ and config/, most specific first."""
    dirs: list[Path] = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            dirs.append(Path(get_package_share_directory(PACKAGE)))
        except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH (pip venv)
            pass
    except ImportError:  # runtime extra without ament_index_python
        pass
    dirs += [Path(sys.prefix) / "share" / PACKAGE, repo_root()]
    return dirs


def resolve_data_file(name: str, kind: str) -> Path:
    """`name` as given when absolute or present, else the first `<share>/<kind>/<name>` that
    exists; the error lists every place looked at."""
    path = Path(name).expanduser()
    if path.is_absolute() or path.exists():
        return path
    tried = [d / kind / name for d in share_dirs()]
    for candidate in tried:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{kind} file {name!r} not found; looked in {', '.join(map(str, tried))}")
