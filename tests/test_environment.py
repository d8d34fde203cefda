"""environment.yml (conda) and the pip requirements pin the same packages."""

import re

from conftest import ROOT

REQUIREMENTS = ("requirements.txt", "requirements-backends.txt", "requirements-dev.txt")


def pins_from_requirements(name):
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-r"):
            continue
        package, version = line.split("==")
        pins[package.lower()] = version
    return pins


def pins_from_environment():
    text = (ROOT / "environment.yml").read_text()
    pip_block = text.split("- pip:")[1]
    return {
        package.lower(): version
        for package, version in re.findall(r"^\s+- ([\w.-]+)==(\S+)", pip_block, re.M)
    }


def test_every_requirement_is_pinned_exactly():
    for name in REQUIREMENTS:
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert re.fullmatch(r"[\w.-]+==[\w.]+", line), f"{name}: {line}"


def test_conda_and_pip_agree():
    pip_pins = {
        k: v for name in REQUIREMENTS for k, v in pins_from_requirements(name).items()
    }
    assert pins_from_environment() == pip_pins
    assert "python=3.11" in (ROOT / "environment.yml").read_text()


def test_pins_are_what_is_installed():
    from importlib.metadata import version

    for name in ("requirements.txt", "requirements-backends.txt"):
        for package, pinned in pins_from_requirements(name).items():
            assert version(package).split("+")[0] == pinned, package  # 2.13.0+cpu
