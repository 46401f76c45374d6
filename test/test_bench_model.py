"""``python -m stereospike_ros benchmark model`` prints consistent figures (no timing asserts)."""

from __future__ import annotations

import json

import pytest
import torch

from stereospike_ros.cli import main
from stereospike_ros.model import build_model, count_parameters, dense_macs


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_model_benchmark_reports_params_macs_and_times_as_json(capsys, restore_threads):
    args = ["benchmark", "model", "--size", "17x23", "--width", "0.125", "--runs", "2", "--json"]
    assert main([*args, "--models", "stereospike,stereospike-ann", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threads"] == 1 and report["device"] == "cpu"
    by_name = {r["model"]: r for r in report["results"]}
    assert set(by_name) == {"stereospike", "stereospike-ann"}
    for name, r in by_name.items():
        model = build_model(name, width=0.125)
        assert r["params"] == count_parameters(model)
        assert r["dense_macs"] == dense_macs(model, (17, 23)).total
        assert r["size"] == [17, 23] and r["runs"] == 2
        assert 0 < r["forward_s_min"] <= r["forward_s_median"] <= r["forward_s_max"]
        assert r["fps"] == pytest.approx(1 / r["forward_s_median"])


def test_model_benchmark_prints_a_table_and_rejects_bad_sizes(capsys, restore_threads):
    args = ["benchmark", "model", "--size", "9x11", "--width", "0.125", "--runs", "1"]
    assert main([*args, "--models", "stereospike-mono", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "stereospike-mono" in out and "dense GMAC" in out
    with pytest.raises(SystemExit):
        main(["benchmark", "model", "--size", "260by346"])
    assert "'260by346' is not HxW" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU-only machine")
def test_model_benchmark_refuses_a_device_it_does_not_have(restore_threads, capsys):
    args = ["benchmark", "model", "--size", "9x11", "--width", "0.125", "--runs", "1"]
    assert main([*args, "--device", "cuda"]) == 2
    assert "--device cuda was asked for but torch sees no CUDA" in capsys.readouterr().err
    assert main([*args, "--device", "gpu"]) == 2
    assert "--device 'gpu' is not a torch device" in capsys.readouterr().err
