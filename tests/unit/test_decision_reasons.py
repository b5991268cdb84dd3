"""One vocabulary of decision reasons: the enum the control code uses is the one the README documents."""

from __future__ import annotations

import re
from pathlib import Path

from batchpilot.control.types import DecisionReason

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_reasons() -> set[str]:
    text = README.read_text()
    table = text[text.index("| reason | the loop |"):]
    rows = table[:table.index("\n\n")].splitlines()[2:]
    return {m.group(1) for row in rows if (m := re.match(r"\| `(\w+)` \|", row))}


def test_the_readme_documents_every_decision_reason_and_no_other() -> None:
    assert documented_reasons() == {r.value for r in DecisionReason}


def test_reasons_render_as_their_names() -> None:
    # Status, Events and metric labels take the value: a StrEnum formats as it.
    assert f"{DecisionReason.PANIC}" == "Panic" == str(DecisionReason.PANIC)
