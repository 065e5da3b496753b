"""sio-push: a realtime push server for Linen, on python-socketio and aiohttp."""

__version__ = "0.1.0"
