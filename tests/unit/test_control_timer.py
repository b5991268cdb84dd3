"""How kopf schedules the control loop: a tick that failed comes back one control interval later (kopf's default
back-off for a failed handler is 60 s, a minute with the service uncontrolled after any transient API error)."""

from __future__ import annotations

from typing import Any

import kopf

from batchpilot import handlers


def _control_timer() -> Any:
    timers = [h for h in kopf.get_default_registry()._spawning.get_all_handlers() if h.id == "control"]
    assert len(timers) == 1, timers
    return timers[0]


def test_a_failed_tick_is_retried_after_one_control_interval() -> None:
    timer = _control_timer()
    assert timer.interval == handlers.SETTINGS.control_interval_seconds
    assert timer.backoff == handlers.SETTINGS.control_interval_seconds
