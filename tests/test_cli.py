"""The ``ikl-zoo`` group: one-line usage errors for every command, --help and --version, ``sample-data``."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ikl_zoo import __version__
from ikl_zoo.cli import main
from ikl_zoo.data import MARKER_FILENAME, load_test_examples


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _error_line(outcome) -> str:
    """The single stderr line of a refused command (exit status 2, nothing on stdout, no traceback)."""
    assert outcome.exit_code == 2, outcome.output
    assert outcome.stdout == "" and "Traceback" not in outcome.stderr
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), outcome.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["evl"], "Error: No such command 'evl'. Did you mean 'eval'? (see ikl-zoo --help)"),
        (["lis"], "Error: No such command 'lis'. Did you mean 'list'? (see ikl-zoo --help)"),
        (["--bogus"], "Error: No such option '--bogus' (see ikl-zoo --help)"),
        (["eval"], "Error: Missing option '--model' (see ikl-zoo eval --help)"),
        (["card", "--dataset"], "Error: Option '--dataset' requires an argument (see ikl-zoo card --help)"),
        (["leaderboard", "--top", "0"],
         "Error: Invalid value for '--top': 0 is not in the range x>=1 (see ikl-zoo leaderboard --help)"),
        (["leaderboard", "some-model"],
         "Error: model ids are only taken with --compare, e.g. --compare MODEL_A MODEL_B "
         "(see ikl-zoo leaderboard --help)"),
    ],
)
def test_usage_errors_are_one_line_for_every_command(args, expected):
    assert _error_line(_invoke(*args)) == expected


def test_help_and_version_still_exit_zero():
    for args in (["--help"], ["eval", "--help"], ["sample-data", "--help"]):
        outcome = _invoke(*args)
        assert outcome.exit_code == 0 and outcome.stdout.startswith("Usage: ikl-zoo"), outcome.output
    outcome = _invoke("--version")
    assert outcome.exit_code == 0 and outcome.stdout == f"ikl-zoo, version {__version__}\n"


def test_bare_command_still_prints_the_help():
    outcome = _invoke()
    assert "Commands:" in outcome.output and "sample-data" in outcome.output


def _real_cifar10(root):
    """A folder shaped like torchvision's extracted CIFAR-10 (no ikl-zoo marker)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    contents = {name: f"real {name}".encode() for name in ("test_batch", "batches.meta", "data_batch_1")}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return folder, contents


def test_sample_data_refuses_to_overwrite_real_cifar(tmp_path):
    folder, contents = _real_cifar10(tmp_path / "data")
    line = _error_line(_invoke("sample-data", "--out", str(tmp_path / "data")))
    assert line.startswith(f"Error: {folder} holds CIFAR-10 files that ikl-zoo did not write (")
    assert line.endswith("choose another folder (--out)")
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == contents
    assert not (tmp_path / "data" / "cifar-100-python").exists()  # refused before writing anything


def test_sample_data_rewrites_its_own_folder(tmp_path):
    out = str(tmp_path / "data")
    for _ in range(2):
        outcome = _invoke("sample-data", "--out", out, "--dataset", "cifar10")
        assert outcome.exit_code == 0, outcome.output
    (tmp_path / "data" / "cifar-10-batches-py" / MARKER_FILENAME).write_text("[1, 2]")  # a damaged marker
    assert _invoke("sample-data", "--out", out, "--dataset", "cifar10").exit_code == 0
    assert len(load_test_examples("cifar10", data_dir=out)[1]) == 20


def test_sample_data_into_an_unwritable_place_is_one_line(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    line = _error_line(_invoke("sample-data", "--out", str(a_file / "data")))
    assert line.startswith(f"Error: cannot write {a_file / 'data' / 'cifar-10-batches-py'} (")
    assert line.endswith("choose a writable folder (--out)")


@pytest.mark.parametrize("name", sorted(main.commands))
def test_each_command_summary_is_a_whole_sentence(name):
    """`ikl-zoo --help` lists each command by the first sentence of its help: short enough to show whole."""
    summary = main.commands[name].get_short_help_str(limit=45)
    assert summary.endswith(".") and not summary.endswith("..."), summary


def test_interrupt_advises_resume_only_where_the_command_has_it(monkeypatch):
    import ikl_zoo.train
    import ikl_zoo.zoo.catalog

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ikl_zoo.zoo.catalog, "models_table", interrupt)
    monkeypatch.setattr(ikl_zoo.train, "resolve_recipe", interrupt)
    listed = _invoke("list")
    assert (listed.exit_code, listed.stderr) == (130, "Interrupted.\n")
    trained = _invoke("train", "--data-dir", "data", "-o", "run")
    assert trained.exit_code == 130
    assert trained.stderr.startswith("Interrupted: finished work is saved; rerun the same command with")


def test_sample_data_takes_o_like_every_command_that_writes(tmp_path):
    assert _invoke("sample-data", "-o", str(tmp_path / "data"), "--dataset", "cifar100").exit_code == 0
    assert len(load_test_examples("cifar100", data_dir=tmp_path / "data")[1]) == 20
