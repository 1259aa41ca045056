"""Find a user lexicon's entities in Chinese and English text, and cut the text into words around them.

`Lexicon` holds the terms (places, units, map symbols …) in a character trie; `extract_entities` takes the
longest term at each position, left to right, so "营指挥所" wins over "指挥所" and "New York" over "York".
English terms match regardless of case and only as whole words ("York" is not in "Yorkshire").
`segment` keeps those terms whole and cuts the text between them with jieba; `find_entities` is the
pipeline input transform that adds the entities of a text to its record.
"""

from __future__ import annotations

import csv
import functools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jieba

from llmkit.errors import LLMKitError
from llmkit.train.readers import Row, read_rows

LEXICON_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")
_ENTRY = ""  # a trie node's key for the entry ending there: no character is the empty string

# Scripts written without spaces between words: a term may start or end next to any of their characters.
_UNSPACED = (
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables (particles attach to the noun)
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0x20000, 0x3134F),  # CJK Extensions B-G
)


class LexiconError(LLMKitError):
    """A lexicon that cannot be used: an unreadable file, an entry without a term, a term listed twice."""


@dataclass(frozen=True)
class LexiconEntry:
    """One term to find, with its type and what it stands for (`canonical` defaults to the term itself)."""

    term: str
    type: str = "entity"
    canonical: str | None = None
    id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Entity:
    """A lexicon term found in a text: `text[start:end]` as written there, and its entry's type, name and id."""

    text: str
    start: int
    end: int
    type: str
    canonical: str
    id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Lexicon:
    """Terms in a character trie (case-folded), so the longest term starting at a position is one walk away."""

    def __init__(self, entries: Iterable[LexiconEntry] = ()) -> None:
        self._root: dict[str, Any] = {}
        self._size = 0
        for entry in entries:
            self.add(entry)

    @classmethod
    def from_file(cls, path: str | Path) -> Lexicon:
        """Read a lexicon: .csv / .tsv with a header naming `term` (and optionally `type`, `canonical`, `id`;
        other columns are kept as `extra`), .jsonl / .json objects with those keys, or .txt (`term[<TAB>type]`)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in LEXICON_SUFFIXES:
            raise LexiconError(f"{path}: a lexicon is a {', '.join(LEXICON_SUFFIXES)} file")
        lexicon = cls()
        for row in _tsv_rows(path) if suffix == ".tsv" else read_rows(path):
            try:
                if row.error:
                    raise LexiconError(row.error)
                lexicon.add(_entry(_txt_record(row.data) if suffix == ".txt" else row.data))
            except LexiconError as error:
                raise LexiconError(f"{path}, {row.location}: {error}") from None
        if not len(lexicon):
            raise LexiconError(f"{path} holds no terms")
        return lexicon

    def add(self, entry: LexiconEntry) -> None:
        """Add one entry; a term already present (in any case) is an error, not a silent overwrite."""
        if not entry.term.strip():
            raise LexiconError("an entry needs a non-empty term")
        node = self._root
        for char in _fold(entry.term):
            node = node.setdefault(char, {})
        if _ENTRY in node:
            raise LexiconError(f"{entry.term!r} is listed twice (terms match regardless of case)")
        node[_ENTRY] = entry
        self._size += 1

    def __len__(self) -> int:
        return self._size

    def longest_match(self, folded: str, start: int) -> tuple[LexiconEntry, int] | None:
        """The longest entry whose term starts at `folded[start]` without cutting a word, and where it ends."""
        if _inside_word(folded, start):
            return None
        node, best = self._root, None
        for end in range(start, len(folded)):
            node = node.get(folded[end])
            if node is None:
                break
            if _ENTRY in node and not _inside_word(folded, end + 1):
                best = node[_ENTRY], end + 1
        return best


def extract_entities(text: str, lexicon: Lexicon) -> list[Entity]:
    """The lexicon's terms in `text`: longest match first, left to right, never overlapping."""
    folded = _fold(text)
    entities, start = [], 0
    while start < len(text):
        match = lexicon.longest_match(folded, start)
        if match is None:
            start += 1
            continue
        entry, end = match
        canonical = entry.canonical or entry.term
        entities.append(Entity(text[start:end], start, end, entry.type, canonical, entry.id, entry.extra))
        start = end
    return entities


def segment(text: str, lexicon: Lexicon | None = None) -> list[str]:
    """The words of `text` (whitespace dropped): each lexicon term found is one word, jieba cuts the rest."""
    words, done = [], 0
    for entity in extract_entities(text, lexicon) if lexicon is not None else ():
        words += _cut(text[done : entity.start])
        words.append(entity.text)
        done = entity.end
    return words + _cut(text[done:])


def find_entities(record: dict, *, lexicon: str | Path, field: str = "input", into: str = "entities") -> dict:
    """Pipeline input transform: `record` plus `into`, the entities (as dicts) of the `lexicon` file found in
    `record[field]`."""
    text = record.get(field)
    if not isinstance(text, str):
        raise LLMKitError(f"find_entities: the record has no text field {field!r} (its fields: {', '.join(record)})")
    return {**record, into: [entity.to_dict() for entity in extract_entities(text, _cached_lexicon(lexicon))]}


@functools.lru_cache(maxsize=32)
def _cached_lexicon(path: str | Path) -> Lexicon:
    """Each lexicon file is read once per process, however many records the pipeline sends through."""
    return Lexicon.from_file(path)


def _entry(record: Any) -> LexiconEntry:
    """A `LexiconEntry` from one parsed row; empty cells count as absent."""
    if not isinstance(record, dict):
        raise LexiconError(f"expected an object with a 'term', got {type(record).__name__}")
    values = {key: value for key, value in record.items() if value not in (None, "")}
    term = str(values.pop("term", "")).strip()
    if not term:
        raise LexiconError(f"no 'term' (its fields: {', '.join(map(str, record)) or 'none'})")
    optional = {key: str(values.pop(key)) for key in ("type", "canonical", "id") if key in values}
    return LexiconEntry(term, **optional, extra=values)


def _txt_record(data: dict[str, str]) -> dict[str, str]:
    """A .txt line, `term` or `term<TAB>type`, as the record a .csv row would give."""
    term, _, kind = data["text"].partition("\t")
    return {"term": term, "type": kind.strip()}


def _tsv_rows(path: Path) -> Iterator[Row]:
    """The rows of a tab-separated file with a header; quotes are ordinary characters, as in most TSV exports."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise LexiconError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    for number, record in enumerate(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
        error = "more fields than the header names" if None in record else None
        yield Row(path, f"row {number}", None if error else record, error)


def _fold(text: str) -> str:
    """Lower-case `text` character by character, keeping its length so offsets stay valid ('İ' stays as is)."""
    return "".join(lower if len(lower := char.lower()) == 1 else char for char in text)


def _inside_word(text: str, index: int) -> bool:
    """Whether a cut before `text[index]` falls inside a word of a space-separated script (English, digits …)."""
    return 0 < index < len(text) and _is_word_char(text[index - 1]) and _is_word_char(text[index])


def _is_word_char(char: str) -> bool:
    code = ord(char)
    return (char.isalnum() or char == "_") and not any(low <= code <= high for low, high in _UNSPACED)


def _cut(text: str) -> list[str]:
    return [word for word in _jieba().cut(text) if word.strip()]


@functools.cache
def _jieba() -> jieba.Tokenizer:
    """One private jieba tokenizer: jieba's global one stays as other code left it, and its start-up log is off."""
    jieba.setLogLevel(logging.WARNING)
    return jieba.Tokenizer()
