"""The converted GGUF, run by llama.cpp, against a numpy BERT forward pass of the source weights."""

from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.utility import SafetensorsLocal

from fabstir.cache import Embedder
from fabstir.cache.minilm_gguf import minilm_source_dir

pytestmark = pytest.mark.integration

SENTENCES = [
    "What is the capital of France?",
    "Unaffable café owners don't serve 15% tips; résumé attached!",
    "def swap(a, b):\n    return b, a",
]


class WordPiece:
    """BERT's uncased BasicTokenizer + WordPiece, as the HF tokenizer.json describes it."""

    def __init__(self, tokenizer_json: Path) -> None:
        spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        self.vocab: dict[str, int] = spec["model"]["vocab"]
        self.unk = self.vocab[spec["model"]["unk_token"]]

    def encode(self, text: str) -> list[int]:
        ids = [self.vocab["[CLS]"]]
        for word in self._basic_words(text):
            ids.extend(self._wordpiece(word))
        return [*ids, self.vocab["[SEP]"]]

    @staticmethod
    def _basic_words(text: str) -> list[str]:
        cleaned = []
        for char in text:
            category = unicodedata.category(char)
            if char.isspace():
                cleaned.append(" ")
            elif char == "\x00" or char == "\ufffd" or category.startswith("C"):
                continue
            else:
                cleaned.append(char)
        text = unicodedata.normalize("NFD", "".join(cleaned).lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words: list[str] = []
        for chunk in text.split():
            current = ""
            for char in chunk:
                code = ord(char)
                is_punct = (
                    33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
                ) or unicodedata.category(char).startswith("P")
                if is_punct:
                    words.extend(w for w in (current, char) if w)
                    current = ""
                else:
                    current += char
            if current:
                words.append(current)
        return words

    def _wordpiece(self, word: str) -> list[int]:
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    pieces.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return pieces


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


_erf = np.vectorize(math.erf)


def numpy_minilm(ids: list[int], weights: dict[str, np.ndarray], config: dict) -> np.ndarray:
    """Mean-pooled, normalised sentence embedding (the sentence-transformers recipe) in float64."""
    eps, heads = config["layer_norm_eps"], config["num_attention_heads"]
    w = {name: array.astype(np.float64) for name, array in weights.items()}
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    head_dim = x.shape[1] // heads
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def dense(h: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (
            dense(x, f"attention.self.{part}").reshape(n, heads, head_dim).transpose(1, 0, 2)
            for part in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, -1)
        x = _layer_norm(
            x + dense(context, "attention.output.dense"),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        hidden = dense(x, "intermediate.dense")
        hidden = 0.5 * hidden * (1.0 + _erf(hidden / math.sqrt(2.0)))
        x = _layer_norm(
            x + dense(hidden, "output.dense"),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
            eps,
        )
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


@pytest.fixture(scope="module")
def reference() -> tuple[WordPiece, dict[str, np.ndarray], dict]:
    source = minilm_source_dir()
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    weights = {}
    with SafetensorsLocal(source / "model.safetensors") as tensors:
        for name, tensor in tensors.items():
            if tensor.dtype == "F32":
                weights[name] = tensor.mmap_bytes().view(np.float32).reshape(tensor.shape)
    return WordPiece(source / "tokenizer.json"), weights, config


def test_llama_cpp_tokenises_like_the_hf_wordpiece(embedder: Embedder, reference: tuple) -> None:
    wordpiece = reference[0]
    for sentence in SENTENCES:
        llama_ids = embedder._llama.tokenize(sentence.encode("utf-8"))
        assert llama_ids == wordpiece.encode(sentence)


def test_vectors_match_the_numpy_reference(embedder: Embedder, reference: tuple) -> None:
    wordpiece, weights, config = reference
    vectors = embedder.embed(SENTENCES)
    for sentence, vector in zip(SENTENCES, vectors, strict=True):
        expected = numpy_minilm(wordpiece.encode(sentence), weights, config)
        assert float(vector @ expected) >= 0.999


def test_embeddings_are_unit_float32_rows(embedder: Embedder) -> None:
    vectors = embedder.embed(["one", "two words", ""])
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, embedder.dimension) == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_batch_and_single_embeddings_agree(embedder: Embedder) -> None:
    batch = embedder.embed(SENTENCES)
    for sentence, row in zip(SENTENCES, batch, strict=True):
        assert float(embedder.embed([sentence])[0] @ row) >= 0.9999


def test_gguf_metadata(minilm_gguf: Path) -> None:
    reader = gguf.GGUFReader(minilm_gguf)
    fields = reader.fields

    def value(key: str) -> object:
        return fields[key].contents()

    assert value("general.architecture") == "bert"
    assert value("bert.block_count") == 6
    assert value("bert.embedding_length") == 384
    assert value("bert.pooling_type") == int(gguf.PoolingType.MEAN)
    assert value("bert.attention.causal") is False
    assert value("tokenizer.ggml.model") == "bert"
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 101
    assert value("general.file_type") == int(gguf.LlamaFileType.MOSTLY_BF16)
    assert tensors["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.5.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.BF16
    assert tensors["token_types.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["position_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["blk.0.attn_output_norm.bias"].tensor_type == gguf.GGMLQuantizationType.F32
    assert minilm_gguf.stat().st_mode & 0o777 == 0o644
