"""Per-user flood control: too many updates in a window → one notice, then ignored a while.

Counters live in memory (they protect this process; nothing to persist) and are bounded:
users idle for longer than the window are dropped on the next sweep, so memory follows the
number of users active in the last few seconds, not the number of users.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Track:
    hits: deque[float] = field(default_factory=deque)
    muted_until: float = 0.0
    noticed: bool = False


class FloodControl:
    def __init__(
        self,
        *,
        max_updates: int,
        window_seconds: float,
        mute_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_updates
        self._window = window_seconds
        self._mute = mute_seconds
        self._clock = clock
        self._tracks: dict[int, _Track] = {}
        self._next_sweep = 0.0

    def check(self, user_id: int) -> str:
        """``ok``, ``notice`` (first update over the limit: tell the user) or ``drop``."""
        now = self._clock()
        self._sweep(now)
        track = self._tracks.get(user_id)
        if track is None:
            track = self._tracks[user_id] = _Track()
        if now < track.muted_until:
            if track.noticed:
                return "drop"
            track.noticed = True
            return "notice"
        hits = track.hits
        while hits and now - hits[0] > self._window:
            hits.popleft()
        hits.append(now)
        if len(hits) > self._max:
            track.muted_until = now + self._mute
            track.noticed = True
            hits.clear()
            return "notice"
        track.noticed = False
        return "ok"

    def overflow(self, user_id: int) -> bool:
        """The per-chat queue cap dropped an update of this user: they are muted as for a
        flood (for at least one window, so a zero mute cannot mean a notice per drop).
        True when they should be told, once per mute."""
        now = self._clock()
        self._sweep(now)
        track = self._tracks.get(user_id)
        if track is None:
            track = self._tracks[user_id] = _Track()
        if now < track.muted_until and track.noticed:
            return False
        track.muted_until = now + max(self._mute, self._window)
        track.noticed = True
        track.hits.clear()
        return True

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._window
        idle = [
            uid
            for uid, track in self._tracks.items()
            if now >= track.muted_until and (not track.hits or now - track.hits[-1] > self._window)
        ]
        for uid in idle:
            del self._tracks[uid]

    def __len__(self) -> int:
        return len(self._tracks)
