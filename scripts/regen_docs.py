"""Regenerate the generated parts of the docs (the settings table, offerloop.example.toml).
CI checks they match."""

from __future__ import annotations

from pathlib import Path

from offerloop._settings import settings_markdown, settings_toml

DOC = Path(__file__).parents[1] / "docs" / "settings.md"

text = DOC.read_text()
DOC.write_text(text[: text.index("| setting | ")] + settings_markdown())
print(f"wrote {DOC}")

EXAMPLE = Path(__file__).parents[1] / "offerloop.example.toml"
EXAMPLE.write_text(settings_toml())
print(f"wrote {EXAMPLE}")
