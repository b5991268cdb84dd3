"""`batchpilot profile` from files users bring: perf_analyzer -f CSVs and Model Analyzer's inference metrics CSV,
written here in their documented formats; the profile written back as YAML or a merge patch the API accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import factories
from batchpilot.cli import main
from batchpilot.profiling.files import (
    ProfileError,
    as_patch,
    as_yaml,
    from_model_analyzer,
    from_perf_analyzer,
    profile,
)
from batchpilot.profiling.measure import batch_sizes, inputs

PA_HEADER = ("Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
             "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency")
PA_B1 = f"""{PA_HEADER}
3,84.2,237,1768,21673,209,11742,17,0,35398,43984,47085,51701
1,69.2,225,2148,64,206,11781,19,0,13891,18795,19753,21018
2,87.2,235,1973,9151,190,11346,17,0,21874,28557,29768,34766
"""
"""perf_analyzer's documented example (rows sorted by throughput, not concurrency), times in microseconds."""
PA_B8 = f"""{PA_HEADER}
1,420.0,300,2500,80,900,17000,60,0,20000,21000,21500,22000
4,480.0,300,2400,50000,950,17500,61,0,70000,80000,82000,85000
"""
MA_HEADER = ("Model,Batch,Concurrency,Model Config Path,Instance Group,Max Batch Size,Satisfies Constraints,"
             "Throughput (infer/sec),p99 Latency (ms),Server Compute Input (ms),Server Compute Infer (ms),"
             "Server Compute Output (ms)")
MA = f"""{MA_HEADER}
resnet50,8,4,resnet50_config_1,1:GPU,32,Yes,900.0,40.1,0.9,16.0,0.1
resnet50,1,1,resnet50_config_1,1:GPU,32,Yes,190.0,6.0,0.2,4.3,0.05
resnet50,8,1,resnet50_config_1,1:GPU,32,Yes,800.0,12.0,0.8,9.0,0.1
resnet50,1,1,resnet50_config_default,1:GPU,32,Yes,150.0,7.0,0.3,5.0,0.05
"""


def test_perf_analyzer_takes_the_server_compute_time_at_the_lowest_concurrency() -> None:
    point = from_perf_analyzer(1, PA_B1)
    assert (point.batch_size, point.latency_ms) == (1, pytest.approx((206 + 11781 + 19) / 1000))
    assert from_perf_analyzer(8, PA_B8).latency_ms == pytest.approx((900 + 17000 + 60) / 1000)


def test_perf_analyzer_request_rate_runs_read_too() -> None:
    text = PA_B1.replace("Concurrency,", "Request Rate,", 1)
    assert from_perf_analyzer(1, text).latency_ms == pytest.approx(12.006)


def test_model_analyzer_takes_one_config_and_the_lowest_concurrency_per_batch() -> None:
    points = from_model_analyzer(MA, "resnet50_config_1")
    assert [(p.batch_size, p.latency_ms) for p in points] == [(1, pytest.approx(4.55)), (8, pytest.approx(9.9))]


@pytest.mark.parametrize(("call", "words"), [
    (lambda: from_perf_analyzer(1, PA_B1.replace("Server Compute Infer", "Server Infer")),
     ["'Server Compute Infer'", "perf_analyzer -f"]),
    (lambda: from_perf_analyzer(1, PA_HEADER + "\n"), ["no rows"]),
    (lambda: from_perf_analyzer(1, PA_B1.replace("1,69.2,225,2148,64,206", "1,69.2,225,2148,64,x")), ["row 3", "not a number"]),
    (lambda: from_model_analyzer(MA), ["2 model configs", "--model-config"]),
    (lambda: from_model_analyzer(MA, "nope"), ["no rows of model config 'nope'"]),
    (lambda: from_model_analyzer(MA.replace(",Server Compute Infer (ms)", ",Something (ms)")),
     ["perf_server_compute_infer", "inference_output_fields"]),
    (lambda: profile([*from_model_analyzer(MA, "resnet50_config_1"), from_perf_analyzer(8, PA_B8)]),
     ["batch size 8 is given twice"]),
])
def test_files_that_cannot_give_a_profile_say_what_to_do(call: Any, words: list[str]) -> None:
    with pytest.raises(ProfileError) as e:
        call()
    assert all(w in str(e.value) for w in words), str(e.value)


def test_the_written_profile_is_what_the_api_accepts() -> None:
    measured = profile([from_perf_analyzer(8, PA_B8), from_perf_analyzer(1, PA_B1)])
    pasted = yaml.safe_load(as_yaml(measured))
    spec = factories.service_spec(model=pasted)
    assert [(p.batch_size, p.latency_ms) for p in spec.model.profile.points] == [(1, 12.006), (8, 17.96)]
    patch = json.loads(as_patch(measured))
    assert patch["spec"]["model"]["profile"] == pasted["profile"]


def test_the_command_writes_yaml_or_a_patch_and_refuses_bad_input_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "b1.csv").write_text(PA_B1)
    (tmp_path / "b8.csv").write_text(PA_B8)
    assert main(["profile", "--perf-analyzer", f"1={tmp_path / 'b1.csv'}", f"8={tmp_path / 'b8.csv'}"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["profile"]["points"][1] == {"batchSize": 8, "latencyMs": 17.96}
    (tmp_path / "ma.csv").write_text(MA)
    out = tmp_path / "patch.json"
    assert main(["profile", "--model-analyzer", str(tmp_path / "ma.csv"), "--model-config", "resnet50_config_1",
                 "--format", "patch", "--output", str(out)]) == 0
    assert json.loads(out.read_text())["spec"]["model"]["profile"]["points"][0] == {"batchSize": 1, "latencyMs": 4.55}
    assert main(["profile", "--perf-analyzer", str(tmp_path / "b1.csv")]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err
    assert main(["profile", "--model-analyzer", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["profile", "--triton", "127.0.0.1:1"]) == 2
    assert "--triton needs --model" in capsys.readouterr().err


def test_batch_sizes_and_the_zero_inputs_follow_the_models_config() -> None:
    assert batch_sizes(32) == [1, 2, 4, 8, 16, 32] and batch_sizes(24) == [1, 2, 4, 8, 16, 24] and batch_sizes(1) == [1]
    config = {"name": "m", "max_batch_size": 8, "input": [{"name": "IMAGE", "data_type": "TYPE_FP16", "dims": [3, 4]},
                                                         {"name": "IDS", "data_type": "TYPE_INT64", "dims": [-1]}]}
    with pytest.raises(ProfileError, match="--shape IDS="):
        inputs(config, 2, {})
    assert inputs(config, 2, {"IDS": [7]}) == [("IMAGE", "FP16", (2, 3, 4), 48), ("IDS", "INT64", (2, 7), 112)]
    with pytest.raises(ProfileError, match="import the CSV"):
        inputs({"input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}]}, 1, {})
