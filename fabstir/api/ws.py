"""``/v1/ws``: a multi-turn chat session on one job, optionally end-to-end encrypted.

Frames are JSON. The node sends ``connected``; a renter that wants encryption sends ``hello``
with an ephemeral public key and gets the node's, signed by the host's chain key; from then on
every frame both ways is ``sealed`` (see ``fabstir.client.protocol``). ``chat`` starts a turn
(the first turn's messages must hash to the job's prompt; later turns add messages to the history,
which lives only in this session's memory), ``token`` frames follow and ``end_turn`` carries its
usage. ``cancel`` stops the turn before its next token. ``end`` (or closing the socket) ends the
session; the job's flow then stores, proves and settles the tokens of all turns.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from fabstir.api.answers import (
    Answer,
    check_budget,
    check_job,
    check_prompt,
    finish_answer,
    next_event,
    observe,
    start_answer,
    usage_of,
)
from fabstir.api.auth import Grant
from fabstir.api.errors import status_of
from fabstir.api.schemas import ChatCompletionRequest
from fabstir.api.services import ApiContext
from fabstir.api.streams import StreamFailed, Turn, TurnEnded
from fabstir.client.protocol import KeyPair, SessionCipher, session_key_message
from fabstir.domain import chat_prompt
from fabstir.errors import AccessDenied, FabstirError, JobRejected

log = logging.getLogger(__name__)

router = APIRouter()


class Session:
    """One renter's WebSocket session on one job."""

    def __init__(self, websocket: WebSocket, ctx: ApiContext, grant: Grant) -> None:
        self.websocket = websocket
        self.ctx = ctx
        self.grant = grant
        self.cipher: SessionCipher | None = None
        self.answer: Answer | None = None
        self.history: list[dict[str, str]] = []
        self.turn_running = False
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self._send_lock = anyio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            frame = self.cipher.seal(payload) if self.cipher is not None else payload
            await self.websocket.send_json(frame)

    async def send_error(self, error: FabstirError) -> None:
        await self.send(
            {
                "type": "error",
                "code": error.code,
                "status": status_of(error),
                "message": error.message,
            }
        )

    async def receive(self) -> dict[str, Any]:
        with anyio.fail_after(self.ctx.settings.ws_idle_timeout_s):
            frame = await self.websocket.receive_json()
        if not isinstance(frame, dict):
            raise JobRejected("frames must be JSON objects", code="invalid_frame")
        if self.cipher is not None:
            return self.cipher.open(frame)
        if frame.get("type") == "sealed":
            raise JobRejected("no session key: send hello first", code="invalid_frame")
        return frame

    def hello(self, frame: dict[str, Any]) -> tuple[dict[str, Any], SessionCipher]:
        if self.cipher is not None or self.answer is not None:
            raise JobRejected("hello must be the first frame", code="invalid_frame")
        renter_key = str(frame.get("public_key", ""))
        ours = KeyPair()
        cipher = ours.cipher(renter_key, self.grant.job_id, is_host=True)
        text = session_key_message(self.grant.job_id, renter_key, ours.public_hex)
        key = self.ctx.services.host_private_key
        signature = Account.sign_message(encode_defunct(text=text), key).signature
        reply = {
            "type": "hello",
            "public_key": ours.public_hex,
            "signature": "0x" + signature.hex(),
        }
        return reply, cipher

    async def chat(self, frame: dict[str, Any], tasks: anyio.abc.TaskGroup) -> None:
        if self.turn_running:
            raise JobRejected("a turn is in progress; cancel it or wait", code="turn_in_progress")
        try:
            body = ChatCompletionRequest.model_validate(
                {k: v for k, v in frame.items() if k != "type"}
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(part) for part in first["loc"])
            raise JobRejected(f"{param}: {first['msg']}", code="invalid_request") from None
        turns = [message.turn() for message in body.messages]
        self.turn_running = True
        tasks.start_soon(self._run_turn, body, turns)

    async def _run_turn(self, body: ChatCompletionRequest, turns: list[dict[str, str]]) -> None:
        try:
            job = await check_job(self.ctx, self.grant, body.model)
            params = body.sampling(job.max_tokens)
            if self.answer is None:
                check_budget(job, params)
                document = chat_prompt(turns)
                check_prompt(job, document, "messages")
                self.answer = await start_answer(
                    self.ctx,
                    job,
                    document,
                    params,
                    multi_turn=True,
                    allow_reuse=body.allow_cache_reuse,
                )
                self.history = list(turns)
                event = self.answer.first
            else:
                self.history.extend(turns)
                self.answer.stream.submit(Turn(params, tuple(self.history)))
                event = await next_event(self.answer, self.ctx.settings.first_token_timeout_s)
            await self._pump(event)
            self.turn_running = False
        except FabstirError as exc:
            self.turn_running = False
            await self.send_error(exc)
        except (WebSocketDisconnect, anyio.ClosedResourceError):
            pass  # the renter left; closing the session cancels the turn

    async def _pump(self, event: Any) -> None:
        assert self.answer is not None
        text = []
        while not isinstance(event, TurnEnded):
            if isinstance(event, StreamFailed):
                raise event.error
            if event.text:
                text.append(event.text)
                await self.send({"type": "token", "text": event.text, "tokens": event.tokens})
            event = await next_event(self.answer, self.ctx.settings.token_timeout_s)
        observe(self.ctx, self.answer, event)
        self.history.append({"role": "assistant", "content": "".join(text)})
        self.usage["prompt_tokens"] += event.result.prompt_tokens
        self.usage["completion_tokens"] += event.result.completion_tokens
        self.turn_running = False
        await self.send(
            {
                "type": "end_turn",
                "finish_reason": event.finish_reason,
                "usage": usage_of(event.result),
                "session_completion_tokens": self.usage["completion_tokens"],
            }
        )

    def close(self) -> None:
        if self.answer is not None:
            finish_answer(self.ctx, self.answer)


