"""``ikl-zoo card`` and ``ikl-zoo submit`` from the command line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ikl_zoo.cli import main


def run(*args: str):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_card_for_registry_model_user_folder_and_all(tmp_path, make_result):
    result_path = tmp_path / "result.json"
    make_result("Cui2023Decoupled_WRN-34-10", clean=0.8530, robust=0.5700).save(result_path)
    out = run("card", "Cui2023Decoupled_WRN-34-10", "--result", result_path, "-o", tmp_path / "card")
    assert out.exit_code == 0, out.output
    text = (tmp_path / "card" / "README.md").read_text()
    assert "| Measured | 85.30 [84.59, 85.98] | 57.00 [56.03, 57.97] | 10,000 |" in text
    make_result("Cui2023Decoupled_WRN-34-10", eps=4 / 255, robust=0.7).save(result_path)
    out = run("card", "Cui2023Decoupled_WRN-34-10", "--result", result_path, "-o", tmp_path / "card")
    assert out.exit_code == 0, out.output  # another budget: shown at its budget, never refused
    text = (tmp_path / "card" / "README.md").read_text()
    assert "ikl-zoo, AutoAttack (standard), eps 4/255, seed 0" in text

    folder = tmp_path / "trained"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_id": "my-wrn",
                "dataset": "cifar100",
                "threat_model": "Linf",
                "eps": 8 / 255,
                "architecture": {
                    "architecture_class": "WideResNet",
                    "depth": 16,
                    "widen_factor": 4,
                    "num_classes": 100,
                },
                "training": {"loss": "ikl", "epochs": 2},
            }
        )
    )
    out = run("card", folder)
    assert out.exit_code == 0, out.output
    assert "WideResNet-16-4" in (folder / "README.md").read_text()

    out = run("card", "--all", "-o", tmp_path / "all", "--records", tmp_path / "none")
    assert out.exit_code == 0, out.output
    assert len(list((tmp_path / "all").glob("*/README.md"))) == 5


def test_card_usage_errors_are_one_line(tmp_path, make_result):
    assert run("card").exit_code == 2
    out = run("card", "Cui2023Decoupled_WRN-34-10")
    assert out.exit_code == 2 and "-o/--out is required" in out.output
    assert "e.g. -o cards/Cui2023Decoupled_WRN-34-10 (see ikl-zoo card --help)" in out.output
    out = run("card", "Cui2023Decoupled_WRN-99-10", "-o", tmp_path)
    assert (
        out.exit_code == 2 and out.output.startswith("Error: unknown model") and "did you mean" in out.output
    )
    make_result(dataset="cifar100").save(tmp_path / "r.json")
    out = run("card", "Cui2023Decoupled_WRN-28-10", "--result", tmp_path / "r.json", "-o", tmp_path)
    assert out.exit_code == 2 and out.output.count("\n") == 1 and "--dataset cifar100" in out.output
    out = run("card", "Cui2023Decoupled_WRN-28-10", "--records", tmp_path / "nowhere", "-o", tmp_path / "c")
    assert out.exit_code == 2 and "--records is read with --all only" in out.output
    assert not (tmp_path / "c").exists()


def test_submit_refuses_drafts_and_writes_complete_submissions(tmp_path, make_result):
    make_result("my-wrn", n_examples=200).save(tmp_path / "small.json")
    out = run("submit", "--result", tmp_path / "small.json", "-o", tmp_path / "s")
    assert out.exit_code == 2 and out.output.startswith("Error: not submittable to RobustBench")
    assert "200 test examples" in out.output and not (tmp_path / "s").exists()
    out = run("submit", "--result", tmp_path / "small.json", "-o", tmp_path / "s", "--draft")
    assert out.exit_code == 0 and out.output.count("DRAFT: ") == 3
    assert (tmp_path / "s" / "model_info" / "cifar10" / "Linf" / "my-wrn.json").exists()

    folder = tmp_path / "trained"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_id": "my-wrn",
                "dataset": "cifar10",
                "threat_model": "Linf",
                "eps": 8 / 255,
                "architecture": {"architecture_class": "WideResNet", "depth": 34, "widen_factor": 10},
            }
        )
    )
    make_result("my-wrn", clean=0.8601, robust=0.5833).save(tmp_path / "full.json")
    out = run(
        "submit",
        "--result",
        tmp_path / "full.json",
        "--name",
        "Doe2025Robust_WRN-34-10",
        "-o",
        tmp_path / "ok",
        "--model-dir",
        folder,
        "--paper-title",
        "Robust Nets",
        "--paper-url",
        "https://arxiv.org/abs/2501.00001",
        "--authors",
        "Ann Doe",
        "--venue",
        "ICML 2025",
        "--architecture",
        "WideResNet-34-10",
        "--no-additional-data",
        "--gdrive-id",
        "1AbC",
    )
    assert out.exit_code == 0, out.output
    info = json.loads((tmp_path / "ok/model_info/cifar10/Linf/Doe2025Robust_WRN-34-10.json").read_text())
    assert info["name"] == "Robust Nets" and info["clean_acc"] == "86.01" and info["additional_data"] is False
    entry = (tmp_path / "ok" / "model_zoo_entry.py").read_text()
    assert "lambda: WideResNet(depth=34, widen_factor=10, sub_block1=False)," in entry and "'1AbC'" in entry
    assert "DRAFT" not in out.output


def test_submit_of_a_zoo_folder_result_without_name_asks_for_one(tmp_path, make_result):
    """A zoo folder is measured under its path: the error names that id and asks for --name."""
    make_result("runs/tiny/model", n_examples=4).save(tmp_path / "r.json")
    out = run("submit", "--result", tmp_path / "r.json", "-o", tmp_path / "s", "--draft")
    assert out.exit_code == 2 and out.output.count("\n") == 1, out.output
    assert out.output.startswith("Error: the result's model id 'runs/tiny/model' cannot name model_info/")
    assert "pass --name <FirstAuthor><Year><FirstWordOfTitle>" in out.output
    assert "--name 'runs" not in out.output
    assert not (tmp_path / "s").exists()


def test_card_all_names_and_skips_a_corrupt_record(tmp_path, make_result):
    from ikl_zoo.leaderboard.records import write_record

    records = tmp_path / "records"
    write_record(make_result("Cui2023Decoupled_WRN-28-10", clean=0.9111, robust=0.6222), root=records)
    bad = records / "cifar10" / "Linf" / "x.json"
    bad.write_text("{not json")
    out = CliRunner().invoke(main, ["card", "--all", "-o", str(tmp_path / "all"), "--records", str(records)])
    assert out.exit_code == 0, out.output
    assert out.stderr.startswith(f"skipped {bad}: ") and out.stderr.count("\n") == 1
    assert "remove it or rewrite it" in out.stderr and len(out.stdout.splitlines()) == 5
    assert any("62.22" in card.read_text() for card in (tmp_path / "all").glob("*/README.md"))
