"""
The packaging says what the project is and what it needs (issue 12, 19).

pyproject.toml, LICENSE, CHANGELOG.md, changelog.d/, noxfile.py and the
documentation site's index, read as files of the checkout.  The docs build
(``nox -s docs``) and the changelog draft (``nox -s changelog``) check the
rest with the tools themselves.
"""

from __future__ import annotations

import ast
import re
import tomllib

from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version


ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
REPOSITORY = "https://github.com/resilient-mcp/resilient-mcp"

# The nox release that introduced each nox feature noxfile.py may use.
NOX_FEATURES = {
    "nox.needs_version": "2019.5.30",
    "nox.project.load_toml": "2024.4.15",
    "nox.project.dependency_groups": "2025.2.9",
}


def test_license_file_is_the_declared_license():
    """LICENSE is the MIT licence that pyproject declares, and it ships."""
    text = (ROOT / "LICENSE").read_text()

    assert "MIT" == PROJECT["license"]
    assert ["LICENSE"] == PROJECT["license-files"]
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the resilient-mcp developers" in text


def test_project_urls_point_at_the_repository():
    """Homepage, Documentation, Source, Changelog and Issues are declared."""
    urls = PROJECT["urls"]

    assert {
        "Homepage",
        "Documentation",
        "Source",
        "Changelog",
        "Issues",
    } == set(urls)
    assert all(url.startswith(REPOSITORY) for url in urls.values())


def test_nox_needs_the_release_of_every_feature_it_uses():
    """nox.needs_version admits no nox older than a feature noxfile uses."""
    source = (ROOT / "noxfile.py").read_text()
    tree = ast.parse(source)
    needs = next(
        node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and ast.unparse(node.targets[0]) == "nox.needs_version"
    )
    used = [feature for feature in NOX_FEATURES if feature in source]
    newest = max(Version(NOX_FEATURES[feature]) for feature in used)
    lower = Version(
        next(s.version for s in SpecifierSet(needs) if s.operator == ">=")
    )

    assert "nox.project.dependency_groups" in used
    assert newest == lower


def test_otel_extra_adds_what_the_code_imports():
    """The otel extra installs opentelemetry-api, which is not core."""
    imported = {
        match.group(1)
        for path in (ROOT / "src" / "resilient_mcp").rglob("*.py")
        for match in re.finditer(
            r"^\s*(?:from|import) (opentelemetry\S*)",
            path.read_text(),
            re.MULTILINE,
        )
    }
    core = {Requirement(r).name for r in PROJECT["dependencies"]}
    otel = {
        Requirement(r).name for r in PROJECT["optional-dependencies"]["otel"]
    }

    # Only the API: opentelemetry, opentelemetry.trace, .metrics, .context.
    assert {"opentelemetry"} == {name.split(".")[0] for name in imported}
    assert not any(name.startswith("opentelemetry.sdk") for name in imported)
    assert {"opentelemetry-api"} == otel
    assert not otel & core


def test_changelog_fragments_have_names_towncrier_reads():
    """Every file in changelog.d/ is <issue or +name>.<type>[.<n>].md."""
    config = PYPROJECT["tool"]["towncrier"]
    types = "|".join(t["directory"] for t in config["type"])
    pattern = re.compile(rf"(\d+|\+[\w-]+)\.({types})(\.\d+)?\.md")
    names = sorted(p.name for p in (ROOT / config["directory"]).iterdir())
    keys = [
        (m.group(1), m.group(2), m.group(3))
        for m in map(pattern.fullmatch, names)
        if m and not m.group(1).startswith("+")
    ]

    assert [] == [name for name in names if not pattern.fullmatch(name)]
    assert len(set(keys)) == len(keys)  # towncrier: "multiple files for"
    assert [] == config["ignore"]  # so that towncrier fails on a bad name


def test_changelog_has_the_towncrier_start_marker():
    """CHANGELOG.md holds the marker towncrier writes the notes under."""
    config = PYPROJECT["tool"]["towncrier"]
    changelog = (ROOT / config["filename"]).read_text()

    assert "CHANGELOG.md" == config["filename"]
    assert 1 == changelog.count(config["start_string"])


def test_every_docs_page_is_in_the_site():
    """Each docs/*.md page is in a toctree of docs/index.md."""
    docs = ROOT / "docs"
    index = (docs / "index.md").read_text()
    listed = {
        line
        for block in re.findall(r"```\{toctree\}\n(.*?)```", index, re.DOTALL)
        for line in block.splitlines()
        if line and not line.startswith(":")
    }
    pages = {p.stem for p in docs.glob("*.md")} - {"index"}

    assert pages == listed


def test_docs_group_builds_the_site_with_bounds():
    """The docs dependency group pins Sphinx and MyST between majors."""
    group = {
        Requirement(r).name: Requirement(r).specifier
        for r in PYPROJECT["dependency-groups"]["docs"]
    }

    assert {"sphinx", "myst-parser"} == set(group)
    assert all(
        {">=", "<"} == {s.operator for s in spec} for spec in group.values()
    )
