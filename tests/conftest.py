"""Shared pytest options and fixtures: `--overwrite` regenerates golden outputs instead of comparing them; the `slow`
marker; runs that several test files read."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes several seconds on a laptop CPU; deselect with -m 'not slow'")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--overwrite", action="store_true", default=False, help="rewrite golden outputs (the docs' console blocks) from real runs"
    )


@pytest.fixture
def overwrite(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--overwrite"))


@pytest.fixture
def one_thread():
    """Real CPU work (fvcore's thousands of tiny ops, timed forward passes) on one thread: on a busy 2-core machine
    a second thread mostly waits for the first (a timed resnet18 took 8 s on two threads, 0.6 s on one)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def preset_list():
    """`resnet-cli list --format json`, run once for every test that reads it: it counts all 16 presets (seconds)."""
    from cli_runner import run

    result = run("list", "--format", "json")
    assert result.exit_code == 0, result.output
    return result
