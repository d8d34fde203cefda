"""Chapter 9, the study: committed clean, listed, its prose tied to executed cells.

The chapter only reads results/study/ (JSON, PNG, NPZ). The last test executes it
on a copy of those records with one run taken out and test codes for one scatter
panel, and checks that the page still runs, names what is missing and says which
panel has no codes.
"""

import ast
import json
import shutil

import nbformat
import numpy as np
import pytest
import yaml
from conftest import ROOT
from myst_nb.core.variables import format_plain_text
from nbclient import NotebookClient
from notebook_checks import (
    GLUE_ROLE,
    Chapter,
    assert_committed_without_outputs,
    assert_figures_read_aloud,
    assert_glued_once_where_used,
    assert_references_resolve,
    source,
    typed_numbers,
)

CHAPTER = Chapter(ROOT / "chapters" / "09_study.ipynb")
STUDY = ROOT / "results" / "study"


def cells(kind):
    return CHAPTER.cells(kind)


def prose():
    return CHAPTER.prose()


def test_committed_without_outputs():
    assert_committed_without_outputs(CHAPTER)


def test_the_toc_lists_it_right_after_the_latent_space():
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    (part,) = [p for p in toc["parts"] if p["caption"] == "Training and exploring it"]
    files = [entry["file"] for entry in part["chapters"]]
    assert "chapters/09_study" in files
    after = files.index("chapters/08_latent_space") + 1
    assert files.index("chapters/09_study") == after


def test_every_glued_name_in_the_prose_is_glued_once_in_a_code_cell():
    assert_glued_once_where_used(CHAPTER)


def test_no_digit_in_the_prose_outside_math_code_and_roles():
    """Numbers in sentences come from glue; what is left is labels and math."""
    # β = 1, the 2-D code, pixels of 0 or 1: definitions
    found = typed_numbers(prose(), allowed={"0", "1", "2"})
    assert not found, f"numbers typed into the prose: {found}"


def test_every_figure_is_read_aloud_in_the_next_cell():
    assert_figures_read_aloud(CHAPTER, at_least=5)


def test_labels_equations_and_citations_exist():
    assert_references_resolve(CHAPTER)


def published():
    """The chapter's PUBLISHED table, read from its source."""
    for cell in cells("code"):
        for node in ast.walk(ast.parse(source(cell))):
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == (
                "PUBLISHED"
            ):
                return ast.literal_eval(node.value)
    raise AssertionError("no PUBLISHED table in the chapter")


def test_published_results_are_those_benchmarks_readme_quotes():
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    section = readme.split("### Binarised MNIST beside published results")[1]
    rows = [line for line in section.splitlines() if line.startswith("| VAE")]
    entries = published()
    assert len(entries) == len(rows)
    for entry, row in zip(entries, rows, strict=True):
        cells_ = [c.strip() for c in row.strip("|").split("|")]
        assert cells_[1] == entry["latent"]
        assert cells_[2].startswith(entry["binarisation"])
        assert f"{entry['epochs']:,} epochs" in cells_[3] or cells_[3] == "as above"
        assert f"−{abs(entry['log_px']):.2f} (k = {entry['k']})" == cells_[4]


def glued_outputs(notebook):
    """name -> text/plain of every glue() output of an executed notebook."""
    found = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                (value,) = output["data"].values()
                found[name] = value
    return found


@pytest.mark.timeout(300)
def test_the_page_runs_with_a_run_missing_and_says_what_it_lacks(tmp_path, monkeypatch):
    study_copy = tmp_path / "study"
    shutil.copytree(STUDY, study_copy, ignore=shutil.ignore_patterns("*.h5", "log-*"))
    summary = json.loads((STUDY / "summary.json").read_text())
    betas = sorted(
        (row for row in summary["runs"].values() if "beta" in row["groups"]),
        key=lambda row: row["kl_weight"],
    )
    removed, smallest, largest = betas[-1], betas[0], betas[-2]
    shutil.rmtree(study_copy / removed["run"])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    for row, run_id in ((smallest, smallest["run_id"]), (largest, "another run")):
        np.savez(
            study_copy / row["run"] / "codes.npz",
            z_mean=(rng.normal(size=(500, 2)) + labels[:, None]).astype("float32"),
            labels=labels,
            run_id=np.str_(run_id),  # the largest's codes are of another run
        )

    monkeypatch.setenv("VAE_STUDY_DIR", str(study_copy))
    notebook = nbformat.read(CHAPTER.path, as_version=4)
    NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "chapters")}},
    ).execute()
    glued = glued_outputs(notebook)

    missing = glued["missing_story"]
    for name in [removed["run"], *summary["missing"]]:
        assert name in missing, (name, missing)
    assert "study.py --table" in missing  # summary.json still lists the removed run
    assert ast.literal_eval(glued["study_complete"]) == "not complete"

    scatter = ast.literal_eval(glued["scatter_story"])
    assert f"At β = {smallest['kl_weight']:g} the 500 codes" in scatter, scatter
    assert f"No codes are in for {largest['run']}" in scatter, scatter
    (scatter_cell,) = [c for c in notebook.cells if "def codes_of" in c.source]
    images = [o for o in scatter_cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1

    for value in glued.values():
        ast.literal_eval(value)  # a Python literal, not a NumPy scalar's repr
    for name, fmt in GLUE_ROLE.findall(prose()):
        format_plain_text(glued[name], fmt)  # as the book's {glue:text} roles do
