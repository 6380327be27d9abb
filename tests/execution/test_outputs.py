"""Stream text as JupyterLab renders it (carriage returns, backspaces, UTF-8 offsets) and the
per-cell output budget."""

from __future__ import annotations

import itertools
import random

import pytest

from jupyter_datastore.execution.outputs import (
    OutputBudget,
    StreamText,
    TextEdit,
    human_size,
    output_size,
)


def apply(buffer: bytes, edit: TextEdit | None) -> bytes:
    """What a Y.Text indexed by UTF-8 byte would hold after the edit."""
    if edit is None:
        return buffer
    assert 0 <= edit.start <= len(buffer)
    assert edit.start + edit.delete <= len(buffer)
    # An edit never cuts a character in two.
    buffer[: edit.start].decode("utf-8")
    buffer[edit.start + edit.delete :].decode("utf-8")
    return buffer[: edit.start] + edit.insert.encode() + buffer[edit.start + edit.delete :]


def feed_all(chunks: list[str], initial: str = "") -> StreamText:
    """Feed the chunks one by one, checking every edit against the text it claims to produce."""
    stream = StreamText(initial)
    buffer = initial.encode()
    for chunk in chunks:
        before = stream.text
        committed = committed_size(stream)
        edit = stream.feed(chunk)
        buffer = apply(buffer, edit)
        assert buffer == stream.text.encode()
        assert stream.size == len(buffer)
        if edit is None:
            assert stream.text == before
        else:
            assert edit.start >= committed
            assert edit.delete or edit.insert
    return stream


def committed_size(stream: StreamText) -> int:
    """The UTF-8 length of the text up to its last newline, which can no longer change."""
    text = stream.text
    return len(text[: text.rfind("\n") + 1].encode())


def render(text: str) -> str:
    return feed_all([text]).text


# --- what a user sees ------------------------------------------------------------------


def test_plain_text_is_appended() -> None:
    stream = StreamText()
    assert stream.feed("hello ") == TextEdit(0, 0, "hello ")
    assert stream.feed("world\n") == TextEdit(6, 0, "world\n")
    assert stream.text == "hello world\n"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("abc\r\n", "abc\n"),
        ("12345\rab", "ab345"),
        ("12345\rab\n", "ab345\n"),
        ("abc\r\r\rx", "xbc"),
        ("a\nb\r\nc\n", "a\nb\nc\n"),
        ("abc\x08", "ab"),
        ("abc\x08\x08X", "aX"),
        ("abc\x08\x08\x08\x08\x08X", "X"),
        ("ab\ncd\x08\x08\x08\x08ef", "ab\nef"),
        ("\x08\x08start", "start"),
        ("abc\rX\x08Y", "Yc"),
        ("loading...\rdone\n", "doneing...\n"),
        ("", ""),
        ("\r", ""),
    ],
)
def test_control_characters(raw: str, shown: str) -> None:
    assert render(raw) == shown


def test_a_progress_bar_overwrites_its_line() -> None:
    # tqdm writes "\r" + the whole bar each time, and a newline when it closes.
    chunks = ["Epoch 1\n"]
    chunks += [f"\r{p:3d}%|{'#' * (p // 10):<10}| {p}/100" for p in range(0, 101, 10)]
    chunks += ["\n", "done\n"]
    stream = feed_all(chunks)
    assert stream.text == "Epoch 1\n100%|##########| 100/100\ndone\n"


def test_each_progress_update_only_rewrites_what_changed() -> None:
    stream = StreamText("Epoch 1\n")
    stream.feed("\r 10%|#         |")
    edit = stream.feed("\r 20%|##        |")
    # " " is unchanged, "2" is the first difference: the start of the line is not re-sent.
    assert edit == TextEdit(len("Epoch 1\n") + 1, len("10%|#         |"), "20%|##        |")


def test_many_progress_updates_in_one_chunk() -> None:
    chunk = "".join(f"\r{p}/1000" for p in range(1001))
    assert render("counting\n" + chunk + "\n") == "counting\n1000/1000\n"


def test_carriage_return_and_newline_split_across_chunks() -> None:
    assert feed_all(["abc\r", "\n", "def"]).text == "abc\ndef"
    assert feed_all(["12345\r", "\nab"]).text == "12345\nab"
    # The same, whatever else the chunks hold.
    for raw in ["line one\r\nline two\r\n", "a\r\n\r\nb\r\n"]:
        for cut in range(len(raw) + 1):
            assert feed_all([raw[:cut], raw[cut:]]).text == render(raw)


def test_a_lone_carriage_return_changes_nothing_yet() -> None:
    stream = StreamText()
    stream.feed("12345")
    assert stream.feed("\r") is None
    assert stream.feed("ab") == TextEdit(0, 5, "ab345")


