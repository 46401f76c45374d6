"""train: a tiny simulated run learns, checkpoints, resumes after a real kill, refuses bad input."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from stereospike_ros.cli import main
from stereospike_ros.data import write_mvsec_hdf5, write_ros1_bag, write_ros2_bag
from stereospike_ros.model import ModelOutput, load_checkpoint
from stereospike_ros.sim.simulator import SimConfig, simulate
from stereospike_ros.training import TrainingError
from stereospike_ros.training.export import export_default
from stereospike_ros.training.train import (
    TrainConfig,
    WeightAverage,
    level_loss,
    load_state,
    train,
)

H, W = 64, 80
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny simulated recordings (train: boxes 3 s, val: room 1 s) and a split file."""
    root = tmp_path_factory.mktemp("trainsims")
    for name, seed, scene, seconds in (("boxa", 1, "boxes", 3.0), ("roomb", 2, "room", 1.0)):
        recording = simulate(
            SimConfig(
                name=name,
                seed=seed,
                scene=scene,
                duration_s=seconds,
                width=W,
                height=H,
                focal_px=60.0,
            )
        )
        write_mvsec_hdf5(recording, root / f"{name}_data.hdf5", root / f"{name}_gt.hdf5")
    split = {"name": "tiny", "sequences": {"boxa": {"part": "train"}, "roomb": {"part": "val"}}}
    (root / "split.json").write_text(json.dumps(split))
    return root


def _config(sims: Path, out: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        root=str(sims),
        split=str(sims / "split.json"),
        out=str(out),
        cache_dir=str(sims / "cache"),
        width=0.125,
        epochs=3,
        lr=2e-3,
        level_weight=0.5,
        steps_per_epoch=60,
        threads=1,
        progress=False,
    )
    return replace(base, **changes)


