"""ONNX export: every network variant round-trips through ONNX Runtime, the file describes
itself, and a corrupted, foreign or mismatched file is a one-line error (CLI exit 2)."""

from __future__ import annotations

import hashlib
import io
import sys
import warnings

import pytest
import torch
from model_helpers import one_torch_thread  # noqa: F401  (autouse fixture)

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from stereospike_ros.cli import main
from stereospike_ros.model import build_model, load_checkpoint, save_checkpoint
from stereospike_ros.model.errors import OnnxError
from stereospike_ros.model.inference import compile_for_inference
from stereospike_ros.model.onnx_export import (
    check_onnx,
    compare_with_reference,
    export_checkpoint,
    load_onnx,
    read_onnx_metadata,
    resize_is_exact,
    upsampling_sizes,
)
from stereospike_ros.model.prune import prune_silent


def _windows(channels: int, size: tuple[int, int], count: int = 2, rate: float = 1.0):
    generator = torch.Generator().manual_seed(count)
    return [
        torch.poisson(torch.full((channels, *size), rate), generator=generator)
        for _ in range(count)
    ]


def _pruned():
    model = build_model("stereospike", width=0.125)
    silent = {"conv2": torch.arange(16) % 3 == 0, "deconv2": torch.arange(8) < 5}
    return prune_silent(model, silent)


VARIANTS = {
    "stereospike": lambda: build_model("stereospike", width=0.125),
    "heads-1-no-skips": lambda: build_model("stereospike", width=0.125, heads=(1,), skips=False),
    "mono-heads-13": lambda: build_model("stereospike-mono", width=0.125, heads=(1, 3)),
    "ann-tanh": lambda: build_model("stereospike-ann", width=0.125, activation="tanh"),
    "pruned": _pruned,
}


