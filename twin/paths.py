"""Where the bundled data lives."""

from __future__ import annotations

from pathlib import Path

import assets

ASSETS_DIR = Path(assets.__file__).resolve().parent
LAYOUTS_DIR = ASSETS_DIR / "layouts"
