"""Leaderboard tables: RobustBench's published board with ikl-zoo's measurements beside it, as a ``Board``
(a pandas frame plus what it shows) that ``leaderboard.render`` writes out."""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from ikl_zoo.evaluate.summary import FULL_TEST_SET, on_the_published_images
from ikl_zoo.leaderboard.records import DEFAULT_ROOT, Record, load_records, record_path, replaced_weights
from ikl_zoo.leaderboard.reference import (
    STANDARD_EPS,
    THREAT_MODELS,
    Folder,
    LeaderboardError,
    is_standard_eps,
    load_reference,
    reference_entry,
    robustbench_name,
)
from ikl_zoo.threat import DATASET_TITLES, HF_HUB_PREFIX, format_eps, same_eps

STAR = "\u2605"  # marks IKL-AT rows in every rendered table
BF16_MARK, ATTACK_MARK = "\u2020", "\u2021"
NOT_COMPARABLE = {  # the mark of a measured figure RobustBench would not take, and its footnote
    BF16_MARK: "A bf16 screen (measured under bf16 autocast), not a leaderboard number: measure it with "
               "`ikl-zoo eval --precision pytorch`.",
    ATTACK_MARK: "Not standard AutoAttack (its attacks and changed settings are named): not comparable with "
                 "the published figures, and not ranked; measure it with `ikl-zoo eval --version standard`.",
}  # fmt: skip
ROW_COLUMNS = [
    "rank", "model_id", "ikl_at", "on_robustbench", "paper_title", "link", "clean_acc", "autoattack_acc",
    "best_known", "additional_data", "architecture", "venue", "footnote", "unreliable", "measured_clean_acc",
    "measured_autoattack_acc", "delta_clean_acc", "delta_autoattack_acc", "measured_n_examples",
    "measured_version", "measured_attack", "measured_note", "measured_comparable",
]  # fmt: skip
"""Machine-readable columns (CSV, JSON): accuracies in percent, deltas are measured minus published."""
COMPARED = ["clean_acc", "autoattack_acc", "best_known", "measured_autoattack_acc"]
COMPARE_DELTAS = [f"delta_vs_first_{column}" for column in COMPARED]
_TEXTS = ("link", "architecture", "venue", "footnote")  # an unlisted model's, as its record states them


@dataclass(frozen=True)
class Board:
    """One leaderboard or comparison, before rendering: its rows and what they are measured against."""

    dataset: str
    threat_model: str
    rows: pd.DataFrame
    source: str
    eps: float
    compare_baseline: str | None = None  # the first model of --compare: every delta is relative to it
    notes: tuple[str, ...] = field(default_factory=tuple)

    has_measurements = property(lambda self: bool(self.rows["measured_autoattack_acc"].notna().any()))
    eps_text = property(lambda self: format_eps(self.eps, self.threat_model))


def build_board(
    dataset: str = "cifar10", threat_model: str = "Linf", *, robustbench_dir: Folder | None = None,
    records_root: Folder | None = DEFAULT_ROOT, top: int | None = None, only_ikl: bool = False,
    no_extra_data: bool = False, eps: float | None = None,
) -> Board:
    """RobustBench's board as it ranks it (by best-known robust accuracy), models it does not list placed by
    their measured accuracy, unranked; at another ``eps``, only the records measured at it. Filters last."""
    if top is not None and top < 1:
        raise LeaderboardError(f"--top must be a positive number of rows, not {top}", fix="pass 1 or more")
    reference = load_reference(dataset, threat_model, robustbench_dir=robustbench_dir)
    eps = STANDARD_EPS[threat_model] if eps is None else eps
    published, notes = reference.table, []
    if published.empty or not is_standard_eps(eps, threat_model):  # e.g. CIFAR-100 L2, or another eps
        published = published.iloc[:0]
        notes.append(f"RobustBench has no {DATASET_TITLES[dataset]} {threat_model} board at eps "
                     f"{format_eps(eps, threat_model)}: only ikl-zoo's measured records are shown.")
    records = load_records(records_root, dataset=dataset, threat_model=threat_model) if records_root else []
    rows, shown_notes = _merge(published, records, threat_model, eps)
    notes += shown_notes
    if rows.empty:
        budget = format_eps(eps, threat_model)
        notes.append(f"No record at eps {budget} yet: `ikl-zoo eval --model MODEL --dataset {dataset} "
                     f"--norm {threat_model} --eps {budget} --record` measures one.")
    if only_ikl:
        rows = rows[rows["ikl_at"]]
    if no_extra_data:
        rows = rows[~rows["additional_data"].eq(True)]  # unknown (None) is kept, and shown as unknown
    if top is not None:
        cut = rows.iloc[top:]
        if measured := cut.loc[cut["measured_autoattack_acc"].notna(), "model_id"].tolist():
            notes.append(f"Not shown: below the top {top}, measured by ikl-zoo: {', '.join(measured)} "
                         "(leave out --top to see them)")
        rows = rows.head(top)
    rows = rows.reset_index(drop=True)
    return Board(dataset, threat_model, rows, reference.source, eps, notes=tuple(notes))


