"""llama.cpp inference: each model loaded once, its generations batched, models within a budget."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fabstir.domain import InferenceResult, LocalModel
from fabstir.errors import ConfigError, JobRejected, TransientError
from fabstir.models import llama
from fabstir.models.disk import ModelDiskCache
from fabstir.models.sampling import SamplingParams, build_sampler
from fabstir.models.scheduler import BatchScheduler, Generation
from fabstir.settings import EngineSettings

log = logging.getLogger(__name__)

Message = dict[str, str]


class LlamaEngine:
    """Generate chat answers from one model (optionally with a LoRA adapter) with llama.cpp."""

    def __init__(
        self,
        weights: Any,
        settings: EngineSettings,
        *,
        name: str,
        adapter: Any = None,
    ) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._weights = weights
        self._settings = settings
        self.name = name
        options = llama.context_options(settings)
        self._context = llama.new_context(weights, options)
        if adapter is not None:
            llama.apply_adapter(self._context, adapter)
        self.n_ctx = llama_cpp.llama_n_ctx_seq(self._context.ctx)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(weights.vocab)
        template = settings.chat_templates.get(name) or weights.metadata().get(
            "tokenizer.chat_template"
        )
        self._formatter = (
            Jinja2ChatFormatter(
                template=template,
                eos_token=self._token_text(weights.token_eos()),
                bos_token=self._token_text(weights.token_bos()),
            )
            if template
            else None
        )
        self._scheduler = BatchScheduler(
            self._context,
            weights.vocab,
            n_seq=settings.parallel_sequences,
            n_batch=options["n_batch"],
            max_queued=settings.max_queued,
        )
        self.generations = 0

    @property
    def busy(self) -> bool:
        return self._scheduler.busy

    def stream(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        *,
        on_queue_position: Callable[[int], None] | None = None,
    ) -> Generation:
        """Start answering a chat and return the generation to iterate for text pieces.

        Raises:
            JobRejected: the prompt plus ``max_tokens`` exceeds the context window
                (``code="context_overflow"``).
            TransientError: the model's queue is full (``code="engine_busy"``).
        """
        prompt, stops = self._prompt_tokens(messages)
        if len(prompt) + params.max_tokens > self.n_ctx:
            raise JobRejected(
                "prompt plus max_tokens exceeds the context window",
                code="context_overflow",
                prompt_tokens=len(prompt),
                max_tokens=params.max_tokens,
                n_ctx=self.n_ctx,
            )
        if stops:
            params = params.model_copy(update={"stop": (*params.stop, *stops)})
        sampler = build_sampler(params, self._n_vocab, self._settings.seed)
        generation = self._scheduler.submit(prompt, params, sampler, on_queue_position)
        self.generations += 1
        return generation

    def generate(self, prompt: str, max_tokens: int, temperature: float = 0.0) -> InferenceResult:
        """Answer ``prompt`` as a single user turn, producing at most ``max_tokens`` tokens.

        Raises:
            JobRejected: the prompt plus ``max_tokens`` does not fit the context window.
            TransientError: the model's queue is full.
        """
        generation = self.stream(
            [{"role": "user", "content": prompt}],
            SamplingParams(max_tokens=max_tokens, temperature=temperature),
        )
        text = generation.text()
        return InferenceResult(
            text=text,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            cache_hit=False,
        )

    def close(self) -> None:
        self._scheduler.close()
        self._context.close()

    def _prompt_tokens(self, messages: Sequence[Message]) -> tuple[list[int], tuple[str, ...]]:
        weights = self._weights
        if self._formatter is None:
            text = "\n".join(message["content"] for message in messages)
            return weights.tokenize(text.encode(), add_bos=True, special=False), ()
        formatted = self._formatter(messages=list(messages))
        tokens = weights.tokenize(
            formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
        )
        stops = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop]
        # The end-of-turn text is also a token, which ends generation on its own.
        return tokens, tuple(stop for stop in stops if stop)

    def _token_text(self, token: int) -> str:
        return "" if token < 0 else self._weights.token_get_text(token)


class _Loaded:
    def __init__(self, engine: LlamaEngine, size_bytes: int, pinned: list[str]) -> None:
        self.engine = engine
        self.size_bytes = size_bytes
        self.pinned = pinned


class EnginePool:
    """Load each model once per process; keep loaded models within the memory budget.

    Loaded models are pinned in the disk cache. When a new model does not fit, idle models unload,
    least recently used first.
    """

    def __init__(self, settings: EngineSettings, disk: ModelDiskCache | None = None) -> None:
        self._settings = settings
        self._disk = disk
        self._loaded: OrderedDict[tuple[str, str | None], _Loaded] = OrderedDict()
        self._weights: dict[str, tuple[Any, int]] = {}
        self._unloaded_generations = 0
        self._lock = threading.Lock()

    def engine_for(self, model: LocalModel) -> LlamaEngine:
        """Return the engine of ``model``, loading it (and unloading idle ones) when needed.

        Raises:
            ConfigError: the model alone is larger than the memory budget.
            TransientError: only busy models stand in the way (``code="engine_busy"``).
            ValueError: the file is missing or llama.cpp cannot load it.
        """
        base = model.base or model
        key = (base.sha256, model.sha256 if model.base else None)
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is not None:
                self._loaded.move_to_end(key)
                return loaded.engine
            log.info("loading model", extra={"model": model.name, "path": model.path})
            weights = self._weights_of(base)
            adapter = llama.load_adapter(weights, model.path) if model.base else None
            size = llama.kv_cache_bytes(weights, self._settings)
            if base.sha256 not in self._users():
                size += Path(base.path).stat().st_size
            if model.base:
                size += Path(model.path).stat().st_size
            try:
                self._make_room(size)
                engine = LlamaEngine(weights, self._settings, name=model.name, adapter=adapter)
            except BaseException:
                self._release_weights(base.sha256)
                raise
            pinned = [base.sha256] + ([model.sha256] if model.base else [])
            if self._disk is not None:
                for sha256 in pinned:
                    self._disk.pin(sha256)
            self._loaded[key] = _Loaded(engine, size, pinned)
            return engine

    @property
    def generations(self) -> int:
        """Generations started by every engine this pool has loaded."""
        with self._lock:
            live = sum(loaded.engine.generations for loaded in self._loaded.values())
            return self._unloaded_generations + live

    @property
    def loaded_bytes(self) -> int:
        with self._lock:
            return sum(loaded.size_bytes for loaded in self._loaded.values())

    def close(self) -> None:
        with self._lock:
            for key in list(self._loaded):
                self._unload(key)

    def _users(self) -> set[str]:
        return {key[0] for key in self._loaded}

    def _weights_of(self, base: LocalModel) -> Any:
        weights, users = self._weights.get(base.sha256, (None, 0))
        if weights is None:
            weights = llama.load_model(base.path, llama.model_options(self._settings, base.name))
        self._weights[base.sha256] = (weights, users + 1)
        return weights

    def _release_weights(self, sha256: str) -> None:
        weights, users = self._weights[sha256]
        if users > 1:
            self._weights[sha256] = (weights, users - 1)
            return
        del self._weights[sha256]
        weights.close()

    def _make_room(self, size_bytes: int) -> None:
        budget = self._settings.memory_budget_bytes
        if size_bytes > budget:
            raise ConfigError(
                "model does not fit the engine's memory budget",
                code="model_over_memory_budget",
                size_bytes=size_bytes,
                budget_bytes=budget,
            )
        used = sum(loaded.size_bytes for loaded in self._loaded.values())
        for key in list(self._loaded):
            if used + size_bytes <= budget:
                return
            if self._loaded[key].engine.busy:
                continue
            used -= self._loaded[key].size_bytes
            self._unload(key)
        if used + size_bytes > budget:
            raise TransientError(
                "every loaded model is busy; no memory to load another",
                code="engine_busy",
                needed_bytes=size_bytes,
                used_bytes=used,
            )

    def _unload(self, key: tuple[str, str | None]) -> None:
        loaded = self._loaded.pop(key)
        log.info("unloading model", extra={"model": loaded.engine.name})
        self._unloaded_generations += loaded.engine.generations
        loaded.engine.close()
        self._release_weights(key[0])
        if self._disk is not None:
            for sha256 in loaded.pinned:
                self._disk.unpin(sha256)
