"""Rendezvous journal facts (seed 001 §4.1): ``Descriptor``, ``ChannelEstablished``,
``DescriptorRevoked`` as DAG-CBOR data-model dicts carrying a ``kind`` field.

A fact is plain data (maps, byte strings, ints, text) so the journal stores its canonical
DAG-CBOR encoding and keys it by CID; two authorities that record the same event build the
same dict and therefore the same CID, and journal merge deduplicates them.  This module only
checks *shape* (kinds, field types, sizes); cryptographic validation of descriptors and
revocations lives in :mod:`aura_core.rendezvous.descriptor`.  Byte layout: docs/wire.md,
"Rendezvous facts".
"""

from __future__ import annotations

from typing import Any, Final

from .. import dagcbor
from ..errors import DescriptorError
from ..ids import AuthorityId, ContextId

__all__ = [
    "FACT_VERSION",
    "KIND_DESCRIPTOR",
    "KIND_CHANNEL_ESTABLISHED",
    "KIND_DESCRIPTOR_REVOKED",
    "RendezvousFact",
]

FACT_VERSION: Final = 1
KIND_DESCRIPTOR: Final = "rendezvous.descriptor"
KIND_CHANNEL_ESTABLISHED: Final = "rendezvous.channel_established"
KIND_DESCRIPTOR_REVOKED: Final = "rendezvous.descriptor_revoked"

_MAX_U64: Final = (1 << 64) - 1

# field -> (type, exact length or None) for each kind; "sig"-less bodies are what gets signed.
_SHAPES: Final[dict[str, dict[str, tuple[type, int | None]]]] = {
    KIND_DESCRIPTOR: {
        "kind": (str, None), "v": (int, None), "ctx": (bytes, 16), "auth": (bytes, 16),
        "pk": (bytes, 32), "epoch": (int, None), "valid_from": (int, None),
        "valid_until": (int, None), "nonce": (bytes, 32), "aead_nonce": (bytes, 24),
        "ct": (bytes, None), "sig": (bytes, 64),
    },
    KIND_CHANNEL_ESTABLISHED: {
        "kind": (str, None), "v": (int, None), "ctx": (bytes, 16), "initiator": (bytes, 16),
        "responder": (bytes, 16), "channel_id": (bytes, 32), "epoch": (int, None),
    },
    KIND_DESCRIPTOR_REVOKED: {
        "kind": (str, None), "v": (int, None), "ctx": (bytes, 16), "auth": (bytes, 16),
        "pk": (bytes, 32), "nonce": (bytes, 32), "sig": (bytes, 64),
    },
}


_PROBE: Final = bytes(range(0xA0, 0xC0))  # a stand-in channel id (any 32 bytes do)
_ESTABLISHED_PREFIX: dict[tuple[ContextId, AuthorityId, AuthorityId, int], bytes] = {}


class RendezvousFact:
    """Constructors and the shape check for the three rendezvous fact kinds."""

    KINDS: Final = tuple(_SHAPES)

    @staticmethod
    def channel_established(ctx: ContextId, initiator: AuthorityId, responder: AuthorityId,
                            channel_id: bytes, epoch: int) -> dict[str, Any]:
        if (type(ctx) is not ContextId or type(initiator) is not AuthorityId
                or type(responder) is not AuthorityId or type(channel_id) is not bytes
                or len(channel_id) != 32 or type(epoch) is not int or not 0 <= epoch <= _MAX_U64):
            raise DescriptorError(f"{KIND_CHANNEL_ESTABLISHED}: bad field")
        return {"kind": KIND_CHANNEL_ESTABLISHED, "v": FACT_VERSION, "ctx": bytes(ctx),
                "initiator": bytes(initiator), "responder": bytes(responder),
                "channel_id": channel_id, "epoch": epoch}

    @staticmethod
    def channel_established_bytes(ctx: ContextId, initiator: AuthorityId, responder: AuthorityId,
                                  channel_id: bytes, epoch: int) -> bytes:
        """``dagcbor.encode(channel_established(...))``, from a cached prefix.

        The canonical key order puts ``channel_id`` last, so the encoding is a prefix fixed by
        (ctx, initiator, responder, epoch) followed by the 32 id bytes; each side of every
        establishment appends one of these facts.
        """
        if type(channel_id) is not bytes or len(channel_id) != 32 or type(epoch) is not int:
            raise DescriptorError(f"{KIND_CHANNEL_ESTABLISHED}: bad field")
        key = (ctx, initiator, responder, epoch)
        prefix = _ESTABLISHED_PREFIX.get(key)
        if prefix is None:
            enc = dagcbor.encode(RendezvousFact.channel_established(ctx, initiator, responder,
                                                                    _PROBE, epoch))
            if not enc.endswith(_PROBE):  # pragma: no cover - the key order is fixed by DAG-CBOR
                return dagcbor.encode(RendezvousFact.channel_established(
                    ctx, initiator, responder, channel_id, epoch))
            if len(_ESTABLISHED_PREFIX) >= 1024:
                _ESTABLISHED_PREFIX.clear()
            prefix = _ESTABLISHED_PREFIX[key] = enc[:-32]
        return prefix + channel_id

    @staticmethod
    def kind_of(fact: object) -> str:
        if not isinstance(fact, dict) or fact.get("kind") not in _SHAPES:
            raise DescriptorError("not a rendezvous fact")
        return fact["kind"]  # type: ignore[no-any-return]

    @staticmethod
    def check(fact: object) -> dict[str, Any]:
        """Return ``fact`` if it has exactly the shape of its kind; DescriptorError otherwise."""
        kind = RendezvousFact.kind_of(fact)
        assert isinstance(fact, dict)
        shape = _SHAPES[kind]
        value: Any
        if set(fact) != set(shape):
            raise DescriptorError(f"{kind}: unexpected or missing fields")
        for name, (typ, size) in shape.items():
            value = fact[name]
            if type(value) is not typ:
                raise DescriptorError(f"{kind}: field {name} has the wrong type")
            if size is not None and len(fact[name]) != size:
                raise DescriptorError(f"{kind}: field {name} must be {size} bytes")
            if typ is int and not 0 <= fact[name] <= _MAX_U64:
                raise DescriptorError(f"{kind}: field {name} out of range")
        if fact["v"] != FACT_VERSION:
            raise DescriptorError(f"{kind}: unsupported version {fact['v']}")
        return fact

    @staticmethod
    def unsigned_body(fact: dict[str, Any]) -> dict[str, Any]:
        """The fact without its ``sig`` field: what the signature covers."""
        return {k: v for k, v in fact.items() if k != "sig"}
