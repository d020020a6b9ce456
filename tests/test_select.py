"""Selectors: parsing, filters combined with AND, clear errors."""

from __future__ import annotations

import pytest

from sparseft.blocks import blocks
from sparseft.select import SelectionError, Selector
from sparseft.testing.tiny import tiny_mace


@pytest.fixture(scope="module")
def catalogue():
    return blocks(tiny_mace())


def test_filters_combine_with_and(catalogue):
    chosen = Selector(kinds=["skip"], layers=[0], l=[1], elements=["O"]).resolve(catalogue)
    assert len(chosen) == 1
    b = chosen[0]
    assert (b.kind, b.layer, b.l, b.element) == ("skip", 0, 1, 8)


def test_parse_matches_constructor(catalogue):
    parsed = Selector.parse("kinds=skip,contraction layers=1 parity=e element=H exclude=*weights_max*")
    assert parsed == Selector(
        kinds=["skip", "contraction"], layers=[1], parity=["e"], elements=[1], exclude=["*weights_max*"]
    )
    chosen = parsed.resolve(catalogue)
    assert chosen and all(b.element == 1 and b.parity == "e" and "weights_max" not in b.name for b in chosen)


def test_empty_selector_selects_everything(catalogue):
    assert Selector.parse("").resolve(catalogue) == catalogue
    assert Selector.parse("all") == Selector()


def test_element_filter_keeps_only_per_element_blocks(catalogue):
    assert all(b.element == 8 for b in Selector(elements=["O"]).resolve(catalogue))


def test_include_globs_match_parameter_names(catalogue):
    chosen = Selector(include=["readouts.*"]).resolve(catalogue)
    assert chosen and all(b.kind == "readout" for b in chosen)


def test_no_match_shows_what_exists(catalogue):
    with pytest.raises(SelectionError, match=r"matches no block.*layers \[0, 1\].*kinds .*skip.*elements \['H', 'O'\]"):
        Selector(kinds=["skip"], layers=[1], l=[2]).resolve(catalogue)


@pytest.mark.parametrize(
    "text,message",
    [
        ("kinds=skp", "unknown kind"),
        ("parity=x", "parity"),
        ("layers", "key=value"),
        ("colour=red", "unknown selector key"),
        ("elements=Xx", "unknown element"),
    ],
)
def test_bad_selectors_are_clear(text, message):
    with pytest.raises(SelectionError, match=message):
        Selector.parse(text)


def test_from_dict_names_the_recipe_path():
    with pytest.raises(SelectionError, match=r"adapters\[0\]\.select: unknown key"):
        Selector.from_dict({"kind": ["skip"]}, "adapters[0].select")


def test_round_trip_through_dict():
    s = Selector(kinds=["linear"], l=[0, 1], elements=["H"])
    assert Selector.from_dict(s.to_dict()) == s
