"""README and docs examples are real output: every ```console block starting with `$ resnet-cli` is re-run.

Regenerate them after an intended change with `python -m pytest tests/test_readme.py --overwrite`.
"""

from __future__ import annotations

import pytest
from golden import REPO, check_block, examples

README = REPO / "README.md"
GOLDEN_FILES = [
    README,
    REPO / "docs" / "flops.md",
    REPO / "docs" / "summary.md",
    REPO / "docs" / "receptive-field.md",
    REPO / "docs" / "training.md",
]


def test_readme_has_examples():
    assert "summary resnet50 --depth 1" in examples(README)


def test_docs_show_a_user_model_example():
    for path in GOLDEN_FILES[1:3]:
        assert any("tests/models/" in args for args in examples(path)), path


@pytest.mark.parametrize(
    ("path", "args"),
    [(path, args) for path in GOLDEN_FILES for args in examples(path)],
    ids=[f"{path.name}: {args}" for path in GOLDEN_FILES for args in examples(path)],
)
def test_readme_example_is_real_output(path, args, overwrite, monkeypatch):
    monkeypatch.chdir(REPO)  # examples name files relative to the repository
    check_block(path, args, overwrite)
