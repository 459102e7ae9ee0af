from bot.flood import FloodControl


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_limit_notice_once_then_drop_then_recover() -> None:
    clock = Clock()
    flood = FloodControl(max_updates=5, window_seconds=10, mute_seconds=30, clock=clock)
    assert [flood.check(1) for _ in range(5)] == ["ok"] * 5
    assert flood.check(1) == "notice"
    assert [flood.check(1) for _ in range(10)] == ["drop"] * 10
    assert flood.check(2) == "ok"  # nobody else slows down
    clock.now = 31
    assert flood.check(1) == "ok"


def test_memory_is_bounded_by_active_users() -> None:
    clock = Clock()
    flood = FloodControl(max_updates=5, window_seconds=10, mute_seconds=30, clock=clock)
    for uid in range(1000):
        flood.check(uid)
    clock.now = 100
    flood.check(5000)
    assert len(flood) == 1


def test_steady_pace_is_never_limited() -> None:
    clock = Clock()
    flood = FloodControl(max_updates=5, window_seconds=10, mute_seconds=30, clock=clock)
    for _ in range(100):
        clock.now += 2.5
        assert flood.check(1) == "ok"


def test_a_full_chat_queue_mutes_with_one_notice() -> None:
    clock = Clock()
    flood = FloodControl(max_updates=5, window_seconds=10, mute_seconds=30, clock=clock)
    assert [flood.overflow(1) for _ in range(4)] == [True, False, False, False]
    assert flood.check(1) == "drop"  # the updates still queued are dropped by the gate
    assert flood.check(2) == "ok"
    clock.now = 31
    assert flood.check(1) == "ok"
    assert flood.overflow(1) is True  # a new episode: told again


def test_a_zero_mute_still_sends_one_notice_per_window() -> None:
    clock = Clock()
    flood = FloodControl(max_updates=5, window_seconds=10, mute_seconds=0, clock=clock)
    assert [flood.overflow(1) for _ in range(3)] == [True, False, False]
    clock.now = 11
    assert flood.overflow(1) is True
