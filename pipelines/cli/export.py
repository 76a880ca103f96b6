"""Export a bundle's trained segmenter to TorchScript and ONNX, with a parity check of each export.

The exports use MONAI's converters (``convert_to_torchscript``, ``convert_to_onnx``); the ONNX model has dynamic
batch and spatial axes, so it runs on any window size a multiple of the network's total stride. Each export is
run on two inputs of different sizes (the bundle's ``roi_size`` and a larger one) and compared with the PyTorch
model: the largest absolute logit difference and the share of voxels whose argmax differs are printed, and an
export beyond the tolerance is refused (nothing is written under the final name). Files are written atomically.

Command line::

    python -m pipelines.cli.export liver                          # bundles/liver/models/model.ts and model.onnx
    python -m pipelines.cli.export brain --format onnx --output-dir /tmp/export --ckpt path/to/model.pt
    python -m pipelines.cli.export lung --compare-speed           # also time a window batch in each runtime

The ONNX model runs in ONNX Runtime (``onnxruntime.InferenceSession(path)``, input ``image``, output
``logits``) or any other ONNX runtime; the TorchScript model with ``torch.jit.load`` without this package.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipelines.io.atomic import atomic_write

__all__ = ["ExportCheck", "export_torchscript", "export_onnx", "parity_inputs", "main"]

logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".ts", "onnx": ".onnx"}
# Exports compute in float32 like the network; differences come from operator order only.
DEFAULT_ATOL = 1e-3
MAX_ARGMAX_MISMATCH = 1e-4


@dataclass
class ExportCheck:
    """Result of comparing an export with the PyTorch model on one input."""

    shape: tuple[int, ...]
    max_abs_difference: float
    argmax_mismatch: float

    def ok(self, atol: float = DEFAULT_ATOL) -> bool:
        """Whether the export agrees with the PyTorch model within ``atol`` and the argmax tolerance."""
        return self.max_abs_difference <= atol and self.argmax_mismatch <= MAX_ARGMAX_MISMATCH

    def __str__(self) -> str:
        size = "x".join(map(str, self.shape[2:]))
        return (
            f"{size}: max |logit difference| {self.max_abs_difference:.2e}, "
            f"argmax differs in {self.argmax_mismatch:.2e}"
        )


def parity_inputs(in_channels: int, roi_size: Sequence[int], divisor: int, seed: int = 0) -> list[torch.Tensor]:
    """Two structured test inputs: one window of ``roi_size`` and a larger one (+``divisor`` on every side).

    The content is a smooth random field (a sum of blurred noise), closer to an image than white noise, so the
    argmax comparison is not decided by logits that are all near zero.
    """
    generator = torch.Generator().manual_seed(seed)
    sizes = [tuple(roi_size), tuple(r + divisor for r in roi_size)]
    inputs = []
    for size in sizes:
        noise = torch.randn(1, in_channels, *size, generator=generator)
        smooth = torch.nn.functional.avg_pool3d(noise, 5, stride=1, padding=2) if len(size) == 3 else noise
        inputs.append((smooth - smooth.mean()) / (smooth.std() + 1e-6))
    return inputs


def _compare(reference: torch.Tensor, output: torch.Tensor | np.ndarray) -> ExportCheck:
    output = torch.as_tensor(np.asarray(output)) if not isinstance(output, torch.Tensor) else output
    return ExportCheck(
        shape=tuple(reference.shape),
        max_abs_difference=float((reference - output).abs().max()),
        argmax_mismatch=float((reference.argmax(1) != output.argmax(1)).float().mean()),
    )


def _reference(network: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [network(x) for x in inputs]


def _refuse_if_off(fmt: str, checks: list[ExportCheck], atol: float) -> None:
    bad = [c for c in checks if not c.ok(atol)]
    if bad:
        raise RuntimeError(
            f"the {fmt} export differs from the PyTorch model beyond atol {atol} / argmax {MAX_ARGMAX_MISMATCH}: "
            + "; ".join(map(str, bad))
        )


def export_torchscript(
    network: torch.nn.Module, path: str | Path, inputs: Sequence[torch.Tensor], atol: float = DEFAULT_ATOL
) -> list[ExportCheck]:
    """Script ``network`` (MONAI's ``convert_to_torchscript``; traced if it cannot be scripted), check it, save it.

    Raises ``RuntimeError`` when the scripted model's logits differ from ``network``'s beyond ``atol`` on any of
    ``inputs``; the file is then not written.
    """
    from monai.networks.utils import convert_to_torchscript

    network = network.eval()
    try:
        scripted = convert_to_torchscript(network)
    except Exception as exc:  # noqa: BLE001 - some networks only trace
        logger.warning("scripting failed (%s); tracing instead", str(exc).splitlines()[0])
        scripted = convert_to_torchscript(network, use_trace=True, inputs=[inputs[0]])
    with torch.no_grad():
        checks = [_compare(ref, scripted(x)) for ref, x in zip(_reference(network, inputs), inputs, strict=True)]
    _refuse_if_off("TorchScript", checks, atol)
    atomic_write(path, lambda tmp: torch.jit.save(scripted, tmp))
    return checks


def export_onnx(
    network: torch.nn.Module,
    path: str | Path,
    inputs: Sequence[torch.Tensor],
    atol: float = DEFAULT_ATOL,
    opset_version: int = 18,
) -> list[ExportCheck]:
    """Export ``network`` to ONNX with dynamic batch and spatial axes, check it in ONNX Runtime, save it.

    The model's input is ``image`` ``(N, C, *spatial)`` and its output ``logits``. Raises ``RuntimeError`` when
    ONNX Runtime's logits differ from ``network``'s beyond ``atol`` on any of ``inputs`` (inputs of different
    sizes also prove the spatial axes are dynamic); the file is then not written.
    """
    import onnx
    import onnxruntime
    from monai.networks.utils import convert_to_onnx

    network = network.eval()
    spatial = {i: f"spatial_{i - 2}" for i in range(2, inputs[0].ndim)}
    axes = {"image": {0: "batch", **spatial}, "logits": {0: "batch", **spatial}}
    model = convert_to_onnx(
        network,
        [inputs[0]],
        input_names=["image"],
        output_names=["logits"],
        opset_version=opset_version,
        dynamic_axes=axes,
        use_trace=True,
        dynamo=False,
    )
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    references = _reference(network, inputs)
    checks = [
        _compare(ref, session.run(None, {"image": x.numpy()})[0]) for ref, x in zip(references, inputs, strict=True)
    ]
    _refuse_if_off("ONNX", checks, atol)
    atomic_write(path, lambda tmp: onnx.save(model, tmp))
    return checks


def _time(fn, repeats: int = 3) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def compare_speed(network: torch.nn.Module, paths: dict[str, Path], batch: torch.Tensor) -> dict[str, float]:
    """Seconds per window batch in PyTorch (float32, bfloat16 autocast, and both with the layer rewrites of
    :mod:`pipelines.models.fast_layers` that the bundles' inferer uses) and in each exported runtime."""
    from pipelines.models.fast_layers import fast_inference_network

    fast = fast_inference_network(network)
    times = {}
    with torch.no_grad():
        times["pytorch fp32"] = _time(lambda: network(batch))
        times["pytorch fp32 fast layers"] = _time(lambda: fast(batch))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            times["pytorch bf16 autocast"] = _time(lambda: network(batch))
            times["pytorch bf16 fast layers"] = _time(lambda: fast(batch))
        if "torchscript" in paths:
            scripted = torch.jit.load(str(paths["torchscript"]))
            times["torchscript fp32"] = _time(lambda: scripted(batch))
    if "onnx" in paths:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(paths["onnx"]), options, providers=["CPUExecutionProvider"])
        times["onnxruntime fp32"] = _time(lambda: session.run(None, {"image": batch.numpy()}))
    return times


def _bundle_network(workflow: str, ckpt: str | None, overrides: dict) -> tuple[torch.nn.Module, dict]:

    from pipelines.api import load_weights
    from pipelines.workflows import get_workflow

    parser = get_workflow(workflow).config_parser("inference", overrides)
    ckpt_path = Path(ckpt or parser.get_parsed_content("ckpt_path"))
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: no trained weights to export (train first, or pass --ckpt)")
    network = load_weights(parser.get_parsed_content("network_def"), ckpt_path).eval()
    strides = parser.get("strides", [2, 2, 2, 2])
    info = {
        "in_channels": parser.get_parsed_content("in_channels"),
        "roi_size": list(parser.get_parsed_content("roi_size")),
        "divisor": math.prod(strides) if isinstance(strides, list) else 16,
        "ckpt_dir": Path(parser.get_parsed_content("ckpt_dir")),
        "ckpt_path": ckpt_path,
    }
    return network, info


def main(argv: Sequence[str] | None = None) -> int:
    """Export a workflow's segmenter; returns 0, 1 if an export failed its parity check, 2 on a usage error."""
    from pipelines.cli.main import parse_overrides

    args_parser = argparse.ArgumentParser(prog="python -m pipelines.cli.export", description=__doc__.splitlines()[0])
    args_parser.add_argument("workflow", help="a workflow of pipelines.workflows (liver, lung, brain)")
    args_parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS))
    args_parser.add_argument("--ckpt", default=None, help="weights to export (default: the bundle's ckpt_path)")
    args_parser.add_argument("--output-dir", default=None, help="default: the bundle's ckpt_dir (models/)")
    args_parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="largest logit difference allowed")
    args_parser.add_argument("--compare-speed", action="store_true", help="time one window batch in each runtime")
    args_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID=VALUE")
    args = args_parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        network, info = _bundle_network(args.workflow, args.ckpt, parse_overrides(args.overrides))
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output_dir = Path(args.output_dir) if args.output_dir else info["ckpt_dir"]
    output_dir.mkdir(parents=True, exist_ok=True)
    inputs = parity_inputs(info["in_channels"], info["roi_size"], info["divisor"])
    exporters = {"torchscript": export_torchscript, "onnx": export_onnx}
    written, status = {}, 0
    for fmt in args.format:
        path = output_dir / (info["ckpt_path"].stem + SUFFIXES[fmt])
        try:
            checks = exporters[fmt](network, path, inputs, atol=args.atol)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        written[fmt] = path
        print(f"{fmt}: wrote {path}; parity with PyTorch: " + "; ".join(map(str, checks)))
    if args.compare_speed and written:
        batch = torch.cat([inputs[0]] * 4)
        times = compare_speed(network, written, batch)
        base = times["pytorch fp32"]
        print(f"one batch of 4 windows of {'x'.join(map(str, info['roi_size']))}, {torch.get_num_threads()} threads:")
        for name, seconds in times.items():
            print(f"  {name:26s} {seconds:7.3f} s  x{base / seconds:.2f}")
    return status


if __name__ == "__main__":
    sys.exit(main())
