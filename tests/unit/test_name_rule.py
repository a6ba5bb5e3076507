"""The product's server name rule, as a table."""

import pytest
from django.core.exceptions import ValidationError

from cms.inventory.naming import Candidate, NamingRule, generate_names
from cms.inventory.validators import EXCLUDED_SYMBOLS, name_rule_errors, validate_server_name

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

    def test_default_name_is_the_reported_name(self):
        assert generate_names(NamingRule.DEFAULT, self.cands, taken=[]) == ["DS-North", "DS-South"]

    def test_default_name_already_taken_is_refused(self):
        with pytest.raises(ValidationError, match="already used"):
            generate_names(NamingRule.DEFAULT, self.cands, taken=["DS-North"])

    def test_custom_names_obey_the_rule(self):
        cands = [Candidate("x", "m", custom_name="Bad!")]
        with pytest.raises(ValidationError, match="symbols: !"):
            generate_names(NamingRule.CUSTOM, cands, taken=[])

    def test_a_custom_name_wins_over_the_rule_for_its_row(self):
        cands = [Candidate("a", "FS-7"), Candidate("b", "FS-7", custom_name="Spare"),
                 Candidate("c", "FS-7")]  # fmt: skip
        names = generate_names(NamingRule.PREFIX_NO, cands, taken=["Standby-1"], prefix="Standby")
        assert names == ["Standby-2", "Spare", "Standby-3"]
