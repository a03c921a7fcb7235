"""Multi-objective search: exact hypervolume against brute force, sorting, knee and savings,
and every algorithm beating its own initial population on a benchmark of the real 5V data."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from cli_inproc import run_cli

from ecnas.benchmark.moo import (
    ALGORITHMS,
    energy_saved_at,
    hypervolume,
    knee_index,
    nondominated_sort,
    run_search,
)
from ecnas.errors import InputError

MAIN = "import sys; from ecnas.cli import main; sys.exit(main(sys.argv[1:]))"


def brute_force_hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact union volume on the grid of all coordinates (independent of the sweep code)."""
    axes = [np.unique(np.append(points[:, k], ref[k])) for k in range(len(ref))]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        lo = np.array([axes[k][i] for k, i in enumerate(cell)])
        hi = np.array([axes[k][i + 1] for k, i in enumerate(cell)])
        if np.any(np.all(points <= lo, axis=1)):
            total += float(np.prod(hi - lo))
    return total


@pytest.mark.parametrize("dim,n,seed", [(2, 1, 0), (2, 12, 1), (2, 30, 2), (3, 8, 3), (3, 15, 4)])
def test_hypervolume_equals_brute_force(dim, n, seed):
    rng = np.random.default_rng(seed)
    pts = rng.random((n, dim))
    ref = np.full(dim, 1.1)
    assert hypervolume(pts, ref) == pytest.approx(brute_force_hv(pts, ref), rel=1e-12)


def test_hypervolume_ignores_points_outside_the_reference_box_and_refuses_4d():
    assert hypervolume(np.array([[2.0, 0.5]]), (1.0, 1.0)) == 0.0
    with pytest.raises(InputError, match="2-D and 3-D"):
        hypervolume(np.zeros((1, 4)), (1, 1, 1, 1))


def test_nondominated_sort_ranks_fronts():
    pts = np.array([[1, 4], [2, 2], [4, 1], [3, 3], [4, 4], [5, 5]], dtype=float)
    assert nondominated_sort(pts).tolist() == [0, 0, 0, 1, 2, 3]


def test_2d_front_fast_path_equals_the_pairwise_definition():
    from ecnas.benchmark.moo import pareto_mask

    rng = np.random.default_rng(0)
    for _ in range(200):  # small integer grids: many ties and duplicates
        p = rng.integers(0, 6, size=(int(rng.integers(1, 30)), 2)).astype(float)
        le = np.all(p[:, None, :] <= p[None, :, :], axis=2)
        lt = np.any(p[:, None, :] < p[None, :, :], axis=2)
        assert (pareto_mask(p) == ~(le & lt).any(axis=0)).all(), p


def test_knee_and_energy_saved():
    front = np.array([[0.0, 1.0], [0.1, 0.3], [1.0, 0.0]])  # minimized: energy, 1 - accuracy
    assert knee_index(front) == 1
    pts = np.array([[70.0, 100.0], [69.5, 40.0], [60.0, 10.0]])  # accuracy points, energy J
    assert energy_saved_at(pts, 1.0) == pytest.approx(0.6)
    assert energy_saved_at(pts, 0.1) == 0.0


@pytest.fixture(scope="module")
def bench(ecnas_5v_dir):
    from ecnas.benchmark import Benchmark
    from ecnas.interop import import_ecnas

    return Benchmark.from_table(import_ecnas(ecnas_5v_dir), seed=0)


@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a not in ("sh_emoa", "tpe", "optuna_nsga2")])
def test_every_algorithm_beats_its_initial_population(bench, algorithm):
    r = run_search(bench, algorithm, 80, seed=1, budget=4)
    assert r.evaluations == 80
    assert r.hypervolume > r.initial_hypervolume
    assert r.charged_time_s > 0 and r.charged_energy_j > 0  # every evaluation is charged
    again = run_search(bench, algorithm, 80, seed=1, budget=4)
    assert again.evaluated == r.evaluated  # seeded


