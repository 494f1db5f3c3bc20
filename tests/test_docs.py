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


def unknown_options(name: str, options: list[str], where: str) -> list[str]:
    """A problem for each of ``options`` that command ``name`` does not have."""
    known = option_names(main.commands[name])
    return [f"{name} has no option {option}: {where}" for option in options if option not in known]


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
        options = [w.split("=")[0] for w in words if w.startswith("--")]
        problems += unknown_options(match.group(1), options, line.strip())
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


SOURCE_FILES = sorted(p for p in (ROOT / "src" / "ikl_zoo").rglob("*") if p.suffix in (".py", ".j2"))
SNIPPET = re.compile(r"ikl-zoo ([a-z][a-z-]*)((?: +(?:--?[a-z][\w-]*|[^\s`'\"]+))*)")


def stale_snippets(text: str) -> list[str]:
    """`ikl-zoo CMD ... --option` in a message or template where CMD has no such option."""
    problems = []
    for name, rest in SNIPPET.findall(text):
        if name in main.commands:  # else prose such as "ikl-zoo writes"
            options = re.findall(r"(?<![\w-])--[a-z][\w-]*", rest)
            problems += unknown_options(name, options, f"ikl-zoo {name}{rest}")
    return problems


@pytest.mark.parametrize("source", SOURCE_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_messages_name_options_the_command_has(source: Path) -> None:
    problems = stale_snippets(source.read_text())
    assert not problems, "; ".join(problems)


def test_the_message_check_catches_an_option_of_another_command() -> None:
    assert stale_snippets('raise X("run `ikl-zoo card --precision pytorch` again")')


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_option_says_what_it_is_for(name: str) -> None:
    command = main.commands[name]
    silent = [p.opts[-1] for p in command.params
              if isinstance(p, click.Option) and p.name != "help" and not p.help]
    assert not silent, f"ikl-zoo {name}: options without help: {silent}"
