"""Issue 37, point 14: the front's legend covers no data point and lists only what is drawn,
on the figure ``ecnas pareto --plot`` and the demo write (one drawing function for all)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(ecnas_5v_dir):
    from ecnas.benchmark import Benchmark
    from ecnas.interop import import_ecnas

    return Benchmark.from_table(import_ecnas(ecnas_5v_dir), seed=0)


def _drawn(artist) -> bool:
    """Whether the artist shows something on the axes (a line of two points, or markers)."""
    if hasattr(artist, "get_offsets"):  # a scatter
        return len(artist.get_offsets()) > 0
    x = artist.get_xdata()
    return len(x) >= 2 or (len(x) == 1 and artist.get_marker() not in (None, "None", "", " "))


def test_legend_is_outside_the_data_and_names_only_what_is_drawn(bench):
    from ecnas.benchmark.moo import run_search
    from ecnas.benchmark.moo.pareto import pareto_mask
    from ecnas.benchmark.moo.plot import draw_front

    # the quick demo's case: a short search whose attainment "curve" is one point (one of its
    # two evaluations dominates the other)
    arrays = bench.arrays(4)
    where = {h: i for i, h in enumerate(arrays["arch_hash"])}
    for seed in range(50):
        tiny = run_search(bench, "random", 2, seed=seed, budget=4)
        idx = [where[h] for h in tiny.evaluated]
        pts = np.column_stack([arrays["energy_j"][idx], -arrays["validation_accuracy"][idx]])
        if pareto_mask(pts).sum() == 1:
            break
    else:
        pytest.fail("no seed gives a one-point attainment")
    wide = run_search(bench, "random", 30, seed=1, budget=4)
    fig, res = draw_front(bench, budget=4, searches=[tiny, wide])
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend()
    box = legend.get_window_extent()
    assert not box.overlaps(ax.get_window_extent())  # outside the axes: covers no point
    # and no point lies under it either way (display coordinates of every scatter point)
    for coll in ax.collections:
        xy = coll.get_transform().transform(coll.get_offsets()) if len(coll.get_offsets()) else []
        assert not any(box.contains(float(x), float(y)) for x, y in xy)
    labels = [t.get_text() for t in legend.get_texts()]
    by_label = {a.get_label(): a for a in (*ax.lines, *ax.collections)}
    assert f"random (seed {seed}) attainment" in labels
    for label in labels:
        assert label in by_label and _drawn(by_label[label]), label
    # a search that found the front itself is drawn above it, not hidden under it
    front = by_label["Pareto front"]
    for label in labels:
        if "attainment" in label:
            assert by_label[label].get_zorder() > front.get_zorder(), label
    assert res.front.any() and np.isfinite(res.points).all()


def test_pareto_plot_keeps_the_outside_legend_in_the_file(tmp_path, bench):
    from ecnas.benchmark.moo import plot_front

    png = tmp_path / "front.png"
    plot_front(bench, png, budget=4)
    import matplotlib.image as mpimg

    h, w = mpimg.imread(png).shape[:2]
    assert w > 1.6 * h  # the legend column beside the axes was kept (bbox "tight")
