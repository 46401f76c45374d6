"""benchmark families: a family-split dataset, per-family scores, and budgets that can fail."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from stereospike_ros.cli import main
from stereospike_ros.model.checkpoint import save_checkpoint
from stereospike_ros.model.network import build_model
from stereospike_ros.sim.families import FAMILIES

QUICK = ["--quick", "--threads", "1"]


def constant_network(path: Path, depth_m: float) -> Path:
    """A real network whose heads ignore their input: it predicts ``depth_m`` everywhere, as a
    network that has regressed to a constant would."""
    torch.manual_seed(0)
    model = build_model("stereospike", width=0.125, heads=(1,))
    with torch.no_grad():
        model.predict["depth1"].weight.zero_()
        model.predict["depth1"].bias.fill_(depth_m)
    return save_checkpoint(path, model, window_ms=50.0, input_size=(48, 64))


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("families")
    # two processes: what they write is what one would (the configs are drawn up front)
    assert main(["benchmark", "families", "--out", str(out), *QUICK, "--jobs", "2"]) == 0
    return out


def test_dataset_holds_mixed_training_and_every_family_for_test(bench: Path) -> None:
    split = json.loads((bench / "split.json").read_text())["sequences"]
    families = json.loads((bench / "families.json").read_text())
    assert {n for n, s in split.items() if s["part"] == "train"} == {
        "mixed_train_0000",
        "mixed_train_0001",
    }
    assert {families[n] for n, s in split.items() if s["part"] != "test"} == {"mixed"}
    assert {families[n] for n, s in split.items() if s["part"] == "test"} == set(FAMILIES)
    for name in split:
        record = json.loads((bench / "data" / f"{name}_sim.json").read_text())
        assert record["family"] == families[name] and record["events"] > 0
    # a second run finds every recording done and simulates nothing
    stamp = (bench / "data" / "mixed_train_0000_data.hdf5").stat().st_mtime_ns
    assert main(["benchmark", "families", "--out", str(bench), *QUICK, "--build-only"]) == 0
    assert (bench / "data" / "mixed_train_0000_data.hdf5").stat().st_mtime_ns == stamp


def test_a_network_regressed_to_a_constant_fails_the_budget(bench: Path, capsys) -> None:
    flat = constant_network(bench / "flat.safetensors", 3.0)
    argv = ["benchmark", "families", "--out", str(bench), *QUICK, "--checkpoints",
            f"{flat},{flat}", "--labels", "flat,flat copy", "--max-vs-constant", "1.0"]  # fmt: skip
    assert main(argv) == 1
    printed = capsys.readouterr().out
    report = json.loads((bench / "results.json").read_text())
    assert list(report["results"]) == list(FAMILIES)
    for fam, methods in report["results"].items():
        assert list(methods) == [
            "flat", "flat copy", "sgbm", "flat on sgbm's pixels", "flat copy on sgbm's pixels",
            "constant (recording median)", "constant (recording mean)"
        ]  # fmt: skip
        # like for like: the network where SGBM answered, with SGBM's coverage
        on_sgbm = methods["flat on sgbm's pixels"]
        assert on_sgbm["coverage"] == pytest.approx(methods["sgbm"]["coverage"])
        assert on_sgbm["frames"] == methods["sgbm"]["frames"]
        assert on_sgbm["disparity_gain"] is None
        constant = methods["constant (recording median)"]
        at_mean = methods["constant (recording mean)"]
        assert constant["coverage"] == 1.0 and constant["frames"] == 6, fam
        # the median is the best single depth for MDE (frames of equal valid pixels)
        assert at_mean["mde_cm"] >= constant["mde_cm"] - 1e-6, fam
        assert methods["sgbm"]["coverage"] < 1.0
        # one depth everywhere, and no better than the best single depth of each recording
        assert methods["flat"]["mde_cm"] >= constant["mde_cm"], fam
        # the disparity probe: a network blind to its input does not follow added disparity,
        # a stereo matcher does; the constant has no input to probe
        assert methods["flat"]["disparity_gain"] == 0.0, fam
        assert methods["sgbm"]["disparity_gain"] > 0.5, fam
        assert constant["disparity_gain"] is None and at_mean["disparity_gain"] is None
        assert f"over budget: flat on {fam}: MDE" in printed
    # ... which is the flat depth scored by hand on the pixels SGBM answers
    from stereospike_ros.model.metrics import MetricAccumulator
    from stereospike_ros.training.baselines import SgbmBaseline
    from stereospike_ros.training.evaluate import open_eval_data

    by_hand = MetricAccumulator()
    split = bench / "split_panel.json"
    with open_eval_data(bench / "data", split=str(split), part="test") as data:
        sgbm = SgbmBaseline(data.focal_baseline)
        for _, frame in data.frames():
            answered = torch.isfinite(sgbm(frame).depth)
            truth = torch.as_tensor(frame.depth).masked_fill(~answered, float("nan"))
            by_hand.update(torch.full_like(truth, 3.0), truth)
    panel = report["results"]["panel"]["flat on sgbm's pixels"]["mde_cm"]
    assert panel == pytest.approx(by_hand.summary()["mde_cm"], rel=1e-4)
    table = (bench / "results.md").read_text()
    assert "| shapes | yes | flat |" in table
    # the held-out summary: the constant's ratio to itself is 1, the flat network's >= 1
    assert "| constant (recording median) |" in table.split("Over the held-out families:")[1]
    assert "| 1.00 (" in table
    # a loose budget passes the same numbers: the exit status follows the budget
    argv[-1] = "1000"
    assert main([*argv, "--families", "shapes,panel", "--pictures"]) == 0
    assert sorted(p.name for p in (bench / "pictures").iterdir()) == ["panel.png", "shapes.png"]


def _tool(name: str = "ensemble_families"):
    """A script of tools/ loaded as a module."""
    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ensemble_tool_averages_log_depth_and_scores_as_the_benchmark(bench: Path) -> None:
    near, far, middle = (constant_network(bench / f"c{d}.safetensors", d) for d in (2.0, 8.0, 4.0))
    argv = ["benchmark", "families", "--out", str(bench), *QUICK, "--checkpoints",
            f"{near},{middle}", "--labels", "near,middle", "--max-vs-constant", "1000"]  # fmt: skip
    assert main(argv) == 0  # also writes the split_<family>.json files the tool reads
    table = _tool().score(bench, [near, far, middle])
    report = json.loads((bench / "results.json").read_text())["results"]
    assert list(table) == list(FAMILIES)
    for fam, row in table.items():
        assert list(row) == ["c2.0", "c8.0", "c4.0", "ensemble"]
        # a single network's MDE is the benchmark's, to rounding
        assert row["c2.0"] == pytest.approx(report[fam]["near"]["mde_cm"], rel=1e-5), fam
        assert row["c4.0"] == pytest.approx(report[fam]["middle"]["mde_cm"], rel=1e-5), fam
        # the geometric mean of 2, 8 and 4 m is 4 m: the ensemble is the 4 m network
        assert row["ensemble"] == pytest.approx(row["c4.0"], rel=1e-4), fam
        assert row["ensemble"] != pytest.approx(row["c2.0"], rel=1e-2), fam


def test_bad_checkpoint_lists_are_refused_before_simulating(tmp_path: Path, capsys) -> None:
    out = tmp_path / "b"
    argv = ["benchmark", "families", "--out", str(out), *QUICK]
    assert main([*argv, "--checkpoints", "a.safetensors,b.safetensors", "--labels", "x"]) == 2
    assert "1 --labels for 2 --checkpoints" in capsys.readouterr().err
    assert main([*argv, "--checkpoints", str(tmp_path / "none.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*argv, "--families", "mixed,castle"]) == 2
    assert "castle" in capsys.readouterr().err
    assert main([*argv, "--temporal-smoothing", "1"]) == 2
    assert "--temporal-smoothing must be in [0, 1), got 1" in capsys.readouterr().err
    assert not out.exists()


def test_temporal_smoothing_scores_the_networks_and_sgbm_through_the_filter(bench: Path) -> None:
    flat = constant_network(bench / "flat5.safetensors", 5.0)
    argv = ["benchmark", "families", "--out", str(bench), *QUICK, "--checkpoints", str(flat),
            "--labels", "flat", "--families", "shapes,sparse"]  # fmt: skip
    assert main(argv) == 0
    per_frame = json.loads((bench / "results.json").read_text())["results"]
    assert main([*argv, "--temporal-smoothing", "0.5"]) == 0
    smoothed = json.loads((bench / "results.json").read_text())["results"]
    assert "temporal filter (smoothing 0.5" in (bench / "results.md").read_text()
    for fam in ("shapes", "sparse"):
        assert list(smoothed[fam]) == list(per_frame[fam])  # the same names, budgets included
        # one depth in, the same depth out; SGBM's maps change from frame to frame
        flat_mde = per_frame[fam]["flat"]["mde_cm"]
        assert smoothed[fam]["flat"]["mde_cm"] == pytest.approx(flat_mde, rel=1e-5)
        assert smoothed[fam]["sgbm"]["mde_cm"] != pytest.approx(per_frame[fam]["sgbm"]["mde_cm"])
        assert smoothed[fam]["sgbm"]["coverage"] == pytest.approx(
            per_frame[fam]["sgbm"]["coverage"]
        )
        # the disparity probe stays per frame
        sgbm_gain = per_frame[fam]["sgbm"]["disparity_gain"]
        assert smoothed[fam]["sgbm"]["disparity_gain"] == pytest.approx(sgbm_gain)


def test_training_continues_when_the_family_dataset_grows(tmp_path: Path) -> None:
    """A later session adds training recordings and runs the same train command: the run
    resumes from its last epoch and trains on the grown split."""
    from stereospike_ros.data.cache import CachedFrames

    build = ["benchmark", "families", "--out", str(tmp_path), *QUICK, "--build-only",
             "--families", "mixed"]  # fmt: skip
    train = ["train", "--root", str(tmp_path / "data"), "--split", str(tmp_path / "split.json"),
             "--out", str(tmp_path / "run"), "--width", "0.125", "--heads", "1", "--quiet",
             "--steps-per-epoch", "3", "--val-frames", "2", "--threads", "1"]  # fmt: skip
    assert main(build) == 0
    assert main([*train, "--epochs", "1"]) == 0
    assert main([*build, "--train-recordings", "3"]) == 0
    assert main([*train, "--epochs", "2"]) == 0
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    cache = CachedFrames(tmp_path / "run" / "cache" / "families_train.h5")
    assert cache.sequences == ["mixed_train_0000", "mixed_train_0001", "mixed_train_0002"]


def test_scoring_simulates_no_training_data_and_keeps_the_split(bench: Path) -> None:
    """Scoring with another --train-recordings than the data was built with must neither
    simulate the extra training recordings nor rewrite the split a run trained from."""
    flat = constant_network(bench / "flat3.safetensors", 3.0)
    split = (bench / "split.json").read_text()
    argv = ["benchmark", "families", "--out", str(bench), *QUICK, "--train-recordings", "4",
            "--families", "panel", "--checkpoints", str(flat)]  # fmt: skip
    assert main(argv) == 0
    assert not (bench / "data" / "mixed_train_0003_sim.json").exists()
    assert (bench / "split.json").read_text() == split
    table = (bench / "results.md").read_text()
    assert "| MDE cm | MDE cm, GT <= 10 m | RMSE cm |" in table


def test_density_tool_scores_as_the_benchmark_at_factor_1_and_reaches_the_network(
    bench: Path,
) -> None:
    flat = constant_network(bench / "flat3.safetensors", 3.0)
    torch.manual_seed(1)
    untrained = save_checkpoint(
        bench / "untrained.safetensors",
        build_model("stereospike", width=0.125, heads=(1,)),
        window_ms=50.0,
        input_size=(48, 64),
    )
    argv = ["benchmark", "families", "--out", str(bench), *QUICK, "--checkpoints",
            f"{flat},{untrained}", "--labels", "flat,untrained"]  # fmt: skip
    main(argv)  # over or under budget, it writes the split files and the table compared
    report = json.loads((bench / "results.json").read_text())["results"]
    table = _tool("density_families").score(bench, [flat, untrained], [0.25, 1.0, 3.0])
    assert list(table) == list(FAMILIES)
    moved = 0
    for fam, row in table.items():
        assert row["flat3 x1"] == pytest.approx(report[fam]["flat"]["mde_cm"], rel=1e-5), fam
        assert row["untrained x1"] == pytest.approx(report[fam]["untrained"]["mde_cm"], rel=1e-5)
        # a network that ignores its input scores the same at every density
        assert row["flat3 x0.25"] == row["flat3 x1"] == row["flat3 x3"], fam
        moved += row["untrained x0.25"] != row["untrained x1"] != row["untrained x3"]
        assert row["events/px"] > 0
    assert moved >= 3  # the scaled events reach a network that listens to them


def test_error_tool_scores_as_the_benchmark_and_its_oracle_level_is_the_best_constant(
    bench: Path,
) -> None:
    flat = constant_network(bench / "flat3.safetensors", 3.0)
    argv = ["benchmark", "families", "--out", str(bench), *QUICK, "--checkpoints", str(flat),
            "--labels", "flat"]  # fmt: skip
    main(argv)  # over or under budget, it writes the split files and the table compared
    report = json.loads((bench / "results.json").read_text())["results"]
    table = _tool("error_families").score(bench, [flat])
    (name,) = _tool().names([flat])
    assert list(table) == list(FAMILIES)
    improved = 0
    for fam, row in table.items():
        assert row[f"{name} MDE"] == pytest.approx(report[fam]["flat"]["mde_cm"], rel=1e-5), fam
        # scaled by the oracle, a constant becomes each frame's median depth: the constant
        # with the lowest mean absolute error, never worse than 3 m
        assert row[f"{name} MDE, oracle scale"] <= row[f"{name} MDE"] + 1e-6, fam
        improved += row[f"{name} MDE, oracle scale"] < row[f"{name} MDE"] - 1.0
        assert 0 < row[f"{name} events %"] < 100, fam
        shares = [row[f"{name} err share {band}"] for band in ("< 5 m", "5-10 m", ">= 10 m")]
        assert sum(shares) == pytest.approx(100.0), fam
    assert improved >= 3