def compare_models(
    model_ids: Sequence[str], *, dataset: str = "cifar10", threat_model: str = "Linf",
    robustbench_dir: Folder | None = None, records_root: Folder | None = DEFAULT_ROOT,
    eps: float | None = None,
) -> Board:
    """The named models side by side, with every figure's difference from the first one."""
    if len(model_ids) < 2:
        fix = "e.g. --compare Cui2023Decoupled_WRN-34-10 Zhang2019Theoretically"
        raise LeaderboardError("--compare needs at least two model ids", fix=fix)
    board = build_board(dataset, threat_model, robustbench_dir=robustbench_dir, records_root=records_root,
                        eps=eps)
    rows = board.rows.set_index("model_id", drop=False)
    names = map(robustbench_name, model_ids)  # an ``hf-hub:`` name without a revision: its measured ``@main``
    ids = [f"{n}@main" if n.startswith(HF_HUB_PREFIX) and f"{n}@main" in rows.index else n for n in names]
    for model_id in (model_id for model_id in ids if model_id not in rows.index):
        close = difflib.get_close_matches(model_id, list(rows.index), n=3, cutoff=0.6)
        fix = f"did you mean {', '.join(close)}?" if close else "see `ikl-zoo leaderboard` for the ids"
        if model_id.startswith(HF_HUB_PREFIX):
            fix = f"measure it first: `ikl-zoo eval --model {model_id} --dataset {dataset} --record`"
        problem = f"{model_id!r} is not on the {dataset} {threat_model} board"
        if elsewhere := _other_board(model_id, (dataset, threat_model), records_root=records_root):
            problem, fix = f"{problem}, but it is on the {elsewhere[0]} board", f"pass {elsewhere[1]}"
        raise LeaderboardError(problem, fix=fix)
    rows = rows.loc[ids].reset_index(drop=True)
    rows[COMPARE_DELTAS] = (rows[COMPARED] - rows[COMPARED].iloc[0]).to_numpy()
    return replace(board, rows=rows, compare_baseline=ids[0])


def _other_board(model_id: str, board: tuple[str, ...], *, records_root: Folder | None
                 ) -> tuple[str, str] | None:
    """The board a model missing from ``board`` is on (published or measured), and the options showing it."""
    boards = sorted(itertools.product(DATASET_TITLES, THREAT_MODELS), key=lambda b: b[1] != board[1])
    for other in (other for other in boards if other != board):
        where = dict(zip(("dataset", "threat_model"), other, strict=True))
        recorded = records_root and record_path(model_id, **where, root=records_root).is_file()
        if reference_entry(model_id, **where) or recorded:
            changed = zip(("--dataset", "--threat-model"), other, board, strict=True)
            options = [f"{option} {value}" for option, value, now in changed if value != now]
            return " ".join(other), " ".join(options)
    return None


def _merge(reference: pd.DataFrame, records: list[Record], threat_model: str, eps: float
           ) -> tuple[pd.DataFrame, list[str]]:
    """RobustBench's ranked rows with the measurements beside them, and unlisted measured models added."""
    shown, notes = _shown_records(records, threat_model, eps)
    measured = pd.DataFrame(
        [{"model_id": r.measurement.board_id, "record_ikl_at": r.is_ikl_at, **_measured(r)} for r in shown],
        columns=["model_id", "record_ikl_at", *(c for c in ROW_COLUMNS if c.startswith("measured_"))],
    )
    ranked = reference.sort_values(["best_known", "clean_acc", "model_id"], ascending=[False, False, True])
    ranked = ranked.assign(rank=range(1, len(ranked) + 1), on_robustbench=True)  # as RobustBench ranks them
    rows = ranked.merge(measured, on="model_id", how="left")
    rows["ikl_at"] = rows["ikl_at"] | rows["record_ikl_at"].eq(True)
    unlisted = [_unlisted_row(r) for r in shown if r.measurement.board_id not in set(reference["model_id"])]
    if unlisted:
        rows = pd.concat([rows, pd.DataFrame(unlisted)], ignore_index=True)
    rows = rows.fillna({"measured_version": "", "measured_attack": "", "measured_note": "",
                        "measured_comparable": False})
    return _ordered(rows.astype({"rank": "Int64", "measured_n_examples": "Int64"})), notes


