"""Every use of a private part of python-engineio, python-socketio or aiohttp: one place per library
(`engineio/`, `socketio.py`, `aiohttp.py`).

Each thing a shim relies on is pinned by `tests/test_shims.py`, so that an upgrade that moves it fails a
test instead of a user. Nothing outside this package touches a library's private attributes.
"""
