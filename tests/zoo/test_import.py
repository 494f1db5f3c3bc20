"""``import ikl_zoo`` is quiet and light: no robustbench, no warnings, even with warnings as errors."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("robustbench", "timm", "pyautoattack", "huggingface_hub", "gdown")

SCRIPT = f"""
import sys
import ikl_zoo
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
from ikl_zoo import load_model
model = load_model("demo-resnet18")
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


def test_import_and_demo_load_are_quiet_and_do_not_import_robustbench() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "[]"]
    assert result.stderr == ""


def test_boards_and_cards_need_neither_torch_nor_autoattack() -> None:
    """Rendering a board, a card or a submission reads records: it must not wait seconds for torch."""
    script = (
        "import sys, ikl_zoo.cards.submission, ikl_zoo.cards.model_card, ikl_zoo.leaderboard.render\n"
        "print(sorted(m for m in ('torch', 'pyautoattack', 'robustbench') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
