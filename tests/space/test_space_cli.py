"""`ecnas spec` on real EC-NAS 5V architectures: EC-NAS's hash and parameter count."""

import itertools
import json
import random
import shutil
import subprocess
import sys

import pytest

from ecnas.cli import main
from ecnas.space import ModelSpec, canonical_spec
from ecnas.space.cost import trainable_params

# the installed console script when there is one, else the same entry point through python
ECNAS = [shutil.which("ecnas")] if shutil.which("ecnas") else [
    sys.executable, "-c", "import sys; from ecnas.cli import main; sys.exit(main())"]


def _args(matrix, labels):
    names = {-1: "input", -2: "output", 0: "conv3x3-bn-relu", 1: "conv1x1-bn-relu", 2: "maxpool3x3"}
    return ["--matrix", "".join(str(x) for row in matrix for x in row),
            "--ops", ",".join(names[lab] for lab in labels)]


def _pick(graphs, k, seed):
    return random.Random(seed).sample(sorted(graphs), k)


def test_spec_json_in_a_real_subprocess(ecnas_5v_graphs, ecnas_5v_results):
    for h in _pick(ecnas_5v_graphs, 2, seed=11):
        proc = subprocess.run(
            [*ECNAS, "spec", *_args(*ecnas_5v_graphs[h]), "--json"],
            capture_output=True, text=True, check=False, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["arch_hash"] == h
        assert out["trainable_params"] == ecnas_5v_results[h]["trainable_params"]
        assert out["valid"] is True and out["invalid_reason"] is None
        assert out["flops"] > 0 and "per image" in out["flops_unit"]


def test_spec_json_on_many_5v_cells(ecnas_5v_graphs, ecnas_5v_results, capsys):
    for h in _pick(ecnas_5v_graphs, 150, seed=12):
        assert main(["spec", *_args(*ecnas_5v_graphs[h]), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["arch_hash"], out["trainable_params"]) == (h, ecnas_5v_results[h]["trainable_params"])
        assert {"matrix", "ops", "valid", "invalid_reason", "arch_hash", "trainable_params", "flops",
                "num_vertices", "num_edges"} <= set(out)


def test_spec_prunes_and_reports_pruned_form(capsys):
    # vertex 2 dangles: the printed matrix/ops are the pruned 3-vertex cell
    assert main(["spec", "--matrix", "0110000100000000", "--ops",
                 "input,conv3x3-bn-relu,maxpool3x3,output", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["matrix"] == "010001000" and out["ops"] == "input,conv3x3-bn-relu,output"
    assert (out["num_vertices"], out["num_edges"]) == (3, 2)


def test_scaled_down_network_options(capsys):
    args = ["spec", "--matrix", "0100", "--ops", "input,output", "--stem-channels", "4",
            "--stacks", "2", "--cells-per-stack", "1", "--num-classes", "2", "--image-size", "8",
            "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trainable_params"] == (9 * 3 * 4 + 8) + (16 + 8) + (32 + 16) + (8 * 2 + 2)
    assert out["flops"] == 2.0 * (9 * 3 * 4 * 64 + 4 * 4 * 64 + 4 * 8 * 16 + 8 * 2)


def test_invalid_spec_is_a_result_with_exit_0(capsys):
    assert main(["spec", "--matrix", "0000", "--ops", "input,output", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] is False and out["invalid_reason"] == "input and output are not connected"
    assert out["arch_hash"] is None and out["trainable_params"] is None and out["flops"] is None
    assert main(["spec", "--matrix", "0000", "--ops", "input,output"]) == 0
    assert "valid             no: input and output are not connected" in capsys.readouterr().out


def test_text_output(capsys):
    assert main(["spec", "--matrix", "010001000", "--ops", "input,maxpool3x3,output"]) == 0
    text = capsys.readouterr().out
    assert "arch_hash" in text and "trainable_params" in text and "MFLOPs" in text


@pytest.mark.parametrize(
    "args,message",
    [
        (["--matrix", "010", "--ops", "input,output"], "square"),
        (["--matrix", "0100", "--ops", "input,conv5x5"], "unknown op 'conv5x5'"),
        (["--matrix", "010001000", "--ops", "input,output"], "3 vertices but 2 ops"),
        (["--matrix", "0100", "--ops", "input,output", "--stem-channels", "0"], "stem_channels"),
    ],
)
def test_malformed_input_exits_2_with_one_line(args, message, capsys):
    assert main(["spec", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def _renumberings(spec):
    """Every valid vertex renumbering of a pruned cell (input and output fixed)."""
    n = spec.num_vertices
    m = spec.matrix
    for p in itertools.permutations(range(1, n - 1)):
        sigma = (0, *p, n - 1)
        if any(sigma[x] > sigma[y] for x in range(n) for y in range(n) if m[x, y]):
            continue
        new = [[0] * n for _ in range(n)]
        ops = [""] * n
        for v in range(n):
            ops[sigma[v]] = spec.ops[v]
            for w in range(n):
                if m[v, w]:
                    new[sigma[v]][sigma[w]] = 1
        yield ModelSpec(new, ops)


def test_canonical_flag_recovers_ecnas_count_for_a_renumbered_cell(ecnas_5v_graphs, ecnas_5v_results,
                                                                   capsys):
    # find 5V cells whose renumbering moves a remainder channel to another op
    found = 0
    for h in sorted(ecnas_5v_graphs):
        spec = ModelSpec(*ecnas_5v_graphs[h])
        recorded = ecnas_5v_results[h]["trainable_params"]
        other = next((s for s in _renumberings(spec) if trainable_params(s) != recorded), None)
        if other is None:
            continue
        assert canonical_spec(other) == spec
        base = ["spec", "--matrix", other.matrix_str, "--ops", other.ops_str, "--json"]
        assert main(base) == 0
        plain = json.loads(capsys.readouterr().out)
        assert plain["arch_hash"] == h and plain["trainable_params"] != recorded
        assert plain["canonical_matrix"] == spec.matrix_str
        assert main([*base, "--canonical"]) == 0
        canon = json.loads(capsys.readouterr().out)
        assert (canon["arch_hash"], canon["trainable_params"]) == (h, recorded)
        assert canon["matrix"] == spec.matrix_str
        found += 1
        if found == 3:
            break
    assert found == 3


def test_canonical_spec_of_any_renumbering_is_the_stored_ecnas_cell(ecnas_5v_graphs):
    for h in random.Random(5).sample(sorted(ecnas_5v_graphs), 300):
        stored = ModelSpec(*ecnas_5v_graphs[h])
        for variant in _renumberings(stored):
            assert variant.hash() == h
            assert canonical_spec(variant) == stored
