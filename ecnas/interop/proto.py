"""EC-NAS's protobuf messages (proto2) as frozen dataclasses, with a hand-written codec.

``nasbench.ModelMetricsEnergy`` and its parts (field numbers from EC-NAS's .proto; see
DOMAIN.md). The wire format needs only varints (int32, tags, lengths), 64-bit doubles and
length-delimited fields (strings, sub-messages); no protobuf dependency.

proto2 semantics kept: an absent optional field decodes to ``None`` and is not written; a
repeated field is a tuple; unknown fields are skipped on decode; a repeated double is accepted
packed or not. ``from_bytes(to_bytes(m)) == m`` for every message.

``UsageW``/``UsageJ`` hold ``avg_power_usage`` as a tuple: results.json nests the per-device
values (``[[gpu0]]``, ``[[socket0, socket1]]``); we write one ``UsageW`` per value so a reader
with either ``optional`` or ``repeated double`` in its .proto sees every value, and we read
both layouts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ecnas.errors import InputError

_DOUBLE = struct.Struct("<d")

# wire types
VARINT, I64, LEN, I32 = 0, 1, 2, 5


class DecodeError(InputError):
    """Bytes that are not a valid encoding of the expected message."""


def encode_varint(value: int) -> bytes:
    """``value`` as a protobuf varint (little-endian groups of 7 bits); a negative number takes
    10 bytes of two's complement, as proto2 writes int32 and int64."""
    if value < 0:
        value += 1 << 64  # proto2 int32/int64: negatives are 10-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``buf[pos:]``; a truncated or over-long
    varint is a :class:`DecodeError`."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("protobuf: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("protobuf: varint longer than 10 bytes")


def _to_int32(value: int) -> int:
    value &= (1 << 64) - 1
    if value >= 1 << 63:
        value -= 1 << 64
    if not -(1 << 31) <= value < (1 << 31):
        raise DecodeError(f"protobuf: int32 field holds {value}")
    return value


@dataclass(frozen=True)
class _Field:
    number: int
    name: str
    kind: str  # "double" | "int32" | "string" | a Message subclass name
    repeated: bool = False


