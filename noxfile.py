"""Every developer task runs through nox: ``nox -s tests``, ``lint``, ..."""

from __future__ import annotations

import json
import os
import shutil

from pathlib import Path

import nox

from packaging.requirements import Requirement


# nox.project.load_toml came in 2024.04.15, nox.project.dependency_groups
# in 2025.02.09.
nox.needs_version = ">=2025.2.9"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True
nox.options.sessions = ["tests", "lint", "typecheck"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHON = "3.11"


# Every extra, so that tests_lowest and tests_latest cover their bounds too.
EXTRAS = ",".join(sorted(PYPROJECT["project"]["optional-dependencies"]))


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


def _lowest_pins() -> list[str]:
    """
    ``name==lower bound`` for every dependency and extra in pyproject.toml.

    pip has no "lowest versions" resolution, so tests_lowest constrains our
    direct dependencies to their ``>=`` bounds and lets pip pick the newest
    versions of everything else (what uv calls ``lowest-direct``).
    """
    project = PYPROJECT["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    pins = []
    for line in declared:
        requirement = Requirement(line)
        lower = [
            s.version for s in requirement.specifier if s.operator == ">="
        ]
        if len(lower) != 1:
            msg = f"{line!r} needs exactly one '>=' lower bound"
            raise ValueError(msg)
        pins.append(f"{requirement.name}=={lower[0]}")
    return pins


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the whole test suite (trio and asyncio) against the package."""
    session.install(".", *_group("tests"))
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def tests_latest(session: nox.Session) -> None:
    """Run the suite against the newest versions our bounds allow."""
    session.install(
        "--upgrade",
        "--upgrade-strategy",
        "eager",
        f".[{EXTRAS}]",
        *_group("tests"),
    )
    session.run("python", "-m", "pip", "list", "--format=freeze")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def tests_lowest(session: nox.Session) -> None:
    """Run the suite against the lowest versions our bounds allow."""
    constraints = Path(session.create_tmp()) / "lowest.txt"
    constraints.write_text("\n".join(_lowest_pins()) + "\n")
    session.install(
        "--upgrade",
        "--constraint",
        str(constraints),
        f".[{EXTRAS}]",
        *_group("tests"),
    )
    session.run("python", "-m", "pip", "list", "--format=freeze")
    # matplotlib before 3.11 calls pyparsing's camelCase names, which the
    # newest pyparsing deprecates with a warning: harmless, but our
    # filterwarnings = ["error"] would fail the plot tests on it.
    session.run(
        "pytest",
        "-W",
        "ignore::pyparsing.warnings.PyparsingDeprecationWarning",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """Run the chaos suite with the bounded soak run (60 s by default)."""
    session.install(".", *_group("tests"))
    seconds = os.environ.get("RESILIENT_MCP_SOAK_SECONDS") or "60"
    session.run(
        "pytest",
        "-m",
        "chaos",
        *session.posargs,
        env={"RESILIENT_MCP_SOAK_SECONDS": seconds},
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff."""
    session.install(*_group("lint"))
    session.run(
        "ruff", "check", "src", "tests", "bench", "docs/conf.py", "noxfile.py"
    )
    session.run(
        "ruff",
        "format",
        "--check",
        "src",
        "tests",
        "bench",
        "docs/conf.py",
        "noxfile.py",
    )


# pyright --verifytypes: the share of the symbols resilient_mcp exports
# whose types are fully known to a type checker (not inferred), in percent.
MIN_TYPE_COMPLETENESS = 95.0


def _typing_files() -> list[str]:
    """tests/typing/: files to type-check; its test_*.py run under pytest."""
    return sorted(
        str(path)
        for path in Path("tests/typing").glob("*.py")
        if not path.name.startswith("test_")
    )


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """
    Type-check src/ with mypy --strict, and the API as users write it.

    Then ``pyright --verifytypes``: the session fails when less than
    MIN_TYPE_COMPLETENESS percent of the exported symbols have known types.
    """
    session.install(".", *_group("typecheck"))
    session.run("mypy", "src/resilient_mcp")
    # The public API as users write it must type-check too (with the
    # expected errors that warn_unused_ignores turns into tests).
    session.run("mypy", "--strict", *_typing_files())
    # pyright exits 1 on any incomplete symbol; the score decides.  It
    # checks the installed package, not src/ (cwd is not on its path for
    # an installed name, and the venv's pyright finds the venv's Python).
    output = session.run(
        "pyright",
        "--verifytypes",
        "resilient_mcp",
        "--ignoreexternal",
        "--outputjson",
        silent=True,
        success_codes=[0, 1],
    )
    if not isinstance(output, str):
        return  # nox --install-only: nothing ran
    # Only the JSON: pyright may say more (installing Node.js) around it.
    report, _ = json.JSONDecoder().raw_decode(output, output.index("{"))
    completeness = report["typeCompleteness"]
    score = 100 * completeness["completenessScore"]
    counts = completeness["exportedSymbolCounts"]
    session.log(
        f"type completeness {score:.1f}% "
        f"({counts['withKnownType']} known, "
        f"{counts['withAmbiguousType']} ambiguous, "
        f"{counts['withUnknownType']} unknown)"
    )
    if score < MIN_TYPE_COMPLETENESS:
        for symbol in completeness["symbols"]:
            for diagnostic in symbol["diagnostics"]:
                if diagnostic["severity"] == "error":
                    session.log(f"{symbol['name']}: {diagnostic['message']}")
        session.error(
            f"pyright --verifytypes: type completeness {score:.1f}% is "
            f"under {MIN_TYPE_COMPLETENESS}%"
        )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks into bench/results (``-- --quick``: smoke run)."""
    session.install(".[redis]", *_group("bench"))
    session.run("python", "-m", "bench", *session.posargs)
    # Issue 14's fleet latencies need a real redis-server (.ci/run and
    # the README say how to get one); without it the session says so.
    if shutil.which("redis-server") is None:
        session.warn("redis-server is not on the PATH: fleet latency skipped")
        return
    session.run(
        "python",
        "-m",
        "bench.fleet_latency",
        "--out",
        "bench/results/fleet-latency.txt",
    )


@nox.session(python=PYTHON)
def overload(session: nox.Session) -> None:
    """
    Run the overload scenarios for real; plots and a summary (docs/overload).

    Into bench/results/overload: one PNG per scenario, summary.md and
    summary.json.  ``-- --quick`` halves every duration (about 9 minutes
    instead of 17); ``-- --only spike`` runs one scenario.  matplotlib is
    installed here only: it is no dependency of the package.
    """
    session.install(".", "matplotlib>=3.8")
    session.run("python", "-m", "bench.overload", *session.posargs)


@nox.session(python=PYTHON)
def bench_smoke(session: nox.Session) -> None:
    """Check that every benchmark runs (quick mode, under a minute)."""
    session.install(".", *_group("bench"), *_group("tests"))
    session.run("pytest", "bench/test_smoke.py", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site (docs/_build/html), warnings as errors."""
    session.install(".", *_group("docs"))
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def changelog(session: nox.Session) -> None:
    """Draft the next release's notes from changelog.d/; fail on a bad name."""
    # pyproject.toml sets towncrier's `ignore`, which makes a file in
    # changelog.d/ that is not a valid fragment an error, not a skip.
    session.install(*_group("changelog"))
    session.run(
        "towncrier",
        "build",
        "--draft",
        "--version",
        PYPROJECT["project"]["version"],
    )
