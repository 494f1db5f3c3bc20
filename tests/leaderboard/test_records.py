"""Result records: RobustBench's model_info fields plus provenance, atomic add-or-update."""

from __future__ import annotations

import json

import pytest

from ikl_zoo.leaderboard.records import (
    LeaderboardError,
    Measurement,
    RecordConflictError,
    checkpoint_sha256,
    load_records,
    missing_facts,
    read_record,
    read_result,
    record_path,
    replaced_weights,
    write_record,
)


def test_record_is_robustbench_model_info_plus_measurement(tmp_path, make_result):
    result = make_result()
    path = write_record(result, root=tmp_path)
    assert path == tmp_path / "cifar10" / "Linf" / "Cui2023Decoupled_WRN-28-10.json"
    data = json.loads(path.read_text())
    assert list(data)[:12] == [
        "link",
        "name",
        "authors",
        "additional_data",
        "number_forward_passes",
        "dataset",
        "venue",
        "architecture",
        "eps",
        "clean_acc",
        "reported",
        "autoattack_acc",
    ]
    assert data["clean_acc"] == "92.15" and data["autoattack_acc"] == "67.70"
    assert data["reported"] == "67.73" and data["eps"] == "8/255"
    assert data["name"] == "Decoupled Kullback-Leibler Divergence Loss" and data["venue"] == "NeurIPS 2024"
    assert data["additional_data"] is False and data["unreliable"] is False
    section = data["ikl_zoo"]
    assert section["is_ikl_at"] is True
    assert section["published"]["autoattack_acc"] == pytest.approx(67.73)
    assert "robust_flags" not in section["measurement"]
    assert section["measurement"]["provenance"]["checkpoint_sha256"] == "ab" * 32
    record = read_record(path)
    assert record.measurement == Measurement.from_result(result)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # nothing left from the atomic write


def test_update_replaces_equal_or_larger_and_refuses_smaller(tmp_path, make_result):
    path = write_record(make_result(n_examples=1000, robust=0.6), root=tmp_path)
    write_record(make_result(n_examples=1000, robust=0.61), root=tmp_path)
    assert read_record(path).measurement.robust_acc == pytest.approx(0.61)
    write_record(make_result(n_examples=2000, robust=0.62), root=tmp_path)
    assert read_record(path).measurement.n_examples == 2000
    before = path.read_text()
    with pytest.raises(RecordConflictError, match="holds 2000 examples, this result 100"):
        write_record(make_result(n_examples=100), root=tmp_path)
    with pytest.raises(RecordConflictError, match=r"AutoAttack \(standard\), this result custom: apgd-ce"):
        write_record(make_result(n_examples=5000, version="custom"), root=tmp_path)
    assert path.read_text() == before
    write_record(make_result(n_examples=100), root=tmp_path, overwrite=True)
    assert read_record(path).measurement.n_examples == 100


def test_a_result_at_another_budget_is_recorded_beside_the_standard_one(tmp_path, make_result):
    standard = write_record(make_result(), root=tmp_path)
    other = write_record(make_result(n_examples=500, eps=4 / 255, robust=0.8), root=tmp_path)
    assert other == tmp_path / "cifar10" / "Linf" / "Cui2023Decoupled_WRN-28-10_eps4_255.json"
    assert read_record(standard).measurement.n_examples == 10_000
    assert read_record(other).model_info["eps"] == "4/255"


def test_update_keeps_hand_edited_paper_details(tmp_path, make_result):
    path = write_record(make_result("my-wrn", robust=0.5), root=tmp_path)
    data = json.loads(path.read_text())
    assert (
        data["name"] == "" and data["ikl_zoo"]["is_ikl_at"] is False and data["ikl_zoo"]["published"] is None
    )
    data.update(name="My Paper", venue="ICLR 2026", link="https://example.org/paper")
    path.write_text(json.dumps(data))
    write_record(make_result("my-wrn", robust=0.52), root=tmp_path)
    data = json.loads(path.read_text())
    assert (data["name"], data["venue"], data["autoattack_acc"]) == ("My Paper", "ICLR 2026", "52.00")


def test_peers_are_filed_under_their_robustbench_id(tmp_path, make_result):
    write_record(
        make_result("robustbench:Wang2023Better_WRN-28-10", clean=0.9244, robust=0.6731), root=tmp_path
    )
    record = read_record(record_path("Wang2023Better_WRN-28-10", dataset="cifar10", threat_model="Linf",
                                     root=tmp_path))
    assert record.measurement.model_id == "robustbench:Wang2023Better_WRN-28-10"
    assert record.model_info["name"] == "Better Diffusion Models Further Improve Adversarial Training"
    assert record.is_ikl_at is False
    assert [r.path.stem for r in load_records(tmp_path, dataset="cifar10")] == ["Wang2023Better_WRN-28-10"]
    assert load_records(tmp_path / "missing") == []


def test_unreadable_files_are_one_line_errors(tmp_path, make_result):
    bad = tmp_path / "cifar10" / "Linf" / "x.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"clean_acc": "1"}))
    with pytest.raises(LeaderboardError, match="not an ikl-zoo result record"):
        read_record(bad)
    assert load_records(tmp_path) == []  # named on stderr and skipped
    with pytest.raises(LeaderboardError, match="not an ikl-zoo result.json"):
        read_result(bad)
    make_result().save(tmp_path / "result.json")
    assert read_result(tmp_path / "result.json").robust_acc == pytest.approx(0.677)
    with pytest.raises(LeaderboardError, match="unknown dataset"):
        write_record(make_result(dataset="imagenet"), root=tmp_path)