def _save(tmp_path, model, name="net", input_size=(24, 32)):
    return save_checkpoint(
        tmp_path / f"{name}.safetensors", model, input_size=input_size, window_ms=50.0
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_round_trips_through_onnx_runtime_with_its_metadata(tmp_path, variant):
    torch.manual_seed(0)
    checkpoint = _save(tmp_path, VARIANTS[variant]().eval())
    model, ckpt_meta = load_checkpoint(checkpoint)
    channels = model.config.in_channels
    # 30 x 41: a size where ONNX Resize would read other rows than torch's nearest upsampling.
    windows = _windows(channels, (30, 41)) + _windows(channels, (24, 32), 1)
    result = export_checkpoint(checkpoint, tmp_path / "net.onnx", windows=windows)
    assert result.agreement.windows == 3
    assert result.agreement.max_abs_diff_m <= 1e-4
    assert result.agreement.sizes == [[30, 41], [24, 32]]

    meta = read_onnx_metadata(tmp_path / "net.onnx")
    assert meta["model"] == model.config.name
    assert meta["config"] == model.config.to_dict()
    assert meta["input_size"] is None and meta["trained_input_size"] == [24, 32]
    assert meta["window_ms"] == 50.0
    expected_order = ["L_ON", "L_OFF", "R_ON", "R_OFF"][:channels]
    assert meta["channel_order"] == expected_order
    assert meta["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert meta["tensors_sha256"] == ckpt_meta["tensors_sha256"]
    assert meta["precision"] == "fp32" and meta["opset"] == 17 and meta["output_units"] == "m"
    assert meta["validation"]["windows"] == 3

    # The file, run at yet another size (dynamic axes) and batch 2, is the reference network.
    raw, _ = load_onnx(
        tmp_path / "net.onnx", expect={"tensors_sha256": ckpt_meta["tensors_sha256"]}
    )
    x = torch.stack(_windows(channels, (19, 27), 2))
    runner = compile_for_inference(model, "onnxruntime", onnx=tmp_path / "net.onnx")
    with torch.inference_mode():
        torch.testing.assert_close(runner(x), model(x), rtol=0, atol=1e-4)
    assert compare_with_reference(model, raw, list(x)).max_abs_diff_m <= 1e-4


def test_fixed_size_export_refuses_other_sizes_and_fp16_reports_its_difference(tmp_path):
    torch.manual_seed(1)
    checkpoint = _save(tmp_path, build_model("stereospike", width=0.125))
    model, _ = load_checkpoint(checkpoint)
    fixed = export_checkpoint(
        checkpoint, tmp_path / "fixed.onnx", input_size=(24, 32), windows=_windows(4, (24, 32))
    )
    assert fixed.metadata["input_size"] == [24, 32]
    raw, _ = load_onnx(fixed.path)
    with pytest.raises(OnnxError, match=r"cannot run the network on a \(1, 4, 30, 41\) window"):
        compare_with_reference(model, raw, _windows(4, (30, 41), 1))

    # ONNX Resize is faster in the runtimes but reads other rows than torch at some sizes.
    assert resize_is_exact("onnxruntime", upsampling_sizes(model, (24, 32)))
    assert not resize_is_exact("onnxruntime", upsampling_sizes(model, (30, 41)))
    with pytest.raises(OnnxError, match="Resize reads other rows"):
        export_checkpoint(checkpoint, tmp_path / "r.onnx", input_size=(30, 41), upsampling="resize")
    resized = export_checkpoint(checkpoint, tmp_path / "resize.onnx", input_size=(24, 32),
                                upsampling="resize", windows=_windows(4, (24, 32)))  # fmt: skip
    assert resized.metadata["upsampling"] == "resize" and fixed.metadata["upsampling"] == "gather"
    assert resized.agreement.max_abs_diff_m <= 1e-4

    half = export_checkpoint(checkpoint, tmp_path / "half.onnx", precision="fp16",
                             windows=_windows(4, (24, 32)))  # fmt: skip
    assert half.metadata["precision"] == "fp16"
    assert half.bytes < 0.7 * fixed.bytes  # half the weight bytes
    measured = half.metadata["validation"]
    assert measured["mean_abs_diff_m"] == half.agreement.mean_abs_diff_m <= 0.05
    assert measured["max_abs_diff_m"] >= measured["mean_abs_diff_m"]
    # Above the tolerance: refused, and nothing is written.
    with pytest.raises(OnnxError, match=r"disagrees with the reference.*no file written"):
        export_checkpoint(checkpoint, tmp_path / "refused.onnx", precision="fp16",
                          windows=_windows(4, (24, 32)), tolerance_m=0.0)  # fmt: skip
    assert not (tmp_path / "refused.onnx").exists()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(2)
    checkpoint = _save(folder, build_model("stereospike", width=0.125, heads=(1,)))
    export_checkpoint(checkpoint, folder / "net.onnx", windows=_windows(4, (24, 32), 1))
    return checkpoint, folder / "net.onnx"


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exports_on_simulated_windows_and_checks_the_file(tmp_path, capsys, exported):
    checkpoint, _ = exported
    out_file = tmp_path / "cli.onnx"
    code, out, err = _cli(
        capsys, "export", str(checkpoint), "--format", "onnx", "--out", str(out_file)
    )
    assert code == 0, err
    assert f"wrote {out_file}" in out and "dynamic" in out
    assert "simulated 24x32" in out and "largest |depth difference|" in out
    assert read_onnx_metadata(out_file)["validation"]["source"].startswith("simulated 24x32")
    code, out, err = _cli(capsys, "export", "--check", str(out_file), str(checkpoint))
    assert code == 0, err
    assert "weights and graph verified" in out and "onnxruntime vs torch reference" in out


def _one_line_error(capsys, *argv: str, prog: str = "export") -> str:
    code, _, err = _cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_corrupt_foreign_or_mismatched_onnx_files_are_one_line_errors(tmp_path, capsys, exported):
    _, good = exported
    blob = good.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(blob[: len(blob) // 2])
    assert "is not a readable ONNX model" in _one_line_error(
        capsys, "export", "--check", str(truncated)
    )

    # One weight byte changed: protobuf still parses, the recorded weights digest does not match.
    raw_weights = load_onnx(good)[0]
    import onnx

    proto = onnx.load_from_string(raw_weights)
    init = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    data = bytearray(init.raw_data)
    data[len(data) // 2] ^= 0xFF
    init.raw_data = bytes(data)
    flipped = tmp_path / "flipped.onnx"
    flipped.write_bytes(proto.SerializeToString())
    assert "is corrupt: its weights do not match" in _one_line_error(
        capsys, "export", "--check", str(flipped)
    )

    foreign = tmp_path / "foreign.onnx"
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            torch.nn.Conv2d(4, 1, 3), (torch.zeros(1, 4, 8, 8),), buffer, dynamo=False
        )
    foreign.write_bytes(buffer.getvalue())
    assert "not one exported by stereospike_ros" in _one_line_error(
        capsys, "export", "--check", str(foreign)
    )

    torch.manual_seed(3)
    other = _save(tmp_path, build_model("stereospike", width=0.125, heads=(1,)), name="other")
    line = _one_line_error(capsys, "export", "--check", str(good), str(other))
    assert "was exported from another network" in line
    with pytest.raises(OnnxError, match="exported from another network"):
        compile_for_inference(load_checkpoint(other)[0], "onnxruntime", onnx=good)
    assert "does not exist" in _one_line_error(
        capsys, "export", "--check", str(tmp_path / "no.onnx"), str(tmp_path / "none.safetensors")
    )
    assert "cannot read ONNX file" in _one_line_error(
        capsys, "export", "--check", str(tmp_path / "no.onnx")
    )
    assert "does not exist" in _one_line_error(
        capsys, "export", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "x.onnx")
    )
    assert check_onnx(good)[1] is None  # the good file still verifies


def test_runtime_paths_equal_the_reference_and_name_what_is_missing(monkeypatch):
    torch.manual_seed(4)
    model = build_model("stereospike", width=0.125).eval()
    x = torch.stack(_windows(4, (30, 41), 1))
    with torch.inference_mode():
        reference = model(x)
    runtimes = ["onnxruntime"]
    try:
        import openvino  # noqa: F401

        runtimes.append("openvino")
    except ImportError:
        pass
    for runtime in runtimes:
        for size in (None, (30, 41)):
            runner = compile_for_inference(model, runtime, input_size=size)
            torch.testing.assert_close(runner(x), reference, rtol=0, atol=1e-4)
    with pytest.raises(OnnxError, match="no execution provider TensorrtExecutionProvider"):
        compile_for_inference(model, "onnxruntime", providers="tensorrt,cpu")
    with pytest.raises(OnnxError, match="not on torch device"):
        compile_for_inference(model, "onnxruntime", device="meta")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(OnnxError, match=r"onnxruntime is not installed.*pip install onnxruntime=="):
        compile_for_inference(model, "onnxruntime")


def test_evaluate_scores_the_same_through_onnxruntime_and_names_a_bad_path(
    tmp_path, capsys, exported
):
    import json

    from ros_support import small_recording

    checkpoint, _ = exported
    _, data = small_recording(tmp_path, duration_s=0.3)
    scores = {}
    for path in ("reference", "onnxruntime"):
        report = tmp_path / f"{path}.json"
        code, _, err = _cli(
            capsys, "evaluate", str(checkpoint), "--data", str(data), "--any-size",
            "--inference-path", path, "--json", str(report), "--quiet", "--device", "cpu",
        )  # fmt: skip
        assert code == 0, err
        scores[path] = json.loads(report.read_text())
    reference, onnx = scores["reference"], scores["onnxruntime"]
    assert onnx["info"]["inference_path"] == "onnxruntime"
    assert onnx["frames"] == reference["frames"] >= 2
    assert onnx["mde_cm"] == pytest.approx(reference["mde_cm"], abs=1e-3)
    assert "firing_rate" in reference and "firing_rate" not in onnx
    code, _, err = _cli(
        capsys, "evaluate", str(checkpoint), "--data", str(data), "--any-size", "--quiet",
        "--inference-path", "onnxruntime", "--onnx-providers", "tensorrt",
    )  # fmt: skip
    assert code == 2 and "no execution provider TensorrtExecutionProvider" in err


def test_benchmark_times_the_peers_in_the_same_run_with_ratios_against_exact(capsys, monkeypatch):
    import json

    args = ["benchmark", "model", "--models", "stereospike", "--width", "0.125", "--size", "24x32"]
    code = main(
        [*args, "--runs", "2", "--paths", "reference,exact", "--peers", "onnxruntime", "--json"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["peers"]) == {"onnxruntime"}
    rows = {r["path"]: r for r in report["results"]}
    assert list(rows) == ["reference", "exact", "onnxruntime"]
    peer = rows["onnxruntime"]
    assert peer["exact_speedup"] == pytest.approx(
        peer["forward_s_median"] / rows["exact"]["forward_s_median"]
    )
    assert peer["ratio_vs_reference"] > 0 and peer["runs"] == 2
    assert main([*args, "--runs", "1", "--paths", "exact", "--peers", "onnxruntime"]) == 0
    assert "onnxruntime (same weights, ONNX):" in capsys.readouterr().out
    assert "unknown --peers" in _one_line_error(
        capsys, *args, "--peers", "tvm", prog="benchmark model"
    )
    monkeypatch.setitem(sys.modules, "openvino", None)
    line = _one_line_error(capsys, *args, "--peers", "openvino", prog="benchmark model")
    assert "pip install openvino==" in line
