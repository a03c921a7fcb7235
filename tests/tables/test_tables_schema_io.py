"""Schema validation and Parquet/CSV IO: types, metadata round trip, clear errors on bad files."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
from cli_inproc import run_cli

from ecnas.errors import InputError
from ecnas.tables import COLUMN_NAMES, empty_table, read_table, validate, write_table

ROW = dict(matrix="0110001000010000", ops="input,conv3x3-bn-relu,maxpool3x3,output",
           budget_epochs=4, epoch=0.0, repeat=1, device="nvidia-v100", training_time_s=0.0,
           wall_time_s=1.0, energy_j=10.0, gpu_energy_j=10.0, estimated=False,
           source="measured", trainable_params=5, cpu_share=0.25)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args)


def test_validate_computes_hash_fills_optional_and_keeps_extras():
    df = validate(pd.DataFrame([ROW]))
    assert list(df.columns[: len(COLUMN_NAMES)]) == list(COLUMN_NAMES)
    assert df["arch_hash"].iat[0] == "8cb3a764fd692371153c2c8503f840e0"
    assert np.isnan(df["cpu_energy_j"].iat[0]) and np.isnan(df["flops"].iat[0])
    assert df["cpu_share"].iat[0] == 0.25
    assert df["budget_epochs"].dtype == "int64" and df["estimated"].dtype == bool


@pytest.mark.parametrize(("change", "message"), [
    ({"source": "guessed"}, "column 'source': value 'guessed'"),
    ({"repeat": 1.5}, "column 'repeat': value 1.5 is not an integer"),
    ({"energy_j": "lots"}, "column 'energy_j': value 'lots' is not a number"),
    ({"estimated": "maybe"}, "column 'estimated': value 'maybe' is not a boolean"),
    ({"matrix": "0112"}, "cannot hash"),
])
def test_validate_names_the_bad_column(change, message):
    with pytest.raises(InputError, match=message):
        validate(pd.DataFrame([{**ROW, **change}]))


def test_validate_names_missing_required_columns():
    with pytest.raises(InputError, match="missing required column 'energy_j'"):
        validate(pd.DataFrame([ROW]).drop(columns=["energy_j"]))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip_keeps_values_types_and_metadata(tmp_path, suffix):
    df = pd.DataFrame([ROW, {**ROW, "epoch": 4.0, "energy_j": 20.0, "gpu_energy_j": 20.0}])
    path = write_table(df, tmp_path / f"t{suffix}", metadata={"pue": {"factor": 1.59}})
    back = read_table(path)
    pd.testing.assert_frame_equal(back.reset_index(drop=True), validate(df),
                                  check_dtype=False, check_like=False)
    assert back["matrix"].iat[0] == "0110001000010000"  # leading zero survives CSV
    assert back.attrs["ecnas"]["pue"] == {"factor": 1.59}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic, no leftovers


def test_empty_table_validates():
    assert len(validate(empty_table())) == 0


def test_bad_files_raise_one_line_input_errors(tmp_path):
    good = write_table(pd.DataFrame([ROW]), tmp_path / "good.parquet")
    truncated = tmp_path / "trunc.parquet"
    truncated.write_bytes(good.read_bytes()[:200])
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cases = {truncated: "not a readable Parquet file", wrong: "missing required columns",
             empty: "empty CSV file", tmp_path / "missing.parquet": "no such file",
             tmp_path / "t.xlsx": "must end in .parquet or .csv"}
    for path, message in cases.items():
        with pytest.raises(InputError, match=message) as info:
            read_table(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_check_cli_exits_2_with_one_line_on_bad_files(tmp_path):
    good = write_table(pd.DataFrame([ROW]), tmp_path / "good.parquet")
    truncated = tmp_path / "trunc.parquet"
    truncated.write_bytes(good.read_bytes()[:-30])
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("arch_hash,x\nab,1\n")
    for path in (truncated, wrong):
        result = _cli("check", str(path))
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"ecnas check: error: {path}")
