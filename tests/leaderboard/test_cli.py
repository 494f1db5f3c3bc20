"""``ikl-zoo leaderboard`` and ``ikl-zoo record`` from the command line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ikl_zoo.cli import main


def test_leaderboard_prints_and_writes(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        main, ["leaderboard", "--dataset", "cifar100", "--top", "4", "--records", str(tmp_path / "none")]
    )
    assert result.exit_code == 0, result.output
    assert "Cui2023Decoupled_WRN-28-10** ★" in result.output and result.output.count("\n| ") == 5
    out, plot = tmp_path / "board.html", tmp_path / "board.png"
    result = runner.invoke(
        main,
        [
            "leaderboard",
            "--only-ikl",
            "--format",
            "html",
            "-o",
            str(out),
            "--plot",
            str(plot),
            "--records",
            str(tmp_path / "none"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>") and plot.read_bytes()[:4] == b"\x89PNG"


def test_compare_and_usage_errors(tmp_path):
    runner = CliRunner()
    records = ["--records", str(tmp_path)]
    result = runner.invoke(
        main,
        [
            "leaderboard",
            "--compare",
            "Cui2023Decoupled_WRN-34-10",
            "Zhang2019Theoretically",
            "--format",
            "json",
            *records,
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert [row["model_id"] for row in rows] == ["Cui2023Decoupled_WRN-34-10", "Zhang2019Theoretically"]
    assert rows[1]["delta_vs_first_autoattack_acc"] == -4.01
    result = runner.invoke(main, ["leaderboard", "Cui2023Decoupled_WRN-34-10", *records])
    assert result.exit_code == 2 and "--compare" in result.output
    result = runner.invoke(main, ["leaderboard", "--compare", "--top", "3", "Zhang2019Theoretically",
                                  *records])
    assert result.exit_code == 2 and "drop --top, --only-ikl and --no-extra-data" in result.stderr
    result = runner.invoke(
        main, ["leaderboard", "--compare", "Cui2023Decoupled_WRN-34-10", "Nope2020X", *records]
    )
    assert result.exit_code == 2
    assert result.output.startswith("Error: 'Nope2020X' is not on the cifar10 Linf board")
    assert "Traceback" not in result.output


def test_record_command_adds_and_refuses(tmp_path, make_result):
    make_result(n_examples=1000).save(tmp_path / "full.json")
    make_result(n_examples=10).save(tmp_path / "tiny.json")
    runner = CliRunner()
    args = ["--records", str(tmp_path / "lb")]
    assert runner.invoke(main, ["record", str(tmp_path / "full.json"), *args]).exit_code == 0
    result = runner.invoke(main, ["record", str(tmp_path / "tiny.json"), *args])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert runner.invoke(main, ["record", str(tmp_path / "tiny.json"), "--overwrite", *args]).exit_code == 0
    board = runner.invoke(main, ["leaderboard", "--top", "9", *args]).output
    assert "10 of 10,000 examples (estimate)" in board


def test_unwritable_outputs_are_one_line_errors(tmp_path):
    (tmp_path / "file").write_text("")
    runner = CliRunner()
    for option in ("-o", "--plot"):
        result = runner.invoke(
            main,
            [
                "leaderboard",
                "--top",
                "2",
                "--records",
                str(tmp_path / "none"),
                option,
                str(tmp_path / "file" / "x.png"),
            ],
        )
        assert result.exit_code == 2, result.output
        assert "Error: cannot write" in result.output and "Traceback" not in result.output


def _corrupt_record_beside_a_good_one(root, make_result):
    from ikl_zoo.leaderboard.records import write_record

    write_record(make_result("Cui2023Decoupled_WRN-28-10", clean=0.9111, robust=0.6222), root=root)
    bad = root / "cifar10" / "Linf" / "x.json"
    bad.write_text("{not json")
    return bad


def test_a_corrupt_record_is_named_with_its_fix_and_skipped(tmp_path, make_result):
    bad = _corrupt_record_beside_a_good_one(tmp_path, make_result)
    result = CliRunner().invoke(main, ["leaderboard", "--records", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"skipped {bad}: ") and result.stderr.count("\n") == 1
    assert "remove it or rewrite it" in result.stderr and "62.22" in result.stdout


def test_compare_names_the_dataset_a_missing_model_is_on(tmp_path, make_result):
    from ikl_zoo.leaderboard.records import write_record

    runner = CliRunner()
    args = ["leaderboard", "--compare", "Cui2023Decoupled_WRN-34-10", "--records", str(tmp_path)]
    result = runner.invoke(main, [*args, "Cui2023Decoupled_WRN-34-10_autoaug"])
    assert result.exit_code == 2 and "not on the cifar10 Linf board" in result.stderr
    assert "it is on the cifar100 Linf board: pass --dataset cifar100" in result.stderr
    write_record(make_result("my-cifar100-wrn", dataset="cifar100", n_examples=10), root=tmp_path)
    result = runner.invoke(main, [*args, "my-cifar100-wrn"])  # measured only, on the other board
    assert result.exit_code == 2 and "pass --dataset cifar100" in result.stderr


def test_leaderboard_at_another_budget(tmp_path, make_result):
    from ikl_zoo.leaderboard.records import write_record

    write_record(make_result("my-wrn", eps=1 / 255, robust=0.85), root=tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["leaderboard", "--eps", "1/255", "--records", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "eps = 1/255" in result.output and result.output.count("\n| ") == 2  # header and my-wrn
    assert "RobustBench has no CIFAR-10 Linf board at eps 1/255" in result.output
    result = runner.invoke(main, ["leaderboard", "--eps", "eight", "--records", str(tmp_path)])
    assert result.exit_code == 2 and "'eight' is not a number" in result.output
    assert "--eps" in runner.invoke(main, ["leaderboard", "--help"]).output