def test_backspace_never_crosses_a_newline() -> None:
    assert render("first\n\x08\x08\x08second") == "first\nsecond"
    assert feed_all(["first\n", "\x08" * 10, "x"]).text == "first\nx"
    stream = StreamText("kept\n")
    assert stream.feed("\x08") is None
    assert stream.text == "kept\n"


def test_backspace_in_the_middle_of_a_line_pulls_the_tail_left() -> None:
    # Cursor at 2 after "\rab": the backspace removes "b" and the rest of the line moves left.
    assert render("abcdef\rab\x08") == "acdef"


def test_a_shorter_line_over_a_longer_one_keeps_the_tail() -> None:
    assert render("Downloading 100 files\rDone") == "Doneloading 100 files"
    assert feed_all(["Downloading 100 files", "\rDone", "\n"]).text == "Doneloading 100 files\n"


def test_a_newline_keeps_what_is_right_of_the_cursor() -> None:
    assert feed_all(["abcdef", "\rX", "\nnext"]).text == "Xbcdef\nnext"


def test_starting_text_is_taken_as_rendered_with_the_cursor_at_its_end() -> None:
    stream = StreamText("done\npartial")
    assert committed_size(stream) == len("done\n")
    assert stream.feed("!") == TextEdit(len("done\npartial"), 0, "!")
    assert stream.feed("\rP") == TextEdit(len("done\n"), len("partial!"), "Partial!")
    assert stream.text == "done\nPartial!"


def test_multibyte_characters_give_byte_offsets() -> None:
    stream = StreamText()
    stream.feed("é漢😀\n")
    assert stream.size == 2 + 3 + 4 + 1
    stream.feed("ab😀")
    edit = stream.feed("\ra漢")
    # "a" is unchanged; "漢" replaces "b" and the emoji stays.
    assert edit == TextEdit(10 + 1, 1 + 4, "漢😀")
    assert stream.text == "é漢😀\na漢😀"


def test_an_edit_never_starts_inside_a_character() -> None:
    stream = StreamText("é")  # C3 A9
    edit = stream.feed("\rè")  # C3 A8: the first differing byte is the second one
    assert edit == TextEdit(0, 2, "è")


def test_lone_surrogates_become_replacement_characters() -> None:
    stream = feed_all(["a\ud800b\n"])
    assert stream.text == "a\ufffdb\n"


INPUTS = [
    "plain ascii\nsecond line\n",
    "héllo wörld\r\nçà et là\rÇA\n漢字かな交じり\x08\x08文\n",
    "😀 emoji 😀\r😃\x08\x08🎉\n\r\r\n\x08\x08x\ny" + "\x08" * 3,
    "".join(f"\r{p:3d}%|{'█' * (p // 10):<10}| 进度 {p}" for p in range(0, 101, 5)) + "\nfin\n",
    "a\rb\rc\r\n\r\nd\x08e\x08\x08f\rgh\n\ni",
]


def _reference(raw: str) -> str:
    """The rendering, one character at a time, straight from the rules."""
    lines: list[list[str]] = [[]]
    col = 0
    for char in raw:
        line = lines[-1]
        if char == "\n":
            lines.append([])
            col = 0
        elif char == "\r":
            col = 0
        elif char == "\x08":
            if col:
                del line[col - 1]
                col -= 1
        elif col < len(line):
            line[col] = char
            col += 1
        else:
            line.append(char)
            col += 1
    return "\n".join("".join(line) for line in lines)


@pytest.mark.parametrize("raw", INPUTS)
def test_any_split_into_chunks_gives_the_same_text_and_exact_edits(raw: str) -> None:
    expected = _reference(raw)
    rng = random.Random(1234)
    for _ in range(60):
        cuts = sorted(rng.sample(range(len(raw) + 1), rng.randint(0, min(12, len(raw)))))
        bounds = [0, *cuts, len(raw)]
        chunks = [raw[a:b] for a, b in itertools.pairwise(bounds)]
        assert feed_all(chunks).text == expected
    assert feed_all(list(raw)).text == expected


def test_random_streams_match_the_rules() -> None:
    rng = random.Random(99)
    alphabet = "ab é漢😀\n\r\x08"
    for _ in range(200):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        bounds = sorted({0, len(raw), *(rng.randint(0, len(raw)) for _ in range(5))})
        chunks = [raw[a:b] for a, b in itertools.pairwise(bounds)]
        assert feed_all(chunks).text == _reference(raw)


