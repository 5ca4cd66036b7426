"""Properties over generated specs: validity, parse(unparse(s)) == s, fmt is a fixed point,
and mutated spec text fails with a SpecError, never any other exception."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import specs

from nscompile.errors import SpecError
from nscompile.lang.check import check
from nscompile.lang.parser import parse
from nscompile.lang.unparse import unparse

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(specs())
def test_generated_specs_are_valid(spec):
    assert check(spec) is spec


@FAST
@given(specs())
def test_parse_inverts_unparse(spec):
    assert parse(unparse(spec)) == spec


@FAST
@given(specs())
def test_fmt_is_a_fixed_point_and_keeps_every_comment(spec):
    text = unparse(spec)
    assert unparse(parse(text)) == text
    assert text.endswith("\n") and not text.endswith("\n\n")
    lines = {line.strip() for line in text.splitlines()}
    for comment in _comments(spec):
        assert comment in text and (
            comment in lines or any(line.endswith(comment) for line in lines)
        )


def _comments(spec):
    yield from spec.trailing
    for decl in spec.decls:
        yield from decl.closing
        for node in (decl, *decl.body):
            yield from node.comments.leading
            if node.comments.trailing:
                yield node.comments.trailing


# Pieces of the language and of attacks on it, to splice into valid text.
PIECES = [
    *"{}<>(),=*+-#.\n \"'$@;/^[]0129x", "**", "neuron", "network", "rank", "input", "dense",
    "task", "y =", "cp", "sin", "relu", "b", "bias", "__init__", "class", "self", "1e999",
    "2.5", "-1", "99", "1000000000000", "9" * 30, "\r", "\t", "\x00", "\u2028", "\x0c", "é",
]  # fmt: skip


@st.composite
def mutated_texts(draw):
    """Valid spec text with 1-4 random deletions, insertions and replacements."""
    text = unparse(draw(specs(max_neurons=2, max_networks=1)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        piece = draw(st.sampled_from(PIECES) | st.characters())
        how = draw(st.sampled_from(["delete", "insert", "replace"]))
        if how == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 12)) :]
        elif how == "insert":
            text = text[:i] + piece + text[i:]
        else:
            text = text[:i] + piece + text[i + len(piece) :]
    return text


def _parse_and_check_or_spec_error(text: str) -> None:
    try:
        spec = check(parse(text, "fuzz.ns"), "fuzz.ns")
    except SpecError as err:
        assert err.code.startswith("E") and err.span is not None
        assert err.render(text).startswith("fuzz.ns:")
        return
    assert parse(unparse(spec)) == spec  # whatever passes the checker also round-trips


@settings(max_examples=150, deadline=None)
@given(mutated_texts())
def test_mutated_specs_fail_cleanly(text):
    _parse_and_check_or_spec_error(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([*PIECES, " ", " ", "\n"]), max_size=40).map("".join))
def test_token_soup_fails_cleanly(text):
    _parse_and_check_or_spec_error(text)
