"""Regenerate the generated parts of the docs (the settings table). CI checks they match."""

from __future__ import annotations

from pathlib import Path

from offerloop._settings import settings_markdown

DOC = Path(__file__).parents[1] / "docs" / "settings.md"

text = DOC.read_text()
DOC.write_text(text[: text.index("| setting | env |")] + settings_markdown())
print(f"wrote {DOC}")
