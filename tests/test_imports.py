"""The package's import graph: every module imports on its own (no cycle, whatever is imported first), the CLI's
modules stay torch-free, and each shared helper has one definition."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_cli"
# Imported before anything else by the CLI (`resnet-cli --help` must not pay for torch), so they must not import it.
TORCH_FREE = ["resnet_cli", "resnet_cli.cli", "resnet_cli.spec", "resnet_cli.errors", "resnet_cli.units",
              "resnet_cli.user_model"]  # fmt: skip


def module_names() -> list[str]:
    """Every module of the package by its dotted name, packages included; not __main__, which runs the CLI."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


# One interpreter imports the third-party libraries once, then forks a child per module: each child starts with no
# resnet_cli module loaded, so it imports that module first, as a fresh interpreter would (a cycle shows up as an
# ImportError in the child), at a fraction of the cost of importing torch 50 times.
FORK_EACH = """
import importlib, json, os, sys, traceback
import rich, torch, typer  # noqa: F401
assert not [name for name in sys.modules if name.startswith("resnet_cli")]
failed = {}
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
        except BaseException:
            os.write(write, traceback.format_exc().encode())
            os._exit(1)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        error = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status):
        failed[name] = error[-2000:] or f"exit status {status}"
print(json.dumps(failed))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_module_imports_first_in_a_fresh_process():
    names = module_names()
    assert len(names) > 30 and "resnet_cli.analysis.counting" in names
    done = subprocess.run([sys.executable, "-c", FORK_EACH, *names], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    failed = json.loads(done.stdout)
    assert not failed, "\n\n".join(f"{name}:\n{error}" for name, error in failed.items())


@pytest.mark.parametrize("name", TORCH_FREE + [n for n in module_names() if n.startswith("resnet_cli.cli.")])
def test_cli_side_modules_do_not_import_torch(name):
    code = f"import sys, {name}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", f"importing {name} imports torch"


def _definitions(pattern: str) -> list[str]:
    """'path:line' of every line in the package that matches `pattern`."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{number}")
    return found


# A helper that was written again in each file that needed it, and where its one definition now lives.
ONE_DEFINITION = {
    r"def shape_text\b": "resnet_cli/units.py",
    r"def first_line\b": "resnet_cli/units.py",
    r"def format_bytes\b": "resnet_cli/units.py",
    r"def giga\b": "resnet_cli/units.py",
    r"def check_writable\b": "resnet_cli/render/plots.py",
    r"^MIB\b": "resnet_cli/units.py",
    r"def share_percent\b": "resnet_cli/units.py",
    r"def saved_percent\b": "resnet_cli/units.py",
    r"numel\(\) for p in": "resnet_cli/trace.py",  # parameter counting: trace.parameter_count
    r"def parameter_count\b": "resnet_cli/trace.py",
    r"def has_zero_size\b": "resnet_cli/trace.py",
    r"def raise_for_failure\b": "resnet_cli/trace.py",
    r"def output_size\b": "resnet_cli/meta_shapes.py",  # conv and pooling output size
    r"def time_interleaved\b": "resnet_cli/analysis/bench.py",  # compare --time and bench
    r"def layer_json\b": "resnet_cli/render/summary.py",
    r"def request_json\b": "resnet_cli/render/table.py",
    r"def check_depth\b": "resnet_cli/cli/depth.py",
}
@pytest.mark.parametrize(("pattern", "home"), ONE_DEFINITION.items(), ids=list(ONE_DEFINITION))
def test_a_shared_helper_is_defined_once(pattern, home):
    found = _definitions(pattern)
    assert [place.rsplit(":", 1)[0] for place in found] == [home], found


# Patterns of the replaced copies, and the files each may still appear in (the shared helper itself).
REPLACED = [
    (r"def _percent\b", ()),  # two, with opposite meanings: units.share_percent, units.saved_percent
    (r"def _giga\b", ()),  # units.giga
    (r"def check_trace\b", ()),  # ModelTrace.raise_for_failure
    (r"def _pool_size\b", ()),  # meta_shapes.output_size
    (r"def _layer_json\b", ()),  # render.summary.layer_json
    (r"\.extra\[\"macs", ()),  # LayerRecord.macs, FunctionRecord.macs
    (r"\bIdentity\"", ("resnet_cli/trace.py",)),  # LayerRecord.is_disabled_option
    (r"[\"']x[\"']\.join\(", ("resnet_cli/units.py",)),  # units.shape_text
    (r"perf_counter\(\)\s*$", ("resnet_cli/analysis/bench.py", "resnet_cli/analysis/sweep.py")),  # bench.time_interleaved
    (r"0 in (shape|s)\[2:\]", ("resnet_cli/trace.py",)),  # trace.has_zero_size
    (r"\* \(k\S* - 1\) - 1", ("resnet_cli/meta_shapes.py",)),  # output_size
]


@pytest.mark.parametrize(("pattern", "homes"), REPLACED)
def test_replaced_copies_are_gone(pattern, homes):
    assert [p for p in _definitions(pattern) if p.rsplit(":", 1)[0] not in homes] == []