def test_committed_text_is_never_sent_again() -> None:
    stream = StreamText()
    stream.feed("line 1\nline 2\npartial")
    committed = committed_size(stream)
    assert committed == len("line 1\nline 2\n")
    for chunk in ["\r", "\x08" * 50, "\rX", "\n", "\x08\x08"]:
        edit = stream.feed(chunk)
        assert edit is None or edit.start >= committed
        committed = committed_size(stream)
    assert stream.text.startswith("line 1\nline 2\n")


def test_a_large_stream_in_chunks() -> None:
    line = "step 12345: loss=0.123 acc=0.987 ümlaut\n"
    raw = line * (5 * 1024 * 1024 // len(line))
    size = 64 * 1024
    stream = StreamText()
    written = 0
    for at in range(0, len(raw), size):
        edit = stream.feed(raw[at : at + size])
        assert edit is not None
        assert edit.start == written  # only ever appends
        assert edit.delete == 0
        written += len(edit.insert.encode())
    assert stream.size == written == len(raw.encode())
    assert stream.text == raw


def test_a_large_chunk_without_newlines() -> None:
    stream = StreamText()
    for _ in range(5):
        stream.feed("x" * (1024 * 1024))
    edit = stream.feed("\rdone")
    # The edit runs from the first difference to the end: the rest of the line is re-sent.
    assert edit is not None
    assert (edit.start, edit.delete) == (0, 5 * 1024 * 1024)
    assert edit.insert == "done" + "x" * (5 * 1024 * 1024 - 4)
    assert stream.size == 5 * 1024 * 1024


# --- output sizes and the budget --------------------------------------------------------


def test_output_size() -> None:
    assert output_size({"output_type": "stream", "name": "stdout", "text": "héllo"}) == 6
    assert output_size({"output_type": "stream", "name": "stdout", "text": ["a\n", "b"]}) == 3
    result = {"output_type": "execute_result", "data": {"text/plain": "1"}, "metadata": {}}
    assert output_size(result) == len(
        '{"output_type":"execute_result","data":{"text/plain":"1"},"metadata":{}}'
    )
    assert output_size({"output_type": "stream"}) > 0
    assert output_size({}) == 2
    assert output_size({"weird": [1, 2.5, None, True, {"x": float("nan")}], "é": "\ud800"}) > 0


def test_budget_admits_until_the_limit() -> None:
    budget = OutputBudget(100)
    assert budget.admit(60)
    assert budget.room() == 40
    assert budget.admit(40)
    assert budget.room() == 0
    assert not budget.exceeded
    assert budget.notice() == ""
    assert not budget.admit(1)
    assert not budget.admit(500)
    assert budget.used == 100
    assert budget.dropped_outputs == 2
    assert budget.dropped_bytes == 501
    assert budget.exceeded


def test_budget_release_and_reset() -> None:
    budget = OutputBudget(100)
    budget.admit(80)
    assert not budget.admit(30)
    budget.release(50)
    assert budget.used == 30
    assert budget.admit(30)
    budget.release(1000)
    assert budget.used == 0
    budget.reset()
    assert (budget.used, budget.dropped_outputs, budget.dropped_bytes) == (0, 0, 0)
    assert not budget.exceeded


def test_unlimited_budget() -> None:
    for limit in (0, -1):
        budget = OutputBudget(limit)
        assert budget.admit(10**12)
        assert budget.room() > 10**15
        assert not budget.exceeded


def test_a_partly_shown_stream_counts_the_rest_as_dropped() -> None:
    budget = OutputBudget(1024)
    budget.admit(1000)
    chunk = "x" * 100
    shown = chunk[: budget.room()]
    assert budget.admit(len(shown))
    budget.drop(len(chunk) - len(shown))
    assert budget.exceeded
    assert budget.dropped_outputs == 0
    assert budget.notice() == (
        "[output truncated: 76 B more not shown; the limit is 1 KB of output per cell]"
    )


def test_notice_text() -> None:
    budget = OutputBudget(10 * 1024 * 1024)
    budget.drop(int(56.7 * 1024 * 1024), outputs=1234)
    assert budget.notice() == (
        "[output truncated: 1,234 more outputs (56.7 MB) not shown;"
        " the limit is 10 MB of output per cell]"
    )
    budget.reset()
    budget.admit(10 * 1024 * 1024)
    assert not budget.admit(2048)
    assert budget.notice() == (
        "[output truncated: 1 more output (2 KB) not shown; the limit is 10 MB of output per cell]"
    )


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KB"),
        (1536, "1.5 KB"),
        (1024 * 1024 - 1, "1 MB"),
        (10 * 1024 * 1024, "10 MB"),
        (int(56.7 * 1024 * 1024), "56.7 MB"),
        (3 * 1024**3 + 1024**3 // 4, "3.2 GB"),
        (2048 * 1024**3, "2,048 GB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text
