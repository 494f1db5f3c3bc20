"""RobustBench submissions: exact model_info JSON, robustbench's readers, issue text, zoo entry, refusals."""

from __future__ import annotations

import ast
import dataclasses
import json
import re

import pytest
import yaml

from ikl_zoo._robustbench import import_robustbench, robustbench_model_dicts
from ikl_zoo.cards.submission import SubmissionRefusedError, build_submission, write_submission
from ikl_zoo.zoo.registry import list_models

# RobustBench's own model_info/cifar10/Linf/Cui2023Decoupled_WRN-28-10.json (its field values, verbatim).
ROBUSTBENCH_CUI_WRN_28_10 = {
    "link": "https://arxiv.org/abs/2305.13948",
    "name": "Decoupled Kullback-Leibler Divergence Loss",
    "authors": "Jiequan Cui, Zhuotao Tian, Zhisheng Zhong, Xiaojuan Qi, Bei Yu, Hanwang Zhang",
    "additional_data": False,
    "number_forward_passes": 1,
    "dataset": "cifar10",
    "venue": "NeurIPS 2024",
    "architecture": "WideResNet-28-10",
    "eps": "8/255",
    "clean_acc": "92.16",
    "reported": "67.73",
    "autoattack_acc": "67.73",
    "unreliable": False,
    "footnote": "It uses additional 20M synthetic images in training.",
}
# RobustBench's .github/ISSUE_TEMPLATE/new-model.md, verbatim (at commit 78fcc9e, last changed in 4905af9).
ROBUSTBENCH_NEW_MODEL_TEMPLATE = """---
name: New Model(s)
about: To ask for the addition of new models to the leaderbord and/or model zoo
title: "[New Model] <NameYearFirstWordOfTitle>"
labels: new-model
assignees: ''

---

# Paper Information

- **Paper Title**:
- **Paper URL**:
- **Paper authors**:

# Leaderboard Claim(s)

Add here the claim for your model(s). Copy and paste the following subsection for the number of models you want to add.

## Model 1

- **Architecture**:
- **Threat Model**: One of {L2,Linf,Common Corruptions}
- **eps**: (N/A for common corruptions)
- **Clean accuracy**:
- **Robust accuracy**:
- **Additional data**: true/false
- **Evaluation method**:
- **Checkpoint and code**: (insert here the URL for the checkpoint and the code. If you don't want
  to share your checkpoint publicly, you can share it for a private submission via an email
  to `adversarial.benchmark@gmail.com`).

## Model 2

...

# Model Zoo:

- [ ] I want to add my models to the Model Zoo (check if true)
- [ ] I use an architecture that is included among
  those [here](https://github.com/RobustBench/robustbench/tree/master/robustbench/model_zoo/architectures) or in `timm`. If not, I added the link to the architecture implementation so that it can be added.
- [ ] I agree to release my model(s) under MIT license (check if true) **OR** under a custom license, located here: (put the custom license URL here if a custom license is needed. If no URL is specified, we assume that you are fine with MIT)
"""  # noqa: E501 (verbatim)
NEW_MODEL_INFO = {
    "paper_title": "Robust Nets",
    "link": "https://arxiv.org/abs/2501.00001",
    "authors": "Ann Doe, Bo Roe",
    "venue": "ICML 2025",
    "architecture": "WideResNet-34-10",
    "additional_data": False,
    "checkpoint_url": "https://huggingface.co/doe/robust-nets",
}


def test_model_info_matches_robustbench_exactly(make_result):
    submission = build_submission(make_result(clean=0.9216, robust=0.6773))
    assert submission.model_info == ROBUSTBENCH_CUI_WRN_28_10
    assert str(submission.model_info_path) == "model_info/cifar10/Linf/Cui2023Decoupled_WRN-28-10.json"
    assert not submission.problems
    assert any("already on RobustBench" in note for note in submission.notes)


