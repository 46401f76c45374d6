"""evaluate: scores on HDF5 / ROS 1 / ROS 2 bags / splits match a direct computation; errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import one_torch_thread  # noqa: F401 (autouse fixture)

from stereospike_ros.cli import main
from stereospike_ros.data import (
    BagTopics,
    iter_frames,
    open_sequence,
    write_mvsec_hdf5,
    write_ros1_bag,
    write_ros2_bag,
)
from stereospike_ros.model import (
    MetricAccumulator,
    build_model,
    checkpoint_metadata,
    save_checkpoint,
)
from stereospike_ros.model.temporal import TemporalFilter
from stereospike_ros.sim.simulator import SimConfig, simulate
from stereospike_ros.training.evaluate import evaluate, evaluate_many, open_eval_data

H, W = 64, 80
FRAMES = 8  # frames evaluated per test: enough to average, few enough to be quick


def _lively(model: torch.nn.Module) -> torch.nn.Module:
    """Scale the weights up so that deeper layers fire (default init leaves them silent)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 4:
                p.mul_(6.0)
    return model


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("evalrec")
    recording = simulate(
        SimConfig(name="room1", width=W, height=H, focal_px=52.0, duration_s=0.6, seed=3)
    )
    write_mvsec_hdf5(recording, out / "room1_data.hdf5", out / "room1_gt.hdf5")
    write_ros1_bag(recording, out / "room1.bag")
    write_ros2_bag(recording, out / "room1_ros2")
    write_ros2_bag(recording, out / "other_ros2", topics=BagTopics(depth="/lidar/depth"))
    torch.manual_seed(0)
    model = _lively(build_model("stereospike", width=0.125))
    ckpt = save_checkpoint(
        out / "run" / "best.safetensors", model, input_size=(H, W), window_ms=50, data="sim",
        epoch=3,
    )  # fmt: skip
    torch.manual_seed(1)
    mono = save_checkpoint(
        out / "mono.safetensors", _lively(build_model("stereospike-mono", width=0.125)),
        input_size=(H, W), window_ms=50,
    )  # fmt: skip
    return {"dir": out, "ckpt": ckpt, "mono": mono, "model": model.eval(), "rec": recording}


def _direct(model: torch.nn.Module, path: Path, indices: list[int]) -> MetricAccumulator:
    """The reference: frames straight from the reader, the model, MetricAccumulator."""
    acc = MetricAccumulator()
    sequence = open_sequence(path)
    try:
        for frame in iter_frames(sequence, indices):
            x = torch.from_numpy(np.concatenate([frame.left, frame.right]).astype(np.float32))
            with torch.inference_mode():
                out = model(x[None], return_all=True)
            acc.update(out.depth, torch.from_numpy(frame.depth), out.spikes)
    finally:
        sequence.close()
    return acc


