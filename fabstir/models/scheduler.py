"""Decode several generations of one model together: one llama.cpp context, one sequence each.

A worker thread owns the context. Each step it puts the next token of every running sequence and
a slice of any new prompt into one batch, decodes it once and samples each sequence from its own
logits, so a new request's first token waits for one step, not for the others to finish. Requests
beyond the context's sequences wait in a FIFO queue and are told their position.

Each sequence has its own KV stream, and llama.cpp computes a batch of such sequences in one pass
only over a run of sequence ids that rise by one from token to token
(``llama_batch_allocr::split_equal``); any other order costs a pass per sequence. So a request
takes the lowest free sequence id and the batch lists its tokens in sequence-id order.
"""

from __future__ import annotations

import codecs
import ctypes
import heapq
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fabstir.errors import TransientError
from fabstir.models.sampling import SamplingParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenPiece:
    """Text released to the caller and how many completion tokens it accounts for.

    Text is held back while it may be the start of a stop string, so a piece can carry several
    tokens (or none); the ``tokens`` of all pieces add up to the completion token count.
    """

    text: str
    tokens: int


class _Done:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


@dataclass(eq=False)
class _Sequence:
    prompt: list[int]
    params: SamplingParams
    sampler: Any  # None: take the likeliest token (see build_sampler)
    on_queue_position: Callable[[int], None] | None
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    slot: int = -1
    queue_position: int | None = None
    last_token: int = -1
    n_past: int = 0
    logits_index: int = -1  # in the batch being decoded
    output_row: int = -1  # among the logits rows of that batch
    completion: int = 0
    unreleased_tokens: int = 0
    text: str = ""
    released: int = 0
    finish_reason: str | None = None
    cancelled: bool = False
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))


class Generation:
    """One streaming generation. Iterate for ``TokenPiece``s; counts are final when it ends.

    ``finish_reason`` is ``"stop"`` (end token or stop string), ``"length"`` (max_tokens) or
    ``"cancelled"``. Leaving the iteration early, or ``cancel()``, stops decoding before the next
    token.
    """

    def __init__(self, sequence: _Sequence) -> None:
        self._sequence = sequence
        self.prompt_tokens = len(sequence.prompt)

    @property
    def queue_position(self) -> int | None:
        """Place in the model's queue (1 = next), or None once decoding has started."""
        return self._sequence.queue_position

    @property
    def completion_tokens(self) -> int:
        return self._sequence.completion

    @property
    def finish_reason(self) -> str | None:
        return self._sequence.finish_reason

    def cancel(self) -> None:
        self._sequence.cancelled = True

    def __iter__(self) -> Iterator[TokenPiece]:
        try:
            while True:
                item = self._sequence.out.get()
                if isinstance(item, _Done):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            self.cancel()

    def text(self) -> str:
        """Consume the whole generation and return its text."""
        return "".join(piece.text for piece in self)


