"""Where the checkout is: the default output folders of the CLI live under it."""

from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """The source checkout this module was imported from (editable installs and tests)."""
    return Path(__file__).resolve().parents[1]
