"""llama.cpp inference: one loaded model per file, reused across jobs, with exact token counts."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fabstir.domain import InferenceResult, LocalModel
from fabstir.errors import JobRejected
from fabstir.models.llama import load_llama
from fabstir.settings import EngineSettings

log = logging.getLogger(__name__)


class LlamaEngine:
    """Generate chat answers from one GGUF file with llama.cpp."""

    def __init__(self, model_path: Path, settings: EngineSettings) -> None:
        self._llm = load_llama(
            str(model_path),
            n_ctx=settings.n_ctx,
            n_batch=settings.n_batch,
            n_threads=settings.n_threads,
            n_threads_batch=settings.n_threads,
            seed=settings.seed,
        )
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama_cpp = llama_cpp
        self._settings = settings
        template = self._llm.metadata.get("tokenizer.chat_template")
        self._formatter = (
            Jinja2ChatFormatter(
                template=template,
                eos_token=self._token_text(self._llm.token_eos()),
                bos_token=self._token_text(self._llm.token_bos()),
            )
            if template
            else None
        )
        self._lock = threading.Lock()
        self.generations = 0

    def generate(self, prompt: str, max_tokens: int, temperature: float = 0.0) -> InferenceResult:
        """Answer ``prompt`` as a single user turn, producing at most ``max_tokens`` tokens.

        Raises:
            JobRejected: the prompt plus ``max_tokens`` does not fit the context window.
        """
        prompt_tokens = self._prompt_tokens(prompt)
        if len(prompt_tokens) + max_tokens > self._settings.n_ctx:
            raise JobRejected(
                "prompt plus max_tokens exceeds the context window",
                code="context_overflow",
                prompt_tokens=len(prompt_tokens),
                max_tokens=max_tokens,
                n_ctx=self._settings.n_ctx,
            )
        with self._lock:
            self.generations += 1
            self._llm.set_seed(self._settings.seed)
            completion: list[int] = []
            for token in self._llm.generate(prompt_tokens, temp=temperature, reset=True):
                if self._is_end_of_generation(token):
                    break
                completion.append(token)
                if len(completion) >= max_tokens:
                    break
            text = self._llm.detokenize(completion, prev_tokens=prompt_tokens).decode(
                "utf-8", errors="replace"
            )
        return InferenceResult(
            text=text,
            prompt_tokens=len(prompt_tokens),
            completion_tokens=len(completion),
            cache_hit=False,
        )

    def _prompt_tokens(self, prompt: str) -> list[int]:
        if self._formatter is None:
            return self._llm.tokenize(prompt.encode(), add_bos=True, special=False)
        formatted = self._formatter(messages=[{"role": "user", "content": prompt}])
        return self._llm.tokenize(
            formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
        )

    def _is_end_of_generation(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token))

    def _token_text(self, token: int) -> str:
        return "" if token < 0 else self._llm._model.token_get_text(token)


class EnginePool:
    """Load each model file once per process and hand out its engine."""

    def __init__(self, settings: EngineSettings) -> None:
        self._settings = settings
        self._engines: dict[str, LlamaEngine] = {}
        self._lock = threading.Lock()

    def engine_for(self, model: LocalModel) -> LlamaEngine:
        with self._lock:
            engine = self._engines.get(model.sha256)
            if engine is None:
                log.info("loading model", extra={"model": model.name, "path": model.path})
                engine = LlamaEngine(Path(model.path), self._settings)
                self._engines[model.sha256] = engine
            return engine

    @property
    def generations(self) -> int:
        return sum(engine.generations for engine in self._engines.values())
