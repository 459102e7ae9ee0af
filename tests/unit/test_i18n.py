"""Every message key exists in every language, with the same placeholders, and every
key the code uses exists in the catalogs."""

import re
from datetime import date
from pathlib import Path

import pytest

from bot.i18n import I18n, MissingMessage, placeholders

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("bot", "handlers", "conversations", "services", "jobs")
LITERAL_KEY = re.compile(r"""\.t\(\s*[^,()]+,\s*f?["']([a-z0-9_.{}]+)["']""")


@pytest.fixture(scope="module")
def i18n() -> I18n:
    return I18n.load(("en", "ru", "uk"))


def test_every_language_has_every_key(i18n: I18n) -> None:
    english = i18n.catalogs["en"].messages
    for language in ("ru", "uk"):
        messages = i18n.catalogs[language].messages
        missing = sorted(set(english) - set(messages))
        extra = sorted(set(messages) - set(english))
        assert not missing, f"{language} lacks {missing}"
        assert not extra, f"{language} has keys English lacks: {extra}"
        for key, text in english.items():
            assert placeholders(messages[key]) == placeholders(text), (language, key)


def test_every_key_used_in_code_exists(i18n: I18n) -> None:
    english = i18n.catalogs["en"].messages
    used: set[str] = set()
    for directory in SOURCE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            used.update(LITERAL_KEY.findall(path.read_text(encoding="utf-8")))
    assert used, "the scan found no keys: the pattern is broken"
    for key in sorted(used):
        if "{" in key:
            prefix = key.split("{")[0]
            assert any(k.startswith(prefix) for k in english), key
        else:
            assert key in english, f"message key {key!r} is used but not in the catalogs"


def test_missing_key_raises(i18n: I18n) -> None:
    with pytest.raises(MissingMessage):
        i18n.t("en", "no.such.key")


def test_arguments_are_escaped(i18n: I18n) -> None:
    text = i18n.t("en", "start.welcome_back", name="<script>&")
    assert "&lt;script&gt;&amp;" in text


def test_language_resolution(i18n: I18n) -> None:
    assert i18n.resolve_language("uk-UA") == "uk"
    assert i18n.resolve_language("ru") == "ru"
    assert i18n.resolve_language("de") == "en"
    assert i18n.resolve_language(None) == "en"


def test_money_in_locale(i18n: I18n) -> None:
    assert i18n.money("en", 123456) == "$1,234.56"
    assert i18n.money("ru", 123456).replace("\xa0", " ") == "1 234,56 $"


def test_dates_in_locale(i18n: I18n) -> None:
    day = date(2025, 1, 28)
    assert i18n.date("en", day) == "January 28, 2025"
    assert i18n.date("ru", day).startswith("28 января 2025")
    assert i18n.date("uk", day).startswith("28 січня 2025")
