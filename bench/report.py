"""Render a reconcile-at-scale result (the JSON the bench writes) as markdown."""

from __future__ import annotations

from typing import Any


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(result: dict[str, Any]) -> str:
    n, k = result["services"], result["namespaces"]
    mem = result["memory"]
    lines = [
        "# Reconcile at scale",
        "",
        f"{n} InferenceServices in {k} namespaces, one `kubectl apply` per namespace (all at once), on a local "
        f"etcd + kube-apiserver + kube-controller-manager. Operator: `batchpilot operator`, cluster-wide, control "
        f"interval {result['control_interval_s']:g} s, no Prometheus (every tick reports MetricsUnavailable) and "
        f"no kubelet (pods stay Pending). Machine: {result['cpus']} CPUs, load average "
        f"{result['load_average_at_start']} at start. Wall time {result['total_wall_s']:.0f} s.",
        "",
        "A service counts as reconciled when its Deployment, Service and config ConfigMap exist with a controller "
        "ownerReference to it and the right labels and selectors, the ConfigMap carries the spec's queue delay, "
        "the Deployment's pod template changed (after an edit), and `status.observedGeneration` equals "
        "`metadata.generation`. Per-service time: from the bench first seeing the InferenceService at the new "
        "generation (a watch event) to the event that completed it. Throughput: services over the phase's wall "
        "time, from the first apply to the last service reconciled.",
        "",
        "| phase | change | reconciled | wall s | apply s | services/s | p50 s | p95 s | max s | operator CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        lines.append(
            f"| {p['name']} | {p['change']} | {p['reconciled']}/{p['services']} | {p['wall_s']:.1f} | "
            f"{p['apply_s']:.1f} | {p['throughput_per_s']:.2f} | {_s(p['p50_s'])} | {_s(p['p95_s'])} | "
            f"{_s(p['max_s'])} | {p['operator_cpu_s']:.1f} |")
    lines += [
        "",
        "| operator memory (RSS of the process) | |",
        "|---|---|",
        f"| idle, no InferenceService | {mem['idle_no_services_rss_mib']:.1f} MiB |",
        f"| idle, {n} InferenceServices ({result['settled_s']:.0f} s after reconcile, at "
        f"{result['settled_cores']:.2f} cores) | "
        f"{mem['idle_with_services_rss_mib']:.1f} MiB |",
        f"| per InferenceService | {mem['per_service_kib']:.0f} KiB |",
        f"| right after the edit | {mem['after_edit_rss_mib']:.1f} MiB |",
        f"| peak (VmHWM) | {mem['peak_rss_mib']:.1f} MiB |",
        "",
        f"Control loop: {result['control_loop_ran_on']}/{n} services showed `MetricsAvailable=False` when "
        "memory was read (the loop ran on them and found no Prometheus, as set up). Operator handler "
        "runs over the whole run: " + ", ".join(f"{k} {v}" for k, v in result["handler_runs"].items()) + ".",
        "",
        *_steady(result),
        f"**Failures: {result['failures']}** (services not reconciled correctly at the end of a phase). "
        f"Operator log: {result['operator_log_error_count']} ERROR lines.",
    ]
    for p in result["phases"]:
        for key, problems in list(p["problems"].items())[:10]:
            lines.append(f"- {p['name']} {key}: {'; '.join(problems)}")
    if result["operator_log_errors"]:
        lines += ["", "First operator log errors:", "", "```", *result["operator_log_errors"][:10], "```"]
    return "\n".join(lines) + "\n"


def _steady(result: dict[str, Any]) -> list[str]:
    s = result.get("steady")
    if not s:
        return []
    return [
        "",
        f"Steady state, {s['hold_s']:.0f} s with {s['services']} services (control interval "
        f"{result['control_interval_s']:g} s): {s['ticks']} ticks seen of {s['expected_ticks']:.0f} a loop holding "
        f"its period would do, {s['starved']} service(s) without a tick; lateness of a tick (gap between a "
        f"service's ticks less the interval) p50 {_s(s['lateness_p50_s'])} s, p95 {_s(s['lateness_p95_s'])} s, max "
        f"{_s(s['lateness_max_s'])} s; kube-apiserver {s['api_requests_per_s']:.1f} requests/s (watches left out; "
        f"{s['api_requests_per_s_idle']:.1f}/s with no service); operator {s['operator_cores']:.2f} cores.",
        "",
    ]