class Message:
    """Base of the message dataclasses: ``to_bytes`` / ``from_bytes`` driven by ``FIELDS``."""

    FIELDS: ClassVar[tuple[_Field, ...]] = ()

    def to_bytes(self) -> bytes:
        """The message in protobuf wire format, fields in ``FIELDS`` order; absent (None) fields
        are not written."""
        out = bytearray()
        for f in self.FIELDS:
            value = getattr(self, f.name)
            if value is None:
                continue
            for item in (value if f.repeated else (value,)):
                out += _encode_field(f, item)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Any:
        """Decode a message of this class. Unknown fields are skipped, the last occurrence of a
        non-repeated field wins, and malformed bytes are a :class:`DecodeError`."""
        by_number = {f.number: f for f in cls.FIELDS}
        values: dict[str, Any] = {f.name: [] if f.repeated else None for f in cls.FIELDS}
        buf = memoryview(bytes(data)).tobytes()
        pos, end = 0, len(buf)
        while pos < end:
            tag, pos = decode_varint(buf, pos)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise DecodeError(f"protobuf {cls.__name__}: field number 0")
            f = by_number.get(number)
            if wire == VARINT:
                raw, pos = decode_varint(buf, pos)
                payload: Any = raw
            elif wire == I64:
                if pos + 8 > end:
                    raise DecodeError(f"protobuf {cls.__name__}: truncated 64-bit field {number}")
                payload = buf[pos:pos + 8]
                pos += 8
            elif wire == LEN:
                length, pos = decode_varint(buf, pos)
                if pos + length > end:
                    raise DecodeError(f"protobuf {cls.__name__}: field {number} runs past the end")
                payload = buf[pos:pos + length]
                pos += length
            elif wire == I32:
                if pos + 4 > end:
                    raise DecodeError(f"protobuf {cls.__name__}: truncated 32-bit field {number}")
                payload = buf[pos:pos + 4]
                pos += 4
            else:
                raise DecodeError(f"protobuf {cls.__name__}: unsupported wire type {wire}")
            if f is None:
                continue  # unknown field: skipped, as proto2 readers do
            items = _decode_field(cls.__name__, f, wire, payload)
            if f.repeated:
                values[f.name].extend(items)
            else:
                values[f.name] = items[-1]  # proto2: the last occurrence wins
        for f in cls.FIELDS:
            if f.repeated:
                values[f.name] = tuple(values[f.name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The message as nested plain data (sub-messages as dicts, repeated fields as
        lists)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, Message):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = [x.to_dict() if isinstance(x, Message) else x for x in v]
            out[f.name] = v
        return out


def _encode_field(f: _Field, value: Any) -> bytes:
    if f.kind == "double":
        return encode_varint((f.number << 3) | I64) + _DOUBLE.pack(float(value))
    if f.kind == "int32":
        return encode_varint((f.number << 3) | VARINT) + encode_varint(int(value))
    raw = value.encode("utf-8") if f.kind == "string" else value.to_bytes()
    return encode_varint((f.number << 3) | LEN) + encode_varint(len(raw)) + raw


def _decode_field(owner: str, f: _Field, wire: int, payload: Any) -> list[Any]:
    where = f"protobuf {owner}.{f.name}"
    if f.kind == "double":
        if wire == I64:
            return [_DOUBLE.unpack(payload)[0]]
        if wire == LEN and f.repeated and len(payload) % 8 == 0:  # packed
            return [x[0] for x in struct.iter_unpack("<d", payload)]
        raise DecodeError(f"{where}: wire type {wire} is not a double")
    if f.kind == "int32":
        if wire == VARINT:
            return [_to_int32(payload)]
        if wire == LEN and f.repeated:
            out, pos = [], 0
            while pos < len(payload):
                v, pos = decode_varint(payload, pos)
                out.append(_to_int32(v))
            return out
        raise DecodeError(f"{where}: wire type {wire} is not an int32")
    if wire != LEN:
        raise DecodeError(f"{where}: wire type {wire} is not length-delimited")
    if f.kind == "string":
        try:
            return [payload.decode("utf-8")]
        except UnicodeDecodeError:
            raise DecodeError(f"{where}: not UTF-8") from None
    return [_MESSAGES[f.kind].from_bytes(payload)]


@dataclass(frozen=True)
class UsageW(Message):
    """Mean power values in watts (``usage_w`` of a device usage), one per device or socket as
    ecnas writes them."""

    avg_power_usage: tuple[float, ...] = ()
    FIELDS: ClassVar = (_Field(1, "avg_power_usage", "double", True),)


@dataclass(frozen=True)
class UsageJ(Message):
    """Whole-run energy values in joules, PUE excluded (``usage_j`` of a device usage), one per
    device or socket as ecnas writes them."""

    avg_power_usage: tuple[float, ...] = ()
    FIELDS: ClassVar = (_Field(1, "avg_power_usage", "double", True),)


@dataclass(frozen=True)
class Device(Message):
    """A device's name as carbontracker saw it (a GPU model, a CPU package)."""

    name: str | None = None
    FIELDS: ClassVar = (_Field(1, "name", "string"),)


@dataclass(frozen=True)
class DeviceUsage(Message):
    """EC-NAS's ``GPU`` and ``CPU`` messages (same layout)."""

    usage_w: tuple[UsageW, ...] = ()
    usage_j: tuple[UsageJ, ...] = ()
    devices: tuple[Device, ...] = ()
    FIELDS: ClassVar = (_Field(1, "usage_w", "UsageW", True), _Field(2, "usage_j", "UsageJ", True),
                        _Field(3, "devices", "Device", True))

    @property
    def watts(self) -> list[float]:
        """Every mean power value (W) of the ``usage_w`` entries, flattened."""
        return [v for u in self.usage_w for v in u.avg_power_usage]

    @property
    def joules(self) -> list[float]:
        """Every whole-run energy value (J) of the ``usage_j`` entries, flattened: one per
        device or socket."""
        return [v for u in self.usage_j for v in u.avg_power_usage]

    @property
    def device_names(self) -> list[str]:
        """The devices' names (empty string for a device without one)."""
        return [d.name or "" for d in self.devices]

    @classmethod
    def from_lists(cls, watts: Any, joules: Any, names: Any) -> DeviceUsage:
        """From results.json's nested lists (``[[a, b]]``): one UsageW/UsageJ per value."""
        flat_w = [float(v) for row in watts for v in (row if isinstance(row, list) else [row])]
        flat_j = [float(v) for row in joules for v in (row if isinstance(row, list) else [row])]
        return cls(tuple(UsageW((v,)) for v in flat_w), tuple(UsageJ((v,)) for v in flat_j),
                   tuple(Device(str(n)) for n in names))


@dataclass(frozen=True)
class PowerUsageData(Message):
    """A run's power and energy per device kind: ``gpu`` and ``cpu`` (each optional)."""

    gpu: DeviceUsage | None = None
    cpu: DeviceUsage | None = None
    FIELDS: ClassVar = (_Field(1, "gpu", "DeviceUsage"), _Field(2, "cpu", "DeviceUsage"))


@dataclass(frozen=True)
class EvaluationDataEnergy(Message):
    """One checkpoint of an EC-NAS run: epoch, training time (s), accuracies (fractions), and
    carbontracker's energy (kWh, PUE included), CO2eq and intensity, measured and predicted."""

    current_epoch: float | None = None
    training_time: float | None = None
    train_accuracy: float | None = None
    validation_accuracy: float | None = None
    test_accuracy: float | None = None
    energy: float | None = None  # kWh, carbontracker's PUE included
    co2eq: float | None = None
    avg_intensity: float | None = None
    start_emission: str | None = None
    stop_emission: str | None = None
    pred_energy: float | None = None
    pred_co2eq: float | None = None
    pred_training_time: float | None = None
    pred_avg_intensity: float | None = None
    checkpoint_path: str | None = None
    FIELDS: ClassVar = (
        _Field(1, "current_epoch", "double"), _Field(2, "training_time", "double"),
        _Field(3, "train_accuracy", "double"), _Field(4, "validation_accuracy", "double"),
        _Field(5, "test_accuracy", "double"), _Field(6, "energy", "double"),
        _Field(7, "co2eq", "double"), _Field(8, "avg_intensity", "double"),
        _Field(9, "start_emission", "string"), _Field(10, "stop_emission", "string"),
        _Field(11, "pred_energy", "double"), _Field(12, "pred_co2eq", "double"),
        _Field(13, "pred_training_time", "double"), _Field(14, "pred_avg_intensity", "double"),
        _Field(15, "checkpoint_path", "string"),
    )


@dataclass(frozen=True)
class ModelMetricsEnergy(Message):
    """EC-NAS's per-run record: its checkpoints, trainable parameters, total time (s), energy
    (kWh, PUE included) and CO2eq, and each device's power and energy (``avg_power_usages``)."""

    evaluation_data_energy: tuple[EvaluationDataEnergy, ...] = ()
    trainable_parameters: int | None = None
    total_time: float | None = None
    total_energy: float | None = None  # kWh, carbontracker's PUE included
    total_co2eq: float | None = None
    start_emission: str | None = None
    stop_emission: str | None = None
    overall_avg_intensity: float | None = None
    avg_power_usages: PowerUsageData | None = None
    FIELDS: ClassVar = (
        _Field(1, "evaluation_data_energy", "EvaluationDataEnergy", True),
        _Field(2, "trainable_parameters", "int32"), _Field(3, "total_time", "double"),
        _Field(4, "total_energy", "double"), _Field(5, "total_co2eq", "double"),
        _Field(6, "start_emission", "string"), _Field(7, "stop_emission", "string"),
        _Field(8, "overall_avg_intensity", "double"),
        _Field(9, "avg_power_usages", "PowerUsageData"),
    )


# EC-NAS's names for the two DeviceUsage messages
GPU = CPU = DeviceUsage

_MESSAGES: dict[str, type[Message]] = {
    "UsageW": UsageW, "UsageJ": UsageJ, "Device": Device, "DeviceUsage": DeviceUsage,
    "PowerUsageData": PowerUsageData, "EvaluationDataEnergy": EvaluationDataEnergy,
    "ModelMetricsEnergy": ModelMetricsEnergy,
}


def metrics_from_results(results: dict[str, Any]) -> ModelMetricsEnergy:
    """A ``ModelMetricsEnergy`` from one EC-NAS ``results.json`` dict (every field carried)."""
    def opt(d: dict[str, Any], key: str) -> Any:
        v = d.get(key)
        return None if v is None else v

    evals = []
    for ev in results.get("evaluation_results", []):
        evals.append(EvaluationDataEnergy(
            current_epoch=opt(ev, "epochs"), training_time=opt(ev, "training_time"),
            train_accuracy=opt(ev, "train_accuracy"),
            validation_accuracy=opt(ev, "validation_accuracy"),
            test_accuracy=opt(ev, "test_accuracy"), energy=opt(ev, "energy (kWh)"),
            co2eq=opt(ev, "co2eq (g)"), avg_intensity=opt(ev, "avg_intensity (gCO2/kWh)"),
            start_emission=opt(ev, "start_emission"), stop_emission=opt(ev, "stop_emission"),
            pred_energy=opt(ev, "predicted_energy (kWh)"),
            pred_co2eq=opt(ev, "predicted_co2eq (g)"),
            pred_training_time=opt(ev, "predicted_training_time"),
            pred_avg_intensity=opt(ev, "predicted_avg_intensity (gCO2/kWh)"),
            checkpoint_path=opt(ev, "checkpoint_path")))
    power = None
    usages = results.get("avg_power_usages:") or results.get("avg_power_usages")
    if usages:
        parts = {}
        for kind in ("gpu", "cpu"):
            u = usages.get(kind)
            if u:
                parts[kind] = DeviceUsage.from_lists(u.get("avg_power_usages (W)", []),
                                                     u.get("avg_energy_usages (J)", []),
                                                     u.get("devices", []))
        power = PowerUsageData(**parts)
    return ModelMetricsEnergy(
        evaluation_data_energy=tuple(evals),
        trainable_parameters=opt(results, "trainable_params"),
        total_time=opt(results, "total_time"), total_energy=opt(results, "total_energy (kWh)"),
        total_co2eq=opt(results, "total_co2eq (g)"),
        start_emission=opt(results, "start_emission"), stop_emission=opt(results, "stop_emission"),
        overall_avg_intensity=opt(results, "avg_intensity (gCO2/kWh)"),
        avg_power_usages=power)