def _shown_records(records: list[Record], threat_model: str, eps: float) -> tuple[list[Record], list[str]]:
    """The records the board shows, a note naming each one it leaves out and why, and its marks' footnotes."""
    shown, notes = {}, []  # the record shown of each board id; why each other one is not
    for record in sorted(records, key=_canonical_first):
        m, weights = record.measurement, replaced_weights(record.measurement.provenance)
        if not same_eps(m.eps, eps):
            why = f"eps {m.settings.eps_text}: shown with --eps {m.settings.eps_text}"
        elif weights is not None:
            why = f"it measures {m.model_id} with weights from {weights}, not its published weights"
        elif m.board_id in shown and m.settings.precision == "bf16":
            why = f"a bf16 screen of {m.board_id}; the board shows its full-precision record"
        elif m.board_id in shown:
            why = f"a second record of {m.board_id}; the board shows {shown[m.board_id].path}, delete one"
        else:
            shown[m.board_id] = record
            continue
        notes.append(f"Not shown: the record {record.path} ({why}).")
    marks = set().union(*(_marks(record.measurement) for record in shown.values()))
    notes += [f"{mark} {footnote}" for mark, footnote in NOT_COMPARABLE.items() if mark in marks]
    return list(shown.values()), notes


def _measured(record: Record) -> dict[str, Any]:
    m = record.measurement
    return {
        "measured_clean_acc": 100 * m.clean_acc, "measured_autoattack_acc": 100 * m.robust_acc,
        "measured_n_examples": m.n_examples, "measured_version": m.version, "measured_attack": m.attack,
        "measured_note": _measured_note(m), "measured_comparable": m.comparable_with_published,
    }  # fmt: skip


def _unlisted_row(record: Record) -> dict[str, Any]:
    """The row of a model RobustBench does not list: what its record says, published figures blank."""
    info, additional_data = record.model_info, record.model_info.get("additional_data")
    return {
        "paper_title": info.get("name") or "", **{key: info.get(key) or "" for key in _TEXTS},
        **dict.fromkeys(["clean_acc", "autoattack_acc", "best_known"], math.nan),
        "model_id": record.measurement.board_id, "ikl_at": record.is_ikl_at, "on_robustbench": False,
        # None: the record does not say (a user's model); shown as unknown, never as "no".
        "additional_data": additional_data if isinstance(additional_data, bool) else None,
        "unreliable": False, **_measured(record),
    }  # fmt: skip


def _ordered(rows: pd.DataFrame) -> pd.DataFrame:
    """Deltas and a place among ranked rows only for a figure measured as RobustBench does; others below."""
    comparable = rows["measured_comparable"].astype(bool)
    measured_key = rows["measured_autoattack_acc"].where(comparable)
    rows = rows.assign(
        measured_comparable=comparable,
        delta_clean_acc=(rows["measured_clean_acc"] - rows["clean_acc"]).where(comparable),
        delta_autoattack_acc=(rows["measured_autoattack_acc"] - rows["autoattack_acc"]).where(comparable),
        _key=rows["best_known"].where(rows["on_robustbench"], measured_key),
        _listed=rows["on_robustbench"].astype(int),
    )
    order = ["_key", "_listed", "clean_acc", "measured_autoattack_acc", "model_id"]
    rows = rows.sort_values(order, ascending=[False, False, False, False, True], kind="stable")
    return rows[ROW_COLUMNS].reset_index(drop=True)


def _measured_note(measured: Any) -> str:
    """How a ``Measurement`` was measured, and whether it compares with a published figure."""
    n, marks = measured.n_examples, _marks(measured)
    note = f"{n} examples" if n >= FULL_TEST_SET else f"{n} of {FULL_TEST_SET:,} examples (estimate)"
    note += "".join(f", {mark} {what}" for mark, what in marks.items()) + ", not comparable" * bool(marks)
    if not marks and n >= FULL_TEST_SET and not on_the_published_images(n, measured.provenance):
        note += ", not the official test set, not comparable"
    return note


def _marks(measured: Any) -> dict[str, str]:
    """The marks of ``NOT_COMPARABLE`` a measurement carries, and what each says of it."""
    marks = {BF16_MARK: "bf16 screen"} if measured.settings.precision == "bf16" else {}
    return marks | ({} if measured.standard_attack else {ATTACK_MARK: measured.attack})


def _canonical_first(record: Record) -> tuple[bool, bool]:
    """Full precision before a bf16 screen; a record at its own path before a stray copy of it."""
    m = record.measurement
    own = record_path(m.model_id, dataset=m.dataset, threat_model=m.threat_model, eps=m.eps,
                      precision=m.settings.precision)
    return m.settings.precision == "bf16", record.path.name != own.name
