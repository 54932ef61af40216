"""Prompt normalisation, token spans and chunking, with the real bert-base-uncased tokenizer (offline vocab)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gsam2_video.errors import Gsam2Error, PromptError
from gsam2_video.prompts import Prompt, chunk_prompt, class_token_positions, parse_prompt, sentence


@pytest.fixture(scope="module")
def bert(vocab_file: Path, tmp_path_factory: pytest.TempPathFactory):
    from transformers import BertTokenizer

    folder = tmp_path_factory.mktemp("bert")
    shutil.copyfile(vocab_file, folder / "vocab.txt")
    return BertTokenizer.from_pretrained(folder, do_lower_case=True)


def test_parse_normalises_dedupes_and_keeps_order() -> None:
    assert parse_prompt("Person. car, person").classes == ("person", "car")
    assert parse_prompt("  Traffic   LIGHT ; dog|cat\nperson.").classes == ("traffic light", "dog", "cat", "person")
    assert parse_prompt(["Person", "car", "PERSON", "race car."]).classes == ("person", "car", "race car")
    assert parse_prompt("person.").text() == "person."
    assert parse_prompt("Person. Car").text() == "person. car."
    p = parse_prompt("a. b")
    assert parse_prompt(p) is p
    assert len(p) == 2


def test_sentence_spans_point_at_each_class() -> None:
    text, spans = sentence(["traffic light", "car"])
    assert text == "traffic light. car."
    assert [text[s:e] for s, e in spans] == ["traffic light", "car"]


@pytest.mark.parametrize("bad", ["", "   ", "...", ". , ; |", "\n.\n", "!!", [], ["", " . "]])
def test_empty_or_punctuation_only_prompt_is_a_one_line_prompt_error(bad) -> None:
    with pytest.raises(PromptError) as info:
        parse_prompt(bad)
    msg = str(info.value)
    assert "\n" not in msg and "names no class" in msg
    assert isinstance(info.value, Gsam2Error)


@pytest.mark.parametrize("bad", [None, 3, [1, 2], b"person"])
def test_non_text_prompt_is_a_prompt_error(bad) -> None:
    with pytest.raises(PromptError, match="prompt must be a string or a list of strings"):
        parse_prompt(bad)


def test_prompt_cannot_be_built_empty() -> None:
    with pytest.raises(PromptError):
        Prompt(())


def test_token_positions_separate_multi_token_and_overlapping_names(bert) -> None:
    classes = ["traffic light", "light", "race car", "car"]
    ids, positions = class_token_positions(classes, bert)
    tokens = bert.convert_ids_to_tokens(ids)
    assert tokens == ["[CLS]", "traffic", "light", ".", "light", ".", "race", "car", ".", "car", ".", "[SEP]"]
    assert positions == [[1, 2], [4], [6, 7], [9]]


def test_token_positions_cover_wordpieces(bert) -> None:
    ids, positions = class_token_positions(["skateboarder", "hydrant"], bert)
    tokens = bert.convert_ids_to_tokens(ids)
    for name, pos in zip(["skateboarder", "hydrant"], positions):
        assert bert.convert_tokens_to_string([tokens[i] for i in pos]) == name
    assert all(tokens[i] not in (".", "[CLS]", "[SEP]") for pos in positions for i in pos)


def _vocabulary(bert, n: int) -> list[str]:
    """``n`` distinct two-word class names made of whole-word tokens of the real vocabulary."""
    words = [w for w in bert.get_vocab() if w.isalpha() and w.isascii() and len(w) >= 4][:2 * n]
    return [f"{a} {b}" for a, b in zip(words[0::2], words[1::2])]


def test_long_vocabulary_is_chunked_under_the_limit(bert) -> None:
    classes = _vocabulary(bert, 300)  # 3 tokens per class ("a b.") -> 902 tokens in one sentence
    prompt = parse_prompt(classes)
    assert len(prompt) == 300
    full = len(bert(prompt.text())["input_ids"])
    assert full == 2 + 3 * 300
    chunks = chunk_prompt(prompt, bert, 256)
    assert [k for c in chunks for k in c] == list(range(300))  # every class once, in order
    lengths = [len(bert(sentence([prompt.classes[k] for k in c])[0])["input_ids"]) for c in chunks]
    assert max(lengths) <= 256
    assert [len(c) for c in chunks] == [84, 84, 84, 48]  # greedy: (256 - 2) // 3 = 84 classes per chunk
    assert chunk_prompt(parse_prompt("person. car"), bert, 256) == [[0, 1]]


def test_class_longer_than_the_limit_is_a_prompt_error(bert) -> None:
    long_name = " ".join(["person"] * 20)
    with pytest.raises(PromptError, match="more than the detector's text limit of 16 tokens"):
        chunk_prompt(parse_prompt([long_name, "car"]), bert, 16)
