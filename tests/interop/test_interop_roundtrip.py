"""The EC-NAS round trip, for every 5V run: tree → import-ecnas → export --format ecnas-tfrecord
→ decode, field by field against a message built straight from the tree's JSON; and
import-ecnas of that export gives back the same table."""

from __future__ import annotations

import base64
import json
import math
import struct
from pathlib import Path

import pandas as pd
import pytest

from ecnas.benchmark.bundle import write_bundle
from ecnas.cli import main
from ecnas.interop import import_ecnas
from ecnas.interop.proto import (
    Device,
    DeviceUsage,
    EvaluationDataEnergy,
    ModelMetricsEnergy,
    PowerUsageData,
    UsageJ,
    UsageW,
)
from ecnas.interop.tfrecord import iter_records
from ecnas.tables import read_table, write_table

#: EC-NAS's message fields ← results.json keys (EC-NAS's own converter's mapping)
RUN_KEYS = {"trainable_parameters": "trainable_params", "total_time": "total_time",
            "total_energy": "total_energy (kWh)", "total_co2eq": "total_co2eq (g)",
            "start_emission": "start_emission", "stop_emission": "stop_emission",
            "overall_avg_intensity": "avg_intensity (gCO2/kWh)"}
EVAL_KEYS = {"current_epoch": "epochs", "training_time": "training_time",
             "train_accuracy": "train_accuracy", "validation_accuracy": "validation_accuracy",
             "test_accuracy": "test_accuracy", "energy": "energy (kWh)", "co2eq": "co2eq (g)",
             "avg_intensity": "avg_intensity (gCO2/kWh)", "start_emission": "start_emission",
             "stop_emission": "stop_emission", "pred_energy": "predicted_energy (kWh)",
             "pred_co2eq": "predicted_co2eq (g)", "pred_training_time": "predicted_training_time",
             "pred_avg_intensity": "predicted_avg_intensity (gCO2/kWh)",
             "checkpoint_path": "checkpoint_path"}
#: columns no EC-NAS record holds (results.json extras and the tree's layout)
NOT_IN_RECORD = {"eval_time_s", "training_steps", "space"}


def _flat(nested):
    return [v for row in nested for v in (row if isinstance(row, list) else [row])]


def _expected(res: dict) -> ModelMetricsEnergy:
    """The message of one results.json, built straight from the JSON (not by ecnas's importer):
    every key EC-NAS's message has a field for; per-device values one UsageW/UsageJ each."""
    power = {}
    for kind in ("gpu", "cpu"):
        u = res["avg_power_usages:"][kind]
        power[kind] = DeviceUsage(tuple(UsageW((w,)) for w in _flat(u["avg_power_usages (W)"])),
                                  tuple(UsageJ((j,)) for j in _flat(u["avg_energy_usages (J)"])),
                                  tuple(Device(n) for n in u["devices"]))
    return ModelMetricsEnergy(
        evaluation_data_energy=tuple(
            EvaluationDataEnergy(**{f: ev.get(k) for f, k in EVAL_KEYS.items()})
            for ev in res["evaluation_results"]),
        avg_power_usages=PowerUsageData(**power),
        **{f: res.get(k) for f, k in RUN_KEYS.items()})


def _fields(msg, path=""):
    """(path, value) of every field of a message, recursively (None: unset)."""
    for f in msg.FIELDS:
        value = getattr(msg, f.name)
        if f.repeated:
            yield f"{path}{f.name}#", len(value)
            for k, item in enumerate(value):
                if hasattr(item, "FIELDS"):
                    yield from _fields(item, f"{path}{f.name}[{k}].")
                else:
                    yield f"{path}{f.name}[{k}]", item
        elif hasattr(value, "FIELDS"):
            yield from _fields(value, f"{path}{f.name}.")
        else:
            yield f"{path}{f.name}", value


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)  # bit for bit
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def tree_runs(ecnas_5v_dir: Path) -> dict[tuple[str, int], dict]:
    """(hash, repeat) → results.json of every run in the 5V tree (read once)."""
    base = ecnas_5v_dir / "train_model_results"
    return {(p.parent.parent.name, int(p.parent.name.split("_")[1])): json.loads(p.read_text())
            for p in base.glob("*/*/*_epochs/*/*/repeat_*/results.json")}


@pytest.fixture(scope="module")
def exported(ecnas_5v_dir, tmp_path_factory):
    """The tree imported and exported through the CLI: (table path, TFRecord path)."""
    d = tmp_path_factory.mktemp("roundtrip")
    table, tfr = d / "t5.parquet", d / "t5.tfrecord"
    assert main(["import-ecnas", str(ecnas_5v_dir), "--out", str(table)]) == 0
    assert main(["export", str(table), "--format", "ecnas-tfrecord", "--out", str(tfr)]) == 0
    return table, tfr


def _records(path):
    """((hash, repeat), epochs, protobuf bytes) per record; repeats follow in file order."""
    seen: dict[str, int] = {}
    for data in iter_records(path):
        h, epochs, _adj, _ops, payload = json.loads(data)
        seen[h] = seen.get(h, 0) + 1
        yield (h, seen[h]), epochs, base64.b64decode(payload)


def test_every_field_of_every_run_comes_back_as_the_tree_wrote_it(exported, tree_runs):
    _, tfr = exported
    compared = runs = 0
    for key, epochs, raw in _records(tfr):
        got = ModelMetricsEnergy.from_bytes(raw)
        want = _expected(tree_runs[key])
        assert epochs == 4
        got_f, want_f = dict(_fields(got)), dict(_fields(want))
        assert got_f.keys() == want_f.keys(), (key, got_f.keys() ^ want_f.keys())
        for name, value in want_f.items():
            assert _same(got_f[name], value), (key, name, got_f[name], value)
        compared += len(want_f)
        runs += 1
    assert runs == len(tree_runs) == 2532
    # every field of EC-NAS's message, for every run: 7 of the run, 15 of each of the 3
    # evaluations, the GPU's W, J and name, the CPU's 2 W, 2 J and 2 names, and every list's
    # length (evaluations 1, GPU 3 + 2, CPU 3 + 4: the UsageW/UsageJ's value lists too)
    assert compared == runs * (7 + 15 * 3 + 3 + 6 + 1 + 5 + 7)


def test_ecnas_protobuf_classes_read_the_same_values(exported, tree_runs):
    """Decoded by protobuf classes generated from EC-NAS's .proto, as EC-NAS's reader does."""
    pytest.importorskip("google.protobuf", reason="protobuf decodes as EC-NAS's reader does")
    from ecnas_pb import message_classes
    from google.protobuf import json_format

    pb = message_classes()
    for key, _epochs, raw in _records(exported[1]):
        res = tree_runs[key]
        m = pb["ModelMetricsEnergy"].FromString(raw)
        for f, k in RUN_KEYS.items():
            assert getattr(m, f) == res[k], (key, f)
        for ev, src in zip(m.evaluation_data_energy, res["evaluation_results"], strict=True):
            for f, k in EVAL_KEYS.items():
                assert ev.HasField(f) == (k in src), (key, f)
                if k in src:
                    assert getattr(ev, f) == src[k], (key, f)
        power = json_format.MessageToDict(m.avg_power_usages)  # what EC-NAS's query returns
        for kind in ("gpu", "cpu"):
            u = res["avg_power_usages:"][kind]
            assert [w["avgPowerUsage"] for w in power[kind]["avgPowerUsagesW"]] == _flat(u["avg_power_usages (W)"])
            assert [j["avgPowerUsage"] for j in power[kind]["avgPowerUsagesJ"]] == _flat(u["avg_energy_usages (J)"])
            assert [d["name"] for d in power[kind]["devices"]] == u["devices"]


def test_import_of_our_export_gives_back_the_same_table(exported, tmp_path):
    table, tfr = exported
    back_path = tmp_path / "back.parquet"
    assert main(["import-ecnas", str(tfr), "--out", str(back_path)]) == 0
    a, b = read_table(table), read_table(back_path)
    assert set(a.columns) - set(b.columns) == NOT_IN_RECORD and set(b.columns) <= set(a.columns)
    keys = ["arch_hash", "budget_epochs", "repeat", "device", "epoch"]
    a = a[list(b.columns)].sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    ma, mb = a.attrs["ecnas"], b.attrs["ecnas"]
    assert ma["pue"]["factor"] == mb["pue"]["factor"] == 1.59
    assert ma["devices"] == mb["devices"]


def test_record_columns_hold_the_source_values(exported, tree_runs):
    df = read_table(exported[0])
    h = "b1750a490368d6cea709a91d0b12ac29"
    res = tree_runs[(h, 1)]
    run = df[df["arch_hash"] == h].sort_values("epoch")
    assert run["gpu0_name"].iat[0] == "NVIDIA Quadro RTX 6000" and run["gpu0_id"].iat[0] == "quadro rtx 6000"
    assert run["cpu1_name"].iat[0] == " cpu:1" and run["cpu1_id"].iat[0] == "cpu:1"
    assert run["run_cpu1_energy_j"].iat[0] == 9812.413265406602
    assert run["run_gpu0_power_w"].iat[0] == 145.957
    assert run["started_at"].tolist() == [ev["start_emission"] for ev in res["evaluation_results"]]
    assert run["run_co2eq_g"].iat[0] == 1.76704 and run["predicted_co2eq_g"].iat[2] == 2.177745
    assert math.isnan(run["predicted_co2eq_g"].iat[0])  # EC-NAS forecasts at the last one only
    assert "checkpoint_path" not in df.columns  # no run records one


def test_a_table_without_the_record_exports_its_components_and_no_invented_fields(exported, tmp_path):
    """An energy table that kept none of the record (older imports, other tools): GPU and CPU
    joules from its components, no watts, no timestamps; energies still re-import exactly."""
    df = read_table(exported[0])
    old = df[[c for c in df.columns if c in HELD_WITHOUT_RECORD]]
    old = old[old["arch_hash"].isin(old["arch_hash"].unique()[:50])]
    old.attrs = dict(df.attrs)
    path = tmp_path / "old.tfrecord"
    main(["export", str(write_table(old, tmp_path / "old.parquet")), "--format", "ecnas-tfrecord",
          "--out", str(path)])
    records = list(_records(path))
    assert len(records) == 50
    for _key, _epochs, raw in records:
        m = ModelMetricsEnergy.from_bytes(raw)
        assert m.start_emission is None and m.stop_emission is None and m.total_co2eq is None
        assert all(ev.start_emission is None and ev.stop_emission is None
                   for ev in m.evaluation_data_energy)
        p = m.avg_power_usages
        assert p.gpu.watts == [] and p.cpu.watts == [] and len(p.cpu.joules) == 1
    back = import_ecnas(path)
    assert back.attrs["ecnas"]["pue"]["factor"] == 1.59
    keys = ["arch_hash", "budget_epochs", "repeat", "device", "epoch"]
    a, b = old.sort_values(keys).reset_index(drop=True), back.sort_values(keys).reset_index(drop=True)
    for col in ("energy_j", "energy_kwh", "training_time_s", "validation_accuracy", "run_energy_j"):
        assert (a[col].to_numpy() == b[col].to_numpy()).all(), col


#: the columns a table had before it kept EC-NAS's record
HELD_WITHOUT_RECORD = {"arch_hash", "matrix", "ops", "budget_epochs", "epoch", "repeat", "device",
                       "training_time_s", "wall_time_s", "energy_j", "gpu_energy_j",
                       "cpu_energy_j", "dram_energy_j", "estimated", "source", "train_accuracy",
                       "validation_accuracy", "test_accuracy", "trainable_params", "flops",
                       "run_energy_j", "run_time_s", "predicted_energy_j", "co2eq_g",
                       "energy_kwh", "run_energy_kwh", "predicted_energy_kwh"}



def test_bundles_and_csv_keep_the_record(exported, tmp_path):
    """The record travels with the table: a bundle's table and a CSV copy export the same bytes."""
    table, tfr = exported
    df = read_table(table)
    write_bundle(df, tmp_path / "b")
    write_table(df, tmp_path / "t.csv")
    for src in (tmp_path / "b" / "table.parquet", tmp_path / "t.csv"):
        out = tmp_path / f"{src.suffix[1:]}.tfrecord"
        assert main(["export", str(src), "--format", "ecnas-tfrecord", "--out", str(out)]) == 0
        assert out.read_bytes() == tfr.read_bytes(), src
