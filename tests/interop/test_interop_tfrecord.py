"""CRC32C, TFRecord framing and EC-NAS's proto2 messages: known vectors, lossless round trips,
clear errors on corrupt input, and the same table from a TFRecord as from the results tree."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pandas as pd
import pytest
from cli_inproc import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from ecnas.errors import InputError
from ecnas.interop import import_ecnas
from ecnas.interop.crc32c import crc32c, crc32c_many, mask
from ecnas.interop.proto import (
    DeviceUsage,
    EvaluationDataEnergy,
    ModelMetricsEnergy,
    PowerUsageData,
    metrics_from_results,
)
from ecnas.interop.tfrecord import (
    EcnasRecord,
    iter_records,
    read_ecnas_records,
    write_records,
)


def test_crc32c_known_vectors():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c(b"\xff" * 32) == 0x62A8AB43


def test_vectorized_crc_matches_the_scalar_one():
    rng = np.random.default_rng(0)
    bufs = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes()
            for n in rng.integers(0, 300, 200)]
    assert crc32c_many(bufs).tolist() == [crc32c(b) for b in bufs]
    assert int(mask(np.array([crc32c(b"ab")], dtype=np.uint32))[0]) == mask(crc32c(b"ab"))


def test_framing_round_trip_and_known_layout(tmp_path):
    records = [b"", b"a", b"hello" * 100]
    path = write_records(tmp_path / "x.tfrecord", records)
    raw = path.read_bytes()
    assert raw[:8] == (0).to_bytes(8, "little") and len(raw) == sum(16 + len(r) for r in records)
    assert list(iter_records(path)) == records
    assert list(iter_records(raw)) == records


def test_corrupt_files_name_the_file_and_offset(tmp_path):
    path = write_records(tmp_path / "x.tfrecord", [b"first", b"second record"])
    raw = bytearray(path.read_bytes())
    flipped = bytearray(raw)
    flipped[-6] ^= 0x01  # a data byte of the second record
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(InputError, match=r"bad.tfrecord: record at byte 21: data CRC mismatch"):
        list(iter_records(bad))
    hdr = bytearray(raw)
    hdr[0] ^= 0x01
    bad.write_bytes(bytes(hdr))
    with pytest.raises(InputError, match="length CRC mismatch"):
        list(iter_records(bad))
    bad.write_bytes(bytes(raw[:-3]))
    with pytest.raises(InputError, match="truncated record at byte 21"):
        list(iter_records(bad))


def test_proto_round_trip_is_lossless_on_real_results(ecnas_5v_results):
    for results in list(ecnas_5v_results.values())[:50]:
        m = metrics_from_results(results)
        data = m.to_bytes()
        back = ModelMetricsEnergy.from_bytes(data)
        assert back == m and back.to_bytes() == data
        assert back.evaluation_data_energy[-1].pred_energy == \
            results["evaluation_results"][-1]["predicted_energy (kWh)"]
        cpu = results["avg_power_usages:"]["cpu"]["avg_energy_usages (J)"]
        assert back.avg_power_usages.cpu.joules == [v for row in cpu for v in row]


def test_proto_reads_packed_and_repeated_double_layouts():
    from ecnas.interop.proto import UsageW

    unpacked = UsageW((1.5, 2.5)).to_bytes()
    packed = bytes([0x0A, 16]) + np.array([1.5, 2.5], "<f8").tobytes()
    assert UsageW.from_bytes(unpacked) == UsageW.from_bytes(packed) == UsageW((1.5, 2.5))


doubles = st.floats(allow_nan=False) | st.none()
texts = st.text(max_size=20) | st.none()
evals = st.builds(EvaluationDataEnergy, current_epoch=doubles, training_time=doubles,
                  energy=doubles, start_emission=texts, pred_energy=doubles,
                  checkpoint_path=texts)
usage = st.builds(DeviceUsage.from_lists,
                  st.lists(st.lists(st.floats(allow_nan=False), max_size=3), max_size=2),
                  st.lists(st.lists(st.floats(allow_nan=False), max_size=3), max_size=2),
                  st.lists(st.text(max_size=10), max_size=2))
metrics = st.builds(ModelMetricsEnergy, evaluation_data_energy=st.lists(evals, max_size=4).map(tuple),
                    trainable_parameters=st.integers(-2**31, 2**31 - 1) | st.none(),
                    total_energy=doubles, stop_emission=texts,
                    avg_power_usages=st.builds(PowerUsageData, gpu=usage | st.none(),
                                               cpu=usage | st.none()) | st.none())


@settings(max_examples=150, deadline=None)
@given(metrics)
def test_proto_round_trip_is_lossless_for_every_field(m):
    assert ModelMetricsEnergy.from_bytes(m.to_bytes()) == m


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_crashes_the_decoders(data):
    for decode in (ModelMetricsEnergy.from_bytes, lambda b: list(iter_records(b)),
                   EcnasRecord.from_bytes):
        with contextlib.suppress(InputError):  # a clear error is the expected outcome
            decode(data)


def _records(graphs, results):
    from ecnas.space import ModelSpec
    from ecnas.space.spec import OP_OF_LABEL

    for h in sorted(results)[:40]:
        matrix, labels = graphs[h]
        spec = ModelSpec(matrix, [OP_OF_LABEL[x] for x in labels])
        yield EcnasRecord(h, 4, spec.matrix_str, spec.ops_str, metrics_from_results(results[h]))


def test_tfrecord_import_matches_the_tree_import(tmp_path, ecnas_5v_dir, ecnas_5v_graphs,
                                                 ecnas_5v_results):
    path = write_records(tmp_path / "ecnas.tfrecord",
                         (r.to_bytes() for r in _records(ecnas_5v_graphs, ecnas_5v_results)))
    recs = list(read_ecnas_records(path))
    assert len(recs) == 40 and recs[0] == next(_records(ecnas_5v_graphs, ecnas_5v_results))
    from_tf = import_ecnas(path)
    tree = import_ecnas(ecnas_5v_dir)
    hashes = set(from_tf["arch_hash"])
    from_tree = tree[tree["arch_hash"].isin(hashes)].sort_values(["arch_hash", "epoch"])
    cols = [c for c in from_tf.columns if c in from_tree.columns]
    pd.testing.assert_frame_equal(from_tf.sort_values(["arch_hash", "epoch"])[cols].reset_index(drop=True),
                                  from_tree[cols].reset_index(drop=True))
    assert from_tf.attrs["ecnas"]["pue"]["factor"] == 1.59


def test_cli_bad_tfrecord_crc_exits_2(tmp_path, ecnas_5v_graphs, ecnas_5v_results):
    path = write_records(tmp_path / "e.tfrecord",
                         (r.to_bytes() for r in _records(ecnas_5v_graphs, ecnas_5v_results)))
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0x40
    path.write_bytes(bytes(raw))
    result = run_cli("import-ecnas", path, "--out", tmp_path / "t.parquet")
    assert result.returncode == 2
    assert "data CRC mismatch" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "t.parquet").exists()


def test_record_json_layout():
    m = ModelMetricsEnergy(trainable_parameters=3)
    rec = EcnasRecord("ab" * 16, 108, "0100", "input,output", m)
    item = json.loads(rec.to_bytes())
    assert item[:4] == ["ab" * 16, 108, "0100", "input,output"]
    assert EcnasRecord.from_bytes(rec.to_bytes()) == rec
