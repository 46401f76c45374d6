"""benchmark sim --quick: simulate, train by subprocess, score against SGBM, write the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stereospike_ros.bench.sim import bundled_predictor
from stereospike_ros.cli import main


def test_quick_sim_benchmark_writes_a_table_of_every_method(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    argv = ["benchmark", "sim", "--out", str(out), "--quick", "--threads", "1",
            "--train-recordings", "1", "--no-variants", "--epochs", "1"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "results.json").read_text())
    names = list(report["results"])
    assert names == [
        "stereospike w0.25",
        "stereospike w0.25 pruned",
        "stereospike w0.125",
        "stereospike w0.125 heads 1",
        "sgbm",
    ]
    split = json.loads((out / "split.json").read_text())["sequences"]
    assert {n for n, s in split.items() if s["part"] == "test"} == {"test_room", "test_boxes"}
    assert report["data"]["sequences"] == ["test_room", "test_boxes"]
    for name, result in report["results"].items():
        assert result["frames"] == 40, name  # the same 40 test frames for every method
        assert result["mde_cm"] > 0, name
    assert report["results"]["sgbm"]["coverage"] < 1.0
    # pruned of the channels that never fired on the 30 training windows: an accuracy budget
    # on the held-out frames (this 1-epoch network barely fires: docs/benchmarks.md has a real one)
    full, pruned = (report["results"][n]["mde_cm"] for n in names[:2])
    assert abs(pruned - full) <= 0.05 * full
    assert "never fired on the 30 training windows" in printed
    w25 = report["results"]["stereospike w0.25"]["info"]
    w125 = report["results"]["stereospike w0.125"]["info"]
    assert w25["parameters"] > 3 * w125["parameters"] and w25["dense_macs"] > w125["dense_macs"]
    for run in ("stereospike_w0.25_h1234", "stereospike_w0.125_h1", "stereospike_w0.125_h1234"):
        assert (out / "runs" / run / "best.safetensors").is_file()
    table = (out / "results.md").read_text()
    assert "not MVSEC" in table and "| stereospike w0.125 heads 1 |" in table
    assert "| heads | MDE cm |" in table and "| sgbm |" in printed
    # The bundled weights were trained for 260x346: not scored on 64x80 frames, and it says so.
    assert "not scoring the bundled default weights" in printed and "64x80" in printed


def test_the_bundled_weights_are_scored_only_at_their_own_size() -> None:
    predictor, why = bundled_predictor((260, 346), "cpu")
    assert predictor is not None and why == ""
    assert predictor.name == "bundled default w0.25"
    assert predictor.describe(260, 346)["parameters"] > 1_000_000
    predictor, why = bundled_predictor((96, 128), "cpu")
    assert predictor is None and "260x346" in why and "96x128" in why


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU-only machine")
def test_sim_benchmark_refuses_cuda_before_simulating(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    assert main(["benchmark", "sim", "--out", str(out), "--quick", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not out.exists()  # nothing simulated or trained first
