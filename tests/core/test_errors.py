"""The user-error base: one line, YAML problems in one line, URLs without their password."""

from __future__ import annotations

import pytest
import yaml

from finsent.core.errors import UserError, hide_password, one_line, yaml_problem


def test_a_user_error_of_several_problems_is_one_line() -> None:
    error = UserError("rules.yaml:3: routes.0: unknown channel\n  rules.yaml:7:  bad  window\n")
    assert error.line == "rules.yaml:3: routes.0: unknown channel; rules.yaml:7: bad window"
    assert one_line("single") == "single"


def test_a_yaml_problem_is_where_and_what_in_one_line() -> None:
    with pytest.raises(yaml.YAMLError) as raised:
        yaml.safe_load("a: 1\nb: [2\n")
    assert (
        yaml_problem(raised.value)
        == " at line 3, column 1: expected ',' or ']', but got '<stream end>'"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://me:s3cr:et@db:5432/x", "postgresql+psycopg://me:***@db:5432/x"),
        ("postgresql+psycopg://me@db/x", "postgresql+psycopg://me@db/x"),
        ("sqlite:////var/lib/finsent.db", "sqlite:////var/lib/finsent.db"),
    ],
)
def test_a_database_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert hide_password(url) == shown
