"""The README and docs/ describe the CLI as it is: each command line they show names real commands, options.

The strict mkdocs build (`make docs`, run by `make test`) checks links, anchors and the generated references;
this test needs no mkdocs and points at the exact line that went stale.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from ikl_zoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MAX_README_LINES = 250
COMMAND_LINE = re.compile(r"(?:\bikl-zoo|-m ikl_zoo\.cli)\s+([a-z][a-z-]*)(.*)")


def shell_lines(text: str) -> list[str]:
    """The lines of the ```sh blocks, continuation lines joined, comments dropped."""
    lines, inside = [], False
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("```"):
            inside = line.strip() in ("```sh", "```bash")
            continue
        if inside:
            lines.append(line.split(" #")[0])
    return lines


def option_names(command: click.Command) -> set[str]:
    names = {"--help"}
    for parameter in command.params:
        names.update(parameter.opts + parameter.secondary_opts)
    return names


def stale_references(text: str) -> list[str]:
    """Each command line naming a command or an option the CLI does not have."""
    problems = []
    for line in shell_lines(text):
        match = COMMAND_LINE.search(line)
        if not match:
            continue
        command = main.commands.get(match.group(1))
        if command is None:
            problems.append(f"no command {match.group(1)!r}: {line.strip()}")
            continue
        words = shlex.split(re.sub(r"\[|\]|\.\.\.", " ", match.group(2)), posix=True)
        unknown = [w.split("=")[0] for w in words if w.startswith("--")]
        problems += [
            f"{match.group(1)} has no option {o}: {line.strip()}"
            for o in unknown
            if o not in option_names(command)
        ]
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_command_lines_match_the_cli(page: Path) -> None:
    problems = stale_references(page.read_text())
    assert not problems, "; ".join(problems)


def test_the_check_catches_a_stale_option() -> None:
    text = "```sh\nikl-zoo eval --model x --no-such-option\nikl-zoo evaluate --model x\n```\n"
    assert len(stale_references(text)) == 2


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES
    first_block = lines[lines.index("```sh") + 1 :][:2]
    assert first_block[0].startswith("make demo") and first_block[1].startswith("make test")
    assert sum(bool(COMMAND_LINE.search(line)) for line in shell_lines("\n".join(lines))) >= 10
