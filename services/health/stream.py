"""Fan-out of provider state changes to `WatchProviders` subscribers.

A subscriber first gets the full snapshot, then each batch of changes. One that falls too far behind
does not slow the others: its backlog is dropped and it gets a fresh snapshot instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

from services.health.state import ProviderStatus


@dataclass(frozen=True, slots=True)
class Event:
    snapshot: bool  # True: `providers` is the full state; False: the changed entries only
    providers: Sequence[ProviderStatus]


_RESYNC = Event(True, ())
_CLOSED = Event(False, ())


class Broadcaster:
    def __init__(self, snapshot: Callable[[], list[ProviderStatus]], backlog: int = 256) -> None:
        self._snapshot = snapshot
        self._backlog = backlog
        self._subscribers: set[asyncio.Queue[Event]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, changed: Sequence[ProviderStatus]) -> None:
        if not changed:
            return
        event = Event(False, tuple(changed))
        for queue in self._subscribers:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(_RESYNC)

    def close(self) -> None:
        """End every subscription (on shutdown, so that open streams do not hold up the drain)."""
        for queue in self._subscribers:
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(_CLOSED)

    async def watch(self) -> AsyncGenerator[Event, None]:
        """The snapshot, then changes, until the caller stops iterating."""
        queue: asyncio.Queue[Event] = asyncio.Queue(self._backlog)
        # Subscribing and taking the snapshot without an await in between: no change falls in the gap.
        self._subscribers.add(queue)
        try:
            yield Event(True, self._snapshot())
            while True:
                event = await queue.get()
                if event is _CLOSED:
                    return
                yield Event(True, self._snapshot()) if event is _RESYNC else event
        finally:
            self._subscribers.discard(queue)
