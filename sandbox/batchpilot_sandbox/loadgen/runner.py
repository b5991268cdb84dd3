"""The load generator's engine: Poisson sends over one aiohttp session, counted per window."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from batchpilot_sandbox.loadgen.stats import (
    Phase,
    WindowReport,
    poisson_arrivals,
    schedule_duration,
    summarize,
    validate_phases,
)

log = logging.getLogger(__name__)
Targets = Callable[[], Sequence[str]] | Sequence[str]
OnRequest = Callable[[float, float | None], None]
"""Called once per request as it ends: (scheduled send offset s, latency s; None when it failed)."""


@dataclass(frozen=True)
class InferInput:
    """The one input tensor each request carries."""

    name: str = "INPUT"
    shape: tuple[int, ...] = (1, 4)
    datatype: str = "FP32"

    def body(self, rng: random.Random) -> bytes:
        """The JSON request body, built once per run (every request sends the same bytes)."""
        n = math.prod(self.shape)
        dt = self.datatype.upper()
        data: list[Any]
        if dt.startswith("FP") or dt == "BF16":
            data = [round(rng.random(), 6) for _ in range(n)]
        elif dt.startswith(("INT", "UINT")):
            data = [rng.randrange(0, 100) for _ in range(n)]
        elif dt == "BOOL":
            data = [rng.random() < 0.5 for _ in range(n)]
        else:
            data = ["x"] * n
        inputs = [{"name": self.name, "shape": list(self.shape), "datatype": dt, "data": data}]
        return json.dumps({"inputs": inputs}).encode()


@dataclass
class LoadReport:
    """The whole run (`total`) and each reporting window."""

    total: WindowReport
    intervals: list[WindowReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total.to_dict(), "intervals": [w.to_dict() for w in self.intervals]}


def error_kind(exc: BaseException) -> str:
    """Error bucket of a failed request: timeout, connection or other."""
    if isinstance(exc, TimeoutError):  # asyncio and aiohttp timeouts are TimeoutError too
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return "connection"
    return "other"


class _Window:
    """Counters of the open reporting window."""

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s
        self.offered = 0
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.max_lag_s = 0.0


class _Run:
    """State of one run_load call; every request and counter lives here."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        model: str,
        body: bytes,
        max_in_flight: int,
        interval_s: float,
        on_interval: Callable[[WindowReport], None] | None,
        on_request: OnRequest | None = None,
    ) -> None:
        self.session, self.body, self.max_in_flight = session, body, max_in_flight
        self.on_request = on_request
        self.path = f"/v2/models/{quote(model, safe='')}/infer"
        self.interval_s, self.on_interval = interval_s, on_interval
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.targets: list[str] = []
        self.rr = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.win = _Window(0.0)
        self.intervals: list[WindowReport] = []
        self.offered = 0
        self.latencies = array("d")
        self.errors: Counter[str] = Counter()
        self.max_lag_s = 0.0

    def now(self) -> float:
        return self.loop.time() - self.t0

    def error(self, kind: str, offset: float) -> None:
        self.win.errors[kind] += 1
        self.errors[kind] += 1
        self.ended(offset, None)

    def ended(self, offset: float, latency: float | None) -> None:
        """Hand one request's outcome to on_request (a failing callback never stops the run)."""
        if self.on_request is not None:
            try:
                self.on_request(offset, latency)
            except Exception:
                log.exception("on_request callback failed; the run goes on")

    def fire(self, offset: float, lag_s: float) -> None:
        """Send the request due at offset now, or count why it could not be sent."""
        self.offered += 1
        self.win.offered += 1
        self.win.max_lag_s = max(self.win.max_lag_s, lag_s)
        self.max_lag_s = max(self.max_lag_s, lag_s)
        if len(self.tasks) >= self.max_in_flight:
            self.error("dropped", offset)
        elif not self.targets:
            self.error("no_target", offset)
        else:
            target = self.targets[self.rr % len(self.targets)]
            self.rr += 1
            task = self.loop.create_task(self._one(target, offset))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _one(self, target: str, offset: float) -> None:
        start = self.loop.time()
        try:
            async with self.session.post(
                f"http://{target}{self.path}", data=self.body, headers={"Content-Type": "application/json"}
            ) as resp:
                await resp.read()
                status = resp.status
        except asyncio.CancelledError:
            self.error("cancelled", offset)
            raise
        except Exception as e:  # noqa: BLE001 - every failure is counted by kind, none may escape
            self.error(error_kind(e), offset)
            return
        if status == 200:
            latency = self.loop.time() - start
            self.win.latencies.append(latency)
            self.latencies.append(latency)
            self.ended(offset, latency)
        else:
            self.error(f"http_{status}", offset)

    def close_window(self, end_s: float) -> None:
        w = self.win
        self.win = _Window(end_s)
        report = summarize(
            w.start_s, end_s - w.start_s, w.offered, w.latencies, w.errors, len(self.tasks), w.max_lag_s
        )
        self.intervals.append(report)
        if self.on_interval is not None:
            try:
                self.on_interval(report)
            except Exception:
                log.exception("on_interval callback failed; the run goes on")

    async def report_every_interval(self, end_s: float) -> None:
        k = 1
        while k * self.interval_s < end_s - 1e-6:
            await asyncio.sleep(max(0.0, k * self.interval_s - self.now()))
            self.close_window(k * self.interval_s)
            k += 1

    async def refresh_targets(
        self, targets: Callable[[], Sequence[str]], every_s: float, end_s: float
    ) -> None:
        """Re-read the target list every every_s (in a thread: discovery may block); keep it on failure."""
        while self.now() + every_s < end_s:
            await asyncio.sleep(every_s)
            try:
                self.targets = list(await asyncio.to_thread(targets))
            except Exception as e:  # noqa: BLE001 - a failed discovery keeps the last good list
                log.warning("target discovery failed, keeping %d targets: %s", len(self.targets), e)

    async def send(self, phases: Sequence[Phase], rng: random.Random, end_s: float) -> None:
        """Fire requests at the Poisson arrival times, then wait out the rest of the schedule."""
        burst = 0
        for offset in poisson_arrivals(phases, rng):
            delay = offset - self.now()
            if delay > 0:
                burst = 0
                await asyncio.sleep(delay)
            else:
                burst += 1  # behind schedule: catch up, but let responses in now and then
                if burst % 64 == 0:
                    await asyncio.sleep(0)
            self.fire(offset, max(0.0, self.now() - offset))
        await asyncio.sleep(max(0.0, end_s - self.now()))