def _result_file(tmp_path, result, **changes):
    data = result.to_dict()
    data.update(changes)
    path = tmp_path / "result.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"clean_acc": "0.92"}, "clean_acc"),
        ({"robust_acc": 67.7}, "robust_acc"),
        ({"eps": "8/255"}, "eps"),
        ({"n_examples": 0}, "n_examples"),
        ({"attacks": "apgd-ce"}, "attacks"),
        ({"provenance": ["torch"]}, "provenance"),
        ({"robust_flags": None}, "robust_flags"),
    ],
)
def test_result_with_wrong_field_types_is_a_one_line_error(tmp_path, make_result, changes, named):
    path = _result_file(tmp_path, make_result(n_examples=10), **changes)
    with pytest.raises(LeaderboardError, match=f"not an ikl-zoo result.json .*{named}"):
        read_result(path)


def test_record_with_wrong_field_types_is_a_one_line_error(tmp_path, make_result):
    path = write_record(make_result(n_examples=10), root=tmp_path)
    data = json.loads(path.read_text())
    data["ikl_zoo"]["measurement"]["settings"]["eps"] = "8/255"
    path.write_text(json.dumps(data))
    with pytest.raises(LeaderboardError, match="not an ikl-zoo result record .*eps"):
        read_record(path)


def test_result_of_replaced_weights_is_never_recorded_as_the_published_model(tmp_path, make_result):
    provenance = {
        **make_result().provenance,
        "replaced_weights": "mine.pt",
    }
    with pytest.raises(LeaderboardError, match="weights from mine.pt, not its published weights"):
        write_record(make_result(provenance=provenance), root=tmp_path)
    assert not tmp_path.joinpath("cifar10").exists()


def test_ids_sharing_a_file_name_never_replace_each_other(tmp_path, make_result):
    path = write_record(make_result("my_model", n_examples=10), root=tmp_path)
    for overwrite in (False, True):
        with pytest.raises(RecordConflictError, match="holds the record of 'my_model', not of 'my/model'"):
            write_record(make_result("my/model", n_examples=20), root=tmp_path, overwrite=overwrite)
    assert read_record(path).measurement.model_id == "my_model"


def test_unwritable_records_folder_is_a_one_line_error(tmp_path, make_result):
    (tmp_path / "records").write_text("")
    with pytest.raises(LeaderboardError, match="part of that path is a file"):
        write_record(make_result(), root=tmp_path / "records")


def test_record_of_an_earlier_format_is_refused_naming_the_fix(tmp_path, make_result):
    path = write_record(make_result(n_examples=10), root=tmp_path)
    data = json.loads(path.read_text())
    data["ikl_zoo"]["record_format"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(LeaderboardError, match="earlier ikl-zoo format: re-run the evaluation") as caught:
        read_record(path)
    assert "\n" not in str(caught.value) and "record --overwrite" in caught.value.fix


def test_the_attack_label_names_every_departure_from_standard_autoattack():
    from ikl_zoo.evaluate.settings import EvalSettings
    from ikl_zoo.leaderboard.records import attack_label

    assert attack_label(EvalSettings()) == "AutoAttack (standard)"
    assert attack_label(EvalSettings(version="rand")) == "AutoAttack (rand)"
    options = {"apgd": {"n_iter": 10.0, "n_restarts": 2}}
    custom = EvalSettings(version="custom", attacks=["apgd-ce"], attack_options=options)
    assert attack_label(custom) == "custom: apgd-ce (apgd.n_iter=10, apgd.n_restarts=2)"
    assert attack_label(EvalSettings(attack_options={"apgd": {"n_iter": 10}})) == (
        "AutoAttack (standard, apgd.n_iter=10)"
    )


# The facts a submission trusts are read from the keys the evaluator records them under.
VERSIONS = {"torch": "2.14.1", "pyautoattack": "0.2.0", "ikl_zoo": "0.1.0"}


def test_checkpoint_sha256_is_the_files_hash_never_the_weights_or_data_digest():
    evaluator_order = {"weights_sha256": "aa", "data_sha256": "bb", "checkpoint_sha256": "cc"}
    assert checkpoint_sha256(evaluator_order) == "cc"
    assert checkpoint_sha256({"weights_sha256": "aa", "data_sha256": "bb"}) is None


def test_a_result_without_the_files_hash_lacks_the_checkpoint_fact():
    provenance = {**VERSIONS, "devices": ["cpu"], "weights_sha256": "aa", "data_sha256": "bb"}
    assert missing_facts(provenance) == ["checkpoint sha256"]
    assert missing_facts({**provenance, "checkpoint_sha256": "cc"}) == []


def test_replaced_weights_are_read_from_their_own_key():
    keyed = {"replaced_weights": "mine.pt", "model_source": "demo-resnet18 (reworded)"}
    assert replaced_weights(keyed) == "mine.pt"
    assert replaced_weights({"replaced_weights": None, "model_source": "x with weights from y"}) is None
    assert replaced_weights({"model_source": "demo-resnet18 (ResNet-18), published weights"}) is None