def test_round_trip_through_robustbench_readers(tmp_path, make_result, monkeypatch, capsys):
    write_submission(make_result(clean=0.9216, robust=0.6773), tmp_path)
    new = make_result("my-wrn", clean=0.8612, robust=0.5925)
    write_submission(new, tmp_path, name="Doe2025Robust_WRN-34-10", info=NEW_MODEL_INFO)
    written = json.loads((tmp_path / "model_info/cifar10/Linf/Doe2025Robust_WRN-34-10.json").read_text())
    assert (
        written["clean_acc"] == "86.12" and written["autoattack_acc"] == "59.25" and written["eps"] == "8/255"
    )

    import_robustbench()
    from robustbench.utils import get_leaderboard_bibtex, get_leaderboard_latex, list_available_models

    monkeypatch.chdir(tmp_path)  # robustbench reads ./model_info/<dataset>/<threat_model>/*.json
    rows = get_leaderboard_latex("cifar10", "Linf").splitlines()
    assert rows[0].startswith("1 &\\citet{Cui2023Decoupled} & 92.16 & 67.73 & N & WRN-28-10 & NeurIPS 2024")
    assert rows[0].endswith("Cui2023Decoupled\\_WRN-28-10\\\\")
    assert rows[1].startswith("2 &\\citet{Doe2025Robust} & 86.12 & 59.25 & N & WRN-34-10 & ICML 2025 & N/A")
    _, bibtex = get_leaderboard_bibtex("cifar10", "Linf")
    assert "title\t= {Robust Nets}" in bibtex and "author\t= {Ann Doe and Bo Roe}" in bibtex
    list_available_models("cifar10", "Linf")
    table = capsys.readouterr().out
    assert "Cui2023Decoupled_WRN-28-10" in table and "92.16%" in table and "67.73%" in table


def _front_matter(text):
    _, front_matter, _ = text.split("---\n", 2)
    return yaml.safe_load(front_matter)


def _fills_in(text):
    """``text`` is RobustBench's template with only its fields and boxes filled (a draft banner aside)."""
    text = re.sub(r"\n> \*\*DRAFT, not ready to submit:\*\*.*\n", "", text)
    lines = iter(text.splitlines())
    for line in ROBUSTBENCH_NEW_MODEL_TEMPLATE.splitlines():
        if line.startswith("  to"):  # the checkpoint field's placeholder, gone once the field is filled
            continue
        field, box = re.match(r"- \*\*[^*]+\*\*:", line), line.startswith("- [ ] ")
        if not field and not box:
            assert next(lines, None) == line, f"the template's line {line!r} is not next"
        elif box:
            assert re.fullmatch(r"- \[[ x]\] " + re.escape(line[6:]), next(lines, "")), line
        else:  # a field: the template's own text, or a value after the name
            assert (filled := next(lines, "")) == line or filled.startswith(f"{field[0]} "), line
            if filled.startswith("- **Checkpoint and code**: (insert"):
                assert [next(lines), next(lines)] == [
                    s for s in ROBUSTBENCH_NEW_MODEL_TEMPLATE.splitlines() if s.startswith("  to")
                ]
    assert next(lines, None) is None
    assert (
        _front_matter(text)
        == _front_matter(ROBUSTBENCH_NEW_MODEL_TEMPLATE)
        == {
            "name": "New Model(s)",
            "about": "To ask for the addition of new models to the leaderbord and/or model zoo",
            "title": "[New Model] <NameYearFirstWordOfTitle>",
            "labels": "new-model",
            "assignees": "",
        }
    )
    return text


def _boxes(text):
    return re.findall(r"^- \[([ x])\] (I want to add|I use an architecture|I agree to release)", text, re.M)


