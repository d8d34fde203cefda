"""The appendix on data-parallel training: committed clean, listed, tied to its cells.

The chapter runs Keras on JAX with two CPU host devices, which it asks for in its
first code cell before anything imports Keras. These tests read the notebook and
never train: they parse its cells, and run only that first cell, in processes of
their own, to see the order hold (two devices) and the guard fire (a kernel that
already imported Keras on TensorFlow stops with one line).
"""

import ast
import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT
from notebook_checks import (
    Chapter,
    assert_committed_without_outputs,
    assert_figures_read_aloud,
    assert_glued_once_where_used,
    assert_references_resolve,
    source,
    typed_numbers,
)

CHAPTER = Chapter(ROOT / "chapters" / "10_data_parallel.ipynb")
DOC = "chapters/10_data_parallel"
FLAG = "--xla_force_host_platform_device_count="
STARTS_KERAS = {"keras", "vae_helpers", "jax", "tensorflow"}


def first_code_cell():
    return source(CHAPTER.cells("code")[0])


def test_committed_without_outputs():
    assert_committed_without_outputs(CHAPTER)


def test_the_toc_lists_it_as_an_appendix_before_the_back_matter():
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    captions = [part["caption"] for part in toc["parts"]]
    (appendix,) = [part for part in toc["parts"] if part["caption"] == "Appendix"]
    assert [entry["file"] for entry in appendix["chapters"]] == [DOC]
    index = captions.index("Appendix")
    assert captions[index - 1] == "Training and exploring it"
    assert captions[index + 1] == "Back matter"


def test_it_opens_with_its_label_and_the_book_skeleton():
    text = CHAPTER.prose()
    first = source(CHAPTER.cells("markdown")[0])
    assert first.startswith("(ch-data-parallel)=\n# Appendix")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    for heading in ("Overview", "Prerequisites", "Imports", "Summary", "Exercises"):
        assert heading in headings, heading
    assert headings[-1] == "What's next"
    assert headings.index("Summary") < headings.index("Exercises")
    assert text.count(":class: dropdown") >= 3  # one hidden solution per exercise


def test_every_glued_name_in_the_prose_is_glued_once_in_a_code_cell():
    assert_glued_once_where_used(CHAPTER)


def test_no_number_is_typed_into_the_prose():
    """Numbers in sentences come from glue; what is left is code, math and labels."""
    # one device or two, process 0, the second exercise
    found = typed_numbers(CHAPTER.prose(), allowed={"0", "1", "2"})
    assert not found, f"numbers typed into the prose: {found}"


def test_every_figure_is_read_aloud_in_the_next_markdown_cell():
    assert_figures_read_aloud(CHAPTER, at_least=1)


def test_labels_and_citations_exist():
    assert assert_references_resolve(CHAPTER)


def environ_assignments(tree):
    """(line, name, value) of each `os.environ[NAME] = value` in a module."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if (
                isinstance(target, ast.Subscript)
                and ast.unparse(target.value) == "os.environ"
                and isinstance(target.slice, ast.Constant)
            ):
                yield node.lineno, target.slice.value, node.value


def import_lines(tree, modules):
    """Lines of the imports of any of `modules` (top-level package names)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(name.split(".")[0] in modules for name in names):
            yield node.lineno


def test_the_first_code_cell_sets_the_backend_and_the_devices_before_any_import():
    code = first_code_cell()
    tree = ast.parse(code)
    first_import = min(import_lines(tree, STARTS_KERAS))
    assigned = {}
    for line, name, value in environ_assignments(tree):
        assigned.setdefault(name, []).append((line, value))
    assert set(assigned) >= {"KERAS_BACKEND", "XLA_FLAGS"}, sorted(assigned)
    ((backend_line, backend),) = assigned["KERAS_BACKEND"]
    assert isinstance(backend, ast.Constant) and backend.value == "jax"
    ((flags_line, flags),) = assigned["XLA_FLAGS"]
    assert backend_line < first_import and flags_line < first_import
    # The flag is appended to what XLA_FLAGS held, not written over it.
    assert "XLA_FLAGS" in ast.unparse(flags), ast.unparse(flags)
    before = "\n".join(code.splitlines()[: first_import - 1])
    assert FLAG in before
    # The guard against a kernel that imported Keras first comes first of all.
    guard = code.index('"keras" in sys.modules')
    assert guard < code.index('os.environ["KERAS_BACKEND"]')


def run_first_cell(prelude="", epilogue="", **env):
    """Runs the chapter's first code cell in a fresh Python, between two snippets."""
    script = (
        f"import sys\n{prelude}\n"
        f"try:\n    exec(compile({first_code_cell()!r}, 'first cell', 'exec'))\n"
        "finally:\n    print('vae_helpers imported:', 'vae_helpers' in sys.modules)\n"
        f"{epilogue}\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environment.pop("XLA_FLAGS", None)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT / "chapters",
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(150)
def test_the_first_cell_gives_keras_on_jax_two_devices():
    done = run_first_cell(
        epilogue="print(keras.backend.backend(), jax.device_count())",
        KERAS_BACKEND="tensorflow",  # the cell sets the backend, whatever was there
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Keras ") and "KERAS_BACKEND=jax" in lines[0]
    assert lines[-1] == "jax 2", lines


@pytest.mark.timeout(150)
def test_a_kernel_with_keras_on_another_backend_stops_with_one_line():
    done = run_first_cell(
        prelude="import os\nos.environ['KERAS_BACKEND'] = 'tensorflow'\nimport keras",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "vae_helpers imported: False"
    last = done.stderr.strip().splitlines()[-1]
    assert "needs Keras on JAX" in last and "tensorflow" in last, last
    assert "restart the kernel" in last


def test_the_hardware_section_is_prose_with_code_that_is_not_run():
    text = CHAPTER.prose()
    section = text.split("(sec-dp-hardware)=")[1].split("## Summary")[0]
    assert "Not run here" in section
    fenced = "\n".join(re.findall(r"^```python\n(.*?)^```$", section, re.S | re.M))
    for name in (
        "jax.distributed.initialize",
        "DeviceMesh",
        "LayoutMap",
        "ModelParallel",
    ):
        assert name in fenced, name
    code = "\n".join(source(cell) for cell in CHAPTER.cells("code"))
    assert "jax.distributed.initialize" not in code
    assert "keras.distribution.initialize" not in code


def test_the_page_trains_with_the_libraries_not_by_hand():
    """DataParallel through vh.data_parallel and fit(); no gradient code."""
    code = "\n".join(source(cell) for cell in CHAPTER.cells("code"))
    assert "vh.data_parallel(" in code and "vh.train_vae(" in code
    for by_hand in ("jax.grad", "value_and_grad", "GradientTape", "psum", "pmap"):
        assert by_hand not in code, by_hand
