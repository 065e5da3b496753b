"""The exceptions sio-push raises; each is translated to a client-facing answer only at the edges."""

from __future__ import annotations


class PushError(Exception):
    """Base class of every sio-push error."""


class ConfigError(PushError):
    """The configuration has problems; all of them are listed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


class AuthError(PushError):
    """A token was refused. `code` is what the client sees in `connect_error` data."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class BackendUnavailable(PushError):
    """A shared backend (Redis) cannot be reached now."""


class BrokerUnavailable(BackendUnavailable):
    """A push could not be handed to the broker; the backend may retry."""
