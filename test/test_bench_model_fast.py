"""``benchmark model`` over widths, head sets and inference paths, with ratios and accuracy.

No timing asserts: only that the figures are consistent with each other and with the models.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stereospike_ros.cli import main
from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5
from stereospike_ros.model import (
    ModelError,
    build_model,
    compile_for_inference,
    count_parameters,
    dense_macs,
    save_checkpoint,
)
from stereospike_ros.model.inference import ALL_PATHS, EXACT_PATHS
from stereospike_ros.ros.parameters import DEPTH_NODE_PARAMS
from stereospike_ros.sim.simulator import SimConfig, simulate

H, W = 32, 40


@pytest.fixture(autouse=True)
def restore_threads():
    """The benchmarks run with --threads 1 (two shared cores); put torch's setting back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _report(capsys, *argv: str) -> dict:
    assert main(["benchmark", "model", "--threads", "1", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_model_and_path_gets_figures_and_a_same_run_ratio(capsys):
    report = _report(
        capsys,
        *("--models", "stereospike", "--width", "0.125,0.25", "--heads", "1234,1"),
        *("--paths", "exact,reference,exact-nchw", "--size", "20x31", "--runs", "2"),
    )
    results = report["results"]
    assert len(results) == 2 * 2 * 3
    seen = {(r["width"], tuple(r["heads"]), r["path"]) for r in results}
    assert seen == {
        (w, h, p)
        for w in (0.125, 0.25)
        for h in ((1, 2, 3, 4), (1,))
        for p in ("reference", "exact", "exact-nchw")
    }
    for i in range(0, len(results), 3):
        group = results[i : i + 3]
        assert [r["path"] for r in group] == ["reference", "exact", "exact-nchw"]
        ref = group[0]
        model = build_model("stereospike", width=ref["width"], heads=tuple(ref["heads"]))
        for r in group:
            assert r["params"] == count_parameters(model)
            assert r["dense_macs"] == dense_macs(model, (20, 31)).total
            assert 0 < r["forward_s_min"] <= r["forward_s_median"] <= r["forward_s_max"]
            assert r["ratio_vs_reference"] == pytest.approx(
                ref["forward_s_median"] / r["forward_s_median"]
            )
            assert r["prepare_s"] > 0
        assert ref["ratio_vs_reference"] == pytest.approx(1.0)
    # fewer heads, fewer MACs
    macs = {(r["width"], len(r["heads"])): r["dense_macs"] for r in results}
    assert macs[(0.25, 1)] < macs[(0.25, 4)]


def test_table_lists_paths_and_unknown_paths_are_refused(capsys):
    args = ["benchmark", "model", "--models", "stereospike-mono", "--width", "0.125"]
    assert main([*args, "--size", "9x11", "--runs", "1", "--paths", "reference,exact"]) == 0
    out = capsys.readouterr().out
    assert "x ref" in out and "exact" in out and "stereospike-mono" in out
    assert "(random counts)" in out and "note: exact skips silent channels" in out
    assert main([*args, "--paths", "exact,fastest"]) == 2
    assert "unknown --paths ['fastest']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--heads", "125"])
    assert "head sets" in capsys.readouterr().err


def test_exact_direct_is_a_benchmark_path_only(capsys):
    # Measures what the GEMM kernels buy; a node or an evaluation cannot pick it by name.
    args = ["benchmark", "model", "--models", "stereospike", "--width", "0.125", "--json"]
    assert (
        main([*args, "--size", "9x11", "--runs", "1", "--paths", "exact-dense,exact-direct"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in report["results"]] == ["exact-dense", "exact-direct"]
    assert "exact-direct" not in ALL_PATHS and "exact-direct" not in EXACT_PATHS
    node_paths = next(p.choices for p in DEPTH_NODE_PARAMS if p.name == "inference_path")
    assert set(node_paths) == set(ALL_PATHS)
    with pytest.raises(ModelError, match="unknown inference path 'exact-direct'"):
        compile_for_inference(build_model("stereospike", width=0.125), "exact-direct")
    assert EXACT_PATHS == ("reference", "exact", "exact-dense", "exact-nchw", "compile")


def _lively_dyadic(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 4:
                fan_in = p[0].numel()
                w = torch.randn(p.shape, generator=g) * 1.6 / (0.3 * fan_in) ** 0.5
            else:
                w = torch.randn(p.shape, generator=g) * 0.5 + 2.0  # head biases: metres
            p.copy_(torch.round(w * 64) / 64)
    return model.eval()


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> Path:
    """A simulated recording, H x W, 7 depth frames."""
    folder = tmp_path_factory.mktemp("room")
    recording = simulate(
        SimConfig(name="room", width=W, height=H, focal_px=26.0, duration_s=0.35, seed=5)
    )
    write_mvsec_hdf5(recording, folder / "room_data.hdf5", folder / "room_gt.hdf5")
    return folder / "room_data.hdf5"


def test_timing_on_recorded_windows(capsys, room: Path):
    # exact skips silent channels, so its time depends on the spikes: --inputs times on real
    # windows (their size, not --size) instead of random counts
    report = _report(
        capsys,
        *("--models", "stereospike", "--width", "0.125", "--size", "9x11", "--runs", "2"),
        *("--paths", "reference,exact,exact-dense", "--inputs", str(room), "--input-frames", "3"),
    )
    assert [r["path"] for r in report["results"]] == ["reference", "exact", "exact-dense"]
    for r in report["results"]:
        assert r["size"] == [H, W] and r["inputs"] == "recorded"
        assert r["dense_macs"] == dense_macs(build_model("stereospike", width=0.125), (H, W)).total
    args = ["benchmark", "model", "--models", "stereospike", "--width", "0.125", "--runs", "1"]
    assert main([*args, "--threads", "1", "--inputs", str(room)]) == 0
    out = capsys.readouterr().out
    assert f"1 x {H} x {W} (windows of {room})" in out and "note:" in out  # no --checkpoint
    assert main([*args, "--inputs", str(room), "--input-frames", "0"]) == 2
    assert "--input-frames must be >= 1" in capsys.readouterr().err


def test_accuracy_of_each_path_on_simulated_frames(capsys, tmp_path: Path, room: Path):
    model = _lively_dyadic(build_model("stereospike", width=0.125))
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, input_size=(H, W), window_ms=50)
    report = _report(
        capsys,
        *("--checkpoint", str(ckpt), "--size", f"{H}x{W}", "--runs", "1"),
        *("--paths", "reference,exact,bf16", "--accuracy-data", str(room)),
        *("--max-frames", "4"),
    )
    acc = {r["path"]: r["accuracy"] for r in report["results"]}
    assert acc["reference"]["frames"] == 4
    # dyadic weights: the exact path is bit-equal, so its error is the reference's
    assert acc["exact"]["mean_abs_diff_to_reference_cm"] == 0.0
    assert acc["exact"]["mde_cm"] == acc["reference"]["mde_cm"]
    # bf16 rounds weights (7-bit mantissa) and potentials: its budget on this set is 5 % of
    # the depth error and 2 % of the 2 m mean depth the heads' biases set
    ref_mde = acc["reference"]["mde_cm"]
    assert abs(acc["bf16"]["mde_cm"] - ref_mde) <= 0.05 * ref_mde
    assert 0 < acc["bf16"]["mean_abs_diff_to_reference_cm"] <= 4.0
