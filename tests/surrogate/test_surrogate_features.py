"""Surrogate building blocks: cell features against the real EC-NAS counts and ecnas.space,
prefix lines, conformal intervals, metrics, and model files that refuse pickles."""

from __future__ import annotations

import math
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest

from ecnas.errors import InputError
from ecnas.space import ModelSpec, sample_cells
from ecnas.space.cost import forward_flops, trainable_params
from ecnas.surrogate import metrics
from ecnas.surrogate.features import (
    PHYSICS,
    batch_from_specs,
    batch_from_strings,
    cell_features,
    params_and_flops,
)
from ecnas.surrogate.intervals import bounds, conformal_quantile
from ecnas.surrogate.modelfile import read_model, write_model
from ecnas.surrogate.runs import prefix_lines

NAMES = {-1: "input", -2: "output", 0: "conv3x3-bn-relu", 1: "conv1x1-bn-relu", 2: "maxpool3x3"}


def _strings(matrix, labels):
    return "".join(str(x) for row in matrix for x in row), ",".join(NAMES[lab] for lab in labels)


def test_parameter_counts_equal_ecnas_for_all_5v_cells(ecnas_5v_graphs, ecnas_5v_results):
    hashes = sorted(ecnas_5v_results)
    pairs = [_strings(*ecnas_5v_graphs[h]) for h in hashes]
    params, flops = params_and_flops(batch_from_strings([m for m, _ in pairs], [o for _, o in pairs]))
    recorded = np.array([ecnas_5v_results[h]["trainable_params"] for h in hashes])
    assert len(hashes) == 2532
    assert np.array_equal(params, recorded)
    assert np.all(flops > 0)


def test_batch_features_match_ecnas_space_on_7_vertex_cells():
    specs = sample_cells(400, seed=3)
    params, flops = params_and_flops(batch_from_specs(specs))
    assert params.tolist() == [trainable_params(s) for s in specs]
    assert np.allclose(flops, [forward_flops(s) for s in specs], rtol=0, atol=0.5)


def test_unpruned_cells_are_pruned_and_invalid_ones_refused():
    # vertex 2 is a dead end (feeds nothing): pruning removes it
    raw = "0110" "0001" "0000" "0000"
    ops = "input,conv3x3-bn-relu,maxpool3x3,output"
    got = batch_from_strings([raw], [ops])
    spec = ModelSpec(np.frombuffer(raw.encode(), np.uint8).reshape(4, 4) - 48, ops.split(","))
    assert np.array_equal(got.matrices[0], spec.matrix)
    with pytest.raises(InputError, match="invalid"):
        batch_from_strings(["0000" "0000" "0000" "0000"], [ops])  # input and output disconnected
    with pytest.raises(InputError, match="not a 4x4"):
        batch_from_strings(["011"], [ops])
    with pytest.raises(InputError, match="unknown op 'conv5x5'"):
        batch_from_strings(["0110000100010000"], ["input,conv5x5,maxpool3x3,output"])


def test_features_follow_the_work_of_a_step():
    base = ("0100" "0010" "0001" "0000", "input,conv1x1-bn-relu,conv1x1-bn-relu,output")
    wider = ("0100" "0010" "0001" "0000", "input,conv3x3-bn-relu,conv3x3-bn-relu,output")
    f = cell_features(batch_from_strings([base[0], wider[0]], [base[1], wider[1]]))
    macs = PHYSICS.index("log_macs")
    assert f[1, macs] > f[0, macs] and f[1, 0] > f[0, 0]
    assert f[0, PHYSICS.index("depth")] == 3 and f[0, PHYSICS.index("edges")] == 3
    assert np.isfinite(f).all()
    bits = cell_features(batch_from_strings([base[0]], [base[1]]), graph_bits=True)
    assert bits.shape[1] == len(PHYSICS) + 36


def test_prefix_lines_fit_startup_and_rate_per_run():
    rows = []
    for repeat, (a, b) in enumerate([(100.0, 50.0), (0.0, 10.0)], start=1):
        for e in (0.0, 1.0, 2.0, 3.0):
            rows.append({"arch_hash": "h", "budget_epochs": 4, "repeat": repeat, "device": "d",
                         "epoch": e, "energy_j": a + b * e, "training_time_s": 2 * e,
                         "wall_time_s": 5 + 3 * e})
    p = prefix_lines(pd.DataFrame(rows))
    last = p.count == 4
    assert np.allclose(p.a["energy_j"][last], [100.0, 0.0])
    assert np.allclose(p.b["energy_j"][last], [50.0, 10.0])
    assert np.isnan(p.b["energy_j"][p.count == 1]).all()  # epoch 0 alone: no rate
    # a decreasing series must not give a negative rate (physics: costs accumulate)
    bad = pd.DataFrame(rows[:4]).assign(energy_j=[10.0, 9.0, 8.0, 7.0])
    assert (prefix_lines(bad).b["energy_j"][1:] >= 0).all()
    # one checkpoint after epoch 0: identified through the start-up share in epochs
    one = pd.DataFrame(rows[2:3])
    q = prefix_lines(one, {"energy_j": 2.0})
    assert q.b["energy_j"][0] == pytest.approx(one["energy_j"].iloc[0] / 4.0)


def test_conformal_quantile_covers_at_its_level():
    rng = np.random.default_rng(0)
    level = 0.9
    hits = []
    for _ in range(300):
        cal = rng.standard_t(4, 50)
        new = rng.standard_t(4, 200)
        q = conformal_quantile(cal, level)
        hits.append(np.mean(np.abs(new) <= q))
    assert abs(np.mean(hits) - level) < 0.02
    assert conformal_quantile(np.array([0.1, 0.2]), 0.9) == math.inf
    lo, hi = bounds(np.array([100.0]), math.inf)
    assert lo[0] == 0 and hi[0] == math.inf
    with pytest.raises(InputError):
        conformal_quantile(np.ones(5), 1.5)


def test_metrics_on_known_values():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    assert metrics.mape(t * 1.1, t) == pytest.approx(10.0)
    assert metrics.kendall_tau(t, t) == 1.0
    assert metrics.kendall_tau(t[::-1], t) == -1.0
    assert metrics.r2(t, t) == 1.0
    assert metrics.coverage(t - 1, t + 1, np.array([-1.0, 2.0, 3.0, 9.0])) == 50.0
    with pytest.raises(InputError):
        metrics.mae(t, t[:2])


def test_model_file_round_trip(tmp_path):
    path = write_model(tmp_path / "m.npz", {"k": 1}, {"w": np.arange(3.0)})
    meta, arrays = read_model(path)
    assert meta["k"] == 1 and meta["format"] == "ecnas-surrogate/1"
    assert np.array_equal(arrays["w"], np.arange(3.0))


class _Boom:
    def __reduce__(self):
        return (open, (str(_Boom.target), "w"))


def test_model_file_with_a_pickle_is_refused_without_running_it(tmp_path):
    _Boom.target = tmp_path / "pwned"
    bad = tmp_path / "evil.npz"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("__meta__.npy", pickle.dumps(_Boom()))
    with pytest.raises(InputError):
        read_model(bad)
    obj = tmp_path / "obj.npz"
    np.savez(obj, __meta__=np.array([_Boom()], dtype=object))
    with pytest.raises(InputError):
        read_model(obj)
    assert not _Boom.target.exists()
    text = tmp_path / "t.npz"
    text.write_text("matrix,ops\n")
    with pytest.raises(InputError, match="not an npz"):
        read_model(text)
