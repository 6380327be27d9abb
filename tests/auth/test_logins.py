"""Failed logins counted per name and address, with an explicit clock."""

from __future__ import annotations

from jupyter_datastore.auth.logins import LoginAttempts


def test_a_pair_past_the_limit_waits_out_the_window_then_may_try_again() -> None:
    now = [1000.0]
    attempts = LoginAttempts(max_failures=3, window=60.0, clock=lambda: now[0])
    for _ in range(3):
        assert attempts.retry_after("ivy", "10.0.0.1") == 0
        attempts.failed("ivy", "10.0.0.1")
        now[0] += 1
    assert attempts.retry_after("ivy", "10.0.0.1") == 57.0
    assert attempts.retry_after("ivy", "10.0.0.2") == 0  # another address
    assert attempts.retry_after("amy", "10.0.0.1") == 0  # another name
    now[0] += 57
    assert attempts.retry_after("ivy", "10.0.0.1") == 0


def test_a_success_forgets_the_failures() -> None:
    attempts = LoginAttempts(max_failures=2)
    attempts.failed("ivy", "a")
    attempts.succeeded("ivy", "a")
    attempts.failed("ivy", "a")
    assert attempts.retry_after("ivy", "a") == 0
