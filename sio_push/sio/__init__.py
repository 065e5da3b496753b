"""The Socket.IO layer: the server, its connect path, its event handlers, and presence sending."""