def test_search_and_pareto_cli(tmp_path, ecnas_5v_dir):
    from ecnas.benchmark import write_bundle
    from ecnas.interop import import_ecnas

    bundle = write_bundle(import_ecnas(ecnas_5v_dir), tmp_path / "bench")
    out = run_cli("search", bundle, "--algorithm", "nsga2", "--evaluations", "40", "--seeds",
                  "2", "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert len(d["hypervolume"]) == 2 and d["mean"] > 0
    png = tmp_path / "front.png"
    out = run_cli("pareto", bundle, "--plot", png, "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert png.stat().st_size > 10_000 and 0 < d["energy_saved_fraction"] < 1
    assert d["knee"]["arch_hash"] in {f for f in bench_hashes(bundle)}
    bad = run_cli("search", bundle, "--algorithm", "random", "--objectives", "energy,beauty")
    assert bad.returncode == 2 and "unknown objective" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def bench_hashes(bundle):
    from ecnas.benchmark import Benchmark

    return set(Benchmark.load(bundle).hash_iterator())


# -- the front's plot and words (issue 29.7) -------------------------------------------------

def _svg_text(path) -> str:
    import html
    import re

    return html.unescape(" ".join(re.findall(r">([^<>]+)</text>", path.read_text())))


def test_plot_names_origin_device_data_set_and_units(bench, tmp_path):
    import matplotlib

    from ecnas.benchmark.moo import plot_front
    from ecnas.benchmark.moo.describe import front_title

    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
        res = plot_front(bench, tmp_path / "front.svg", budget=4)
    text = _svg_text(tmp_path / "front.svg")
    assert front_title(4) in text and res.title == front_title(4)
    assert "device: nvidia-quadro-rtx-6000" in text and "data set: CIFAR-10" in text
    assert "imported (measured by the source) (2532)" in text
    assert "energy (kJ) per architecture at 4 epochs" in text and "energy (Wh)" in text
    assert "ESTIMATED" not in text
    assert "10^" not in text and "times" not in text  # plain tick labels, not 2×10⁴
    assert res.origin.to_dict() == {"device": "nvidia-quadro-rtx-6000", "dataset": "CIFAR-10",
                                    "estimated": False,
                                    "architectures_by_origin": {"imported": 2532}}


def test_plot_of_estimated_and_predicted_energies_says_so(ecnas_5v_dir, tmp_path):
    import matplotlib

    from ecnas.benchmark import Benchmark
    from ecnas.benchmark.moo import plot_front
    from ecnas.interop import import_ecnas

    df = import_ecnas(ecnas_5v_dir)
    hashes = df["arch_hash"].drop_duplicates().to_numpy()
    measured, predicted = set(hashes[:40]), set(hashes[40:300])
    df = df[df["arch_hash"].isin(measured | predicted)].copy()
    df["source"] = np.where(df["arch_hash"].isin(measured), "measured", "surrogate")
    df["estimated"] = True  # measured by the CPU-time estimate; predictions from it
    df["device"] = "generic-cpu"
    df.attrs["ecnas"] = {"campaign": {"dataset": "embedded"}}
    bench = Benchmark.from_table(df)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        res = plot_front(bench, tmp_path / "front.svg", budget=4)
    text = _svg_text(tmp_path / "front.svg")
    assert "estimated (no energy counter readable) (40)" in text
    assert "predicted by the surrogate, from estimates (260)" in text
    assert "ESTIMATED, not measured" in text
    assert "data set: embedded digits (UCI, 32×32, not CIFAR-10)" in text
    assert res.origin.estimated
    assert res.origin.text().startswith("energy of 40 estimated (no energy counter readable), "
                                        "260 predicted by the surrogate, from estimates; device")


def test_knee_is_inside_the_front_or_says_why_not(bench):
    from ecnas.benchmark.moo import pareto_front
    from ecnas.benchmark.moo.plot import _knee

    res = pareto_front(bench, budget=4)
    fp = res.front_points()  # by energy, ascending
    knee = res.knee
    # on the log-energy axis the plot uses, the knee is where the front bends, not an end
    assert fp[0, 1] < knee["energy_j"] < fp[-1, 1] and "note" not in knee
    assert knee["validation_accuracy_points"] > fp[0, 0] + 10
    # a bend: cheap points gain much accuracy per ratio of energy, the rest little
    energy = np.array([1.0, 2.0, 4.0, 100.0, 1000.0])
    acc = np.array([10.0, 50.0, 80.0, 82.0, 83.0])
    assert _knee(np.arange(5), energy, acc)["index"] == 2
    two = _knee(np.arange(2), np.array([1.0, 9.0]), np.array([10.0, 20.0]))
    assert "the front has 2 point(s)" in two["note"]
    line = _knee(np.arange(4), 10.0 ** np.arange(4), np.array([10.0, 20.0, 30.0, 40.0]))
    assert "straight line" in line["note"]


def test_pareto_cli_names_the_figure_as_the_plot_does(tmp_path, ecnas_5v_dir):
    from ecnas.benchmark import write_bundle
    from ecnas.benchmark.moo.describe import front_title
    from ecnas.interop import import_ecnas

    bundle = write_bundle(import_ecnas(ecnas_5v_dir), tmp_path / "bench")
    out = subprocess.run([sys.executable, "-c", MAIN, "pareto", str(bundle), "--budget", "4"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(front_title(4) + ": 2532 architectures")
    assert lines[1].startswith("knee: ") and " kJ (" in lines[1] and " Wh)" in lines[1]
    assert lines[2].startswith("energy saved at ≤ 1 point(s) of validation accuracy lost")
    assert lines[3] == ("energy of 2532 imported (measured by the source); device "
                        "nvidia-quadro-rtx-6000; data set CIFAR-10")