def test_evaluate_json_matches_direct_computation_on_hdf5(rec: dict, capsys) -> None:
    out = rec["dir"] / "hdf5.json"
    code = main(
        ["evaluate", str(rec["ckpt"]), "--data", str(rec["dir"] / "room1_data.hdf5"),
         "--frames", f"2:{2 + FRAMES}", "--json", str(out), "--quiet", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| stereospike" in printed and "MDE cm" in printed
    report = json.loads(out.read_text())
    ref = _direct(rec["model"], rec["dir"] / "room1_data.hdf5", list(range(2, 2 + FRAMES)))
    summary = ref.summary()
    assert report["frames"] == FRAMES == summary["frames"]
    assert report["mde_cm"] == pytest.approx(summary["mde_cm"], rel=1e-9)
    assert report["rmse_cm"] == pytest.approx(100 * summary["rmse_m"], rel=1e-9)
    for key in ("abs_rel", "delta1", "delta2", "delta3", "mde_cm@10m", "valid_pixels"):
        assert report[key] == pytest.approx(summary[key], rel=1e-9), key
    assert report["firing_rate"] == pytest.approx(summary["firing_rate/overall"], rel=1e-9)
    assert 0 < report["firing_rate"] < 1  # the scaled-up network really fires
    assert [f["mde_cm"] for f in report["per_frame"]] == pytest.approx(ref.frame_mde_cm)
    assert [f["index"] for f in report["per_frame"]] == list(range(2, 2 + FRAMES))
    assert report["coverage"] == 1.0
    assert report["metadata"] == checkpoint_metadata(rec["ckpt"])
    assert report["metadata"]["epoch"] == 3
    assert report["info"]["parameters"] > 0 and report["info"]["dense_macs"] > 0


@pytest.mark.parametrize("bag", ["room1.bag", "room1_ros2"])
def test_bags_score_the_same_frames_as_hdf5(rec: dict, bag: str) -> None:
    results = {}
    for source in ("room1_data.hdf5", bag):
        with open_eval_data(rec["dir"] / source, max_frames=FRAMES // 2) as data:
            results[source] = evaluate(rec["model"], data.frames())
    a, b = results.values()
    assert a.metrics["frames"] == b.metrics["frames"] == FRAMES // 2
    assert b.frame_mde_cm == pytest.approx(a.frame_mde_cm, rel=1e-9)
    assert [r["t_ns"] for r in b.per_frame] == [r["t_ns"] for r in a.per_frame]


def test_a_training_cache_scores_like_its_recording(rec: dict) -> None:
    from stereospike_ros.data import build_cache

    cache = build_cache(
        [(rec["dir"] / "room1_data.hdf5", list(range(4)))], rec["dir"] / "c.h5", progress=False
    )
    with open_eval_data(cache) as data:
        assert data.description["source"] == "cache" and data.count == 4
        from_cache = evaluate(rec["model"], data.frames())
    with open_eval_data(rec["dir"] / "room1_data.hdf5", frames="0:4") as data:
        direct = evaluate(rec["model"], data.frames())
    assert from_cache.frame_mde_cm == pytest.approx(direct.frame_mde_cm, rel=1e-9)
    assert [r["sequence"] for r in from_cache.per_frame] == ["room1"] * 4


def test_split_part_is_what_gets_scored(rec: dict) -> None:
    split = rec["dir"] / "split.json"
    split.write_text(json.dumps({"sequences": {"room1": {"range": [0, 12], "val": [0, 1, 2],
                                                         "test": [5, 7, 9]}}}))  # fmt: skip
    out = rec["dir"] / "split_result.json"
    code = main(
        ["evaluate", str(rec["ckpt"]), "--data", str(rec["dir"]), "--split", str(split),
         "--part", "test", "--json", str(out), "--quiet", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert [f["index"] for f in report["per_frame"]] == [5, 7, 9]
    assert report["data"]["part"] == "test" and report["data"]["sequences"] == ["room1"]
    ref = _direct(rec["model"], rec["dir"] / "room1_data.hdf5", [5, 7, 9])
    assert report["mde_cm"] == pytest.approx(ref.summary()["mde_cm"], rel=1e-9)


def test_mono_baseline_sees_only_the_left_camera(rec: dict) -> None:
    from stereospike_ros.training.baselines import load_baseline

    mono = load_baseline(str(rec["mono"]), focal_baseline=None, input_size=(H, W))
    with open_eval_data(rec["dir"] / "room1_data.hdf5", frames="3") as data:
        _, frame = next(iter(data.frames()))
    first = mono(frame).depth.clone()
    frame.right = np.zeros_like(frame.right)
    assert torch.equal(mono(frame).depth, first)
    left_only = torch.from_numpy(frame.left.astype(np.float32))[None]
    with torch.inference_mode():
        assert torch.equal(mono.model(left_only)[0, 0], first)


def test_sgbm_recovers_a_known_disparity() -> None:
    from stereospike_ros.data.frames import Frame
    from stereospike_ros.training.baselines import SgbmBaseline

    rng = np.random.default_rng(0)
    shift, fb = 6, 30.0
    left = np.zeros((2, H, W), np.uint16)
    left[rng.integers(0, 2, 900), rng.integers(0, H, 900), rng.integers(0, W, 900)] = 3
    right = np.zeros_like(left)
    right[:, :, : W - shift] = left[:, :, shift:]  # a point at x in left is at x - d in right
    gt = np.full((H, W), fb / shift, np.float32)
    frame = Frame(0, 0, left, right, gt)
    result = evaluate(SgbmBaseline(fb, num_disparities=16), [frame])
    assert 0.3 < result.metrics["coverage"] < 1.0  # the left border cannot be matched
    assert result.metrics["mde_cm"] < 0.05 * 100 * fb / shift  # within 5 % of 5 m
    assert result.info["num_disparities"] == 16


def test_sgbm_beside_the_network_on_a_bag(rec: dict, capsys) -> None:
    out = rec["dir"] / "sgbm.json"
    code = main(
        ["evaluate", str(rec["ckpt"]), "--data", str(rec["dir"] / "room1.bag"),
         "--max-frames", "3", "--baseline", "sgbm", "--json", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    sgbm = report["baselines"]["sgbm"]
    assert sgbm["frames"] == 3 and 0 < sgbm["coverage"] < 1
    assert sgbm["info"]["focal_baseline"] == pytest.approx(rec["rec"].focal_baseline)
    assert sgbm["mde_cm"] > 0 and len(sgbm["per_frame"]) == 3
    assert "| sgbm" in capsys.readouterr().out


def test_two_runs_best_checkpoints_as_baselines_are_named_by_their_run_folders(
    rec: dict, capsys
) -> None:
    import shutil

    runs = rec["dir"] / "runs"
    for run in ("a", "b"):
        (runs / run).mkdir(parents=True, exist_ok=True)
        shutil.copy(rec["ckpt"], runs / run / "best.safetensors")
    out = rec["dir"] / "two_runs.json"
    code = main(
        ["evaluate", str(rec["ckpt"]), "--data", str(rec["dir"] / "room1.bag"),
         "--max-frames", "2", "--baseline", str(runs / "a" / "best.safetensors"),
         "--baseline", str(runs / "b" / "best.safetensors"), "--baseline", "sgbm",
         "--json", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())["baselines"]
    name = f"{rec['model'].config.name}:"
    assert sorted(report) == sorted([f"{name}a/best", f"{name}b/best", "sgbm"])
    # the same weights: the same scores under either name
    assert report[f"{name}a/best"]["mde_cm"] == report[f"{name}b/best"]["mde_cm"]


def test_plots_and_report_write_readable_pngs(rec: dict, capsys) -> None:
    import matplotlib.image

    run_dir = rec["ckpt"].parent
    (run_dir / "metrics.csv").write_text(
        "epoch,train_loss,val_loss,val_mde_cm,lr,firing_rate,samples_per_s\n"
        "1,2.0,1.9,80.0,0.0002,0.1,9.5\n2,1.5,1.6,60.0,0.0002,0.12,12.5\n"
        "3,1.2,1.4,65.0,0.0001,0.11,11.0\n"
    )
    plots = rec["dir"] / "plots"
    code = main(
        ["evaluate", str(rec["ckpt"]), "--data", str(rec["dir"] / "room1_data.hdf5"),
         "--max-frames", "4", "--baseline", "sgbm", "--plots", str(plots), "--plot-frames",
         "1,3", "--quiet"]
    )  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in plots.iterdir())
    assert names == [
        "frame_00001.png",
        "frame_00003.png",
        "mde_over_time.png",
        "training_curves.png",
    ]
    for name in names:
        image = matplotlib.image.imread(plots / name)
        assert image.shape[0] > 200 and image.shape[1] > 400
        assert image[..., :3].std() > 0.05  # not a blank canvas
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "best val_mde_cm: 60.00 at epoch 2" in printed
    assert "training throughput: 11.0 samples/s (last epoch), best 12.5" in printed
    assert (run_dir / "training_curves.png").stat().st_size > 10_000


def test_temporal_smoothing_scores_the_running_mean_of_each_methods_log_depth(
    rec: dict, capsys
) -> None:
    data = str(rec["dir"] / "room1_data.hdf5")
    out = rec["dir"] / "smoothed.json"
    code = main(
        ["evaluate", str(rec["ckpt"]), "--data", data, "--frames", f"2:{2 + FRAMES}",
         "--baseline", "sgbm", "--temporal-smoothing", "0.6", "--json", str(out), "--quiet",
         "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    assert "| stereospike, smoothed 0.6" in capsys.readouterr().out
    report = json.loads(out.read_text())
    # The same frames by hand: network depth through the filter (tested on its own in
    # test_model_temporal.py), scored where it gives an estimate (this untrained network's
    # depth is not positive everywhere; those pixels count as not covered).
    acc, raw, smoother = MetricAccumulator(), MetricAccumulator(), TemporalFilter(0.6)
    sequence = open_sequence(data)
    try:
        for frame in iter_frames(sequence, range(2, 2 + FRAMES)):
            x = torch.from_numpy(np.concatenate([frame.left, frame.right]).astype(np.float32))
            with torch.inference_mode():
                depth = rec["model"](x[None])[0, 0].numpy()
            smoothed = smoother(depth, frame.t_ns)
            truth = np.where(np.isfinite(smoothed), frame.depth, np.nan)
            acc.update(torch.from_numpy(np.nan_to_num(smoothed)), torch.from_numpy(truth))
            raw.update(torch.from_numpy(depth), torch.from_numpy(frame.depth))
    finally:
        sequence.close()
    assert smoother.resets == 0
    assert report["name"] == "stereospike, smoothed 0.6"
    assert report["info"]["temporal_smoothing"] == 0.6
    assert report["mde_cm"] == pytest.approx(acc.summary()["mde_cm"], rel=1e-5)
    assert report["mde_cm"] != pytest.approx(raw.summary()["mde_cm"], rel=1e-3)
    assert "sgbm, smoothed 0.6" in report["baselines"]


# -- bad input -------------------------------------------------------------------------------


def _error(capsys, *argv: str) -> str:
    assert main(["evaluate", *argv, "--quiet"]) == 2
    return capsys.readouterr().err


def test_missing_files_are_named(rec: dict, tmp_path: Path, capsys) -> None:
    data = str(rec["dir"] / "room1_data.hdf5")
    err = _error(capsys, str(tmp_path / "nope.safetensors"), "--data", data)
    assert "nope.safetensors does not exist" in err
    err = _error(capsys, str(rec["ckpt"]), "--data", str(tmp_path / "gone_data.hdf5"))
    assert "gone" in err
    err = _error(capsys, "--data", data, "--baseline", str(tmp_path / "other.safetensors"))
    assert "other.safetensors" in err and "sgbm" in err


def test_a_device_torch_does_not_know_is_named(rec: dict, capsys) -> None:
    data = str(rec["dir"] / "room1_data.hdf5")
    err = _error(capsys, str(rec["ckpt"]), "--data", data, "--device", "gpu")
    assert "--device 'gpu' is not a torch device" in err


@pytest.mark.parametrize("bad", ["1.0", "-0.2"])
def test_temporal_smoothing_outside_zero_to_one_is_refused(rec: dict, capsys, bad) -> None:
    data = str(rec["dir"] / "room1_data.hdf5")
    err = _error(capsys, str(rec["ckpt"]), "--data", data, "--temporal-smoothing", bad)
    assert f"temporal smoothing must be in [0, 1), got {float(bad)}" in err


def test_checkpoint_for_another_architecture_or_size_is_refused(rec: dict, capsys) -> None:
    data = str(rec["dir"] / "room1_data.hdf5")
    err = _error(capsys, str(rec["ckpt"]), "--data", data, "--model", "stereospike-ann")
    assert "best.safetensors" in err and "'stereospike-ann'" in err and "'stereospike'" in err
    big = save_checkpoint(
        rec["dir"] / "big.safetensors", rec["model"], input_size=(260, 346), window_ms=50
    )
    err = _error(capsys, str(big), "--data", data)
    assert "260x346" in err and f"{H}x{W}" in err and "--any-size" in err
    assert main(["evaluate", str(big), "--data", data, "--frames", "0", "--any-size",
                 "--quiet"]) == 0  # fmt: skip


def test_bag_without_the_depth_topic_is_refused(rec: dict, capsys) -> None:
    bag = str(rec["dir"] / "other_ros2")
    err = _error(capsys, str(rec["ckpt"]), "--data", bag)
    assert "/davis/left/depth_image_rect" in err and "/lidar/depth" in err and "other_ros2" in err
    capsys.readouterr()
    code = main(["evaluate", str(rec["ckpt"]), "--data", bag, "--depth-topic", "/lidar/depth",
                 "--max-frames", "2", "--quiet"])  # fmt: skip
    assert code == 0


def test_evaluate_many_refuses_empty_and_duplicate_methods(rec: dict) -> None:
    from stereospike_ros.training.errors import TrainingError

    with pytest.raises(TrainingError, match="no frames"):
        evaluate(rec["model"], [])
    with pytest.raises(TrainingError, match="share a name"):
        evaluate_many([rec["model"], rec["model"]], [])
