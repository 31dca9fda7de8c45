"""Multiple-choice tasks from held-out text: items from real passages, content-seeded, rows scoring only the
choice, the cache, and the demo corpus's recorded item hashes."""

import dataclasses
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ladderlab.data import pipeline, tasks
from ladderlab.data.config import DataConfig
from ladderlab.data.corpus import cache_root
from ladderlab.data.tokenizer import BOS, load_tokenizer
from ladderlab.data.tokens import corpus_fingerprint
from ladderlab.errors import LadderlabError

DEMO = Path(__file__).with_name("demo_tasks.json")


def _prose(seed: int, n: int) -> str:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "lambda", "theta", "zeta"]
    return " ".join(rng.choice(words, n))


def _python(n: int) -> str:
    return "\n".join(textwrap.dedent(f'''
        def f{i}(x, y={i}):
            """Add {i}."""
            z = x + y * {i}
            return z
        ''') for i in range(n))


def test_continuation_items_are_true_continuations_among_other_passages():
    text = _prose(0, 3000)
    held = {"p": [text], "q": [_prose(1, 40)]}
    built, skipped = tasks.build_tasks(held)
    items = built["p_continuation"]
    assert len(items) == tasks.MAX_ITEMS and "q_continuation" in skipped and "man_description" in skipped
    for item in items:
        answer = item.choices[item.answer]
        assert item.context + answer in text  # the true continuation follows its context in the document
        assert len(set(item.choices)) == tasks.CHOICES and all(c in text for c in item.choices)
        assert len(item.context) >= tasks.CONTEXT_CHARS and len(answer) <= tasks.CHOICE_CHARS
        assert answer[0].isspace() and not answer[-1].isspace()  # whole words
    assert tasks.build_tasks(held) == (built, skipped)  # content-seeded: the same text gives the same items
    assert np.bincount([i.answer for i in items], minlength=4).min() > 10  # the answer's place is spread


def test_python_function_items_take_a_signature_and_docstring_and_a_body():
    built, _ = tasks.build_tasks({"code": [_python(30)]})
    items = built["python_function"]
    assert len(items) == 30
    for item in items:
        i = item.context.split("(")[0][len("def f"):]
        assert item.context == f'def f{i}(x, y={i}):\n    """Add {i}."""'
        assert item.choices[item.answer] == f"\n    z = x + y * {i}\n    return z"


def test_man_description_items_and_skips():
    pages = [f"cmd{i}\n\nNAME\ncmd{i} - does thing {i} well\n\nSYNOPSIS\ncmd{i} [x]\n" for i in range(25)]
    built, _ = tasks.build_tasks({"docs": pages})
    item = built["man_description"][0]
    i = item.context.split("\n")[0][3:]
    assert item.context == f"cmd{i}\n\nNAME\ncmd{i} -" and item.choices[item.answer] == f" does thing {i} well"
    _, skipped = tasks.build_tasks({"docs": pages[:5]})
    assert skipped["man_description"].startswith("5 items from 5 candidates")


def test_rows_score_the_choice_only_and_cut_the_context_on_the_left():
    item = tasks.Item("abcdefghij", ("XY", "Z", "UVW", "T"), 2)
    encode = lambda text: np.array([ord(c) for c in text], np.int32)  # noqa: E731
    token_bytes = np.arange(256.0)  # token t "has" t bytes, so the scored bytes are the sum of the choice's ids
    rows = tasks.rows([item], encode, token_bytes, row_len=8)
    assert rows["inputs"].shape == (4, 8) and rows["item"].tolist() == [0, 0, 0, 0]
    assert rows["correct"].tolist() == [0, 0, 1, 0]
    # row 2: [BOS] + last 5 context tokens + UVW; inputs drop the last token, targets the first
    seq = [BOS, *encode("fghij"), *encode("UVW")]
    assert rows["inputs"][2].tolist() == seq[:-1] and rows["targets"][2].tolist() == seq[1:]
    assert rows["mask"][2].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert rows["scored_bytes"].tolist() == [ord("X") + ord("Y"), ord("Z"), sum(map(ord, "UVW")), ord("T")]
    assert rows["mask"][1].tolist() == [0] * 7 + [1] and rows["positions"][1].tolist() == list(range(8))
    short = tasks.rows([tasks.Item("ab", ("c", "d", "e", "f"), 0)], encode, token_bytes, row_len=8)
    assert short["segment_ids"][0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0] and short["mask"][0, 2] == 1


def test_task_batches_from_the_corpus_cache(cfg, tmp_path):
    cfg = dataclasses.replace(cfg, eval_tokens=8000, tasks=("digits_continuation", "letters_continuation"))
    batches = pipeline.task_batches(cfg, 7)
    built, skipped = pipeline.task_items(cfg)
    assert set(skipped) == {"python_function", "man_description"} and set(batches) == set(cfg.tasks)
    for name, task in batches.items():
        assert sum(int((b["item"] >= 0).sum()) for b in task) == tasks.CHOICES * len(built[name])
        assert all(b["inputs"].shape == (7, 64) for b in task)
        padding = sum(int((b["item"] == -1).sum()) for b in task)
        assert padding == -tasks.CHOICES * len(built[name]) % 7 and task[-1]["mask"][7 - padding:].sum() == 0
    cached = list((cache_root(cfg.cache_dir) / "tasks").glob("*.json"))
    assert len(cached) == 1 and set(json.loads(cached[0].read_text())["tasks"]) == set(built)
    with pytest.raises(LadderlabError, match="DataConfig.tasks: unknown task.*nope_continuation"):
        pipeline.task_batches(dataclasses.replace(cfg, tasks=("nope_continuation",)), 8)
    with pytest.warns(UserWarning, match="task 'man_description' skipped: 0 items"):
        assert pipeline.task_batches(dataclasses.replace(cfg, tasks=("man_description",)), 8) == {}


def test_demo_corpus_tasks_match_the_recorded_hashes():
    """The demo corpus's tasks (byte tokenizer, eval_tokens 16384) are built as recorded: same items, same
    hashes (the items are not committed; some of the text is GPL)."""
    recorded = json.loads(DEMO.read_text())
    folder = cache_root() / "corpora" / "demo"
    if not (folder / "manifest.json").is_file() or corpus_fingerprint(folder) != recorded["corpus_sha256"]:
        pytest.skip("the demo corpus recorded in demo_tasks.json is not on this machine")
    cfg = DataConfig(corpus="demo", eval_tokens=recorded["eval_tokens"], doc_tokens=recorded["doc_tokens"])
    byte = load_tokenizer("byte")
    built, skipped = tasks.build_tasks(tasks.held_out_texts(folder, pipeline.domains(cfg), byte))
    assert {t: {"items": len(v), "sha256": tasks.digest(v)} for t, v in built.items()} == recorded["tasks"]
    assert sorted(skipped) == recorded["skipped"] and byte.fingerprint() == recorded["tokenizer"]
