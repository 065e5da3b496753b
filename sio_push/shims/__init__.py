"""The private parts of libraries that sio-push relies on, one module per library (see tests/test_shims.py)."""
