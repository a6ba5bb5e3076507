"""The product's server name rule, as a table."""

import pytest
from django.core.exceptions import ValidationError

from cms.inventory.naming import Candidate, NamingRule, generate_names, reported_name_errors
from cms.inventory.validators import (
    EXCLUDED_SYMBOLS,
    name_key,
    name_rule_errors,
    unsafe_name_errors,
    validate_server_name,
)

VALID = [
    "A",
    "Camera Room 1",
    "CaseSensitive",
    "casesensitive",
    "録画サーバー",
    "Сервер наблюдения",
    "Überwachung.Nord",
    "x" * 32,
    "Mid space ok",
    "dots.and,commas",
]


@pytest.mark.parametrize("name", VALID)
def test_it_accepts_valid_names(name):
    assert name_rule_errors(name) == []
    validate_server_name(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "at least 1 character"),
        ("x" * 33, "at most 32 characters; it has 33"),
        (" leading", "first character must not be a space"),
        ("trailing ", "last character must not be a space"),
        ("-minus", "first character must not be a minus sign"),
        ("tab\there", "control characters"),
    ],
)
def test_it_rejects_and_says_which_part_was_broken(name, message):
    errors = name_rule_errors(name)
    assert any(message in e for e in errors), errors
    with pytest.raises(ValidationError):
        validate_server_name(name)


@pytest.mark.parametrize("symbol", sorted(EXCLUDED_SYMBOLS))
def test_it_rejects_each_excluded_symbol(symbol):
    errors = name_rule_errors(f"ab{symbol}cd")
    assert errors == [f"The name must not contain these symbols: {symbol}"]


def test_the_excluded_set_is_exactly_the_products():
    assert "".join(sorted(EXCLUDED_SYMBOLS)) == "".join(sorted("~`!@#$%^&*()-_=+[{]}\\|;:'\"<>/?"))


@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\x00", "control characters: U+0000 NULL"),
        ("\x1b", "control characters: U+001B ESCAPE"),
        ("\x7f", "control characters: U+007F DELETE"),
        ("\x85", "control characters: U+0085 NEXT LINE"),
        ("\x9b", "control characters: U+009B CONTROL CHARACTER"),
        ("\u2028", "line or paragraph separators: U+2028 LINE SEPARATOR"),
        ("\u2029", "line or paragraph separators: U+2029 PARAGRAPH SEPARATOR"),
        ("\u200b", "formatting characters: U+200B ZERO WIDTH SPACE"),
        ("\u200c", "formatting characters: U+200C ZERO WIDTH NON-JOINER"),
        ("\u200d", "formatting characters: U+200D ZERO WIDTH JOINER"),
        ("\u200e", "formatting characters: U+200E LEFT-TO-RIGHT MARK"),
        ("\u2060", "formatting characters: U+2060 WORD JOINER"),
        ("\ufeff", "formatting characters: U+FEFF ZERO WIDTH NO-BREAK SPACE"),
        ("\u00ad", "formatting characters: U+00AD SOFT HYPHEN"),
        ("\u202a", "formatting characters: U+202A LEFT-TO-RIGHT EMBEDDING"),
        ("\u202e", "formatting characters: U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("\u2066", "formatting characters: U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("\u2069", "formatting characters: U+2069 POP DIRECTIONAL ISOLATE"),
        ("\U000e0041", "formatting characters: U+E0041 TAG LATIN CAPITAL LETTER A"),
        ("\u3164", "formatting characters: U+3164 HANGUL FILLER"),
        ("\ud800", "unpaired surrogates: U+D800"),
    ],
)
def test_it_refuses_what_a_screen_cannot_show_and_names_the_character(char, shown):
    for name in (f"rec{char}1", f"{char}rec1", f"rec1{char}"):
        errors = name_rule_errors(name)
        assert any(shown in e for e in errors), errors
        assert unsafe_name_errors(name) == [e for e in errors if "contain" in e or "space" in e]


@pytest.mark.parametrize("space", [" ", "\u00a0", "\u2003", "\u3000", "\u202f", "\t"])
def test_it_refuses_a_space_of_any_kind_at_either_end(space):
    assert any("first character must not be a space" in e for e in name_rule_errors(space + "x"))
    assert any("last character must not be a space" in e for e in name_rule_errors("x" + space))


def test_it_names_the_kind_of_space():
    (error,) = name_rule_errors("\u00a0rec1")
    assert error == "The first character must not be a space (U+00A0 NO-BREAK SPACE)."


