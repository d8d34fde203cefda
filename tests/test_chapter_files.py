"""Checks every chapter's notebook file without executing it (a glue name glued
twice, or a reference that does not resolve, fails the book build much later)."""

from pathlib import Path

import pytest
from notebook_checks import (
    ROOT,
    Chapter,
    assert_committed_without_outputs,
    assert_glued_once,
    assert_references_resolve,
)

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def test_every_chapter_is_checked():
    assert len(CHAPTERS) >= 10


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: Path(p).stem)
def test_chapter_file(path):
    chapter = Chapter(path)
    assert_committed_without_outputs(chapter)
    assert_glued_once(chapter)
    assert_references_resolve(chapter)
