"""The base class of every wire message (``transport.protocol`` re-exports it as
``wire.Message``): a frozen, tagged msgspec Struct encoded as an array, its class name the
tag. Kept in a module of its own so the modules that define groups of messages
(``transport.schedules``) can subclass it without importing the protocol they join.
"""

from __future__ import annotations

import msgspec


class Message(msgspec.Struct, frozen=True, array_like=True, tag=True, omit_defaults=False):
    """Base of every wire message; the class name is the tag."""
