"""EC-NAS's ``model_metrics_energy.proto`` as real protobuf classes, built without protoc.

The messages, field names, numbers and labels are those of EC-NAS-Bench's
``nasbench/lib/model_metrics_energy.proto`` (proto2; ``UsageW``/``UsageJ`` hold one *optional*
double), so decoding our exports with these classes is what EC-NAS's reader does
(``ModelMetricsEnergy.FromString`` and ``json_format.MessageToDict``).
"""

from __future__ import annotations

from typing import Any

OPTIONAL, REPEATED = 1, 3
DOUBLE, INT32, STRING, MESSAGE = 1, 5, 9, 11

_MESSAGES: dict[str, list[tuple[str, int, int, int, str]]] = {
    # name: [(field, number, label, type, message type)]
    "ModelMetricsEnergy": [
        ("evaluation_data_energy", 1, REPEATED, MESSAGE, "EvaluationDataEnergy"),
        ("trainable_parameters", 2, OPTIONAL, INT32, ""),
        ("total_time", 3, OPTIONAL, DOUBLE, ""),
        ("total_energy", 4, OPTIONAL, DOUBLE, ""),
        ("total_co2eq", 5, OPTIONAL, DOUBLE, ""),
        ("start_emission", 6, OPTIONAL, STRING, ""),
        ("stop_emission", 7, OPTIONAL, STRING, ""),
        ("overall_avg_intensity", 8, OPTIONAL, DOUBLE, ""),
        ("avg_power_usages", 9, OPTIONAL, MESSAGE, "PowerUsageData"),
    ],
    "EvaluationDataEnergy": [
        (name, k + 1, OPTIONAL, STRING if name in ("start_emission", "stop_emission",
                                                   "checkpoint_path") else DOUBLE, "")
        for k, name in enumerate((
            "current_epoch", "training_time", "train_accuracy", "validation_accuracy",
            "test_accuracy", "energy", "co2eq", "avg_intensity", "start_emission",
            "stop_emission", "pred_energy", "pred_co2eq", "pred_training_time",
            "pred_avg_intensity", "checkpoint_path"))
    ],
    "PowerUsageData": [("gpu", 1, OPTIONAL, MESSAGE, "GPU"), ("cpu", 2, OPTIONAL, MESSAGE, "CPU")],
    **{kind: [("avg_power_usages_w", 1, REPEATED, MESSAGE, "UsageW"),
              ("avg_power_usages_j", 2, REPEATED, MESSAGE, "UsageJ"),
              ("devices", 3, REPEATED, MESSAGE, "Device")] for kind in ("GPU", "CPU")},
    "Device": [("name", 1, OPTIONAL, STRING, "")],
    "UsageW": [("avg_power_usage", 1, OPTIONAL, DOUBLE, "")],
    "UsageJ": [("avg_power_usage", 1, OPTIONAL, DOUBLE, "")],
}


def message_classes() -> dict[str, Any]:
    """name → generated message class, in a private pool (package ``nasbench``)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="ecnas_test_model_metrics_energy.proto",
                                             package="nasbench", syntax="proto2")
    for name, fields in _MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for field, number, label, kind, type_name in fields:
            f = msg.field.add(name=field, number=number, label=label, type=kind)
            if type_name:
                f.type_name = f".nasbench.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"nasbench.{name}"))
            for name in _MESSAGES}
