"""Masking personal data for roles that may not see it (support, exports)."""

from __future__ import annotations

KEEP_DIGITS = 2


def mask_phone(phone: str | None) -> str:
    """``(212) 555-0123`` → ``(***) ***-**23``: the shape stays, only the last digits show."""
    if not phone:
        return ""
    total = sum(ch.isdigit() for ch in phone)
    out = []
    seen = 0
    for ch in phone:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > total - KEEP_DIGITS else "*")
        else:
            out.append(ch)
    return "".join(out)
