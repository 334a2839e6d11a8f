"""A helper for the layout-refusal tests: write a layout, expect it refused naming file and field."""

from __future__ import annotations

import pytest

from twin.layout import LAYOUTS_DIR, LayoutError, load_layout


def assert_refused(tmp_path, text: str, message: str) -> None:
    """``text`` saved as a layout file is refused with ``message`` (a regex) and the file's path."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(LayoutError, match=message) as err:
        load_layout(path)
    assert str(path) in str(err.value)


def edited(bundled: str, old: str, new: str) -> str:
    """A bundled layout's text with ``old`` (which must be there) replaced by ``new``."""
    text = (LAYOUTS_DIR / f"{bundled}.toml").read_text()
    assert old in text
    return text.replace(old, new)
