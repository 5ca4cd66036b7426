"""Locate the grammar and templates, inside an installed wheel or in a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_path(folder: str, name: str) -> Path:
    """Return the path of `folder/name` (folder is `grammar` or `templates`).

    A wheel carries the folders under `nscompile/_data/`; a checkout has them at the top level.
    """
    for root in (_PACKAGE / "_data", _PACKAGE.parent):
        path = root / folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"nscompile is missing its data file {folder}/{name}")
