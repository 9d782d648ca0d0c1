"""Actors across processes: a scheduler-side actor can live in another process.

``RemoteActor`` stands in for an actor hosted elsewhere: what is told to it is encoded
(msgspec, one frame per message, in order) and sent over a transport; what the remote
actor tells back arrives as frames and is handed to a local actor. ``remote_host`` runs
the other side.

The default deployment keeps every scheduler-side actor in one process; this module
shows they need nothing but messages to work apart (``corral dag-resolver`` and
``corral scheduler --dag-resolver ADDR``). Messages keep their order on the one
connection, which the DAG resolver's protocol relies on (a Track before the parent's
Finished). A hosted actor that restarts starts empty: this is a demonstration of the
actor boundary, not a replicated deployment.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from actors.errors import WorkflowRejected
from actors.runtime import Actor
from actors.scheduler.messages import CheckWorkflow, Doom, Finished, Release, Track, WorkflowChecked
from transport import ClientTransport, connect
from transport.errors import BadFrame

log = logging.getLogger("corral.remote")

# Messages that may cross a process boundary, by name.
MESSAGES: dict[str, type[Any]] = {
    cls.__name__: cls for cls in (Track, Finished, Release, Doom, CheckWorkflow, WorkflowChecked)
}


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    kind: str
    body: msgspec.Raw


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, WorkflowRejected):
        return ["WorkflowRejected", obj.code, obj.message]
    raise NotImplementedError(f"cannot send {type(obj).__name__} to another process")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_envelopes = msgspec.msgpack.Decoder(Envelope)
_decoders = {name: msgspec.msgpack.Decoder(cls) for name, cls in MESSAGES.items()}


def encode(message: Any) -> bytes:
    kind = type(message).__name__
    if kind not in MESSAGES:
        raise TypeError(f"{kind} is not a message that crosses processes")
    return _encoder.encode(Envelope(kind, msgspec.Raw(_encoder.encode(message))))


def decode(frame: bytes) -> Any:
    try:
        envelope = _envelopes.decode(frame)
        message = _decoders[envelope.kind].decode(envelope.body)
    except (msgspec.DecodeError, KeyError, UnicodeDecodeError) as exc:
        raise BadFrame("bad_frame", f"not an actor message: {exc!r}") from None
    if isinstance(message, WorkflowChecked) and isinstance(message.rejection, list):
        _, code, text = message.rejection
        message = msgspec.structs.replace(message, rejection=WorkflowRejected(code, text))
    return message


class RemoteActor(Actor):
    """The local stand-in: forwards what it is told; hands what comes back to ``reply_to``."""

    def __init__(self, name: str, address: str) -> None:
        super().__init__(name)
        self.address = address
        self.reply_to: Actor
        self._transport: ClientTransport | None = None

    async def on_start(self) -> None:
        if self._transport is None:
            self._transport = connect(self.address)
            self.spawn(self._receive(), "receive")

    async def handle(self, message: Any) -> None:
        assert self._transport is not None
        self._transport.send(encode(message))

    async def _receive(self) -> None:
        assert self._transport is not None
        while True:
            for frame in await self._transport.recv_batch():
                try:
                    self.reply_to.tell(decode(frame))
                except BadFrame as exc:
                    log.error("dropped a frame from %s: %s", self.address, exc)

    async def on_stop(self) -> None:
        if self._transport is not None:
            await self._transport.close()
