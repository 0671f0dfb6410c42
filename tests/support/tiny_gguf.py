"""Write a tiny random llama-architecture GGUF that llama.cpp loads in milliseconds.

Its answers are gibberish but deterministic at temperature 0, which is all the pipeline tests need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
    "<|assistant|>"
)
_WORDS = ("the", "cat", "sat", "on", "mat", "and", "dog", "ran", "far", "away", "sun", "sea")


def write_tiny_gguf(path: Path, seed: int = 7) -> Path:
    """Write the model to ``path`` and return it."""
    import gguf

    embedding, layers, feed_forward, heads, kv_heads = 64, 2, 256, 4, 2
    head_dim = embedding // heads
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581{word}" for word in _WORDS]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * len(_WORDS)
    scores = [0.0] * 259 + [-float(i) for i in range(len(_WORDS))]
    vocab = len(tokens)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(512)
    writer.add_embedding_length(embedding)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(feed_forward)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(1e4)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_chat_template(_CHAT_TEMPLATE)

    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.5).astype(np.float32)

    writer.add_tensor("token_embd.weight", weights(vocab, embedding))
    writer.add_tensor("output_norm.weight", np.ones(embedding, dtype=np.float32))
    writer.add_tensor("output.weight", weights(vocab, embedding))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(embedding, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weights(embedding, embedding))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weights(kv_heads * head_dim, embedding))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weights(kv_heads * head_dim, embedding))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weights(embedding, embedding))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(embedding, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weights(feed_forward, embedding))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weights(feed_forward, embedding))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weights(embedding, feed_forward))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_lora(path: Path, rank: int = 4, alpha: float = 8.0, seed: int = 11) -> Path:
    """Write a LoRA adapter GGUF for the tiny model: random A/B pairs on every layer's attn_q.

    Shapes follow llama.cpp's loader: A is [rank, in], B is [out, rank] (numpy order).
    """
    import gguf

    embedding, layers = 64, 2
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    rng = np.random.default_rng(seed)
    for i in range(layers):
        lora_a = (rng.standard_normal((rank, embedding)) * 0.5).astype(np.float32)
        lora_b = (rng.standard_normal((embedding, rank)) * 0.5).astype(np.float32)
        writer.add_tensor(f"blk.{i}.attn_q.weight.lora_a", lora_a)
        writer.add_tensor(f"blk.{i}.attn_q.weight.lora_b", lora_b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
