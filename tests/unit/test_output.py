"""beach.output: reading the data a person types."""

from __future__ import annotations

import pytest

from beach.errors import UsageError
from beach.output import parse_data


def test_data_a_person_types_is_read_or_refused_in_one_line_naming_the_problem():
    assert parse_data("{'n': 5}") == {"n": 5} and parse_data('{"n": 5}') == {"n": 5} and parse_data("") == {}
    for text, problem in (("foo", "foo is a name, not a value: quote text ('foo')"),
                          ("{'a': f(1)}", "f(1) is a call: only values are read, never run"),
                          ("{'a': ", "'{' was never closed"), ("1 if 2 else 3", "is an expression, not a value")):
        with pytest.raises(UsageError) as caught:
            parse_data(text, "data")
        message = str(caught.value)
        assert problem in message and "\n" not in message and "object at 0x" not in message, message
