"""How artifacts show what they publish: numbers a person can read, text that cannot format."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.flows]


def test_numbers_have_separators_and_untrusted_text_is_literal():
    from flows._artifacts import md, number

    assert number(3_314_000) == "3,314,000" and number(True) is True and number("x") == "x"
    hostile = "sess:<img src=x onerror=alert(1)>|`code`*bold*[link](http://x)\x1b[2J"
    shown = md(hostile)
    for raw in ("<img", "|", "`code", "*bold", "[link", ">"):
        assert re.search(r"(?<!\\)" + re.escape(raw), shown) is None, raw  # each special character escaped
    assert "\x1b" not in shown
    assert shown.replace("\\", "").replace("\ufffd[2J", "").startswith("sess:")
