"""The seqio adapter round-trips a registered Task (skipped without the `ladderlab[seqio]` extra)."""

import pytest

seqio = pytest.importorskip("seqio")
tf = pytest.importorskip("tensorflow")

from ladderlab.data.config import DataConfig  # noqa: E402
from ladderlab.data.pipeline import eval_batches, train_batches  # noqa: E402
from ladderlab.data.seqio_source import seqio_documents, write_seqio_corpus  # noqa: E402
from ladderlab.data.tokenizer import ByteTokenizer  # noqa: E402

TEXTS = {"t_alpha": [f"alpha document {i}: " + "abc " * (i + 5) for i in range(40)],
         "t_beta": [f"beta Übung {i}: " + "xyz " * (i + 5) for i in range(40)]}


def _register(name, texts, tokenize):
    def dataset_fn(split, shuffle_files, seed=None):
        return tf.data.Dataset.from_tensor_slices({"targets": texts})

    preprocessors = [seqio.preprocessors.tokenize] if tokenize else []
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(name, source=seqio.FunctionDataSource(dataset_fn, splits=["train"]),
                           preprocessors=preprocessors,
                           output_features={"targets": seqio.Feature(seqio.ByteVocabulary(), add_eos=False,
                                                                     dtype=tf.int32 if tokenize else tf.string,
                                                                     rank=1 if tokenize else 0)})


def test_task_round_trips_as_text_and_as_tokens():
    _register("ll_text_task", TEXTS["t_alpha"], tokenize=False)
    _register("ll_token_task", TEXTS["t_beta"], tokenize=True)
    assert list(seqio_documents("ll_text_task")) == TEXTS["t_alpha"]
    assert list(seqio_documents("ll_token_task")) == TEXTS["t_beta"]


def test_mixture_becomes_a_domain_the_pipeline_trains_on(tmp_path):
    _register("ll_a", TEXTS["t_alpha"], tokenize=True)
    _register("ll_b", TEXTS["t_beta"], tokenize=False)
    seqio.MixtureRegistry.remove("ll_mix")
    seqio.MixtureRegistry.add("ll_mix", [("ll_a", 1.0), ("ll_b", 1.0)])
    corpus = write_seqio_corpus(tmp_path / "corpus", {"mixed": "ll_mix", "alpha": "ll_a"})
    cfg = DataConfig(corpus=str(corpus), seq_len=32, eval_tokens=64, cache_dir=str(tmp_path / "cache"))
    batch = next(train_batches(cfg, 4))
    assert batch["inputs"].shape == (4, 32)
    text = ByteTokenizer().decode(batch["inputs"].ravel())
    assert "alpha" in text or "abc" in text or "xyz" in text
    assert {k: sum(b["mask"].sum() for b in v) for k, v in eval_batches(cfg, 4).items()} == {"alpha": 64, "mixed": 64}
