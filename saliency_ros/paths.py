"""Where the package's shared files (config/, models/, launch/) are, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE = "saliency_ros"


def repo_root() -> Path:
    """The source checkout this module was imported from (editable installs and tests)."""
    return Path(__file__).resolve().parents[1]


def share_dir() -> Path:
    """`share/saliency_ros` of a colcon install, else the source checkout.

    colcon installs config/, models/ and launch/ under the package's share directory, found
    through the ament index; a pip editable install or a plain checkout uses the repo itself.
    """
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:
        return repo_root()
    try:
        return Path(get_package_share_directory(PACKAGE))
    except PackageNotFoundError:
        return repo_root()
