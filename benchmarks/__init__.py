"""Benchmarks of sio-push side by side with a Node socket.io 4.8 peer; run with `python -m benchmarks`."""
