"""Text prompts: one normalised class list, Grounding DINO's "a. b." sentence, token spans and chunking.

Why a module of its own: the class list is the contract between the user, the detector and every sink
(class id = position in the prompt). Grounding DINO reads a dotted sentence and answers per *token*, so the
mapping back to class ids is done by token positions (character offsets of each class inside the sentence),
never by matching decoded strings; that keeps multi-token names ("traffic light") and names that contain
other names ("car" / "race car") apart. Vocabularies longer than the text encoder's limit are split into
chunks of whole classes, each run separately and merged by the detector.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import PromptError

log = logging.getLogger("gsam2_video")

# Separators between class names in a user prompt: Grounding DINO's "." plus the ones people type.
_SEPARATORS = re.compile(r"[.,;\n|]+")
_HAS_WORD = re.compile(r"[^\W_]", re.UNICODE)


@dataclass(frozen=True)
class Prompt:
    """A normalised, de-duplicated class list; ``classes[i]`` is the name of class id ``i``."""

    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.classes:
            raise PromptError("prompt names no class: give at least one class name, e.g. 'person. car.'")

    def __len__(self) -> int:
        return len(self.classes)

    def text(self) -> str:
        """Grounding DINO's sub-sentence form: ``"person. car."``."""
        return sentence(self.classes)[0]


def _normalise_name(raw: str) -> str:
    name = " ".join(raw.lower().split())
    return name.strip(" \t\"'`!?:()[]{}<>-_/\\*#")


def parse_prompt(text: str | Sequence[str] | Prompt) -> Prompt:
    """Normalise a prompt: lowercase, split on ``. , ; | newline``, drop duplicates keeping first order.

    ``"Person. car, person"`` and ``["Person", "car"]`` both give ``("person", "car")``. An empty or
    punctuation-only prompt raises :class:`PromptError`.
    """
    if isinstance(text, Prompt):
        return text
    if isinstance(text, str):
        parts = [text]
    elif isinstance(text, Sequence) and all(isinstance(t, str) for t in text):
        parts = list(text)
    else:
        raise PromptError(f"prompt must be a string or a list of strings, got {type(text).__name__}")
    classes: list[str] = []
    seen: set[str] = set()
    for part in parts:
        for raw in _SEPARATORS.split(part):
            name = _normalise_name(raw)
            if name and not _HAS_WORD.search(name):
                # dropping it silently would shift the class ids of every class after it
                log.warning("prompt class %r has no letter or digit: ignored (class ids number the classes "
                            "that remain, in order)", raw.strip())
                continue
            if not name or name in seen:
                continue
            seen.add(name)
            classes.append(name)
    if not classes:
        shown = text if isinstance(text, str) else ", ".join(text)
        raise PromptError(f"prompt {shown!r} names no class: give class names separated by '.', e.g. 'person. car.'")
    return Prompt(tuple(classes))


def sentence(classes: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """``"a. b."`` for ``classes`` and each class's character span ``[start, end)`` inside it."""
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for i, name in enumerate(classes):
        if i:
            pieces.append(" ")
            pos += 1
        spans.append((pos, pos + len(name)))
        pieces.append(name + ".")
        pos += len(name) + 1
    return "".join(pieces), spans


def class_token_positions(classes: Sequence[str], tokenizer: Any) -> tuple[list[int], list[list[int]]]:
    """Tokenise ``sentence(classes)``; return its input ids and, per class, the token positions it covers.

    A token belongs to a class when its character offsets lie inside the class's span, so special tokens and
    the "." separators belong to none.
    """
    text, spans = sentence(classes)
    enc = tokenizer(text, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    positions: list[list[int]] = [[] for _ in classes]
    for t, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        for k, (s, e) in enumerate(spans):
            if start >= s and end <= e:
                positions[k].append(t)
                break
    for k, pos in enumerate(positions):
        if not pos:
            raise PromptError(f"class {classes[k]!r} produced no text tokens for the detector's tokenizer")
    return ids, positions


def _token_count(classes: Sequence[str], tokenizer: Any) -> int:
    return len(tokenizer(sentence(classes)[0])["input_ids"])


def chunk_prompt(prompt: Prompt, tokenizer: Any, max_tokens: int) -> list[list[int]]:
    """Split the prompt's classes into chunks whose sentence fits in ``max_tokens`` tokens (specials included).

    Classes stay whole and in order; each chunk is a list of class indices. Packing is greedy on a per-class
    token estimate and every chunk is then checked with the real tokenizer (and split further if needed).
    A single class longer than the limit raises :class:`PromptError`.
    """
    if max_tokens < 3:
        raise PromptError(f"max text tokens must be >= 3, got {max_tokens}")
    # "" tokenises to the special tokens only; each class costs its tokens plus its "." separator.
    special = len(tokenizer("")["input_ids"])
    cost = [len(tokenizer(name + ".", add_special_tokens=False)["input_ids"]) for name in prompt.classes]
    chunks: list[list[int]] = []
    current: list[int] = []
    used = special
    for k, c in enumerate(cost):
        if special + c > max_tokens:
            raise PromptError(f"class {prompt.classes[k]!r} is {c} tokens long, more than the detector's "
                              f"text limit of {max_tokens} tokens")
        if current and used + c > max_tokens:
            chunks.append(current)
            current, used = [], special
        current.append(k)
        used += c
    if current:
        chunks.append(current)
    checked: list[list[int]] = []
    pending = list(reversed(chunks))
    while pending:
        chunk = pending.pop()
        n = _token_count([prompt.classes[k] for k in chunk], tokenizer)
        if n > max_tokens and len(chunk) == 1:
            raise PromptError(f"class {prompt.classes[chunk[0]]!r} is {n} tokens long with special tokens, more "
                              f"than the detector's text limit of {max_tokens} tokens")
        if n > max_tokens:
            half = len(chunk) // 2
            pending.append(chunk[half:])
            pending.append(chunk[:half])
            continue
        checked.append(chunk)
    return checked
