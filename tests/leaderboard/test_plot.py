"""The clean vs AutoAttack scatter: what is drawn, and the file it writes."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from ikl_zoo.leaderboard.plot import board_figure, plot_board
from ikl_zoo.leaderboard.records import write_record
from ikl_zoo.leaderboard.reference import LeaderboardError
from ikl_zoo.leaderboard.table import build_board


def _collections(figure):
    axes = figure.axes[0]
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    return axes, dict(zip(labels, axes.collections, strict=True))


def test_scatter_marks_ikl_at_extra_data_and_measurements(tmp_path, make_result):
    write_record(make_result(clean=0.9220, robust=0.6760), root=tmp_path)
    board = build_board("cifar10", "Linf", records_root=tmp_path)
    axes, groups = _collections(board_figure(board))
    assert set(groups) == {
        "CIFAR training set only (50)",
        "generated images (per footnote) (21)",
        "extra real data (26)",
        "IKL-AT (2)",
        "measured by ikl-zoo, standard AutoAttack, full test set (1)",
    }
    ikl = board.rows[board.rows["ikl_at"]]
    np.testing.assert_allclose(
        groups["IKL-AT (2)"].get_offsets(), ikl[["clean_acc", "autoattack_acc"]].to_numpy()
    )
    measured = groups["measured by ikl-zoo, standard AutoAttack, full test set (1)"]
    np.testing.assert_allclose(measured.get_offsets(), [[92.20, 67.60]])
    markers = {label: collection.get_paths()[0].vertices.shape[0] for label, collection in groups.items()}
    assert len(set(markers.values())) >= 4  # circle, square, triangle, star, diamond differ in shape
    assert {text.get_text() for text in axes.texts} == {"WRN-28-10", "WRN-34-10"}
    assert axes.get_xlabel() == "Clean accuracy (%)" and "AutoAttack" in axes.get_ylabel()


def test_plot_file_is_a_readable_png(tmp_path):
    path = plot_board(build_board("cifar100", "Linf", records_root=None), tmp_path / "board.png")
    image = imread(path)
    assert image.shape[:2] == (900, 1200)
    assert image[..., :3].std() > 0.05  # not blank
    assert [p.name for p in tmp_path.iterdir()] == ["board.png"]


def test_plot_refuses_bad_requests(tmp_path):
    with pytest.raises(LeaderboardError, match=".png, .pdf or .svg"):
        plot_board(build_board(records_root=None, top=3), tmp_path / "board.txt")
    with pytest.raises(LeaderboardError, match="empty"):
        plot_board(build_board("cifar10", "L2", records_root=None, only_ikl=True), tmp_path / "board.png")


def test_scatter_leaves_out_estimates(tmp_path, make_result):
    # A 4-image check of the demo network must not sit on the picture of the board, above everything.
    write_record(make_result("demo-resnet18", n_examples=4, clean=1.0, robust=1.0), root=tmp_path)
    write_record(make_result(n_examples=100, robust=0.9), root=tmp_path)
    board = build_board("cifar10", "Linf", records_root=tmp_path)
    _, groups = _collections(board_figure(board))
    assert not any(label.startswith("measured") for label in groups)


def test_plot_write_error_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(LeaderboardError, match="not a folder"):
        plot_board(build_board(records_root=None, top=3), tmp_path / "file" / "board.png")
