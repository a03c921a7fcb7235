"""Issue 37, points 14 and 15: a way in (a start page with a picture, first in the README's
documentation list) and a README that says which command installs which PyTorch build."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_readme_says_which_command_gets_which_pytorch_build():
    two = _section((ROOT / "README.md").read_text(), "Two commands")
    assert "--index-url https://download.pytorch.org/whl/cpu" in two  # the CPU build
    assert "CUDA build" in two and "nvidia-" in two  # what plain PyPI gives on Linux
    assert "torch.version.cuda" in two  # how to tell which one you have
    # the old promise is gone: `pip install torch==2.13.0` does not take the CPU build on PyPI
    assert "takes PyTorch's CPU build" not in two


def test_documentation_list_opens_with_the_start_page_and_it_shows_the_demos_picture():
    docs = _section((ROOT / "README.md").read_text(), "Documentation")
    first = re.search(r"\[[^\]]+\]\(([^)]+)\)", docs)
    assert first and first.group(1) == "docs/start-here.md"
    page = (ROOT / "docs" / "start-here.md").read_text()
    images = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", page, flags=re.S)
    assert images, "the start page shows no image"
    for rel in images:
        img = (ROOT / "docs" / rel).resolve()
        assert img.is_file(), rel
        data = img.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 250_000  # a small PNG
    for link in re.findall(r"\]\(([a-z-]+\.md)\)", page):  # every page it points to exists
        assert (ROOT / "docs" / link).is_file(), link
