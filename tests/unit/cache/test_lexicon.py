from __future__ import annotations

from pathlib import Path

import pytest

from fabstir.cache.lexicon import WordNet, wordnet, wordnet_dir
from fabstir.errors import DependencyMissing


def test_wordnet_dir_holds_the_dictionary() -> None:
    directory = wordnet_dir()
    assert (directory / "index.noun").is_file()
    assert (directory / "data.verb").is_file()


def test_wordnet_is_loaded_once() -> None:
    assert wordnet() is wordnet()


@pytest.mark.parametrize(
    ("word", "lemmas"),
    [
        ("pyramids", ["pyramid"]),
        ("stopped", ["stopped", "stop"]),
        ("running", ["running", "run"]),
        # Irregular forms WordNet's exception lists would give.
        ("built", ["built", "build"]),
        ("fell", ["fell", "fall"]),
        ("qwzx", []),
    ],
)
def test_lemmas(word: str, lemmas: list[str]) -> None:
    assert wordnet().lemmas(word) == lemmas


@pytest.mark.parametrize(
    ("a", "b", "synonyms", "opposites", "siblings"),
    [
        ("large", "big", True, False, False),
        ("white", "black", False, True, True),
        # Siblings only through rare senses (begin's sixth and seventh verb senses and end's
        # third, all kinds of "be") do not count.
        ("begin", "end", False, True, False),
        ("aspirin", "acetaminophen", False, False, True),
        ("cotton", "wool", False, False, True),
        ("signs", "symptoms", False, False, False),
        ("job", "position", False, False, False),
        ("pillow", "toothbrush", False, False, False),
    ],
)
def test_relations(a: str, b: str, synonyms: bool, opposites: bool, siblings: bool) -> None:
    lexicon = wordnet()
    assert lexicon.synonyms(a, b) is synonyms
    assert lexicon.synonyms(b, a) is synonyms
    assert lexicon.opposites(a, b) is opposites
    assert lexicon.opposites(b, a) is opposites
    # Checked only for words that are not synonyms: common words share some hypernym.
    assert lexicon.siblings(a, b) is siblings


@pytest.mark.parametrize(
    ("word", "modifier"),
    [
        ("runny", True),
        ("quickly", True),
        ("yolk", False),
        ("hard", True),
        ("eat", False),
        ("qwzx", False),
    ],
)
def test_is_modifier(word: str, modifier: bool) -> None:
    assert wordnet().is_modifier(word) is modifier


def test_missing_files_raise_dependency_missing(tmp_path: Path) -> None:
    with pytest.raises(DependencyMissing, match="WordNet file missing"):
        WordNet(tmp_path)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("great", True),
        ("good", True),
        ("big", True),
        ("canada", False),
        ("root", False),
        ("qwzx", False),
    ],
)
def test_mostly_modifier(word: str, expected: bool) -> None:
    assert wordnet().mostly_modifier(word) is expected


@pytest.mark.parametrize(
    ("word", "common"),
    [
        ("airport", True),
        ("airports", True),
        ("Sunday", True),
        ("empire", True),
        ("London", False),
        ("Paris", False),
        ("qwzx", False),
    ],
)
def test_is_common_noun(word: str, common: bool) -> None:
    assert wordnet().is_common_noun(word) is common
