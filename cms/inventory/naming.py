"""Naming rules for batch add: custom name, default server name, Model-No., Prefix-No.

Generated names keep the product's form "[Model Name]-[Number]" and "[Prefix]-[Number]";
the name rule applies to what a person types (the custom name, the custom prefix) and
to a name taken as the server reports it (Default server name): a server may report
anything, and its name is shown to people as if they had typed it.

Names are compared as the inventory compares them (validators.name_key: NFKC, case
kept), so a full-width "rec1" is taken when "rec1" is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import models

from .validators import name_key, name_rule_errors, validate_name_prefix, validate_server_name


class NamingRule(models.TextChoices):
    CUSTOM = "custom", "Custom name"
    DEFAULT = "default", "Default server name"
    MODEL_NO = "model_no", "Model-No."
    PREFIX_NO = "prefix_no", "Prefix-No."


@dataclass(frozen=True)
class Candidate:
    """One server found by the search, as far as naming needs it."""

    reported_name: str
    model: str
    custom_name: str = ""


def reported_name_errors(reported_name: str) -> list[str]:
    """Why the name a server reports cannot be its name (Default server name rule), as
    messages for that server's row; empty when it can."""
    problems = name_rule_errors(reported_name)
    if not problems:
        return []
    return [
        f"The name this server reports, {reported_name!r}, breaks the name rule: "
        + " ".join(problems)
        + " Type a custom name for it."
    ]


def taken_name_error(name: str) -> str:
    return f"The name {name!r} is already used by another server."


def custom_name_errors(name: str, taken: Iterable[str]) -> list[str]:
    """Why a custom name typed for one server cannot be used: the name rule, then the
    names already taken; the same messages as when the batch is added."""
    if not name:
        return ["Enter the custom name."]
    problems = name_rule_errors(name)
    if problems:
        return problems
    if name_key(name) in {name_key(t) for t in taken}:
        return [taken_name_error(name)]
    return []


def generate_names(
    rule: str,
    candidates: list[Candidate],
    taken: Iterable[str],
    prefix: str = "",
) -> list[str]:
    """One name per candidate, in order, avoiding names already taken.

    A candidate with a custom name keeps it whatever the rule; the others are named
    by the rule.

    Numbers count from 1 and skip numbers whose name is taken, so adding a second
    batch continues after the first.
    """
    used = {name_key(name) for name in taken}
    names: list[str] = []
    if rule == NamingRule.PREFIX_NO:
        validate_name_prefix(prefix)
    for cand in candidates:
        # A custom name typed for one row wins over the batch's rule: the Edit window
        # offers either for each server.
        if rule == NamingRule.CUSTOM or cand.custom_name:
            validate_server_name(cand.custom_name)
            name = cand.custom_name
        elif rule == NamingRule.DEFAULT:
            problems = reported_name_errors(cand.reported_name)
            if problems:
                raise ValidationError(problems)
            name = cand.reported_name
        elif rule in (NamingRule.MODEL_NO, NamingRule.PREFIX_NO):
            base = cand.model if rule == NamingRule.MODEL_NO else prefix
            if not base:
                raise ValidationError("The server did not report its model name.")
            number = 1
            while name_key(f"{base}-{number}") in used:
                number += 1
            name = f"{base}-{number}"
        else:
            raise ValidationError(f"Unknown naming rule {rule!r}.")
        if name_key(name) in used:
            raise ValidationError(taken_name_error(name))
        used.add(name_key(name))
        names.append(name)
    return names
