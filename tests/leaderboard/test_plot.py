"""The clean vs AutoAttack scatter: what is drawn, and the file it writes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from ikl_zoo.cli import main
from ikl_zoo.leaderboard import plot
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


def _drawn_by_cli(monkeypatch, tmp_path, *args):
    """The figure ``ikl-zoo leaderboard ... --plot`` draws, and the board it draws."""
    drawn = []
    monkeypatch.setattr(
        plot, "board_figure", lambda board: drawn.append((board_figure(board), board)) or drawn[-1][0]
    )
    result = CliRunner().invoke(
        main,
        ["leaderboard", *args, "--plot", str(tmp_path / "x.png"), "--records", str(tmp_path / "records")],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"
    ((figure, board),) = drawn
    return figure, board


def _points(axes):
    """Each legend entry's points; its count says how many, and only categories with points are listed."""
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    groups = dict(zip(labels, (c.get_offsets() for c in axes.collections), strict=True))
    for label, offsets in groups.items():
        assert label.endswith(f" ({len(offsets)})") and len(offsets) > 0
    return groups


def _row_points(board):
    rows = board.rows
    x, y = (
        rows["clean_acc"].fillna(rows["measured_clean_acc"]),
        rows["autoattack_acc"].fillna(rows["measured_autoattack_acc"]),
    )
    return list(zip(rows["model_id"], x, y, strict=True))


def test_board_plot_draws_every_row_and_the_title_counts_what_is_drawn(tmp_path, monkeypatch, make_result):
    root = tmp_path / "records"
    write_record(make_result(clean=0.9220, robust=0.6760), root=root)  # listed: a second point, joined
    write_record(make_result("my-wrn", clean=0.81, robust=0.52), root=root)  # unlisted, comparable
    write_record(make_result("demo-resnet18", n_examples=4, clean=1.0, robust=0.5), root=root)  # an estimate
    figure, board = _drawn_by_cli(monkeypatch, tmp_path)
    axes = figure.axes[0]
    groups = _points(axes)
    models, published, measured = map(
        int,
        re.search(r", (\d+) models\n(\d+) published and (\d+) measured points$", axes.get_title()).groups(),
    )
    assert models == len(board.rows) == 101 and (published, measured) == (99, 3)
    assert sum(len(offsets) for offsets in groups.values()) == published + measured
    drawn = np.concatenate(list(groups.values()))
    for model_id, x, y in _row_points(board):
        assert np.isclose(drawn, [x, y]).all(axis=1).any(), f"{model_id} is not drawn"
    estimate = groups["measured by ikl-zoo, estimate or not comparable (1)"]
    np.testing.assert_allclose(estimate, [[100.0, 50.0]])
    markers = {
        label: c.get_paths()[0].vertices.shape[0] for label, c in zip(groups, axes.collections, strict=True)
    }
    assert markers["measured by ikl-zoo, estimate or not comparable (1)"] not in {
        markers[label] for label in groups if "estimate" not in label
    }
    assert {text.get_text() for text in axes.texts} == {"WRN-28-10", "WRN-34-10", "my-wrn", "demo-resnet18"}


def test_compare_plot_names_every_model_inside_the_figure(tmp_path, monkeypatch):
    compared = [
        "Zhang2019Theoretically",
        "Bartoldson2024Adversarial_WRN-94-16",
        "Wang2023Better_WRN-28-10",
        "Cui2023Decoupled_WRN-28-10",
        "Rice2020Overfitting",
    ]
    figure, board = _drawn_by_cli(monkeypatch, tmp_path, "--compare", *compared)
    axes = figure.axes[0]
    groups = _points(axes)
    assert list(groups) == [
        "CIFAR training set only (2)",
        "generated images (per footnote) (2)",
        "IKL-AT (1)",
    ]
    assert axes.get_title().endswith(", 5 models") and sum(map(len, groups.values())) == 5
    names = [text.get_text() for text in axes.texts]
    assert sorted(names) == sorted([*compared[:3], "Rice2020Overfitting", "WRN-28-10"])
    figure.canvas.draw()  # names stay inside the axes (clear of the ticks), the title inside the figure
    for text, box in [*((text, axes.bbox) for text in axes.texts), (axes.title, figure.bbox)]:
        extent = text.get_window_extent()
        inside = box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1
        assert inside, f"{text.get_text()!r} at {extent} leaves {box}"


def test_plot_write_error_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(LeaderboardError, match="not a folder"):
        plot_board(build_board(records_root=None, top=3), tmp_path / "file" / "board.png")
