"""int8 quantization with ONNX Runtime's quantizer, in the settings chosen by measurement.

The default, :data:`PORTABLE`, is dynamic int8 with signed 7-bit weights
(``reduce_range``), one scale per output channel. Why 7-bit: on x86-64 CPUs
without VNNI (AVX2, plain AVX-512) ONNX Runtime's U8S8 kernels add pairs of
u8×s8 products in 16 bits, which saturates with full 8-bit weights; VNNI CPUs
do not saturate. The same 8-bit file therefore computes different numbers on
different CPUs, and on an AVX2-only CPU it failed its gate. With 7-bit weights
no pair can overflow (|w| ≤ 64: 2 × 255 × 64 < 32767), so every x86 kernel computes the
same exact integer sums. ``benchmarks/int8_settings.py`` measures the
alternatives on any CPU (and, under ``qemu-x86_64 -cpu EPYC-v1``, on the
AVX2-only kernels); docs/any-cpu.md records what each gave.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ortpipe.export.onnx_export import ExportError


@dataclass(frozen=True)
class QuantSettings:
    """How to quantize: ``dynamic`` (activation scales per call) or ``static`` (calibrated)."""

    name: str
    method: str = "dynamic"
    weight_type: str = "QInt8"
    per_channel: bool = True
    reduce_range: bool = False
    activation_type: str = "QUInt8"  # static only; dynamic activations are always u8

    def as_dict(self) -> dict:
        data = asdict(self)
        if self.method == "dynamic":
            data.pop("activation_type")
        return data


PORTABLE = QuantSettings("s8-per-channel-7bit", reduce_range=True)

CANDIDATES = (
    QuantSettings("s8-per-channel", reduce_range=False),
    PORTABLE,
    QuantSettings("s8-per-tensor-7bit", per_channel=False, reduce_range=True),
    QuantSettings("u8u8-per-channel", weight_type="QUInt8"),
    QuantSettings("static-qdq-s8-7bit", method="static", reduce_range=True),
)


class _TokenizedReader:
    """Feeds calibration batches to ``quantize_static`` (its ``CalibrationDataReader`` protocol)."""

    def __init__(self, feeds: Iterable[dict]):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)

    def rewind(self):  # pragma: no cover - the calibrator reads once
        raise NotImplementedError


def quantize_int8(source: Path, target: Path, settings: QuantSettings = PORTABLE,
                  calibration_feeds: Sequence[dict] | None = None) -> dict:
    """Write an int8 copy of ``source`` to ``target``; returns the settings used.

    Args:
        calibration_feeds: model input dicts, needed for ``static`` settings only.
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer advises pre-processing on the root logger; fused graphs need none
    # Fused ops (com.microsoft domain) defeat ONNX shape inference; their outputs
    # are float, which is what the quantizer needs to be told.
    extra = {"DefaultTensorType": TensorProto.FLOAT}
    try:
        if settings.method == "dynamic":
            quantize_dynamic(str(source), str(target), weight_type=QuantType[settings.weight_type],
                             per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                             extra_options=extra)
        elif settings.method == "static":
            if not calibration_feeds:
                raise ExportError(f"static quantization ({settings.name}) needs calibration data")
            quantize_static(str(source), str(target), _TokenizedReader(calibration_feeds),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                            per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                            activation_type=QuantType[settings.activation_type],
                            weight_type=QuantType[settings.weight_type], extra_options=extra)
        else:
            raise ExportError(f"unknown quantization method {settings.method!r}")
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"ONNX Runtime's {settings.method} quantization failed on {source}: {exc}") from exc
    finally:
        root.setLevel(level)
    return settings.as_dict()
