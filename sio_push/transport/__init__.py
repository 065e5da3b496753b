"""Socket.IO's websockets served without aiohttp's per-connection machinery: codec, handshake, protocols."""
