"""The configuration reference in docs/OPERATIONS.md is generated from ``Settings``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import __main__ as cli
from bot.settings import Secrets, Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"


def test_every_setting_and_secret_is_listed() -> None:
    reference = cli.config_reference()
    assert "| `telegram.poll_timeout` | `SHIPBOT_TELEGRAM__POLL_TIMEOUT` | int | `30` |" in (
        reference
    )
    assert "`SHIPBOT_PAYMENTS__OXAPAY__CALLBACK_URL`" in reference
    assert '"DEBUG" \\| "INFO"' in reference  # pipes escaped inside table cells
    for name in Settings.model_fields:
        if name != "secrets":
            assert f"`SHIPBOT_{name.upper()}" in reference
    for field in Secrets.model_fields.values():
        assert f"| `{field.validation_alias}` |" in reference


def test_the_operations_doc_is_up_to_date() -> None:
    current = DOC.read_text(encoding="utf-8")
    expected = cli.replace_reference_block(current, cli.config_reference())
    assert current == expected, (
        "docs/OPERATIONS.md is stale: run python -m bot config-reference --write "
        "docs/OPERATIONS.md"
    )


def test_check_and_write_modes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "OPS.md"
    doc.write_text(f"# Ops\n\n{cli.REFERENCE_BEGIN}\nSTALE-BLOCK\n{cli.REFERENCE_END}\n\nafter\n")
    assert cli.main(["config-reference", "--check", str(doc)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert cli.main(["config-reference", "--write", str(doc)]) == 0
    assert cli.main(["config-reference", "--check", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Ops\n") and text.endswith(f"{cli.REFERENCE_END}\n\nafter\n")
    assert "SHIPBOT_MONGO__DATABASE" in text and "STALE-BLOCK" not in text
