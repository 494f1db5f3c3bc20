"""Ranking, measured rows beside published ones, --compare and the five output formats."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re

import pandas as pd
import pytest

from ikl_zoo.leaderboard.records import write_record
from ikl_zoo.leaderboard.reference import LeaderboardError
from ikl_zoo.leaderboard.render import render_board
from ikl_zoo.leaderboard.table import build_board, compare_models


def test_ranked_like_robustbench():
    rows = build_board("cifar10", "Linf", records_root=None).rows
    assert list(rows["rank"]) == list(range(1, 100))
    best = list(rows["best_known"])
    assert best == sorted(best, reverse=True)
    expected = {
        mid: 1 + int((rows["best_known"] > bk).sum()) for mid, bk in zip(rows["model_id"], best, strict=True)
    }
    ranks = dict(zip(rows["model_id"], rows["rank"], strict=True))
    assert ranks["Cui2023Decoupled_WRN-28-10"] == expected["Cui2023Decoupled_WRN-28-10"] == 9
    # Best-known, not AutoAttack: MeanSparse has the higher AutoAttack figure but a lower best-known one.
    assert ranks["Bartoldson2024Adversarial_WRN-94-16"] < ranks["Amini2024MeanSparse_S-WRN-94-16"]


def test_filters_keep_robustbench_ranks():
    full = build_board("cifar100", "Linf", records_root=None).rows
    ikl = build_board("cifar100", "Linf", records_root=None, only_ikl=True).rows
    assert list(ikl["model_id"]) == [
        "Cui2023Decoupled_WRN-28-10",
        "Cui2023Decoupled_WRN-34-10_autoaug",
        "Cui2023Decoupled_WRN-34-10",
    ]
    assert list(ikl["rank"]) == [int(full.set_index("model_id").loc[m, "rank"]) for m in ikl["model_id"]]
    plain = build_board("cifar10", "Linf", records_root=None, no_extra_data=True).rows
    assert not plain["additional_data"].any() and len(plain) == 99 - 26
    assert len(build_board("cifar10", "L2", records_root=None, top=5).rows) == 5
    with pytest.raises(LeaderboardError, match="--top"):
        build_board(top=0)


@pytest.fixture
def records(tmp_path, make_result):
    write_record(make_result(clean=0.9220, robust=0.6760), root=tmp_path)
    write_record(make_result("my-wrn-34-10", clean=0.86, robust=0.5750), root=tmp_path)
    write_record(
        make_result("demo-resnet18", n_examples=20, clean=1.0, robust=0.0, eps=1 / 255), root=tmp_path
    )
    return tmp_path


def test_measured_rows_sit_beside_published_ones(records):
    board = build_board("cifar10", "Linf", records_root=records)
    rows = board.rows.set_index("model_id")
    cui = rows.loc["Cui2023Decoupled_WRN-28-10"]
    assert cui["measured_autoattack_acc"] == pytest.approx(67.60)
    assert cui["delta_autoattack_acc"] == pytest.approx(67.60 - 67.73)
    assert cui["delta_clean_acc"] == pytest.approx(92.20 - 92.16)
    assert cui["measured_n_examples"] == 10_000 and cui["rank"] == 9
    mine = rows.loc["my-wrn-34-10"]
    assert not mine["on_robustbench"] and mine["rank"] is pd.NA and math.isnan(mine["clean_acc"])
    order = list(board.rows["model_id"])
    position = order.index("my-wrn-34-10")
    keys = board.rows["best_known"].fillna(board.rows["measured_autoattack_acc"])
    assert keys.iloc[position - 1] >= 57.5 >= keys.iloc[position + 1]
    assert "demo-resnet18" not in order
    assert any("demo-resnet18" in note and "1/255" in note for note in board.notes)
    assert len(rows) == 100


def test_compare_gives_deltas_from_the_first(records):
    board = compare_models(
        ["Cui2023Decoupled_WRN-28-10", "robustbench:Wang2023Better_WRN-28-10", "my-wrn-34-10"],
        records_root=records,
    )
    rows = board.rows.set_index("model_id")
    assert list(board.rows["model_id"]) == [
        "Cui2023Decoupled_WRN-28-10",
        "Wang2023Better_WRN-28-10",
        "my-wrn-34-10",
    ]
    assert rows.loc["Wang2023Better_WRN-28-10", "delta_vs_first_autoattack_acc"] == pytest.approx(
        67.31 - 67.73
    )
    assert rows.loc["Wang2023Better_WRN-28-10", "delta_vs_first_clean_acc"] == pytest.approx(92.44 - 92.16)
    assert rows.loc["my-wrn-34-10", "delta_vs_first_measured_autoattack_acc"] == pytest.approx(57.5 - 67.6)
    assert rows.loc["Cui2023Decoupled_WRN-28-10", "delta_vs_first_best_known"] == 0
    text = render_board(board, "md")
    assert (
        "Delta AutoAttack" in text
        and "-0.42" in text
        and "difference from Cui2023Decoupled_WRN-28-10" in text
    )
    with pytest.raises(LeaderboardError, match="did you mean Zhang2019Theoretically"):
        compare_models(["Cui2023Decoupled_WRN-34-10", "Zhang2019Theoreticaly"], records_root=None)
    with pytest.raises(LeaderboardError, match="at least two"):
        compare_models(["Cui2023Decoupled_WRN-34-10"], records_root=None)


def test_markdown_marks_ikl_at_and_links_papers(records):
    text = render_board(build_board("cifar10", "Linf", records_root=records, top=12), "md")
    assert text.startswith("## CIFAR-10, Linf, eps = 8/255: leaderboard")
    assert re.search(r"\| +9 \| \*\*Cui2023Decoupled_WRN-28-10\*\* ★ +\|", text)
    assert "[Decoupled Kullback-Leibler Divergence Loss](https://arxiv.org/abs/2305.13948)" in text
    assert "ikl-zoo AutoAttack" in text and "-0.13" in text and "10000 examples" in text
    assert "★ IKL-AT" in text and "78fcc9e" in text
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + 12 and len({line.count("|") for line in table_lines}) == 1


def test_csv_and_json_are_machine_readable(records):
    board = build_board("cifar10", "Linf", records_root=records)
    frame = pd.read_csv(io.StringIO(render_board(board, "csv")))
    assert len(frame) == len(board.rows) and "measured_autoattack_acc" in frame
    assert frame.set_index("model_id").loc[
        "Cui2023Decoupled_WRN-28-10", "delta_autoattack_acc"
    ] == pytest.approx(-0.13)
    document = json.loads(render_board(board, "json"))
    assert document["eps"] == "8/255" and len(document["rows"]) == len(board.rows)
    mine = next(row for row in document["rows"] if row["model_id"] == "my-wrn-34-10")
    assert mine["rank"] is None and mine["clean_acc"] is None and mine["measured_n_examples"] == 10_000


def _checkout(tmp_path):
    folder = tmp_path / "rb" / "model_info" / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    (folder / "Odd2025Title.json").write_text(
        json.dumps(
            {
                "link": "https://example.org/?a=1&b=2",
                "name": "Robust <nets> & 100% of_them",
                "authors": "X",
                "additional_data": False,
                "dataset": "cifar10",
                "venue": "ICML 2025",
                "architecture": "WRN_28",
                "eps": "8/255",
                "clean_acc": "90.00",
                "reported": "60.00",
                "autoattack_acc": "60.00",
            }
        )
    )
    (folder / "Cui2023Decoupled_WRN-28-10.json").write_text(
        json.dumps(
            {
                "link": "https://arxiv.org/abs/2305.13948",
                "name": "Decoupled Kullback-Leibler Divergence Loss",
                "authors": "Jiequan Cui",
                "additional_data": False,
                "dataset": "cifar10",
                "venue": "NeurIPS 2024",
                "architecture": "WideResNet-28-10",
                "eps": "8/255",
                "clean_acc": "92.16",
                "reported": "67.73",
                "autoattack_acc": "67.73",
            }
        )
    )
    return tmp_path / "rb"


def test_latex_escapes_and_marks(tmp_path):
    text = render_board(build_board(robustbench_dir=_checkout(tmp_path), records_root=None), "latex")
    assert "\\begin{tabular}" in text and "\\end{table}" in text and "\\caption{" in text
    assert r"\textbf{Cui2023Decoupled\_WRN-28-10} $^\star$" in text
    assert r"Robust <nets> \& 100\% of\_them" in text and r"WRN\_28" in text
    assert r"\href{https://example.org/?a=1&b=2}" in text
    assert "★" not in text


def test_html_is_one_self_contained_escaped_page(tmp_path):
    text = render_board(build_board(robustbench_dir=_checkout(tmp_path), records_root=None), "html")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert text.count("<table>") == 1 and "<style>" in text
    assert not re.search(r"<(script|link|img)\b", text)
    assert "Robust &lt;nets&gt; &amp; 100% of_them" in text and "<nets>" not in text
    assert text.count('<tr class="ikl-at">') == 1


def test_unknown_format_is_refused():
    with pytest.raises(LeaderboardError, match="md, csv, latex, html, json"):
        render_board(build_board(records_root=None), "xlsx")


def test_estimates_of_unlisted_models_stay_below_the_ranked_rows(tmp_path, make_result):
    # The demo network, 4 images, one cheap attack, 100 %: never above RobustBench's first place.
    write_record(
        make_result("demo-resnet18", n_examples=4, clean=1.0, robust=1.0, version="custom"), root=tmp_path
    )
    write_record(make_result("my-wrn", n_examples=10_000, clean=0.95, robust=0.90), root=tmp_path)
    rows = build_board("cifar10", "Linf", records_root=tmp_path).rows
    assert rows.iloc[0]["model_id"] == "my-wrn" and bool(rows.iloc[0]["measured_comparable"])
    demo = rows.iloc[-1]
    assert demo["model_id"] == "demo-resnet18" and not demo["ikl_at"] and not demo["measured_comparable"]
    assert (
        "4 of 10,000 examples (estimate)" in demo["measured_note"]
        and "not comparable" in demo["measured_note"]
    )
    top = build_board("cifar10", "Linf", records_root=tmp_path, top=3).rows
    assert "demo-resnet18" not in set(top["model_id"])
    text = render_board(build_board("cifar10", "Linf", records_root=tmp_path), "md")
    assert "None" not in text
    assert re.search(r"^\|\s+- \| demo-resnet18 ", text, flags=re.MULTILINE)


def test_no_delta_against_the_published_figure_for_another_attack_version(tmp_path, make_result):
    write_record(make_result(n_examples=10_000, robust=0.80, version="custom"), root=tmp_path)
    row = (
        build_board("cifar10", "Linf", records_root=tmp_path)
        .rows.set_index("model_id")
        .loc["Cui2023Decoupled_WRN-28-10"]
    )
    assert row["measured_autoattack_acc"] == pytest.approx(80.0)
    assert math.isnan(row["delta_autoattack_acc"]) and not row["measured_comparable"]


def test_a_second_record_of_a_model_is_named_not_merged(tmp_path, make_result):
    real = write_record(make_result(n_examples=10_000, robust=0.6770), root=tmp_path)
    data = json.loads(real.read_text())
    data["ikl_zoo"]["measurement"]["robust_acc"] = 0.99
    copy = real.with_name("A-copy.json")  # sorts before the real record
    copy.write_text(json.dumps(data))
    board = build_board("cifar10", "Linf", records_root=tmp_path)
    rows = board.rows[board.rows["measured_autoattack_acc"].notna()]
    assert list(rows["model_id"]) == ["Cui2023Decoupled_WRN-28-10"]
    assert rows.iloc[0]["measured_autoattack_acc"] == pytest.approx(67.70)
    assert any("A-copy.json" in note and "second record" in note for note in board.notes)


def test_a_record_of_replaced_weights_is_not_shown_as_the_model(tmp_path, make_result):
    path = write_record(make_result(n_examples=10_000), root=tmp_path)
    data = json.loads(path.read_text())
    data["ikl_zoo"]["measurement"]["provenance"]["replaced_weights"] = "x.pt"
    path.write_text(json.dumps(data))
    board = build_board("cifar10", "Linf", records_root=tmp_path)
    assert not board.has_measurements
    assert any("weights from x.pt" in note for note in board.notes)


def test_extra_data_a_record_does_not_state_is_unknown_not_no(tmp_path, make_result):
    write_record(make_result("my-wrn", n_examples=10_000, clean=0.95, robust=0.90), root=tmp_path)
    board = build_board("cifar10", "Linf", records_root=tmp_path, no_extra_data=True)
    mine = board.rows[board.rows["model_id"] == "my-wrn"].iloc[0]
    assert mine["additional_data"] is None
    line = next(line for line in render_board(board, "md").splitlines() if "my-wrn" in line)
    cells = [cell.strip() for cell in line.split("|")]
    assert "unknown" in cells and "no" not in cells
    assert json.loads(render_board(board, "json"))["rows"][0]["additional_data"] in (False, None)
    from ikl_zoo.leaderboard.plot import board_figure

    legend = board_figure(board).axes[0].get_legend_handles_labels()[1]
    assert any(label.startswith("CIFAR training set only (") for label in legend)


def test_top_names_the_measured_rows_it_cuts(tmp_path, make_result):
    write_record(make_result("my-wrn", n_examples=4, clean=0.5, robust=0.25), root=tmp_path)
    board = build_board("cifar10", "Linf", records_root=tmp_path, top=3)
    assert len(board.rows) == 3 and "my-wrn" not in set(board.rows["model_id"])
    assert any("below the top 3, measured by ikl-zoo: my-wrn" in note for note in board.notes)
    assert not any("below the top" in note for note in build_board(records_root=tmp_path).notes)


@pytest.mark.parametrize(
    ("changes", "note"),
    [
        ({}, None),
        ({"n_examples": 500}, "500 of 10,000 examples (estimate)"),
        ({"provenance": {"official_test_set": False}}, "not the official test set"),
    ],
    ids=["full-official", "subset", "written-folder"],
)
def test_a_difference_to_the_published_figure_only_for_a_like_for_like_measurement(tmp_path, make_result,
                                                                                   changes, note):
    write_record(make_result("Cui2023Decoupled_WRN-28-10", **changes), root=tmp_path)
    rows = build_board("cifar10", "Linf", records_root=tmp_path).rows
    row = rows[rows["model_id"] == "Cui2023Decoupled_WRN-28-10"].iloc[0]
    assert bool(row["measured_comparable"]) == (note is None)
    assert pd.isna(row["delta_autoattack_acc"]) == (note is not None)
    if note is not None:
        assert note in row["measured_note"]


def test_compare_takes_an_hf_hub_name_measured_at_main(tmp_path, make_result):
    write_record(make_result("hf-hub:someone/tiny-robust@main", robust=0.55), root=tmp_path)
    compared = ["Cui2023Decoupled_WRN-28-10", "hf-hub:someone/tiny-robust"]
    board = compare_models(compared, records_root=tmp_path)
    assert list(board.rows["model_id"]) == [compared[0], "hf-hub:someone/tiny-robust@main"]
    fix = "eval --model hf-hub:someone/other --dataset cifar10 --record"
    with pytest.raises(LeaderboardError, match=fix):
        compare_models(["Cui2023Decoupled_WRN-28-10", "hf-hub:someone/other"], records_root=tmp_path)


def _bf16(result):
    result.settings = dataclasses.replace(result.settings, precision="bf16")
    return result


def test_a_bf16_screen_is_kept_apart_from_the_full_precision_record_and_marked(make_result, tmp_path):
    full_path = write_record(make_result(robust=0.6770), root=tmp_path)
    screen_path = write_record(_bf16(make_result(robust=0.6500)), root=tmp_path)
    assert screen_path != full_path and screen_path.name.endswith("_bf16.json")
    board = build_board("cifar10", "Linf", records_root=tmp_path)
    row = board.rows.set_index("model_id").loc["Cui2023Decoupled_WRN-28-10"]
    assert row["measured_autoattack_acc"] == pytest.approx(67.70)
    assert any("a bf16 screen of Cui2023Decoupled_WRN-28-10" in note for note in board.notes)
    full_path.unlink()
    board = build_board("cifar10", "Linf", records_root=tmp_path)
    row = board.rows.set_index("model_id").loc["Cui2023Decoupled_WRN-28-10"]
    assert row["measured_autoattack_acc"] == pytest.approx(65.00) and "bf16 screen" in row["measured_note"]
    assert not row["measured_comparable"]
    assert any(note.startswith("\u2020 A bf16 screen") for note in board.notes)


def test_a_board_at_another_budget_shows_only_the_records_measured_at_it(tmp_path, make_result):
    write_record(make_result(), root=tmp_path)
    write_record(make_result(n_examples=1000, eps=4 / 255, robust=0.80), root=tmp_path)
    write_record(make_result("my-wrn", eps=4 / 255, robust=0.85), root=tmp_path)
    board = build_board("cifar10", "Linf", records_root=tmp_path, eps=4 / 255)
    assert list(board.rows["model_id"]) == ["my-wrn", "Cui2023Decoupled_WRN-28-10"]
    assert list(board.rows["measured_autoattack_acc"]) == pytest.approx([85.0, 80.0])
    assert not board.rows["on_robustbench"].any() and board.rows["rank"].isna().all()
    assert board.notes[0].startswith("RobustBench has no CIFAR-10 Linf board at eps 4/255: only ikl-zoo's")
    text = render_board(board, "md")
    assert text.startswith("## CIFAR-10, Linf, eps = 4/255: leaderboard")
    assert "not the official test set" not in text  # a full measurement, only at another budget
    standard = build_board("cifar10", "Linf", records_root=tmp_path)
    assert standard.eps_text == "8/255" and standard.rows["on_robustbench"].sum() == 99
    cui = standard.rows.set_index("model_id").loc["Cui2023Decoupled_WRN-28-10"]
    assert cui["measured_autoattack_acc"] == pytest.approx(67.70)
    assert any("_eps4_255.json (eps 4/255: shown with --eps 4/255)" in note for note in standard.notes)
    l2 = build_board("cifar10", "L2", records_root=tmp_path, eps=0.5)
    assert l2.rows["on_robustbench"].all() and not any("RobustBench has no" in n for n in l2.notes)
    assert build_board("cifar100", "L2", records_root=tmp_path).notes[0].startswith(
        "RobustBench has no CIFAR-100 L2 board at eps 0.5")


def test_an_empty_board_at_another_budget_says_how_to_fill_it(tmp_path):
    board = build_board("cifar100", "Linf", records_root=tmp_path, eps=2 / 255)
    assert board.rows.empty
    assert board.notes[-1] == ("No record at eps 2/255 yet: `ikl-zoo eval --model MODEL --dataset cifar100 "
                               "--norm Linf --eps 2/255 --record` measures one.")


def test_changed_attack_settings_are_named_marked_and_not_ranked(tmp_path, make_result):
    """Even with version standard: one changed setting makes it another attack than RobustBench's."""
    result = make_result("my-wrn", robust=0.95)
    result.settings = dataclasses.replace(result.settings, attack_options={"apgd": {"n_iter": 10}})
    write_record(result, root=tmp_path)
    board = build_board("cifar10", "Linf", records_root=tmp_path)
    mine = board.rows.iloc[-1]
    assert mine["model_id"] == "my-wrn" and mine["rank"] is pd.NA and not mine["measured_comparable"]
    assert "\u2021 AutoAttack (standard, apgd.n_iter=10), not comparable" in mine["measured_note"]
    assert mine["measured_attack"] == "AutoAttack (standard, apgd.n_iter=10)"
    assert any(note.startswith("\u2021 Not standard AutoAttack") for note in board.notes)
    assert not any(note.startswith("\u2020") for note in board.notes)
    assert re.search(r"\| my-wrn .*\| +95\.00 \u2021 \|", render_board(board, "md"))  # the figure is marked
