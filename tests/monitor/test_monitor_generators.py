"""``@measure`` on generator and async generator functions meters the iteration, not the
creation of the generator (issue 37, point 4): a fake powercap tree moves by known joules
while the generator runs, before it is iterated and after it ended."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.sysfs import FakePowercap

from ecnas.monitor import measure, refresh

J = 1_000_000


class Tree:
    """A one-package fake tree whose counter moves by known joules."""

    def __init__(self, root: Path) -> None:
        self.fake = FakePowercap(root)
        self.zone = self.fake.package(0, dram=False, core=False)["package"]
        self.uj = 0

    def add(self, joules: float) -> None:
        self.uj += int(joules * J)
        self.zone.set(self.uj)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    t = Tree(tmp_path / "a")
    monkeypatch.setenv("ECNAS_SYSFS_ROOT", str(t.fake.root))
    yield t
    refresh()


def test_generator_window_spans_the_iteration(tree: Tree) -> None:
    @measure
    def batches(n: int):
        for i in range(n):
            tree.add(2)  # the work of one item
            yield i

    assert inspect.isgeneratorfunction(batches)
    gen = batches(3)
    tree.add(100)  # between creation and the first next(): not the generator's work
    assert batches.energy_report is None
    assert list(gen) == [0, 1, 2]
    tree.add(50)  # after exhaustion
    report = batches.energy_report
    assert report.name.endswith("batches")
    assert report.energy_j == pytest.approx(6)
    assert report.meters == ("rapl",)


def test_generator_return_value_send_and_early_close(tree: Tree) -> None:
    @measure("echo")
    def echo():
        total = 0
        while True:
            got = yield total
            if got is None:
                return total
            tree.add(got)
            total += got

    gen = echo()
    assert next(gen) == 0
    assert gen.send(1) == 1
    assert gen.send(3) == 4
    with pytest.raises(StopIteration) as stop:
        gen.send(None)
    assert stop.value.value == 4  # the generator's return value passes through
    assert echo.energy_report.energy_j == pytest.approx(4)

    gen = echo()
    next(gen)
    gen.send(5)
    gen.close()  # a consumer stopping early ends the window too
    tree.add(7)
    assert echo.energy_report.energy_j == pytest.approx(5)


def test_generator_raising_still_reports(tree: Tree) -> None:
    @measure("boom")
    def boom():
        tree.add(1.5)
        yield 1
        raise ValueError("broken batch")

    with pytest.raises(ValueError, match="broken batch"):
        list(boom())
    assert boom.energy_report.energy_j == pytest.approx(1.5)


def test_async_generator_window_spans_the_iteration(tree: Tree) -> None:
    @measure
    async def stream(n: int):
        for i in range(n):
            await asyncio.sleep(0)
            tree.add(1)
            yield i

    assert inspect.isasyncgenfunction(stream)

    async def consume() -> list[int]:
        agen = stream(4)
        tree.add(100)  # made, not iterated yet
        return [i async for i in agen]

    assert asyncio.run(consume()) == [0, 1, 2, 3]
    assert stream.energy_report.energy_j == pytest.approx(4)


def test_async_generator_athrow_and_aclose(tree: Tree) -> None:
    @measure("agen")
    async def agen():
        while True:
            try:
                tree.add(1)
                yield "ok"
            except KeyError:
                yield "handled"

    async def drive() -> list[str]:
        g = agen()
        out = [await g.__anext__()]
        out.append(await g.athrow(KeyError("k")))  # passed on to the generator
        out.append(await g.__anext__())
        await g.aclose()
        return out

    assert asyncio.run(drive()) == ["ok", "handled", "ok"]
    assert agen.energy_report.energy_j == pytest.approx(2)


def test_plain_function_decorator_unchanged(tree: Tree) -> None:
    @measure
    def work() -> int:
        tree.add(2.5)
        return 7

    assert work() == 7
    assert work.energy_report.energy_j == pytest.approx(2.5)
