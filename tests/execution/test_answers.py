"""The outputs of jupyter-server-nbmodel's answers, encoded from what was kept between polls."""

from __future__ import annotations

import json
from typing import Any

from jupyter_datastore.execution.records import ExecutionRecord
from jupyter_datastore.handlers import nbmodel
from jupyter_datastore.handlers.nbmodel import AnswerCache, answer


def record(outputs: list[dict[str, Any]], record_id: str = "r") -> ExecutionRecord:
    return ExecutionRecord(id=record_id, kernel_id="k", batch_id="b", outputs=outputs)


def stream(text: str, name: str = "stdout") -> dict[str, Any]:
    return {"output_type": "stream", "name": name, "text": text}


def field(answers: AnswerCache, r: ExecutionRecord, keep: bool = True) -> str:
    return b"".join(answers.outputs(r, keep)).decode()


def test_a_growing_stream_is_encoded_as_json_dumps_twice_would() -> None:
    shown = {"output_type": "display_data", "data": {"text/plain": "é"}, "metadata": {}}
    answers, text = AnswerCache(), ""
    for i in range(2_000):
        text += f'{i} é \N{GRINNING FACE} "q" \\ \t\x00\n'
        # A record read again (from the store) finds what was kept for its id.
        r = record([shown, stream(text)])
        assert field(answers, r) == json.dumps(json.dumps(r.outputs))
    assert answers.fields["r"].text is text


def test_a_rewritten_cleared_or_replaced_output_is_encoded_again() -> None:
    long = "".join(f"{i}\n" for i in range(10_000))
    answers = AnswerCache()
    field(answers, record([stream(long)]))
    for outputs in (
        [stream(long[:-7] + "\rover")],  # rewritten at its end
        [stream(long[:5000])],  # shorter
        [stream(long, "stderr")],  # another stream with the same text
        [stream("short")],  # short: not kept
        [stream(long), {"output_type": "error", "ename": "E", "evalue": "", "traceback": []}],
        [],
        [stream(long + "more")],
    ):
        r = record(outputs)
        assert json.loads(json.loads(field(answers, r))) == outputs
    assert field(answers, r, keep=False) == json.dumps(json.dumps(r.outputs))
    assert not answers.fields


def test_what_is_kept_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(nbmodel, "_KEPT_BYTES", 100_000)
    answers = AnswerCache()
    for n in range(20):
        field(answers, record([stream("x" * 30_000)], f"r{n}"))
    assert list(answers.fields) == ["r17", "r18", "r19"]
    monkeypatch.setattr(nbmodel, "_KEPT_BYTES", 1 << 30)
    for n in range(20):
        field(answers, record([stream("x" * 30_000)], f"r{n}"))
    assert len(answers.fields) == nbmodel._KEPT_RECORDS


def test_an_answer_has_the_outputs_as_its_last_member() -> None:
    r = record([stream("x" * 20_000)])
    body = json.loads(answer({"pending": True, "request_id": "r"}, AnswerCache().outputs(r)))
    assert body == {"pending": True, "request_id": "r", "outputs": json.dumps(r.outputs)}
