"""ecnas contribute: a real profile and a device table built from real EC-NAS results,
validated through ecnas.tables and bundled with a manifest."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ecnas.space import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
MAIN = "import sys; from ecnas.cli import main; sys.exit(main(sys.argv[1:]))"
OPS = {-1: "input", -2: "output", 0: "conv3x3-bn-relu", 1: "conv1x1-bn-relu", 2: "maxpool3x3"}
PROFILE = ROOT / "hardware_profiles" / "nvidia-quadro-rtx-6000.toml"


def _table(path: Path, graphs: dict, results: dict, device: str, n: int = 6) -> Path:
    cols = ["arch_hash", "matrix", "ops", "budget_epochs", "epoch", "repeat", "device",
            "training_time_s", "wall_time_s", "energy_j", "gpu_energy_j", "cpu_energy_j",
            "dram_energy_j", "estimated", "source", "train_accuracy", "validation_accuracy",
            "test_accuracy", "trainable_params", "flops"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for h in sorted(results)[:n]:
            matrix, labels = graphs[h]
            spec = ModelSpec(matrix, [OPS[x] for x in labels])
            wall = 0.0
            for ev in results[h]["evaluation_results"]:
                joules = ev["energy (kWh)"] * 3.6e6
                wall = max(wall, ev["training_time"]) + ev["predict_time"]
                w.writerow([spec.hash(), spec.matrix_str, spec.ops_str, 4, ev["epochs"], 1,
                            device, ev["training_time"], wall, joules, 0.6 * joules,
                            0.4 * joules, "", False, "imported", ev["train_accuracy"],
                            ev["validation_accuracy"], ev["test_accuracy"],
                            results[h]["trainable_params"], ""])
    return path


@pytest.fixture
def tables():
    return pytest.importorskip("ecnas.tables.checks",
                               reason="ecnas.tables (device-table checks) not built yet")


def _cli(*args):
    return subprocess.run([sys.executable, "-c", MAIN, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_contribute_bundles_profile_table_and_manifest(tables, tmp_path, ecnas_5v_graphs, ecnas_5v_results):
    table = _table(tmp_path / "t.csv", ecnas_5v_graphs, ecnas_5v_results, "nvidia-quadro-rtx-6000")
    out = tmp_path / "bundle.tar.gz"
    result = _cli("contribute", "--profile", str(PROFILE), "--table", str(table), "--out",
                  str(out), "--who", "test lab", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["rows"] == 18 and report["architectures"] == 6
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))
        member = tar.extractfile("profile/nvidia-quadro-rtx-6000.toml").read()
    assert names == {"manifest.json", "profile/nvidia-quadro-rtx-6000.toml", "table/t.csv"}
    assert manifest["profile"]["sha256"] == hashlib.sha256(member).hexdigest()
    assert manifest["contributor"] == "test lab"
    assert any(c["name"] == "device-matches-profile" and c["passed"] for c in manifest["checks"])


def test_contribute_refuses_a_table_from_another_device(tables, tmp_path, ecnas_5v_graphs, ecnas_5v_results):
    table = _table(tmp_path / "t.csv", ecnas_5v_graphs, ecnas_5v_results, "nvidia-v100")
    out = tmp_path / "bundle.tar.gz"
    result = _cli("contribute", "--profile", str(PROFILE), "--table", str(table), "--out", str(out))
    assert result.returncode == 1
    assert "device-matches-profile" in result.stderr and "nvidia-v100" in result.stderr
    assert not out.exists()


def test_contribute_refuses_a_broken_profile(tmp_path, ecnas_5v_graphs, ecnas_5v_results):
    table = _table(tmp_path / "t.csv", ecnas_5v_graphs, ecnas_5v_results, "x")
    bad = tmp_path / "bad.toml"
    bad.write_text(PROFILE.read_text().replace("tdp_w = 260", "tdp_w = 0"))
    result = _cli("contribute", "--profile", str(bad), "--table", str(table), "--out",
                  str(tmp_path / "b.tar.gz"))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"ecnas contribute: error: {bad}: power.tdp_w: "
                                     "must be > 0, got 0")
