"""The shipped RobustBench figures and reading a RobustBench checkout's model_info/."""

from __future__ import annotations

import json
import math
from importlib import resources

import pytest

from ikl_zoo.leaderboard.reference import (
    LeaderboardError,
    is_standard_eps,
    load_reference,
    reference_entry,
)
from ikl_zoo.threat import format_eps
from ikl_zoo.zoo.registry import list_models


@pytest.mark.parametrize(
    ("dataset", "threat", "count"), [("cifar10", "Linf", 99), ("cifar10", "L2", 21), ("cifar100", "Linf", 38)]
)
def test_shipped_boards_have_robustbench_counts(dataset, threat, count):
    table = load_reference(dataset, threat).table
    assert len(table) == count
    assert set(table["dataset"]) == {dataset} and set(table["threat_model"]) == {threat}
    assert table["model_id"].is_unique


def test_shipped_reference_states_its_source():
    readme = resources.files("ikl_zoo").joinpath("reference", "README.md").read_text()
    assert "78fcc9e" in readme and "2025-03-31" in readme and "model_info" in readme
    assert "78fcc9e" in load_reference("cifar10", "Linf").source


def test_registry_figures_match_robustbench_rows():
    ikl = [entry for entry in list_models() if entry.is_ikl_at]
    assert len(ikl) == 5
    for entry in ikl:
        row = reference_entry(entry.model_id, dataset=entry.dataset, threat_model="Linf")
        assert row is not None, entry.model_id
        assert row["ikl_at"] is True
        assert row["clean_acc"] == pytest.approx(entry.published.clean_acc)
        assert row["autoattack_acc"] == pytest.approx(entry.published.autoattack_acc)
        json.dumps(row)  # plain Python values, ready for records


def test_best_known_is_external_when_given():
    table = load_reference("cifar10", "Linf").table.set_index("model_id")
    gowal = table.loc["Gowal2021Improving_70_16_ddpm_100m"]
    assert gowal["autoattack_acc"] == pytest.approx(66.11)
    assert gowal["best_known"] == pytest.approx(66.10)
    cui = table.loc["Cui2023Decoupled_WRN-28-10"]
    assert math.isnan(cui["external"]) and cui["best_known"] == pytest.approx(67.73)


def test_robustbench_prefix_is_stripped():
    assert reference_entry("robustbench:Wang2023Better_WRN-28-10", dataset="cifar10", threat_model="Linf")


def _model_info(tmp_path):
    folder = tmp_path / "robustbench" / "model_info" / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    entries = {
        "Alpha2025First": {
            "link": "https://a",
            "name": "A <b> & C",
            "authors": "A",
            "additional_data": True,
            "number_forward_passes": 1,
            "dataset": "cifar10",
            "venue": "",
            "architecture": "WRN",
            "eps": "8/255",
            "clean_acc": "90.00",
            "reported": "60.00",
            "autoattack_acc": "61.00",
            "external": "59.50",
        },
        "Beta2025Second": {
            "link": "https://b",
            "name": "B",
            "authors": "B",
            "additional_data": False,
            "dataset": "cifar10",
            "venue": "ICML 2025",
            "architecture": "RN-18",
            "eps": "8/255",
            "clean_acc": 85.5,
            "reported": "60.2",
            "autoattack_acc": "60.20",
        },
    }
    for name, info in entries.items():
        (folder / f"{name}.json").write_text(json.dumps(info))
    return tmp_path / "robustbench"


def test_robustbench_checkout_is_read(tmp_path):
    root = _model_info(tmp_path)
    for path in (root, root / "model_info"):
        reference = load_reference("cifar10", "Linf", robustbench_dir=path)
        table = reference.table.set_index("model_id")
        assert sorted(table.index) == ["Alpha2025First", "Beta2025Second"]
        assert table.loc["Alpha2025First", "best_known"] == pytest.approx(59.5)
        assert table.loc["Alpha2025First", "venue"] == "Unpublished"
        assert table.loc["Beta2025Second", "clean_acc"] == pytest.approx(85.5)
        assert bool(table.loc["Alpha2025First", "additional_data"]) is True
        assert str(path.resolve().parts[-1]) in reference.source or "robustbench" in reference.source


def test_robustbench_checkout_errors_name_the_fix(tmp_path):
    root = _model_info(tmp_path)
    with pytest.raises(LeaderboardError, match="model_info"):
        load_reference("cifar100", "L2", robustbench_dir=root)
    with pytest.raises(LeaderboardError, match="not a folder"):
        load_reference("cifar10", "Linf", robustbench_dir=tmp_path / "missing")
    bad = root / "model_info" / "cifar10" / "Linf" / "Broken.json"
    bad.write_text("{not json")
    with pytest.raises(LeaderboardError, match="Broken.json"):
        load_reference("cifar10", "Linf", robustbench_dir=root)
    bad.write_text(json.dumps({"clean_acc": "x", "autoattack_acc": "1"}))
    with pytest.raises(LeaderboardError, match="not a number"):
        load_reference("cifar10", "Linf", robustbench_dir=root)
    with pytest.raises(LeaderboardError, match="unknown threat model"):
        load_reference("cifar10", "Linf2")


def test_eps_spelling_and_standard_budgets():
    assert format_eps(8 / 255, "Linf") == "8/255"
    assert format_eps(0.5, "L2") == "0.5"
    assert format_eps(0.031, "Linf") == "0.031"
    assert format_eps(4 / 255, "Linf") == "4/255"
    assert is_standard_eps(8 / 255, "Linf") and not is_standard_eps(0.031, "Linf")
