"""The runnable book: vae-book.zip, written into the HTML, linked from every page.

A chapter's own download (.ipynb) cannot run alone: it imports vae_helpers.py and
reads the pinned requirements. The zip holds everything a reader needs to run any
chapter elsewhere; it is rebuilt from the repository at every HTML build (never
kept by hand), and each page's announcement banner links to it by a relative path,
so the link works from file:// as well as from a web server.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from sphinx.errors import ExtensionError

ZIP_NAME = "vae-book.zip"
FOLDER = "vae-book"  # the zip unpacks into one folder of this name
# Repository paths, as they appear in the zip (under FOLDER/), then HOW-TO-RUN.md.
FILES = (
    "vae_helpers.py",
    "vae_config.py",
    "vae_explorer.py",  # chapter 8's in-browser explorer: exporter and script
    "book/explorer/vae_explorer.js",
    "pyproject.toml",
    "requirements.txt",
    "requirements-backends.txt",  # KERAS_BACKEND=jax or torch
    "vae.py",  # the study's script imports its flag parsers
    "benchmarks/study.py",  # chapter 9 reads the study with it
    "results/bench-default/training.json",  # chapter 6: the default in each precision
)
CHAPTERS = "chapters/*.ipynb"
# The committed records chapters 6 and 9 read (no weights, which git ignores).
RECORDS = (
    "results/study/*.json",
    "results/study/*/*.json",
    "results/study/*/*.png",
    "results/study/*/*.npz",
    # The seed screens' records: chapter 6's spread over seeds, chapter 9's longer runs.
    "results/seed-screen/*/*.json",
    # Chapter 6's float32 against bfloat16: the comparisons and their runs' records.
    "results/precision/**/*.json",
)
HOW_TO_RUN = "book/HOW-TO-RUN.md"
# A fixed timestamp: the same sources give the same bytes at every build.
STAMP = (2026, 1, 1, 0, 0, 0)


def runnable_book_files(root: Path) -> dict[str, Path]:
    """Name in the zip -> file in the repository, failing on any missing file."""
    chapters = sorted(root.glob(CHAPTERS))
    if not chapters:
        raise ExtensionError(f"runnable book: no {CHAPTERS} under {root}")
    files = {f"{FOLDER}/{path.relative_to(root)}": path for path in chapters}
    for name in FILES:
        files[f"{FOLDER}/{name}"] = root / name
    for pattern in RECORDS:
        for path in sorted(root.glob(pattern)):
            files[f"{FOLDER}/{path.relative_to(root)}"] = path
    files[f"{FOLDER}/HOW-TO-RUN.md"] = root / HOW_TO_RUN
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise ExtensionError(f"runnable book: missing {', '.join(missing)}")
    return files


def write_zip(files: dict[str, Path], target: Path) -> None:
    """Writes the zip next to its final name, then renames it into place."""
    partial = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in files.items():
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    partial.replace(target)


def build_zip(app, exception):
    if exception is None and app.builder.format == "html":
        write_zip(runnable_book_files(Path(app.srcdir)), Path(app.outdir) / ZIP_NAME)


def link_banner(app, pagename, templatename, context, doctree):
    """Puts the download link in this page's announcement banner."""
    href = context["pathto"](ZIP_NAME, resource=True)
    context["theme_announcement"] = (
        "Run the chapters yourself: "
        f'<a class="runnable-book-link" href="{href}" download>'
        f"download the runnable book ({ZIP_NAME})</a>, every notebook with "
        "<code>vae_helpers.py</code>, the pinned requirements and how to run them."
    )


def setup(app):
    app.connect("html-page-context", link_banner)
    app.connect("build-finished", build_zip)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