def test_issue_text_fills_robustbench_new_model_template_in(make_result):
    submission = build_submission(make_result(), name="Cui2023Decoupled_WRN-28-10")
    text = _fills_in(submission.issue_text)
    for filled in (
        "- **Paper Title**: Decoupled Kullback-Leibler Divergence Loss",
        "- **Paper URL**: https://arxiv.org/abs/2305.13948",
        "- **Architecture**: WideResNet-28-10",
        "- **Threat Model**: Linf",
        "- **eps**: 8/255",
        "- **Clean accuracy**: 92.15%",
        "- **Robust accuracy**: 67.70%",
        "- **Additional data**: false",
    ):
        assert f"\n{filled}\n" in text
    assert "first 10000 images" in text and "seed 0" in text and "ab" * 32 in text
    assert "https://drive.google.com/file/d/1-AaTrYt23WJFR22hXgBd-i6kjpsz6Hf2" in text
    # Model zoo: wanted (a checkpoint, an architecture RobustBench has), included; the license is the authors'
    assert _boxes(text) == [
        ("x", "I want to add"),
        ("x", "I use an architecture"),
        (" ", "I agree to release"),
    ]
    assert "DRAFT" not in text
    assert any('"[New Model] Cui2023Decoupled_WRN-28-10"' in note for note in submission.notes)


@pytest.mark.parametrize(("architecture_class", "boxes"), [("WideResNet", "xx "), ("MyNet", "   ")])
def test_issue_boxes_say_whether_robustbench_has_the_architecture(make_result, architecture_class, boxes):
    config = {"architecture": {"architecture_class": architecture_class, "depth": 34, "widen_factor": 10}}
    result = make_result("my-wrn", clean=0.8612, robust=0.5925)
    submission = build_submission(result, name="Doe2025Robust_WRN-34-10", info=NEW_MODEL_INFO, config=config)
    text = _fills_in(submission.issue_text)
    assert "".join(box for box, _ in _boxes(text)) == boxes
    assert "- **Checkpoint and code**: checkpoint: https://huggingface.co/doe/robust-nets\n" in text


@pytest.mark.parametrize(
    "entry", [e for e in list_models() if e.is_ikl_at], ids=lambda e: f"{e.dataset}-{e.model_id}"
)
def test_model_zoo_entry_rebuilds_robustbench_model(entry, make_result):
    import torch

    result = make_result(entry.model_id, dataset=entry.dataset)
    snippet = build_submission(result, name=entry.model_id).model_zoo_entry
    (pair,) = ast.parse(snippet).body[0].value.elts  # "('<name>', {...})," is a one-element tuple
    name, spec = pair.elts
    fields = {key.value: value for key, value in zip(spec.keys, spec.values, strict=True)}
    import_robustbench()
    zoo_module = __import__(f"robustbench.model_zoo.{entry.dataset}", fromlist=["linf"])
    theirs = robustbench_model_dicts()[entry.dataset]["Linf"][entry.model_id]
    assert name.value == entry.model_id and fields["gdrive_id"].value == theirs["gdrive_id"]
    with torch.device("meta"):
        ours = eval(ast.unparse(fields["model"].body), vars(zoo_module))  # noqa: S307 - the generated entry
        reference = theirs["model"]()
    shapes = {key: tuple(value.shape) for key, value in ours.state_dict().items()}
    assert shapes == {key: tuple(value.shape) for key, value in reference.state_dict().items()}
    assert type(ours) is type(reference)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"n_examples": 1000}, "covers 1000 test examples; RobustBench needs all 10,000"),
        ({"version": "custom"}, "it ran custom: apgd-ce (apgd-ce)"),
        ({"eps": 4 / 255}, "eps 4/255; RobustBench's Linf board uses 8/255"),
        ({"seed": None}, "records no seed"),
        (
            {"provenance": {"devices": ["cpu"]}},
            "lacks the torch version, AutoAttack version, ikl-zoo version, checkpoint sha256",
        ),
        ({"dataset": "cifar100", "threat_model": "L2", "eps": 0.5}, "no cifar100 L2 leaderboard"),
    ],
)
def test_refusals_name_the_reason(make_result, changes, reason):
    with pytest.raises(SubmissionRefusedError, match="--draft") as error:
        build_submission(make_result("my-wrn", **changes), name="Doe2025Robust", info=NEW_MODEL_INFO)
    assert reason in str(error.value)