async def run_load(
    targets: Targets,
    model: str,
    phases: Sequence[Phase],
    *,
    interval_s: float = 5.0,
    on_interval: Callable[[WindowReport], None] | None = None,
    stop: asyncio.Event | None = None,
    seed: int = 0,
    timeout_s: float = 10.0,
    max_in_flight: int = 1000,
    infer_input: InferInput = InferInput(),
    refresh_s: float = 1.0,
    on_request: OnRequest | None = None,
) -> LoadReport:
    """Offer Poisson load following phases [(duration_s, rate_per_s), ...] and report what came back.

    targets: "ip:port" strings, or a callable giving them (refreshed every refresh_s, in a thread).
    Ends when the schedule ends or `stop` is set; open requests then get up to timeout_s + 1 (1 s after
    `stop`) before they are cancelled. The last window and the total end when sending ends.
    on_request(offset, latency) sees every request's outcome (request-level SLO attainment needs them all).
    """
    validate_phases(phases)
    if interval_s <= 0 or timeout_s <= 0 or max_in_flight < 1 or refresh_s <= 0:
        raise ValueError("interval_s, timeout_s and refresh_s must be > 0 and max_in_flight >= 1")
    stop = stop or asyncio.Event()
    rng = random.Random(seed)
    end_s = schedule_duration(phases)
    connector = aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        body = infer_input.body(random.Random(seed + 1))  # own RNG: arrival times do not depend on the input
        run = _Run(session, model, body, max_in_flight, interval_s, on_interval, on_request)
        helpers: list[asyncio.Task[None]] = []
        if callable(targets):
            try:  # the first list before the first request
                run.targets = list(await asyncio.wait_for(asyncio.to_thread(targets), timeout_s))
            except Exception as e:  # noqa: BLE001 - requests count as no_target until discovery works
                log.warning("target discovery failed: %s", e)
        else:
            run.targets = list(targets)
        run.t0 = run.loop.time()
        if callable(targets):
            helpers.append(asyncio.create_task(run.refresh_targets(targets, refresh_s, end_s)))
        helpers.append(asyncio.create_task(run.report_every_interval(end_s)))
        sender = asyncio.create_task(run.send(phases, rng, end_s))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({sender, stopper}, timeout=end_s + 5.0, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sender, stopper, *helpers):
                t.cancel()
            await asyncio.gather(sender, stopper, *helpers, return_exceptions=True)
        sent_end = min(run.now(), end_s)
        in_flight_at_end = len(run.tasks)
        if run.tasks:
            await asyncio.wait(set(run.tasks), timeout=1.0 if stop.is_set() else timeout_s + 1.0)
        leftover = list(run.tasks)
        for t in leftover:
            t.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        w = run.win
        if w.offered or w.errors or w.latencies or sent_end - w.start_s > 1e-3:
            run.close_window(max(sent_end, w.start_s))
        total = summarize(
            0.0, sent_end, run.offered, run.latencies, run.errors, in_flight_at_end, run.max_lag_s
        )
    return LoadReport(total=total, intervals=run.intervals)
