"""The only I/O layer of aura_core: thin asyncio drivers over the sans-I/O protocol objects.

Nothing outside this subpackage imports asyncio or socket, or reads the clock; drivers here feed
bytes and ``now`` in, and send what the protocol objects hand out.
"""
