"""``make demo`` keeps working: the scripted demo runs end to end and exits 0."""

import io

from bot.demo import run_demo
from tests.conftest import make_settings


async def test_demo_script_passes() -> None:
    out = io.StringIO()
    status = await run_demo(make_settings(), out=out)
    transcript = out.getvalue()
    assert status == 0, transcript[-2000:]
    assert "✅ demo finished" in transcript
    assert "Payment received" in transcript and "Label bought" in transcript
    assert "corrected form" in transcript and "Use this" in transcript
    assert "Refund credited" in transcript
    assert "has not been used" in transcript and "is on its way" in transcript
    assert "0 mismatches" in transcript
