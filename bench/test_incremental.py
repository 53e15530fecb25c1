"""pytest-benchmark view of the incremental benchmark: batchit's cold and no-op builds of 1,000 files.

    .venv/bin/python -m pytest bench/ --benchmark-enable -n 0

Outside the default test run (pyproject's testpaths is tests/). Without --benchmark-enable (the
project's default) each benchmark runs once, as a smoke test of the benchmark itself.
"""

from __future__ import annotations

import pytest
from incremental import Run, Tree, make_tree, run_build
from pytest_benchmark.fixture import BenchmarkFixture

SIZE = 1000
ROUNDS = 3


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    """One tree of 1,000 inputs shared by the module: generating it costs more than a no-op build."""
    return make_tree(SIZE, tmp_path_factory.mktemp("bench"))


def build(tree: Tree, runs: list[Run]) -> None:
    """One `batchit build` subprocess in the tree, remembered in `runs`."""
    runs.append(run_build(tree, "batchit"))


def test_cold_build(benchmark: BenchmarkFixture, tree: Tree) -> None:
    def setup() -> None:
        tree.reset("batchit")

    runs: list[Run] = []
    benchmark.pedantic(build, args=(tree, runs), setup=setup, rounds=ROUNDS, iterations=1)
    assert tree.outputs("batchit") == SIZE
    assert runs[-1].ran == SIZE, runs[-1]


def test_noop_build(benchmark: BenchmarkFixture, tree: Tree) -> None:
    runs: list[Run] = []
    build(tree, runs)
    benchmark.pedantic(build, args=(tree, runs), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert runs[-1].ran == 0, f"a no-op build ran {runs[-1].ran} jobs"
