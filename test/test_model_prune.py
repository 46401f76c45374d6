"""Pruning silent channels: the fast path drops never-firing channels exactly; ``prune`` zeroes
the channels that never fired on calibration windows and changes nothing on those windows.

With dyadic weights every sum is exact in any order, so the fast path must stay bit-equal to
the reference forward when it stops computing channels that can never fire.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from model_helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from test_model_fast_exact import _counts, _dyadic_

from stereospike_ros.cli import main
from stereospike_ros.data import write_mvsec_hdf5
from stereospike_ros.model import build_model, load_checkpoint, save_checkpoint
from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.fast import FastStereoSpike, live_outputs, never_fire
from stereospike_ros.model.gather import add_channels_, put_channels
from stereospike_ros.model.inference import compile_for_inference
from stereospike_ros.model.network import StereoSpike
from stereospike_ros.model.prune import conv_units, prune_silent, silent_channels
from stereospike_ros.sim.simulator import SimConfig, simulate

CL = torch.channels_last


def _zero_rows_(model: torch.nn.Module, fraction: float, seed: int = 3) -> dict[str, list[int]]:
    """Zero the weights of ``fraction`` of every unit's output channels (the last decoder
    unit's too), as ``prune`` does, and all but the centre taps of another; returns the zeroed
    ones per unit."""
    g = torch.Generator().manual_seed(seed)
    zeroed = {}
    with torch.no_grad():
        for name, unit in conv_units(model).items():
            out = unit.conv.out_channels
            rows = torch.randperm(out, generator=g)[: int(out * fraction)].sort().values
            unit.conv.weight[rows] = 0
            if unit.conv.bias is not None:
                unit.conv.bias[rows] = 0
            zeroed[name] = rows.tolist()
            # and a nearly-zero channel that does fire: a spike at its centre tap is enough
            for live in [c for c in range(out) if c not in zeroed[name]][:1]:
                k = unit.conv.kernel_size[0] // 2
                unit.conv.weight[live] = 0
                unit.conv.weight[live, :, k, k] = 1.0
    return zeroed


def test_channel_scatter_helpers():
    src = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    for layout in (CL, torch.contiguous_format):
        s = src.contiguous(memory_format=layout)
        positions = torch.tensor([4, 0, 2])
        wide = put_channels(s, positions, 6)
        assert wide.is_contiguous(memory_format=layout)
        expected = torch.zeros(2, 6, 4, 5)
        expected[:, [4, 0, 2]] = src
        assert torch.equal(wide, expected)
        dst = torch.ones(2, 6, 4, 5).contiguous(memory_format=layout)
        assert add_channels_(dst, positions, s) is dst
        assert torch.equal(dst, expected + 1)


def test_never_fire_needs_no_weight_on_live_inputs_and_a_low_bias():
    model = build_model("stereospike", width=0.125).eval()
    unit = model.conv1
    with torch.no_grad():
        unit.conv.weight[2] = 0
        unit.conv.weight[5, 1:] = 0  # weight only on input channel 0
    assert never_fire(unit).nonzero().flatten().tolist() == [2]
    assert never_fire(unit, torch.tensor([1, 3])).nonzero().flatten().tolist() == [2, 5]
    assert live_outputs(unit, torch.tensor([1, 3])).tolist() == [
        c for c in range(unit.conv.out_channels) if c not in (2, 5)
    ]
    assert live_outputs(model.conv2) is None  # nothing provably silent
    biased = StereoSpike(replace(model.config, conv_bias=True)).eval()
    with torch.no_grad():
        biased.conv1.conv.weight[[2, 3]] = 0
        biased.conv1.conv.bias[2] = 1.0  # at the threshold: fires everywhere
        biased.conv1.conv.bias[3] = 0.99
    assert never_fire(biased.conv1).nonzero().flatten().tolist() == [3]
    # all silent: one channel is kept, so that every tensor has one
    with torch.no_grad():
        unit.conv.weight.zero_()
    assert live_outputs(unit).tolist() == [0]
    ann = build_model("stereospike-ann", width=0.125).eval()
    with torch.no_grad():
        ann.conv1.conv.weight[2] = 0
    assert not never_fire(ann.conv1).any()  # sigmoid(0) is not 0


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("gemm", [False, True])
@pytest.mark.parametrize("fraction", [0.4, 1.0])
def test_fast_path_drops_never_firing_channels_bit_equal(
    gemm_everywhere, skip_everywhere, gemm, skip, fraction
):
    model = _dyadic_(build_model("stereospike", width=0.125, heads=(1, 2, 3, 4)))
    _zero_rows_(model, fraction)
    fast = FastStereoSpike(model, gemm_kernels=gemm, skip_silent=skip)
    full = [(u.conv.in_channels, u.conv.out_channels) for u in conv_units(model).values()][:9]
    kept = fast._kept.units
    assert all(k[1] < f[1] for k, f in zip(kept[1:], full[1:], strict=True))  # outputs dropped
    if fraction < 1:
        # sums of a unit's output and a skip hold channels of both: every way to add them
        modes = {m.mode for m in (*fast.residual, *fast.merge)}
        assert modes & {"union", "into_a", "into_b"}, modes
    for size in ((37, 53), (24, 40)):
        for multi in (False, True):
            x = _counts((2, 4, *size), multi=multi, seed=size[0])
            with torch.inference_mode():
                expected = model(x)
                assert torch.equal(fast(x), expected)


@pytest.mark.parametrize(
    "name,options",
    [("stereospike", {"skips": False}), ("stereospike-mono", {"heads": (1, 3)})],
)
def test_variants_drop_them_bit_equal(name, options):
    model = _dyadic_(build_model(name, width=0.125, **options))
    _zero_rows_(model, 0.5)
    x = _counts((2, model.config.in_channels, 29, 41), multi=True)
    fast = FastStereoSpike(model)
    assert fast.narrowed
    with torch.inference_mode():
        assert torch.equal(fast(x), model(x))


def test_pruned_networks_do_not_skip_per_window_by_default():
    model = _dyadic_(build_model("stereospike", width=0.125))
    assert not FastStereoSpike(model).narrowed and FastStereoSpike(model).skip_silent
    _zero_rows_(model, 0.25)
    fast = FastStereoSpike(model)
    assert fast.narrowed and not fast.skip_silent
    assert FastStereoSpike(model, skip_silent=True).skip_silent  # asked for: done


def test_nchw_and_frozen_paths_drop_them_too():
    model = _dyadic_(build_model("stereospike", width=0.125, heads=(1, 2)))
    _zero_rows_(model, 0.5)
    x = _counts((1, 4, 37, 53), multi=True)
    with torch.inference_mode():
        expected = model(x)
    for path in ("exact", "exact-nchw", "exact-dense"):
        run = compile_for_inference(model, path, input_size=(37, 53))
        assert torch.equal(run(x), expected), path


def test_full_size_pruned_deconv4_stays_a_tap_sum():
    # a pruned bottleneck leaves deconv4 ~500 of its 512 input channels: still a tap sum
    from stereospike_ros.model.fast import TapSumConv

    model = build_model("stereospike").eval()
    with torch.no_grad():
        for unit in (model.conv4, *(block.unit2 for block in model.bottleneck)):
            unit.conv.weight[:10] = 0
    fast = FastStereoSpike(model)
    assert fast._kept.decoder[0][0] is not None and len(fast._kept.decoder[0][0]) == 502
    fast.prepare((260, 346))
    assert isinstance(fast._plans[(260, 346)].decoder[0], TapSumConv)


def _windows(n: int, size: tuple[int, int] = (37, 53)) -> list[torch.Tensor]:
    return [_counts((1, 4, *size), multi=bool(i % 2), seed=10 + i) for i in range(n)]


def test_pruning_changes_nothing_on_the_calibration_windows():
    model = _dyadic_(build_model("stereospike", width=0.125, heads=(1, 2, 3, 4)), gain=1.2)
    windows = _windows(4)
    silent, seen = silent_channels(model, windows)
    assert seen == 4 and list(silent) == list(conv_units(model))
    counts = {name: int(mask.sum()) for name, mask in silent.items()}
    assert 0 < sum(counts.values()) < sum(m.numel() for m in silent.values()), counts
    pruned = prune_silent(model, silent)
    for name, unit in conv_units(pruned).items():
        rows = silent[name]
        assert not unit.conv.weight[rows].any()
        assert torch.equal(unit.conv.weight[~rows], conv_units(model)[name].conv.weight[~rows])
    fast = compile_for_inference(pruned, "exact", input_size=(37, 53))
    with torch.inference_mode():
        for x in windows:
            expected = model(x)
            assert torch.equal(pruned(x), expected)
            assert torch.equal(fast(x), expected)
    # what was silent before is provably silent now, and more channels than that never are
    again, _ = silent_channels(pruned, _windows(3))
    assert all((again[n] | ~silent[n]).all() for n in silent)


def test_prune_refuses_what_it_cannot_prune():
    ann = build_model("stereospike-ann", width=0.125).eval()
    with pytest.raises(ModelError, match="spiking network without BatchNorm"):
        silent_channels(ann, _windows(1))
    model = build_model("stereospike", width=0.125).eval()
    with pytest.raises(ModelError, match="no calibration window"):
        silent_channels(model, [])
    with pytest.raises(ModelError, match="no conv unit named"):
        prune_silent(model, {"conv9": torch.zeros(3, dtype=torch.bool)})
    with pytest.raises(ModelError, match=r"silent mask of conv1 must be 8 booleans, got \(3,\)"):
        prune_silent(model, {"conv1": torch.zeros(3, dtype=torch.bool)})


def test_prune_command_writes_a_checkpoint_equal_on_its_calibration(tmp_path: Path, capsys):
    h, w = 48, 64
    recording = simulate(
        SimConfig(name="room1", width=w, height=h, focal_px=40.0, duration_s=0.45, seed=5)
    )
    data = tmp_path / "room1_data.hdf5"
    write_mvsec_hdf5(recording, data, tmp_path / "room1_gt.hdf5")
    model = _dyadic_(build_model("stereospike", width=0.125), gain=1.2)
    source = save_checkpoint(
        tmp_path / "best.safetensors", model, input_size=(h, w), window_ms=50, epoch=7
    )
    out = tmp_path / "pruned.safetensors"
    code = main(["prune", str(source), "--data", str(data), "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "calibration windows from room1" in printed and "| deconv1 |" in printed
    pruned, meta = load_checkpoint(out)
    assert meta["epoch"] == 7 and meta["input_size"] == [h, w]
    info = meta["pruned"]
    assert info["source"] == str(source) and info["calibration"]["recordings"] == ["room1"]
    windows = info["calibration"]["windows"]
    assert windows >= 8
    zeroed = {
        name: int((unit.conv.weight.flatten(1) == 0).all(1).sum())
        for name, unit in conv_units(pruned).items()
    }
    assert zeroed == info["silent"] and sum(zeroed.values()) > 0
    assert f"{windows} calibration windows" in printed
    # same depth on every calibration frame, through the evaluate command
    scores = []
    for ckpt in (source, out):
        report = tmp_path / f"{ckpt.stem}.json"
        args = ["evaluate", str(ckpt), "--data", str(data), "--json", str(report), "--quiet"]
        assert main(args) == 0
        result = json.loads(report.read_text())
        scores.append((result["mde_cm"], [f["mde_cm"] for f in result["per_frame"]]))
    assert scores[0] == scores[1] and len(scores[0][1]) == windows
    capsys.readouterr()
    # errors: a clear message, exit 2, nothing written
    assert main(["prune", str(source), "--data", str(data), "--out", str(source)]) == 2
    assert "would overwrite" in capsys.readouterr().err
    missing = tmp_path / "nope.safetensors"
    assert main(["prune", str(missing), "--data", str(data), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_prune_runs_as_a_console_script_help():
    done = subprocess.run(
        [sys.executable, "-m", "stereospike_ros", "prune", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "--out" in done.stdout and "(train)" in done.stdout
    assert done.stderr == ""