class BatchScheduler:
    """Run the generations of one loaded context, ``n_seq`` at a time, the rest queued."""

    def __init__(
        self, context: Any, vocab: Any, *, n_seq: int, n_batch: int, max_queued: int
    ) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self._context = context
        self._vocab = vocab
        self._n_batch = n_batch
        self._max_queued = max_queued
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        # numpy views of the batch's arrays: a step fills them in a few slice assignments.
        self._batch_tokens = np.ctypeslib.as_array(self._batch.token, shape=(n_batch,))
        self._batch_positions = np.ctypeslib.as_array(self._batch.pos, shape=(n_batch,))
        self._batch_logits = np.ctypeslib.as_array(self._batch.logits, shape=(n_batch,))
        np.ctypeslib.as_array(self._batch.n_seq_id, shape=(n_batch,))[:] = 1
        self._batch_seq_ids = [self._batch.seq_id[i] for i in range(n_batch)]
        self._logits_view: tuple[tuple[int | None, int], np.ndarray] | None = None
        self._piece_buffer = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}  # a token's bytes never change: one ctypes call each
        self._free_slots = list(range(n_seq))  # a heap: the lowest free id first
        self._active: list[_Sequence] = []
        self._waiting: deque[_Sequence] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="llama-batch", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        with self._wake:
            return bool(self._active or self._waiting)

    def submit(
        self,
        prompt: list[int],
        params: SamplingParams,
        sampler: Any,
        on_queue_position: Callable[[int], None] | None = None,
    ) -> Generation:
        """Queue a generation and return its handle at once.

        Raises:
            TransientError: the queue is full (``code="engine_busy"``).
        """
        sequence = _Sequence(prompt, params, sampler, on_queue_position)
        generation = Generation(sequence)
        with self._wake:
            if self._closed:
                raise TransientError("engine is shutting down", code="engine_closed")
            if len(self._waiting) - len(self._free_slots) >= self._max_queued:
                raise TransientError(
                    "engine queue is full", code="engine_busy", queued=len(self._waiting)
                )
            self._waiting.append(sequence)
            if len(self._waiting) > len(self._free_slots):
                sequence.queue_position = len(self._waiting) - len(self._free_slots)
                if on_queue_position is not None:
                    on_queue_position(sequence.queue_position)
            self._wake.notify()
        return generation

    def close(self) -> None:
        """Cancel every generation, stop the worker and free the batch."""
        with self._wake:
            self._closed = True
            for sequence in [*self._active, *self._waiting]:
                sequence.cancelled = True
            self._wake.notify()
        self._thread.join()
        self._llama_cpp.llama_batch_free(self._batch)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not (self._active or self._waiting or self._closed):
                    self._wake.wait()
                self._admit()
                if self._closed and not self._active and not self._waiting:
                    return
            try:
                self._step()
            except Exception as exc:  # a failed decode ends every running generation, not the node
                log.exception("llama.cpp decode failed")
                for sequence in list(self._active):
                    self._finish(sequence, None, _Done(exc))

    def _admit(self) -> None:
        while self._waiting and (self._free_slots or self._waiting[0].cancelled):
            sequence = self._waiting.popleft()
            if sequence.cancelled:
                sequence.finish_reason = "cancelled"
                if sequence.sampler is not None:
                    sequence.sampler.close()
                sequence.out.put(_Done())
                continue
            sequence.slot = heapq.heappop(self._free_slots)
            sequence.queue_position = None
            self._active.append(sequence)
        for position, sequence in enumerate(self._waiting, start=1):
            if sequence.queue_position != position:
                sequence.queue_position = position
                if sequence.on_queue_position is not None:
                    sequence.on_queue_position(position)

    def _step(self) -> None:
        for sequence in [s for s in self._active if s.cancelled]:
            self._finish(sequence, "cancelled")
        # Running sequences first: their next token never waits behind a long prompt.
        planned = [(s, [s.last_token]) for s in self._active if s.n_past >= len(s.prompt)]
        room = self._n_batch - len(planned)
        for sequence in self._active:
            if room <= 0:
                break
            if sequence.n_past < len(sequence.prompt):
                chunk = sequence.prompt[sequence.n_past : sequence.n_past + room]
                planned.append((sequence, chunk))
                room -= len(chunk)
        if not planned:
            return
        planned.sort(key=lambda entry: entry[0].slot)
        sampling = self._fill_batch(planned)
        status = self._llama_cpp.llama_decode(self._context.ctx, self._batch)
        if status != 0:
            raise TransientError("llama_decode failed", code="engine_decode_failed", status=status)
        self._sample(sampling)

    def _fill_batch(self, planned: list[tuple[_Sequence, list[int]]]) -> list[_Sequence]:
        """Write ``planned`` into the batch; return the sequences whose last token gets logits."""
        sampling = []
        end = 0
        logits = self._batch_logits
        for sequence, tokens in planned:
            start, end = end, end + len(tokens)
            self._batch_tokens[start:end] = tokens
            self._batch_positions[start:end] = np.arange(
                sequence.n_past, sequence.n_past + len(tokens)
            )
            for row in self._batch_seq_ids[start:end]:
                row[0] = sequence.slot
            logits[start:end] = 0
            sequence.n_past += len(tokens)
            if sequence.n_past >= len(sequence.prompt):  # decoding, or the prompt's last chunk
                logits[end - 1] = 1
                sequence.logits_index = end - 1
                sequence.output_row = len(sampling)
                sampling.append(sequence)
        self._batch.n_tokens = end
        return sampling

    def _sample(self, sampling: list[_Sequence]) -> None:
        llama_cpp, ctx = self._llama_cpp, self._context.ctx
        likeliest: list[int] = []
        if any(sequence.sampler is None for sequence in sampling):
            # Greedy sequences all at once: one argmax over the batch's logits rows (one per
            # output token, in batch order), picking what llama.cpp's greedy sampler picks (the
            # first of equal maxima) without its copy of the whole vocabulary per sequence.
            likeliest = self._logits(len(sampling)).argmax(axis=1).tolist()
        for sequence in sampling:
            if sequence.sampler is None:
                token = likeliest[sequence.output_row]
            else:
                token = llama_cpp.llama_sampler_sample(
                    sequence.sampler.sampler, ctx, sequence.logits_index
                )
            self._accept(sequence, token)

    def _logits(self, rows: int) -> np.ndarray:
        """The logits rows of the last decode, as a numpy view of llama.cpp's buffer.

        Building the view took ~36 µs a step in the decode loop (ctypes array types, then the
        buffer protocol), checking the buffer's address ~22 µs, so the view is kept until
        llama.cpp moves the buffer or the step has another number of rows.
        """
        pointer = self._llama_cpp.llama_get_logits(self._context.ctx)
        key = (ctypes.cast(pointer, ctypes.c_void_p).value, rows)
        if self._logits_view is None or self._logits_view[0] != key:
            view = np.ctypeslib.as_array(pointer, shape=(rows, self._n_vocab))
            self._logits_view = (key, view)
        return self._logits_view[1]

    def _accept(self, sequence: _Sequence, token: int) -> None:
        if self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._finish(sequence, "stop")
            return
        sequence.last_token = token
        sequence.completion += 1
        sequence.unreleased_tokens += 1
        sequence.text += sequence.decoder.decode(self._piece(token))
        stop_at = _find_stop(sequence.text, sequence.params.stop, sequence.released)
        if stop_at is not None:
            sequence.text = sequence.text[:stop_at]
            self._finish(sequence, "stop", flush=False)
        elif sequence.completion >= sequence.params.max_tokens:
            self._finish(sequence, "length")
        else:
            held = _held_back(sequence.text, sequence.params.stop)
            self._release(sequence, len(sequence.text) - held)

    def _release(self, sequence: _Sequence, end: int) -> None:
        if end > sequence.released or (sequence.finish_reason and sequence.unreleased_tokens):
            piece = TokenPiece(sequence.text[sequence.released : end], sequence.unreleased_tokens)
            sequence.out.put(piece)
            sequence.released = max(end, sequence.released)
            sequence.unreleased_tokens = 0

    def _finish(
        self,
        sequence: _Sequence,
        reason: str | None,
        done: _Done | None = None,
        *,
        flush: bool = True,
    ) -> None:
        sequence.finish_reason = reason
        if flush:
            sequence.text += sequence.decoder.decode(b"", final=True)
        self._release(sequence, len(sequence.text))
        memory = self._llama_cpp.llama_get_memory(self._context.ctx)
        self._llama_cpp.llama_memory_seq_rm(memory, sequence.slot, -1, -1)
        with self._wake:
            self._active.remove(sequence)
            heapq.heappush(self._free_slots, sequence.slot)
        if sequence.sampler is not None:
            sequence.sampler.close()
        sequence.out.put(done or _Done())

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            size = self._llama_cpp.llama_token_to_piece(
                self._vocab, token, self._piece_buffer, len(self._piece_buffer), 0, False
            )
            piece = self._pieces[token] = self._piece_buffer.raw[:size]
        return piece


def _find_stop(text: str, stops: tuple[str, ...], released: int) -> int | None:
    found = [
        index for stop in stops if (index := text.find(stop, max(0, released - len(stop) + 1))) >= 0
    ]
    return min(found) if found else None


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Return how many trailing characters of ``text`` could begin a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest
