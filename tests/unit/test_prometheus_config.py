"""render_config: the prometheus.yml the sandbox runs, checked by structure and by replaying its relabeling."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from batchpilot_sandbox.cluster.prometheus import OPERATOR_JOB, TRITON_JOB, render_config

API = "https://127.0.0.1:6443"


def config(interval: float = 5.0, extra: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    return render_config(API, "/pki/ca.crt", "/pki/admin.crt", "/pki/admin.key", interval, extra or [], **kw)


def job(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [j for j in cfg["scrape_configs"] if j["job_name"] == name]
    return found


def relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Apply Prometheus `replace`/`keep` relabel rules (anchored RE2, ';' separator); None if dropped."""
    out = dict(labels)
    for rule in rules:
        value = ";".join(out.get(s, "") for s in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep":
            if not match:
                return None
        elif action == "replace":
            if match:
                result = rule.get("replacement", "$1")
                for i, group in enumerate([match.group(0), *match.groups()]):
                    result = result.replace(f"${i}", group or "")
                if result:
                    out[rule["target_label"]] = result
                else:
                    out.pop(rule["target_label"], None)
        else:
            raise AssertionError(f"relabel action {action} not replayed by this test")
    return {k: v for k, v in out.items() if not k.startswith("__meta_")}


def pod_meta(**over: str) -> dict[str, str]:
    meta = {
        "__address__": "10.1.2.3:8000",  # kubernetes_sd's per-container-port address
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_namespace": "shop",
        "__meta_kubernetes_pod_name": "resnet-7d9f-abcde",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_ip": "10.1.2.3",
        "__meta_kubernetes_pod_label_batchpilot_dev_inferenceservice": "resnet",
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
        "__meta_kubernetes_pod_annotation_prometheus_io_port": "9102",
        "__meta_kubernetes_pod_annotation_prometheus_io_path": "/custom",
    }
    meta.update(over)
    return {k: v for k, v in meta.items() if v != "<absent>"}


def test_triton_job_discovers_pods_through_the_given_api_server() -> None:
    sd = job(config(), TRITON_JOB)["kubernetes_sd_configs"]
    assert sd == [
        {
            "role": "pod",
            "api_server": API,
            "tls_config": {
                "ca_file": "/pki/ca.crt",
                "cert_file": "/pki/admin.crt",
                "key_file": "/pki/admin.key",
            },
        }
    ]
    limited = job(config(namespaces=["shop"]), TRITON_JOB)["kubernetes_sd_configs"][0]
    assert limited["namespaces"] == {"names": ["shop"]}


def test_annotated_running_pod_becomes_a_labelled_target() -> None:
    target = relabel(job(config(), TRITON_JOB)["relabel_configs"], pod_meta())
    assert target == {
        "__address__": "10.1.2.3:9102",
        "__metrics_path__": "/custom",
        "namespace": "shop",
        "pod": "resnet-7d9f-abcde",
        "inferenceservice": "resnet",
    }


def test_port_and_path_default_to_triton_metrics() -> None:
    meta = pod_meta(
        __meta_kubernetes_pod_annotation_prometheus_io_port="<absent>",
        __meta_kubernetes_pod_annotation_prometheus_io_path="<absent>",
    )
    target = relabel(job(config(), TRITON_JOB)["relabel_configs"], meta)
    assert target is not None
    assert (target["__address__"], target["__metrics_path__"]) == ("10.1.2.3:8002", "/metrics")


@pytest.mark.parametrize(
    "over",
    [
        {"__meta_kubernetes_pod_annotation_prometheus_io_scrape": "<absent>"},
        {"__meta_kubernetes_pod_annotation_prometheus_io_scrape": "false"},
        {"__meta_kubernetes_pod_phase": "Pending"},
        {"__meta_kubernetes_pod_phase": "Succeeded"},
        {"__meta_kubernetes_pod_ip": "<absent>"},
    ],
)
def test_pods_not_annotated_running_or_addressed_are_dropped(over: dict[str, str]) -> None:
    assert relabel(job(config(), TRITON_JOB)["relabel_configs"], pod_meta(**over)) is None


def test_operator_job_only_when_targets_given() -> None:
    assert [j["job_name"] for j in config()["scrape_configs"]] == [TRITON_JOB]
    op = job(config(extra=["127.0.0.1:8080"]), OPERATOR_JOB)
    assert op["static_configs"] == [{"targets": ["127.0.0.1:8080"]}]


@pytest.mark.parametrize(
    ("interval", "text", "timeout"),
    [
        (5.0, "5s", "5s"),
        (0.5, "500ms", "500ms"),
        (2.25, "2250ms", "2250ms"),
        (15.0, "15s", "10s"),
        (60, "60s", "10s"),
    ],
)
def test_intervals_are_prometheus_durations(interval: float, text: str, timeout: str) -> None:
    cfg = config(interval, extra=["127.0.0.1:1"])
    assert cfg["global"]["scrape_interval"] == text
    for name in (TRITON_JOB, OPERATOR_JOB):
        assert (job(cfg, name)["scrape_interval"], job(cfg, name)["scrape_timeout"]) == (text, timeout)


def test_config_survives_yaml() -> None:
    cfg = config(extra=["127.0.0.1:8080"])
    assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg
