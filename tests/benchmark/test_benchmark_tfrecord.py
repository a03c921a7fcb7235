"""EC-NAS TFRecord export: lossless round trip through the importer, EC-NAS-style reading,
corruption errors."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pandas as pd
import pytest

from ecnas.cli import main
from ecnas.errors import InputError
from ecnas.interop import import_ecnas
from ecnas.interop.export_tfrecord import export_ecnas_tfrecord
from ecnas.interop.proto import ModelMetricsEnergy
from ecnas.tables import write_table

# every column the EC-NAS format holds (others, e.g. dram_energy_j, flops, are not in it)
HELD = ["arch_hash", "matrix", "ops", "budget_epochs", "epoch", "repeat", "device",
        "training_time_s", "wall_time_s", "energy_j", "gpu_energy_j", "cpu_energy_j",
        "estimated", "source", "train_accuracy", "validation_accuracy", "test_accuracy",
        "trainable_params", "run_energy_j", "run_time_s", "predicted_energy_j", "co2eq_g",
        "energy_kwh", "run_energy_kwh", "predicted_energy_kwh"]
KEYS = ["arch_hash", "budget_epochs", "repeat", "device", "epoch"]


@pytest.fixture(scope="module")
def table5v(ecnas_5v_dir):
    return import_ecnas(ecnas_5v_dir)


@pytest.fixture(scope="module")
def exported(table5v, tmp_path_factory):
    path = tmp_path_factory.mktemp("tfr") / "5v.tfrecord"
    report = export_ecnas_tfrecord(table5v, path)
    return path, report


def test_round_trip_is_lossless(table5v, exported):
    path, report = exported
    assert report.records == 2532 and report.skipped_runs == {} and report.pue == 1.59
    back = import_ecnas(path)
    assert back.attrs["ecnas"]["pue"]["factor"] == 1.59
    a = table5v[HELD].sort_values(KEYS).reset_index(drop=True)
    b = back[HELD].sort_values(KEYS).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    # energies come back bit for bit: kWh is written as an exact preimage of the import
    assert (a["energy_j"].to_numpy() == b["energy_j"].to_numpy()).all()


def _ecnas_reader(path):
    """As NAS-Bench-101/EC-NAS's api.py reads a file: TFRecord frames, JSON, base64 proto,
    evaluation 1 = halfway, 2 = final."""
    data = path.read_bytes()
    pos, out = 0, {}
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        rec = data[pos + 12:pos + 12 + length]
        pos += 12 + length + 4
        h, epochs, raw_adj, raw_ops, raw_metrics = json.loads(rec.decode("utf-8"))
        dim = int(np.sqrt(len(raw_adj)))
        adjacency = np.array([int(e) for e in list(raw_adj)], dtype=np.int8).reshape(dim, dim)
        metrics = ModelMetricsEnergy.from_bytes(base64.b64decode(raw_metrics))
        half, final = metrics.evaluation_data_energy[1], metrics.evaluation_data_energy[2]
        out[h] = {"epochs": epochs, "adjacency": adjacency, "ops": raw_ops.split(","),
                  "halfway_training_time": half.training_time,
                  "final_validation_accuracy": final.validation_accuracy,
                  "final_energy": final.energy, "params": metrics.trainable_parameters}
    return out


def test_ecnas_style_reader_gets_published_numbers(exported, ecnas_5v_results):
    path, _ = exported
    got = _ecnas_reader(path)
    assert len(got) == 2532
    for h, res in ecnas_5v_results.items():
        final = res["evaluation_results"][-1]
        r = got[h]
        assert r["epochs"] == 4 and r["params"] > 0
        assert r["final_validation_accuracy"] == final["validation_accuracy"]
        assert r["final_energy"] == final["energy (kWh)"]  # bit for bit
        assert r["halfway_training_time"] == res["evaluation_results"][1]["training_time"]


def test_skips_runs_without_three_evaluations(table5v, tmp_path):
    small = table5v[table5v["arch_hash"].isin(table5v["arch_hash"].unique()[:5])]
    ext = small[small["epoch"] == 4].copy()
    ext["budget_epochs"], ext["epoch"], ext["source"] = 12, 12.0, "extrapolated"
    mixed = pd.concat([small, ext], ignore_index=True)
    mixed.attrs = dict(table5v.attrs)
    report = export_ecnas_tfrecord(mixed, tmp_path / "m.tfrecord")
    assert report.records == 5 and report.skipped_runs == {"extrapolated or surrogate": 5}
    only_ext = ext.copy()
    only_ext.attrs = dict(table5v.attrs)
    with pytest.raises(InputError, match="no run can be written"):
        export_ecnas_tfrecord(only_ext, tmp_path / "x.tfrecord")
    assert not (tmp_path / "x.tfrecord").exists()


def test_corruption_gives_clear_errors(exported, tmp_path, capsys):
    path, _ = exported
    data = bytearray(path.read_bytes())
    bad = tmp_path / "badcrc.tfrecord"
    flipped = bytearray(data)
    flipped[200] ^= 0x01  # inside the first record's data
    bad.write_bytes(bytes(flipped))
    with pytest.raises(InputError, match="(?i)crc"):
        import_ecnas(bad)
    trunc = tmp_path / "trunc.tfrecord"
    trunc.write_bytes(bytes(data[: len(data) - 100]))
    with pytest.raises(InputError, match="(?i)truncat"):
        import_ecnas(trunc)
    m, o = "0110001000010000", "input,maxpool3x3,maxpool3x3,output"
    for f in (bad, trunc):
        assert main(["query", str(f), "--matrix", m, "--ops", o, "--epochs", "4"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_export_tfrecord(table5v, tmp_path, capsys):
    src = tmp_path / "t.parquet"
    write_table(table5v.iloc[:300], src)
    out = tmp_path / "o.tfrecord"
    assert main(["export", str(src), "--format", "ecnas-tfrecord", "--out", str(out), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["records"] == 100 and obj["pue_reapplied"] == 1.59 and out.is_file()
    assert main(["export", str(src), "--format", "ecnas-tfrecord", "--out", str(tmp_path)]) == 2