def bearer_of(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return websocket.query_params.get("token")


@router.websocket("/v1/ws")
async def ws_session(websocket: WebSocket) -> None:
    ctx: ApiContext = websocket.app.state.context
    await websocket.accept()
    token = bearer_of(websocket)
    try:
        if token is None:
            raise AccessDenied(
                "send Authorization: Bearer <token> or ?token=", code="missing_token"
            )
        grant = ctx.access.check(token)
    except FabstirError as exc:
        await websocket.send_json({"type": "error", "code": exc.code, "message": exc.message})
        await websocket.close(code=1008)
        return
    session = Session(websocket, ctx, grant)
    await session.send(
        {"type": "connected", "job_id": grant.job_id, "host": ctx.services.chain.address}
    )
    try:
        async with anyio.create_task_group() as tasks:
            try:
                await _serve(session, tasks)
            except WebSocketDisconnect:
                log.info("renter left the session", extra={"job_id": grant.job_id})
            tasks.cancel_scope.cancel()
    finally:
        session.close()


async def _serve(session: Session, tasks: anyio.abc.TaskGroup) -> None:
    while True:
        try:
            frame = await session.receive()
            kind = frame.get("type")
            if kind == "hello":
                reply, cipher = session.hello(frame)
                await session.send(reply)
                session.cipher = cipher
            elif kind == "chat":
                await session.chat(frame, tasks)
            elif kind == "cancel":
                if session.answer is not None:
                    session.answer.stream.cancel()
            elif kind == "end":
                await session.send({"type": "closed", **session.usage})
                await session.websocket.close()
                return
            else:
                raise JobRejected(f"unknown frame type {kind!r}", code="invalid_frame")
        except AccessDenied as exc:  # replayed, reordered or forged frames end the session
            await session.send_error(exc)
            await session.websocket.close(code=1008)
            return
        except TimeoutError:
            await session.websocket.close(code=1001, reason="idle")
            return
        except (FabstirError, ValueError) as exc:
            error = (
                exc
                if isinstance(exc, FabstirError)
                else JobRejected("frames must be JSON objects", code="invalid_frame")
            )
            await session.send_error(error)
