"""The hosting side of an actor in another process (see ``remote``): ``host_actor`` binds a
transport, delivers each decoded frame to the real actor, and sends the actor's outbound
messages back to the connected peer, encoded as ``remote`` encodes them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors.runtime import Actor, ActorSystem
from actors.scheduler.remote import decode, encode
from transport import ServerTransport, bind
from transport.errors import BadFrame

log = logging.getLogger("corral.remote")


class _PeerSender(Actor):
    """Inside the hosting process: the actor's outbound messages go back to its peer."""

    def __init__(self, server: ServerTransport) -> None:
        super().__init__("peer")
        self.server = server
        self.peer: bytes | None = None

    def tell(self, message: Any) -> None:  # no mailbox hop: encode and send at once
        if self.peer is None:
            log.error("no scheduler connected; dropping %s", type(message).__name__)
            return
        self.server.send(self.peer, encode(message))


async def host_actor(actor: Actor, address: str, ready: asyncio.Event | None = None) -> None:
    """Serve ``actor`` at ``address`` until cancelled: frames in, its replies out."""
    server = bind(address)
    sender = _PeerSender(server)
    actor.scheduler = sender  # type: ignore[attr-defined]
    system = ActorSystem()
    system.add(actor)
    await system.start()
    log.info("hosting actor %s on %s", actor.name, server.address)

    async def receive() -> None:
        while True:
            for peer, frame in await server.recv_batch():
                try:
                    message = decode(frame)
                except BadFrame as exc:
                    log.error("dropped a frame: %s", exc)
                    continue
                sender.peer = peer
                actor.tell(message)

    reader = asyncio.ensure_future(receive())
    supervised = asyncio.ensure_future(system.run())  # raises if the actor crashed
    if ready is not None:
        ready.set()
    try:
        done, _ = await asyncio.wait({reader, supervised}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        reader.cancel()
        supervised.cancel()
        await asyncio.gather(reader, supervised, return_exceptions=True)
        await system.stop()
        await server.close()