def test_names_are_the_same_once_normalised_and_case_counts():
    assert name_key("\uff52\uff45\uff43\uff11") == name_key("rec1")  # full-width
    assert name_key("rec1") != name_key("Rec1")
    assert name_key("caf\u00e9") == name_key("cafe\u0301")  # composed or not
    assert len(name_key("\ufdfa" * 32)) == 64  # NFKC makes it 18 times longer


def test_it_counts_unicode_characters_not_bytes():
    assert name_rule_errors("é" * 32) == []
    assert name_rule_errors("é" * 33) != []


def test_a_leading_minus_reports_both_the_symbol_and_the_position():
    errors = name_rule_errors("-x")
    assert len(errors) == 2


class TestNamingRules:
    cands = [Candidate("DS-North", "DS923+"), Candidate("DS-South", "DS923+")]

    def test_model_no_numbers_from_one(self):
        assert generate_names(NamingRule.MODEL_NO, self.cands, taken=[]) == [
            "DS923+-1",
            "DS923+-2",
        ]

    def test_prefix_no_skips_taken_numbers(self):
        names = generate_names(
            NamingRule.PREFIX_NO, self.cands, taken=["Standby-1"], prefix="Standby"
        )
        assert names == ["Standby-2", "Standby-3"]

    def test_generated_names_keep_the_hyphen_form(self):
        (name,) = generate_names(NamingRule.PREFIX_NO, self.cands[:1], taken=[], prefix="FO")
        assert name == "FO-1"
        assert name_rule_errors(name)  # a person could not type it, the rule generates it

    def test_a_custom_prefix_obeys_the_rule(self):
        with pytest.raises(ValidationError, match="prefix must not contain these symbols: /"):
            generate_names(NamingRule.PREFIX_NO, self.cands, taken=[], prefix="a/b")

    reported = [Candidate("DS North", "DS923+"), Candidate("DS South", "DS923+")]

    def test_default_name_is_the_reported_name(self):
        names = generate_names(NamingRule.DEFAULT, self.reported, taken=[])
        assert names == ["DS North", "DS South"]

    def test_default_name_already_taken_is_refused(self):
        with pytest.raises(ValidationError, match="already used"):
            generate_names(NamingRule.DEFAULT, self.reported, taken=["DS North"])

    @pytest.mark.parametrize(
        ("reported", "part"),
        [
            ("DS-North", "symbols: -"),
            ("Lobby\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"),
            ("\u00a0Lobby", "first character must not be a space (U+00A0 NO-BREAK SPACE)"),
            ("x" * 40, "at most 32 characters"),
        ],
    )
    def test_a_reported_name_that_breaks_the_rule_is_refused(self, reported, part):
        (message,) = reported_name_errors(reported)
        assert part in message and message.endswith("Type a custom name for it.")
        with pytest.raises(ValidationError, match="Type a custom name"):
            generate_names(NamingRule.DEFAULT, [Candidate(reported, "m")], taken=[])

    def test_a_custom_name_replaces_a_reported_name_that_breaks_the_rule(self):
        cands = [Candidate("Lobby\u202e", "m", custom_name="Lobby")]
        assert generate_names(NamingRule.DEFAULT, cands, taken=[]) == ["Lobby"]

    def test_names_are_taken_once_normalised_but_case_counts(self):
        fullwidth = "\uff52\uff45\uff43\uff11"  # "rec1" in full-width letters
        with pytest.raises(ValidationError, match="already used"):
            generate_names(NamingRule.DEFAULT, [Candidate("rec1", "m")], taken=[fullwidth])
        assert generate_names(NamingRule.DEFAULT, [Candidate("Rec1", "m")], taken=["rec1"]) == [
            "Rec1"
        ]
        names = generate_names(
            NamingRule.PREFIX_NO, self.cands, taken=["\uff26\uff2f-1"], prefix="FO"
        )
        assert names == ["FO-2", "FO-3"]  # full-width "FO-1" holds number 1

    def test_custom_names_obey_the_rule(self):
        cands = [Candidate("x", "m", custom_name="Bad!")]
        with pytest.raises(ValidationError, match="symbols: !"):
            generate_names(NamingRule.CUSTOM, cands, taken=[])

    def test_a_custom_name_wins_over_the_rule_for_its_row(self):
        cands = [Candidate("a", "FS-7"), Candidate("b", "FS-7", custom_name="Spare"),
                 Candidate("c", "FS-7")]  # fmt: skip
        names = generate_names(NamingRule.PREFIX_NO, cands, taken=["Standby-1"], prefix="Standby")
        assert names == ["Standby-2", "Spare", "Standby-3"]
