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
    quiet_until: float = 0.0  # a queue-overflow notice was sent: no other notice until then


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
            return self._notice(track, now)
        hits = track.hits
        while hits and now - hits[0] > self._window:
            hits.popleft()
        hits.append(now)
        if len(hits) > self._max:
            track.muted_until = now + self._mute
            track.noticed = True
            hits.clear()
            return self._notice(track, now)
        track.noticed = False
        return "ok"

    def overflow(self, user_id: int) -> bool:
        """The per-chat queue cap dropped an update of this user. True when they should be
        told: once per mute period (at least one window, so a zero mute cannot mean a
        notice per drop), and ``check`` then drops its own notice of the same episode. The
        updates already queued still go through ``check``."""
        now = self._clock()
        self._sweep(now)
        track = self._tracks.get(user_id)
        if track is None:
            track = self._tracks[user_id] = _Track()
        if now < track.quiet_until:
            return False
        track.quiet_until = now + max(self._mute, self._window)
        return True

    def _notice(self, track: _Track, now: float) -> str:
        """One notice per episode, whether the flood check or the queue cap saw it first."""
        if now < track.quiet_until:
            return "drop"
        track.quiet_until = now + self._mute
        return "notice"

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._window
        idle = [
            uid
            for uid, track in self._tracks.items()
            if now >= max(track.muted_until, track.quiet_until)
            and (not track.hits or now - track.hits[-1] > self._window)
        ]
        for uid in idle:
            del self._tracks[uid]

    def __len__(self) -> int:
        return len(self._tracks)


class Cooldown:
    """At most one event per key every ``seconds`` (e.g. one reply per chat); memory is
    bounded by the keys seen in the last ``seconds``."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._last: dict[int, float] = {}
        self._next_sweep = 0.0

    def ready(self, key: int) -> bool:
        """True (and the key's turn is used) when the last event was ``seconds`` ago."""
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self._seconds
            for old in [k for k, at in self._last.items() if now - at >= self._seconds]:
                del self._last[old]
        last = self._last.get(key)
        if last is not None and now - last < self._seconds:
            return False
        self._last[key] = now
        return True

    def __len__(self) -> int:
        return len(self._last)
