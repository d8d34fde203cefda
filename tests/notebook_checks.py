"""What every chapter's own tests check of its notebook file, in one place.

They read the .ipynb as JSON and never execute it: committed without outputs,
every glued name in the prose glued exactly once in a code cell, no number typed
into sentences, each figure read aloud in the next markdown cell, and every
cross-reference and citation resolving.
"""

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)(?::([^`]*))?`")
FIGURE_REF = re.compile(r"\{numref\}`([^`]+)`")


class Chapter:
    def __init__(self, path):
        self.path = Path(path)

    def all_cells(self):
        return json.loads(self.path.read_text())["cells"]

    def cells(self, kind):
        return [c for c in self.all_cells() if c["cell_type"] == kind]

    def prose(self):
        return "\n".join(source(cell) for cell in self.cells("markdown"))

    def glued_in_code(self):
        return [n for c in self.cells("code") for n in glued_names(source(c))]


def source(cell):
    return "".join(cell["source"])


def glued_names(code):
    """The name of every glue("name", ...) call in a code cell's source."""
    for node in ast.walk(ast.parse(code)):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "glue"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield node.args[0].value


def assert_committed_without_outputs(chapter):
    for cell in chapter.cells("code"):
        assert cell["outputs"] == [], source(cell)[:80]
        assert cell["execution_count"] is None, source(cell)[:80]


def assert_glued_once(chapter):
    """No glue name twice: the book build (-W) fails on a duplicate glue key."""
    defined = chapter.glued_in_code()
    twice = sorted({name for name in defined if defined.count(name) > 1})
    assert not twice, f"glued more than once: {twice}"


def assert_glued_once_where_used(chapter):
    defined = chapter.glued_in_code()
    used = {name for name, _ in GLUE_ROLE.findall(chapter.prose())}
    assert used, "the chapter's prose uses no glued value"
    assert not used - set(defined), f"used, never glued: {sorted(used - set(defined))}"
    assert_glued_once(chapter)


def typed_numbers(text, allowed):
    """Numbers left in prose once code, math, roles, links and labels are gone."""
    code_or_math = r"^```(?:python|bash|\{math\})\n.*?^```$"
    text = re.sub(code_or_math, "", text, flags=re.S | re.M)
    text = re.sub(r"^\s*\d+\. ", "", text, flags=re.M)  # numbered exercises
    text = re.sub(r"\$[^$]+\$", "", text)  # inline math
    text = re.sub(r"\{[\w:]+\}`[^`]*`", "", text)  # roles: glue, ref, cite, numref
    text = re.sub(r"`[^`]*`", "", text)  # inline code
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    text = re.sub(r"\(\w[\w-]*\)=", "", text)  # labels
    return sorted(set(re.findall(r"\d+(?:\.\d+)?", text)) - set(allowed))


def assert_figures_read_aloud(chapter, at_least):
    """Each captioned figure is named ({numref}) by the next markdown cell."""
    cells = chapter.all_cells()
    figures = 0
    for index, cell in enumerate(cells):
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
        if cell["cell_type"] != "code" or not figure:
            continue
        figures += 1
        following = [c for c in cells[index + 1 :] if c["cell_type"] == "markdown"]
        assert following, figure["name"]
        assert figure["name"] in FIGURE_REF.findall(source(following[0])), (
            f"{figure['name']}: the next markdown cell does not read it"
        )
    assert figures >= at_least


def assert_references_resolve(chapter):
    """Every {ref}, {eq} and {cite} of the chapter exists in the book."""
    chapters = "\n".join(p.read_text() for p in (ROOT / "chapters").glob("*.ipynb"))
    text = chapter.prose()
    for label in re.findall(r"\{ref\}`([^`<]+)`", text):
        assert f"({label})=" in chapters, label
    for label in re.findall(r"\{eq\}`([^`]+)`", text):
        assert f":label: {label}" in chapters, label
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    cited = re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text)
    for group in cited:
        for key in group.split(","):
            assert key.strip() in keys, key
    return cited
