"""Watch a fleet's InferenceServices and children, and time when each one becomes correctly reconciled.

Watches, not polling: each service's completion is stamped when the event that completes it arrives, and
the bench adds no list load of its own to the API server it measures.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes import client, config, watch

from batchpilot.api.spec import GROUP, PLURAL, VERSION
from batchpilot.build.names import SERVICE_LABEL, ChildNames
from bench.fleet import CREATE, Expectation, Fleet, Key, Obj, service_problems, template_key

MANAGED = "app.kubernetes.io/managed-by=batchpilot"
OnChange = Callable[[str, Obj], None]


class Mirror:
    """A live copy of one kind's objects matching a label selector: list, then watch (re-list on any error)."""

    def __init__(self, kind: str, list_fn: Callable[..., Any], selector: str, on_change: OnChange) -> None:
        self.kind = kind
        self.objects: dict[Key, Obj] = {}
        self.restarts = 0
        self._list_fn, self._selector, self._on_change = list_fn, selector, on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mirror-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def relist(self) -> str:
        """Replace the copy with a fresh list; returns its resourceVersion."""
        resp = self._list_fn(label_selector=self._selector, _preload_content=False)
        listed = json.loads(resp.data)
        self.objects = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in listed["items"]}
        for obj in list(self.objects.values()):
            self._on_change(self.kind, obj)
        return str(listed["metadata"]["resourceVersion"])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._watch(self.relist())
            except Exception:  # an expired or dropped watch, whatever the client raised: list again
                self.restarts += 1
                self._stop.wait(0.5)

    def _watch(self, version: str) -> None:
        while not self._stop.is_set():
            stream = watch.Watch(return_type="object").stream(
                self._list_fn, label_selector=self._selector, resource_version=version, timeout_seconds=5,
                allow_watch_bookmarks=True, deserialize=False)
            for event in stream:
                obj = event["object"]
                version = obj["metadata"]["resourceVersion"]
                if event["type"] == "BOOKMARK":
                    continue
                key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                if event["type"] == "DELETED":
                    self.objects.pop(key, None)
                else:
                    self.objects[key] = obj
                self._on_change(self.kind, obj)


class Tracker:
    """Per phase: when each service was first seen at the phase's generation, and when it was first correct."""

    def __init__(self, kubeconfig: Path, fleet: Fleet) -> None:
        self.fleet = fleet
        self.expect = CREATE
        self.seen: dict[Key, float] = {}
        self.done: dict[Key, float] = {}
        self.ticks: dict[Key, list[float]] = {}
        """When (monotonic, at the watch event) each service's status.observed.at changed: its control ticks."""
        self._observed: dict[Key, str] = {}
        self._keys = set(fleet.keys())
        self._lock = threading.Lock()
        api = config.new_client_from_config(config_file=str(kubeconfig))
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        custom = functools.partial(client.CustomObjectsApi(api).list_cluster_custom_object, GROUP, VERSION, PLURAL)
        self.isvcs = Mirror("InferenceService", custom, fleet.selector, self._changed)
        self.deployments = Mirror("Deployment", apps.list_deployment_for_all_namespaces, MANAGED, self._changed)
        self.services = Mirror("Service", core.list_service_for_all_namespaces, MANAGED, self._changed)
        self.config_maps = Mirror("ConfigMap", core.list_config_map_for_all_namespaces, MANAGED, self._changed)
        self.mirrors = [self.isvcs, self.deployments, self.services, self.config_maps]

    def __enter__(self) -> Tracker:
        for m in self.mirrors:
            m.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for m in self.mirrors:
            m.stop()

    def begin(self, expect: Expectation) -> None:
        """Start timing a phase (before applying it)."""
        with self._lock:
            self.expect, self.seen, self.done = expect, {}, {}
            for key in self._keys:
                self._evaluate(key, time.monotonic())

    def templates(self) -> dict[Key, str]:
        """Each service's current Deployment pod template (to recognise it updated after an edit)."""
        return {key: template_key(self.deployments.objects.get(key)) for key in self._keys}

    def problems_of(self, key: Key) -> list[str]:
        ns, name = key
        names = ChildNames(name)
        return service_problems(key, self.expect, self.isvcs.objects.get(key),
                                self.deployments.objects.get((ns, names.deployment)),
                                self.services.objects.get((ns, names.service)),
                                self.config_maps.objects.get((ns, names.config_map)))

    def problems(self, fresh: bool = False) -> dict[Key, list[str]]:
        """Every service that is not reconciled as the phase expects, with why; fresh=True lists again first."""
        if fresh:
            for m in self.mirrors:
                m.relist()
        return {key: found for key in sorted(self._keys) if (found := self.problems_of(key))}

    def waiting_on(self) -> Counter[str]:
        """The first problem of each service not yet done, with numbers blanked so that alike ones count together."""
        pending = [key for key in self._keys if key not in self.done]
        return Counter(re.sub(r"\d+", "N", found[0]) for key in pending if (found := self.problems_of(key)))

    def metrics_unavailable(self) -> int:
        """Services whose status says the control loop ran and found no metrics (condition MetricsAvailable=False)."""
        return sum(1 for isvc in list(self.isvcs.objects.values())
                   if any(c.get("type") == "MetricsAvailable" and c.get("status") == "False"
                          for c in (isvc.get("status") or {}).get("conditions") or []))

    def durations(self) -> list[float]:
        """Seconds from first seeing each completed service at the phase's generation to its completion."""
        with self._lock:
            return [self.done[k] - self.seen[k] for k in self.done if k in self.seen]

    def _changed(self, kind: str, obj: Obj) -> None:
        meta = obj["metadata"]
        name = meta["name"] if kind == "InferenceService" else (meta.get("labels") or {}).get(SERVICE_LABEL)
        key = (meta["namespace"], name or "")
        if key in self._keys:
            with self._lock:
                now = time.monotonic()
                self._evaluate(key, now)
                at = ((obj.get("status") or {}).get("observed") or {}).get("at") if kind == "InferenceService" else None
                if at is not None and at != self._observed.get(key):
                    self._observed[key] = at
                    self.ticks.setdefault(key, []).append(now)

    def tick_times(self) -> dict[Key, list[float]]:
        with self._lock:
            return {key: list(stamps) for key, stamps in self.ticks.items()}

    def _evaluate(self, key: Key, now: float) -> None:
        isvc = self.isvcs.objects.get(key)
        if key not in self.seen and isvc and isvc["metadata"].get("generation", 0) >= self.expect.generation:
            self.seen[key] = now
        if key not in self.done and key in self.seen and not self.problems_of(key):
            self.done[key] = now
