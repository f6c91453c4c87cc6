"""What the core reports about itself while it works, without knowing who collects it.

`lotse run` passes a Prometheus implementation (`bot.metrics`); tests and the demo use
`NO_METRICS`. Every argument is a channel name, an outbox channel ("staff" for the staff
room), an exception type name or a duration: never content, a reference, a pseudonym or
a platform id.
"""

from __future__ import annotations

from typing import Protocol


class Metrics(Protocol):
    def received(self, channel: str) -> None:
        """One message came in on `channel` ("staff" for the staff room)."""
        ...

    def stepped(self, seconds: float) -> None:
        """One message was handled and committed in `seconds`."""
        ...

    def sent(self, channel: str, waited: float | None) -> None:
        """One message went out on `channel`; `waited` seconds since it was written, when known."""
        ...

    def retried(self, channel: str) -> None:
        """A send on `channel` failed for now (or the platform asked to wait) and is tried again."""
        ...

    def failed(self, kind: str) -> None:
        """Something failed with an exception of this type (its name only)."""
        ...


class NoMetrics:
    """Reports nowhere."""

    def received(self, channel: str) -> None:
        pass

    def stepped(self, seconds: float) -> None:
        pass

    def sent(self, channel: str, waited: float | None) -> None:
        pass

    def retried(self, channel: str) -> None:
        pass

    def failed(self, kind: str) -> None:
        pass


NO_METRICS: Metrics = NoMetrics()