def _rows(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def finished(sims: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run trained 1 epoch (state kept), then extended to 3 by re-running with epochs=3."""
    out = tmp_path_factory.mktemp("run") / "uninterrupted"
    train(_config(sims, out, epochs=1))
    after_one = load_state(out)
    train(_config(sims, out))
    return {"out": out, "after_one": after_one, "final": load_state(out)}


def test_train_lowers_validation_mde_and_writes_checkpoints(finished: dict) -> None:
    out = finished["out"]
    rows = _rows(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for r in rows:  # throughput: 60 samples of batch 1 per epoch, each step under its s/step
        assert 0 < float(r["samples_per_s"]) <= 1.0 / float(r["s_per_step"]) * 1.001
    mde = [float(r["val_mde_cm"]) for r in rows]
    assert mde[-1] < mde[0] - 10.0, mde
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    best_epoch = 1 + mde.index(min(mde))
    model, meta = load_checkpoint(out / "best.safetensors", expect={"input_size": [H, W]})
    assert meta["epoch"] == best_epoch and meta["model"] == "stereospike"
    assert meta["metrics"]["val_mde_cm"] == pytest.approx(min(mde))
    assert model.config.width == 0.125
    _, last = load_checkpoint(out / "last.safetensors")
    assert last["epoch"] == 3 and last["split"]["name"].endswith("split.json")
    assert any((out / "tb").iterdir()), "no TensorBoard events"
    assert not list(out.glob(".*partial")), "partial files left behind"


def test_resume_after_kill_continues_with_identical_state(
    sims: Path, finished: dict, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    config = _config(sims, out)
    # A real SIGKILL in the middle of epoch 2 (step 90 of 60 per epoch), no cleanup at all.
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    script = textwrap.dedent(
        """
        import json, os, signal, sys
        from stereospike_ros.training.train import TrainConfig, train

        def kill(step, loss):
            if step == 90:
                os.kill(os.getpid(), signal.SIGKILL)

        train(TrainConfig.from_dict(json.load(open(sys.argv[1]))), on_step=kill)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "config.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = load_state(out)
    assert state["epoch"] == 1 and state["global_step"] == 60
    reference = finished["after_one"]
    for a, b in zip(
        state["optimizer"]["state"].values(), reference["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(
            a["exp_avg_sq"], b["exp_avg_sq"]
        )
    assert not list(out.glob(".*partial")), "a half-written file survived the kill"

    train(config)  # the same command again: continues after epoch 1
    resumed, final = load_state(out), finished["final"]
    assert resumed["epoch"] == 3 and resumed["global_step"] == final["global_step"]
    for name, tensor in final["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=1e-6, msg=name)
    assert resumed["scheduler"] == final["scheduler"]
    assert [r["epoch"] for r in _rows(out)] == ["1", "2", "3"]


def test_level_loss_is_the_squared_mean_residual_of_each_output() -> None:
    target = torch.tensor([[[[1.0, 2.0], [float("nan"), 4.0]]]])
    p1 = torch.tensor([[[[2.0, 2.0], [9.0, 6.0]]]])  # residuals 1, 0, -, 2: mean 1
    p2 = p1 - 1.0  # residuals 0, -1, -, 1: mean 0
    out = ModelOutput(p1, {"depth2": p2, "depth1": p1}, {}, ())
    assert float(level_loss(out, target)) == pytest.approx(1.0)
    # log: log(p1 / target) = log 2, 0, -, log 1.5; log(p2 / target) = 0, log 0.5, -, log 1.25
    m1, m2 = math.log(2 * 1.5) / 3, math.log(0.5 * 1.25) / 3
    assert float(level_loss(out, target, "log")) == pytest.approx(m1**2 + m2**2, rel=1e-3)


def test_run_folder_with_other_config_is_refused(sims: Path, finished: dict) -> None:
    with pytest.raises(TrainingError, match=r"width: run has 0\.125, command gives 0\.25"):
        train(_config(sims, finished["out"], width=0.25))
    with pytest.raises(TrainingError, match="already holds a run"):
        train(_config(sims, finished["out"], resume="never"))


def test_export_default_writes_weights_and_card(finished: dict, tmp_path: Path) -> None:
    target = export_default(finished["out"], tmp_path)
    _, meta = load_checkpoint(target)
    card = json.loads((tmp_path / "default.json").read_text())
    assert card["best_epoch"] == meta["epoch"] and card["parameters"] > 0
    assert card["validation"]["val_mde_cm"] == pytest.approx(meta["metrics"]["val_mde_cm"])
    assert len(card["history"]) == 3
    assert "note" not in card  # what the data was is not guessed
    export_default(finished["out"], tmp_path, note="simulated rooms")
    assert json.loads((tmp_path / "default.json").read_text())["note"] == "simulated rooms"


def test_rerun_with_export_default_writes_the_note_and_trains_nothing(
    sims: Path, finished: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stereospike_ros.training.export.WEIGHTS_DIR", tmp_path)
    train(_config(sims, finished["out"], export_default=True, note="simulated boxes"))
    card = json.loads((tmp_path / "default.json").read_text())
    assert card["note"] == "simulated boxes"
    assert len(card["history"]) == 3  # the finished run was exported, not extended
    assert (tmp_path / "default.safetensors").read_bytes() == (
        finished["out"] / "best.safetensors"
    ).read_bytes()


def test_init_starts_from_the_checkpoint_weights(
    sims: Path, finished: dict, tmp_path: Path
) -> None:
    source = finished["out"] / "best.safetensors"
    _, meta = load_checkpoint(source)
    # a learning rate too small to move anything: epoch 1 validates the loaded weights
    still = dict(epochs=1, lr=1e-12, steps_per_epoch=2)
    out = tmp_path / "finetune"
    train(_config(sims, out, init=str(source), **still))
    assert json.loads((out / "config.json").read_text())["init"] == str(source)
    tuned = float(_rows(out)[0]["val_mde_cm"])
    assert tuned == pytest.approx(meta["metrics"]["val_mde_cm"], rel=1e-3)
    train(_config(sims, tmp_path / "fresh", **still))
    fresh = float(_rows(tmp_path / "fresh")[0]["val_mde_cm"])
    assert abs(fresh - tuned) > 5.0, (fresh, tuned)


def test_init_with_another_architecture_is_refused_before_caching(
    finished: dict, tmp_path: Path
) -> None:
    source = finished["out"] / "best.safetensors"
    sims = tmp_path / "uncached"  # no recordings at all: the check comes first
    sims.mkdir()
    (sims / "split.json").write_text(json.dumps({"sequences": {"a": {"part": "train"}}}))
    with pytest.raises(TrainingError, match=r"--init: checkpoint .* config.width is 0.125, "
                       r"expected 0.25"):  # fmt: skip
        train(_config(sims, tmp_path / "run", width=0.25, init=str(source)))
    with pytest.raises(TrainingError, match=r"--init: .*gone\.safetensors"):
        train(_config(sims, tmp_path / "run2", init=str(tmp_path / "gone.safetensors")))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"root": "/nonexistent/recordings"}, "/nonexistent/recordings is not a folder"),
        ({"split": "split7"}, "unknown split 'split7'"),
        ({"split": "missing_split.json"}, "missing_split.json does not exist"),
        ({"crop": (128, 160)}, "crop 128x160 is larger than the frames"),
        ({"model": "stereospike-xl"}, "unknown model 'stereospike-xl'"),
        ({"loss_scale": "cm"}, "loss_scale must be metres or log, got 'cm'"),
    ],
)
def test_bad_input_is_named(sims: Path, tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        train(_config(sims, tmp_path / "bad", **change))


def test_split_naming_a_missing_recording_is_named(sims: Path, tmp_path: Path) -> None:
    split = tmp_path / "split.json"
    split.write_text(
        json.dumps({"sequences": {"boxa": {"part": "train"}, "gone": {"part": "val"}}})
    )
    with pytest.raises(TrainingError, match="no recording 'gone'"):
        train(_config(sims, tmp_path / "bad", split=str(split)))


def test_split_without_validation_frames_is_refused(sims: Path, tmp_path: Path) -> None:
    split = tmp_path / "trainonly.json"
    split.write_text(json.dumps({"sequences": {"boxa": {"part": "train"}}}))
    with pytest.raises(TrainingError, match="has no val frames"):
        train(_config(sims, tmp_path / "bad", split=str(split)))


def test_note_without_export_is_refused(sims: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(TrainingError, match="give it with --export-default"):
        _config(sims, tmp_path / "run", note="simulated boxes")
    argv = ["train", "--root", str(sims), "--split", str(sims / "split.json"),
            "--out", str(tmp_path / "run"), "--note", "simulated boxes", "--quiet"]  # fmt: skip
    code = main(argv)
    assert code == 2
    err = capsys.readouterr().err
    assert "note is written to the exported card" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_cli_reports_errors_without_traceback(sims: Path, tmp_path: Path, capsys) -> None:
    code = main(["train", "--root", str(tmp_path / "none"), "--split", "split1",
                 "--out", str(tmp_path / "run"), "--quiet"])  # fmt: skip
    assert code == 2
    assert "is not a folder of recordings" in capsys.readouterr().err
    code = main(["train", "--root", str(sims), "--split", str(sims / "split.json"),
                 "--init", str(tmp_path / "gone.safetensors"), "--out", str(tmp_path / "run"),
                 "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--init: " in err and "gone.safetensors" in err
    assert "Traceback" not in err


def test_trains_from_ros1_and_ros2_bags(tmp_path: Path) -> None:
    recording = simulate(SimConfig(seed=5, duration_s=0.5, width=W, height=H, focal_px=60.0))
    write_ros2_bag(recording, tmp_path / "flight2")
    write_ros1_bag(recording, tmp_path / "flight1.bag")
    split = {"sequences": {"flight2": {"part": "train"}, "flight1": {"part": "val"}}}
    (tmp_path / "split.json").write_text(json.dumps(split))
    out = tmp_path / "run"
    config = _config(tmp_path, out, epochs=1, steps_per_epoch=3, cache_dir=None, val_frames=4)
    train(replace(config, split=str(tmp_path / "split.json")))
    row = _rows(out)[0]
    assert int(row["steps"]) == 3 and float(row["val_frames"]) == 4
    assert (out / "cache").is_dir()


def test_torchrun_two_processes_train(sims: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "stereospike_ros", "train", "--root", str(sims), "--split", str(sims / "split.json"),
        "--cache-dir", str(sims / "cache"), "--out", str(out), "--width", "0.125",
        "--epochs", "3", "--lr", "5e-3", "--steps-per-epoch", "20", "--threads", "1",
        "--val-frames", "6", "--level-weight", "0.5", "--quiet", "--device", "cpu",
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(out)
    assert [int(r["processes"]) for r in rows] == [2, 2, 2]
    assert all(int(r["steps"]) == 20 for r in rows)  # 40 frames per epoch, split over 2 ranks
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.9 * losses[0], losses
    assert proc.stdout.count("run folder:") == 1  # rank 0 reports, rank 1 stays quiet
    load_checkpoint(out / "last.safetensors", expect={"input_size": [H, W]})


class _Ramp(torch.utils.data.Dataset):
    """Frames whose every pixel says where it is: input and depth both hold row * 100 + col."""

    height, width = 12, 16

    def __len__(self) -> int:
        return 40

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.arange(self.height).view(-1, 1) * 100 + torch.arange(self.width) + i * 10_000
        return rows.expand(4, -1, -1).float(), rows[None].float()


def test_vflip_turns_about_half_the_crops_upside_down_inputs_and_depth_alike() -> None:
    from stereospike_ros.training.train import CroppedFrames

    plain = CroppedFrames(_Ramp(), (6, 8), seed=3)
    flipped = CroppedFrames(_Ramp(), (6, 8), seed=3, vflip=True)
    turned = 0
    for i in range(len(plain)):
        (x0, d0), (x1, d1) = plain[i], flipped[i]
        assert torch.equal(x1[0], d1[0])  # the depth follows its pixels
        if torch.equal(x1, x0.flip(-2)):
            turned += 1
            assert torch.equal(d1, d0.flip(-2))
        else:  # the same window as without flips, the right way up
            assert torch.equal(x1, x0) and torch.equal(d1, d0)
    assert 10 <= turned <= 30


class _Plane(torch.utils.data.Dataset):
    """A textured fronto-parallel plane: the right camera sees the left image ``disparity`` px
    to the left (x_right = x_left - d), the depth is fB / d everywhere but a NaN hole."""

    height, width, fb = 10, 40, 20.0

    def __init__(self, disparity: int, frames: int = 30) -> None:
        self.disparity, self.frames = disparity, frames

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        left = torch.randint(0, 5, (2, self.height, self.width + self.disparity), generator=g)
        right = left[..., self.disparity :]  # right(x) = left(x + d): disparity d
        x = torch.cat([left[..., : self.width], right]).float()
        depth = torch.full((1, self.height, self.width), self.fb / self.disparity)
        depth[0, 0, 0] = float("nan")
        return x, depth


def test_disparity_shift_adds_its_pixels_to_the_disparity_and_moves_the_depth_with_it() -> None:
    from stereospike_ros.training.train import CroppedFrames

    data = _Plane(disparity=4)
    plain = CroppedFrames(data, (10, 24), seed=5)
    shifted = CroppedFrames(data, (10, 24), seed=5, shift_px=3, focal_baseline=data.fb)
    seen = set()
    for i in range(len(data)):
        (x0, d0), (x1, d1) = plain[i], shifted[i]
        assert torch.equal(x1[:2], x0[:2]) and x1.shape == x0.shape  # the left camera as it was
        # find the disparity the shifted pair shows: right(x) == left(x + d) on the columns
        # where both are inside the crop and the right camera's window inside the frame
        found = [d for d in range(0, 9) if torch.equal(x1[2:, :, 4:14], x1[:2, :, 4 + d : 14 + d])]
        assert len(found) == 1, found
        s = found[0] - 4
        seen.add(s)
        valid = torch.isfinite(d1)
        assert torch.equal(valid, torch.isfinite(d0))  # NaN stays NaN, nothing else is lost
        assert torch.allclose(d1[valid], torch.full_like(d1[valid], data.fb / found[0]))
        if s == 0:
            assert torch.equal(x1, x0)
    assert seen == {-3, -2, -1, 0, 1, 2, 3}


def test_disparity_shift_drops_pixels_it_would_put_behind_the_rig_and_needs_f_times_b() -> None:
    from stereospike_ros.training.train import CroppedFrames, TrainConfig, TrainingError

    data = _Plane(disparity=1)
    shifted = CroppedFrames(data, (10, 24), seed=1, shift_px=2, focal_baseline=data.fb)
    for i in range(len(data)):
        x, depth = shifted[i]
        assert not (depth <= 0).any()  # never a negative or zero depth
        assert bool(torch.isfinite(depth).any()) == bool(
            torch.equal(x[2:, :, 4:14], x[:2, :, 5:15])
            or torch.equal(x[2:, :, 4:14], x[:2, :, 6:16])
            or torch.equal(x[2:, :, 4:14], x[:2, :, 7:17])
        )  # scored only when the shift left a positive disparity (1 + s >= 1)
    with pytest.raises(TrainingError, match="focal length x baseline"):
        CroppedFrames(data, (10, 24), seed=1, shift_px=2, focal_baseline=None)
    with pytest.raises(TrainingError, match="mono model"):
        TrainConfig(root="r", split="s", out="o", model="stereospike-mono", disparity_shift=2)
    with pytest.raises(TrainingError, match=">= 0"):
        TrainConfig(root="r", split="s", out="o", disparity_shift=-1)


def test_a_disparity_shift_fraction_shifts_that_share_of_the_samples_and_no_more() -> None:
    from stereospike_ros.training.train import CroppedFrames, TrainConfig, TrainingError

    data = _Plane(disparity=4, frames=200)
    every = CroppedFrames(data, (10, 24), seed=3, shift_px=2, focal_baseline=data.fb)
    half = CroppedFrames(
        data, (10, 24), seed=3, shift_px=2, focal_baseline=data.fb, shift_fraction=0.5
    )
    unshifted_every = unshifted_half = 0
    for i in range(len(data)):
        (x_all, _), (x_half, d_half) = every[i], half[i]
        unshifted_every += torch.equal(x_all[2:, :, 4:14], x_all[:2, :, 8:18])  # disparity 4
        if not torch.equal(x_half, x_all):  # the fraction only ever turns a shift off
            assert torch.equal(x_half[2:, :, 4:14], x_half[:2, :, 8:18])
            valid = torch.isfinite(d_half)
            assert torch.allclose(d_half[valid], torch.full_like(d_half[valid], data.fb / 4))
        unshifted_half += torch.equal(x_half[2:, :, 4:14], x_half[:2, :, 8:18])
    # 1 in 5 shifts is 0 with the full fraction; half of the other 4 in 5 are turned off
    assert 25 <= unshifted_every <= 60
    assert 100 <= unshifted_half <= 140
    with pytest.raises(TrainingError, match=r"in \(0, 1\]"):
        TrainConfig(root="r", split="s", out="o", disparity_shift=2, disparity_shift_fraction=0)
    with pytest.raises(TrainingError, match="needs a disparity_shift"):
        TrainConfig(root="r", split="s", out="o", disparity_shift_fraction=0.5)


def test_event_density_drops_or_adds_events_only_where_they_are_and_keeps_the_depth() -> None:
    from stereospike_ros.training.train import CroppedFrames, TrainConfig, TrainingError

    data = _Plane(disparity=4, frames=60)
    plain = CroppedFrames(data, (10, 24), seed=4, shift_px=2, focal_baseline=data.fb)

    def scaled(density: tuple[float, float]) -> CroppedFrames:
        return CroppedFrames(
            data, (10, 24), seed=4, shift_px=2, focal_baseline=data.fb, density=density
        )

    totals = {"plain": 0.0, "thinned": 0.0, "added": 0.0}
    ratios = []
    for i in range(len(data)):
        (x0, d0), (x_thin, d_thin), (x_add, d_add), (x_any, _) = (
            plain[i], scaled((0.5, 0.5))[i], scaled((2.0, 2.0))[i], scaled((0.5, 2.0))[i]
        )  # fmt: skip
        for d in (d_thin, d_add):  # the same window and shift: the same depth, NaN and all
            assert torch.equal(torch.isnan(d), torch.isnan(d0))
            assert torch.equal(d.nan_to_num(), d0.nan_to_num())
        assert torch.equal(x_thin, x_thin.round()) and torch.equal(x_add, x_add.round())
        assert bool((x_thin <= x0).all()) and bool((x_add >= x0).all())
        assert not x_thin[x0 == 0].any() and not x_add[x0 == 0].any()  # nowhere new
        totals["plain"] += float(x0.sum())
        totals["thinned"] += float(x_thin.sum())
        totals["added"] += float(x_add.sum())
        ratios.append(float(x_any.sum() / x0.sum()))
    assert 0.45 < totals["thinned"] / totals["plain"] < 0.55
    assert 1.9 < totals["added"] / totals["plain"] < 2.1
    assert min(ratios) < 0.75 and max(ratios) > 1.4  # a factor per sample, drawn in the range
    for bad in ((2.0, 1.0), (0.0, 1.0), (1.0,)):
        with pytest.raises(TrainingError, match="event_density"):
            TrainConfig(root="r", split="s", out="o", event_density=bad)  # type: ignore[arg-type]


def test_train_cli_with_a_disparity_shift_and_event_density_trains_and_records_both(
    sims: Path, tmp_path: Path
) -> None:
    out = tmp_path / "shifted"
    argv = ["train", "--root", str(sims), "--split", str(sims / "split.json"),
            "--cache-dir", str(sims / "cache"), "--out", str(out), "--width", "0.125",
            "--epochs", "1", "--steps-per-epoch", "8", "--crop", "32x48", "--threads", "1",
            "--level-weight", "0.5", "--loss-scale", "log", "--disparity-shift", "3",
            "--quiet"]  # fmt: skip
    assert main([*argv, "--event-density", "2", "0.5"]) == 2  # min above max: refused
    assert not (out / "config.json").exists()
    assert main([*argv, "--event-density", "0.5", "2", "--weight-average", "1"]) == 2
    assert main([*argv, "--event-density", "0.5", "2", "--weight-average", "0.9"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["disparity_shift"] == 3 and config["event_density"] == [0.5, 2.0]
    assert config["weight_average"] == 0.9 and "raw_val_mde_cm" in _rows(out)[0]
    assert math.isfinite(float(_rows(out)[0]["train_loss"]))


def test_weight_average_is_an_exponential_average_that_warms_up() -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    average = WeightAverage(net, decay=0.5)
    expected = 0.0
    for n, value in enumerate([4.0, 8.0, 2.0, 6.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0]):
        with torch.no_grad():
            net.weight.fill_(value)
        average.update(net)
        decay = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18.., 0.25, ... then 0.5 from n = 8
        expected = decay * expected + (1 - decay) * value
        assert float(average.module.weight) == pytest.approx(expected, rel=1e-6)
    assert not average.module.weight.requires_grad and net.weight.requires_grad
    restored = WeightAverage(net, decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 11 and float(restored.module.weight) == float(average.module.weight)


def test_weight_average_run_saves_and_validates_the_average_and_resumes_it(
    sims: Path, tmp_path: Path
) -> None:
    out = tmp_path / "averaged"
    config = _config(sims, out, epochs=1, weight_average=0.99, val_frames=6)
    train(config)
    train(replace(config, epochs=2))  # extended: the average must continue, not restart
    state = load_state(out)
    assert state["average"]["updates"] == state["global_step"] == 120
    rows = _rows(out)
    for r in rows:  # the average and the raw weights are different networks, both validated
        assert math.isfinite(float(r["raw_val_mde_cm"]))
        assert float(r["raw_val_mde_cm"]) != float(r["val_mde_cm"])
    model, meta = load_checkpoint(out / "last.safetensors")
    saved = model.state_dict()
    for name, tensor in state["average"]["weights"].items():
        assert torch.equal(saved[name], tensor), name
    assert any(not torch.equal(state["model"][k], v) for k, v in saved.items())
    assert meta["metrics"]["val_mde_cm"] == pytest.approx(float(rows[-1]["val_mde_cm"]))

    uninterrupted = tmp_path / "straight"
    train(replace(config, out=str(uninterrupted), epochs=2))
    straight = load_state(uninterrupted)["average"]["weights"]
    for name, tensor in straight.items():
        torch.testing.assert_close(state["average"]["weights"][name], tensor, rtol=0, atol=1e-6)
    with pytest.raises(TrainingError, match="weight_average"):
        replace(config, weight_average=1.0)
