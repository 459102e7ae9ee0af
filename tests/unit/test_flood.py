from bot.flood import Cooldown, FloodControl


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


def test_a_full_chat_queue_sends_one_notice_for_the_episode() -> None:
    clock = Clock()
    flood = FloodControl(max_updates=5, window_seconds=10, mute_seconds=30, clock=clock)
    assert [flood.overflow(1) for _ in range(4)] == [True, False, False, False]
    # The updates still queued go through the flood check; its notice is not sent again.
    assert [flood.check(1) for _ in range(5)] == ["ok"] * 5
    assert flood.check(1) == "drop"
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


def test_cooldown_once_per_key_per_period_and_bounded() -> None:
    clock = Clock()
    cooldown = Cooldown(30, clock=clock)
    assert [cooldown.ready(1) for _ in range(3)] == [True, False, False]
    assert cooldown.ready(2) is True
    clock.now = 29.9
    assert cooldown.ready(1) is False
    clock.now = 30
    assert cooldown.ready(1) is True
    for key in range(100, 1100):
        cooldown.ready(key)
    clock.now = 100
    cooldown.ready(5)
    assert len(cooldown) == 1


def test_a_flood_notice_also_covers_a_later_queue_overflow() -> None:
    clock = Clock()
    flood = FloodControl(max_updates=2, window_seconds=10, mute_seconds=30, clock=clock)
    assert [flood.check(1) for _ in range(3)] == ["ok", "ok", "notice"]
    assert flood.overflow(1) is False
    clock.now = 31
    assert flood.overflow(1) is True
