"""Legal texts: defaults filled in from the real settings, operator files checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.i18n import I18n
from bot.legal import COMMANDS, LegalTexts, command_menus
from bot.settings import (
    LEGAL_DOCUMENTS,
    TELEGRAM_MESSAGE_LIMIT,
    ConfigError,
    LegalSettings,
    load_settings,
    telegram_html_problem,
    utf16_length,
)
from tests.conftest import make_settings

LANGUAGES = ("en", "ru", "uk")


@pytest.fixture(scope="module")
def i18n() -> I18n:
    return I18n.load(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("document", LEGAL_DOCUMENTS)
def test_every_default_text_is_one_valid_telegram_message(
    i18n: I18n, document: str, language: str
) -> None:
    text = LegalTexts(i18n, make_settings()).render(document, language)
    assert telegram_html_problem(text) is None
    assert utf16_length(text) <= TELEGRAM_MESSAGE_LIMIT


def test_retention_and_refund_numbers_come_from_the_settings(i18n: I18n) -> None:
    base = make_settings()
    settings = make_settings(
        sessions=base.sessions.model_copy(update={"ttl_minutes": 47}),
        updates=base.updates.model_copy(update={"processed_ttl_hours": 31}),
        refunds=base.refunds.model_copy(
            update={"min_label_age_days": 3, "max_label_age_days": 26}
        ),
        legal=LegalSettings(backup_retention_days=19, log_retention_days=11, terms_version="7b"),
        support_contact="@help_<desk>",
    )
    legal = LegalTexts(i18n, settings)
    for language in LANGUAGES:
        privacy = legal.render("privacy", language)
        for number in ("47", "31", "19", "11"):
            assert number in privacy, (language, number)
        assert "@help_&lt;desk&gt;" in privacy  # escaped like every argument
        terms = legal.render("terms", language)
        assert "7b" in terms and "3" in terms and "26" in terms
        assert "26" in legal.render("paysupport", language)


def test_an_operator_file_replaces_one_language(i18n: I18n, tmp_path: Path) -> None:
    own = tmp_path / "terms.ru.html"
    own.write_text("<b>Наши условия</b>\nВозвраты: <i>14 дней</i>.\n", encoding="utf-8")
    settings = make_settings(legal=LegalSettings(texts={"terms": {"ru": own}}))
    legal = LegalTexts(i18n, settings)
    assert legal.render("terms", "ru") == "<b>Наши условия</b>\nВозвраты: <i>14 дней</i>."
    assert "Terms of service" in legal.render("terms", "en")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("x" * 4097, "more than Telegram's 4096"),
        ("🙂" * 2049, "more than Telegram's 4096"),  # UTF-16: two units each
        ("<b>bold", "never closed"),
        ("<b>bold</i>", "does not close"),
        ("<div>block</div>", "not supported"),
        ("   ", "empty"),
    ],
)
def test_an_operator_file_telegram_would_refuse_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, problem: str
) -> None:
    own = tmp_path / "privacy.en.html"
    own.write_text(content, encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(f"legal:\n  texts:\n    privacy:\n      en: {own}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert "legal.texts" in message and problem in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("yaml_texts", "problem"),
    [
        ("    privacy:\n      de: {path}\n", "not one of i18n.languages"),
        ("    cookies:\n      en: {path}\n", "unknown document"),
        ("    privacy:\n      en: {path}.missing\n", "cannot read"),
    ],
)
def test_unknown_languages_documents_and_files_are_refused(
    tmp_path: Path, yaml_texts: str, problem: str
) -> None:
    own = tmp_path / "own.html"
    own.write_text("<b>ok</b>", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("legal:\n  texts:\n" + yaml_texts.format(path=own), encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        load_settings(config)


def test_command_menus_in_every_language(i18n: I18n) -> None:
    menus = dict(command_menus(i18n))
    assert set(menus) == {None, "en", "ru", "uk"}
    for commands in menus.values():
        assert [c.command for c in commands] == list(COMMANDS)
        assert all(1 <= len(c.description) <= 256 for c in commands)
    assert menus[None] == menus["en"]
    ru = {c.command: c.description for c in menus["ru"]}
    uk = {c.command: c.description for c in menus["uk"]}
    assert ru["terms"] == "Условия использования"
    assert uk["delete_my_data"] == "Видалити мої дані"
    assert {"paysupport", "terms", "privacy", "delete_my_data"} <= set(COMMANDS)