def test_standard_autoattack_with_changed_settings_is_refused(make_result):
    result = make_result("my-wrn")
    settings = dataclasses.replace(result.settings, attack_options={"apgd": {"n_iter": 10}})
    result = dataclasses.replace(result, settings=settings)
    with pytest.raises(SubmissionRefusedError, match="--draft") as error:
        build_submission(result, name="Doe2025Robust", info=NEW_MODEL_INFO)
    assert "it ran AutoAttack (standard, apgd.n_iter=10)" in str(error.value)


def test_flag_gaps_and_names_are_refused(make_result):
    result = make_result(n_examples=10_000)
    result.robust_flags = result.robust_flags[:9_500]
    with pytest.raises(SubmissionRefusedError, match="missing chunks"):
        build_submission(result)
    result = make_result()
    result.robust_acc += 0.01
    with pytest.raises(SubmissionRefusedError, match="robust accuracy does not match"):
        build_submission(result)
    with pytest.raises(SubmissionRefusedError, match="pass --name") as error:
        build_submission(make_result("my-wrn"))
    assert "--paper-title, --paper-url, --authors, --venue, --architecture, --additional-data" in str(
        error.value
    )


def test_draft_writes_files_marked_as_draft(tmp_path, make_result):
    submission, paths = write_submission(make_result("my-wrn", n_examples=100), tmp_path, draft=True)
    assert [path.relative_to(tmp_path).as_posix() for path in paths] == [
        "model_info/cifar10/Linf/my-wrn.json",
        "new-model-issue.md",
        "model_zoo_entry.py",
    ]
    assert submission.is_draft and len(submission.problems) == 3
    issue = (tmp_path / "new-model-issue.md").read_text()
    assert "**DRAFT, not ready to submit:**" in issue and "\n- **Paper Title**:\n" in _fills_in(issue)
    assert "\n- **Additional data**: true/false\n" in issue and "email\n  to `adversarial" in issue
    assert "TODO_GOOGLE_DRIVE_ID" in (tmp_path / "model_zoo_entry.py").read_text()


@pytest.mark.parametrize("name", ["../../../escaped", "a/b", ".hidden", ""])
def test_even_a_draft_name_stays_inside_model_info(tmp_path, make_result, name):
    out = tmp_path / "out"
    with pytest.raises(SubmissionRefusedError, match="cannot name model_info/cifar10/Linf/<name>.json"):
        write_submission(make_result("my-wrn", n_examples=100), out, name=name or " ", draft=True)
    assert not tmp_path.joinpath("escaped.json").exists() and not out.exists()


def test_replaced_weights_are_a_refusal_reason(make_result):
    result = make_result(
        provenance={
            **make_result().provenance,
            "replaced_weights": "mine.pt",
        }
    )
    with pytest.raises(SubmissionRefusedError, match="weights from mine.pt, not its published weights"):
        build_submission(result)


def test_unwritable_submission_folder_is_a_one_line_error(tmp_path, make_result):
    from ikl_zoo.errors import IklZooError

    (tmp_path / "file").write_text("")
    with pytest.raises(IklZooError, match="cannot write .*part of that path is a file"):
        write_submission(make_result("my-wrn", n_examples=100), tmp_path / "file" / "out", draft=True)


def test_issue_text_names_the_devices_as_text(make_result):
    provenance = {**make_result().provenance, "devices": ["cuda:0 (NVIDIA H100)", "cuda:0 (NVIDIA H100)"]}
    text = build_submission(make_result(provenance=provenance)).issue_text
    assert "on cuda:0 (NVIDIA H100))" in text and "['" not in text


@pytest.mark.parametrize("draft", [False, True])
def test_a_bf16_screen_is_refused_even_as_a_draft(make_result, draft):
    result = make_result()
    result.settings = dataclasses.replace(result.settings, precision="bf16")
    with pytest.raises(SubmissionRefusedError) as error:
        build_submission(result, draft=draft)
    assert "--precision pytorch" in str(error.value) and "\n" not in str(error.value)
