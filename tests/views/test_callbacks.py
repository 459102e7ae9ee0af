"""Typed callback data: each codec packs exactly the string the bot has always sent (so
buttons already in customers' chats keep working), reads it back, and stays in 64 bytes."""

from __future__ import annotations

import re

import pytest

from views import callbacks as cb
from views.callbacks import CODECS, CallbackData, check_size

ID = "65a1b2c3d4e5f60718293a4b"
ID2 = "0123456789abcdef01234567"

# Every codec with a sample and the string it must pack to (today's format).
SAMPLES: list[tuple[CallbackData, str]] = [
    (cb.MenuTopUp(), "menu:topup"),
    (cb.MenuBalance(), "menu:balance"),
    (cb.MenuMain(), "menu:main"),
    (cb.TopUpTerms("2025-01"), "topup:terms:2025-01"),
    (cb.TopUpAmount(2500), "topup:amount:2500"),
    (cb.TopUpMethod("crypto"), "topup:method:crypto"),
    (cb.TopUpCancel(), "topup:cancel"),
    (cb.CancelInvoice(ID), f"topup:cancelinv:{ID}"),
    (cb.BalancePage(3), "bal:page:3"),
    (cb.LegalShow("terms"), "legal:show:terms"),
    (cb.AdminPayCredit(ID), f"adm:paycredit:{ID}"),
    (cb.AdminPayAmount(ID), f"adm:payamt:{ID}"),
    (cb.OrderTopUp(), "order:topup"),
    (cb.OrderSummary(), "order:summary"),
    (cb.OrderCancel(), "order:cancel"),
    (cb.OrderPay(ID, "12-3", 902), f"order:pay:{ID}:12-3:902"),
    (cb.OrderTemplate("from", ID2), f"order:tpl:from:{ID2}"),
    (cb.OrderSkip("to", "street2"), "order:skip:to:street2"),
    (cb.OrderRate(ID, 4), f"order:rate:{ID}:4"),
    (cb.OrderRetry(ID), f"order:retry:{ID}"),
    (cb.OrderUseTemplate(ID2), f"order:usetpl:{ID2}"),
    (cb.OrderAddressCheck("use", ID, "to", "0a1b2c3d"), f"order:av:use:{ID}:to:0a1b2c3d"),
    (cb.OrderEdit("parcel", ID), f"order:edit-parcel:{ID}"),
    *[
        # lists and settings (templates, presets, My labels, refunds, menu, format, language)
        (cb.MenuOrder(), "menu:order"),
        (cb.MenuLabels(), "menu:labels"),
        (cb.MenuTemplates(), "menu:templates"),
        (cb.MenuRefunds(), "menu:refunds"),
        (cb.MenuSupport(), "menu:support"),
        (cb.MenuLanguage(), "menu:language"),
        (cb.MenuFormat(), "menu:format"),
        (cb.MenuHelp(), "menu:help"),
        (cb.SetLanguage("uk"), "lang:uk"),
        (cb.SetFormat("pdf_4x6"), "fmt:set:pdf_4x6"),
        (cb.TemplateList(2), "tpl:list:2"),
        (cb.TemplateNew(), "tpl:new"),
        (cb.TemplateView(ID), f"tpl:view:{ID}"),
        (cb.TemplateRename(ID), f"tpl:rename:{ID}"),
        (cb.TemplateDefault(ID), f"tpl:default:{ID}"),
        (cb.TemplateUndefault(ID), f"tpl:undefault:{ID}"),
        (cb.TemplateDelete(ID), f"tpl:delete:{ID}"),
        (cb.TemplateDeleteYes(ID), f"tpl:delete-yes:{ID}"),
        (cb.TemplateSave(ID2), f"tpl:save:{ID2}"),
        (cb.PresetList(), "pst:list"),
        (cb.PresetNew(), "pst:new"),
        (cb.PresetView(ID), f"pst:view:{ID}"),
        (cb.PresetFromLabel(ID2), f"pst:last:{ID2}"),
        (cb.PresetRename(ID), f"pst:rename:{ID}"),
        (cb.PresetDelete(ID), f"pst:delete:{ID}"),
        (cb.PresetDeleteYes(ID), f"pst:delete-yes:{ID}"),
        (cb.LabelsPage(3), "lbl:page:3"),
        (cb.LabelPdf(ID), f"lbl:pdf:{ID}"),
        (cb.LabelFormats(ID), f"lbl:fmt:{ID}"),
        (cb.LabelDownload(ID, "png"), f"lbl:dl:{ID}:png"),
        (cb.LabelTrack(ID), f"lbl:trk:{ID}"),
        (cb.LabelReceipt(ID), f"lbl:rcp:{ID}"),
        (cb.RefundRequest(), "rf:request"),
        (cb.RefundList(), "rf:list"),
        (cb.RefundOne(ID), f"rf:one:{ID}"),
        (cb.PrivacyDelete(ID), f"privacy:delete:{ID}"),
        (cb.PrivacyKeep(ID), f"privacy:keep:{ID}"),
    ],
]


def test_every_codec_has_a_sample() -> None:
    assert {type(codec) for codec, _ in SAMPLES} == set(CODECS)


@pytest.mark.parametrize(("codec", "packed"), SAMPLES, ids=[s for _, s in SAMPLES])
def test_pack_yields_todays_string_and_round_trips(codec: CallbackData, packed: str) -> None:
    assert codec.pack() == packed
    assert re.match(type(codec).pattern(), packed)
    assert type(codec).unpack(packed) == codec


@pytest.mark.parametrize(("codec", "packed"), SAMPLES, ids=[s for _, s in SAMPLES])
def test_other_strings_are_not_this_codec(codec: CallbackData, packed: str) -> None:
    kind = type(codec)
    for other in (packed + "/", packed + ":", "x" + packed, packed.upper() + "Ä", ""):
        assert kind.unpack(other) is None, other
    # No other codec claims this string (one handler per button).
    assert [k for k in CODECS if k.unpack(packed) is not None] == [kind]


def test_the_pay_button_keeps_pinned_to_the_order_patterns() -> None:
    """The pattern order.py registers today accepts what OrderPay packs (phase 2 can swap
    the hand-written regex for ``OrderPay.pattern()`` without stranding buttons)."""
    today = r"^order:pay:[0-9a-f]{24}(:\d{1,9}-\d:\d{1,9})?$"
    assert re.match(today, cb.OrderPay(ID, "123456789-9", 999_999_999).pack())


def test_largest_values_fit_64_bytes() -> None:
    largest = [
        cb.OrderPay(ID, "999999999-9", 999_999_999),
        cb.OrderAddressCheck("keep", ID, "from", "ffffffff"),
        cb.OrderTemplate("from", ID),
        cb.TopUpTerms("x" * 32),
        cb.TopUpAmount(999_999_999),
        cb.OrderSkip("from", "residential_indicator"),
    ]
    for codec in largest:
        assert len(codec.pack().encode()) <= 64, codec


def test_over_64_bytes_is_refused_where_it_is_built() -> None:
    with pytest.raises(ValueError, match="1-64 bytes"):
        cb.OrderSkip("from", "f" * 60).pack()
    with pytest.raises(ValueError):
        check_size("")
    assert check_size("é" * 32) == "é" * 32  # 64 bytes in UTF-8
    with pytest.raises(ValueError):
        check_size("é" * 33)


def test_numbers_come_back_as_numbers() -> None:
    page = cb.BalancePage.unpack("bal:page:12")
    assert page is not None and page.page == 12 and isinstance(page.page, int)
