"""The docs show real output: every console block in README.md and docs/*.md is run and compared (tests/golden.py).

Regenerate them after an intended change with `python -m pytest tests/test_docs.py --overwrite`.
"""

from __future__ import annotations

import pytest
from golden import PAGES, REPO, WIDTH, compared, console_blocks, masked, rewrite

BLOCKS = [block for page in PAGES for block in console_blocks(page)]
README = REPO / "README.md"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_console_block_is_real_output(block, overwrite, monkeypatch, request):
    monkeypatch.chdir(REPO)  # blocks name files relative to the repository
    if overwrite:
        rewrite(block)  # on torch's own threads, as a user's run
        return
    request.getfixturevalue("one_thread")  # bench and debug-training compute; their thread count is masked
    shown, printed = compared(block)
    assert printed == shown


# --- the runner covers the pages -----------------------------------------------------------------------------------


def test_every_resnet_cli_prompt_is_in_a_console_block():
    for page in PAGES:
        covered = {line for block in console_blocks(page) for line in block.lines}
        prompts = [n for n, line in enumerate(page.read_text().splitlines(), 1) if line.lstrip().startswith("$ ")]
        assert [n for n in prompts if n not in covered] == [], page.name


def test_every_console_block_says_console():
    assert [block.name for block in BLOCKS if block.info != "console"] == []


def test_readme_states_the_width_of_its_examples():
    assert f"{WIDTH} columns" in README.read_text()


def test_readme_has_examples():
    assert "README.md: summary resnet50 --depth 1" in [block.name for block in BLOCKS]


def test_docs_show_a_user_model_example():
    for page in ("flops.md", "summary.md"):
        assert any(block.name.startswith(f"{page}: ") and "tests/models/" in block.name for block in BLOCKS), page


# --- and can fail ---------------------------------------------------------------------------------------------------

SPEC = "$ resnet-cli spec resnet34\n"
TIMM = "$ resnet-cli spec resnet34 --to timm\n"
TIMM_CALL = 'timm.create_model("resnet34", num_classes=1000, zero_init_last=False)\n'
BAD_LAYERS = "$ resnet-cli summary --layers 3,4,x\nError: --layers 3,4,x: 'x' is not an integer; give comma-separated integers such as 3,4,6,3\n"


def block_of(tmp_path, body: str):
    page = tmp_path / "page.md"
    page.write_text(f"# A page\n\n```console\n{body}```\n\nProse.\n")
    return console_blocks(page)[0]


@pytest.mark.parametrize("body", [TIMM + TIMM_CALL, SPEC + "model: resnet34\nblock: basic\n...\n", BAD_LAYERS, BAD_LAYERS + "$ echo $?\n2\n"])
def test_a_true_block_passes(tmp_path, body):
    shown, printed = compared(block_of(tmp_path, body))
    assert printed == shown


@pytest.mark.parametrize(
    "body",
    [
        TIMM + TIMM_CALL.replace("resnet34", "resnet50"),  # other output
        TIMM + TIMM_CALL + "extra line\n",
        SPEC + "model: resnet34\nblock: bottleneck\n...\n",  # a wrong line before the elision
        BAD_LAYERS + "$ echo $?\n0\n",  # another exit code
        TIMM + TIMM_CALL + "$ cat docs/examples/missing.yaml\n",
        "$ python -c 'print(1)'\n1\n",  # a command the runner does not run
    ],
)
def test_a_wrong_block_fails(tmp_path, body):
    with pytest.raises((AssertionError, OSError)):
        shown, printed = compared(block_of(tmp_path, body))
        assert printed == shown


BUDGET = "$ resnet-cli summary resnet18 --depth 0 --max-params 1 > summary.txt\nBudget exceeded: params 11,689,512 > --max-params 1 (1)\n"


def test_an_exit_code_other_than_0_must_be_shown_unless_it_is_an_error_line_or_a_finding(tmp_path):
    shown, printed = compared(block_of(tmp_path, BUDGET + "$ echo $?\n1\n"))
    assert printed == shown
    with pytest.raises(AssertionError, match=r"exited 1 \(show it with `\$ echo \$\?`\)"):
        compared(block_of(tmp_path, BUDGET))


def test_a_crash_never_matches_even_a_block_that_shows_nothing(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("resnet_cli.render.spec_text.library_call_line", crash)
    block = block_of(tmp_path, "$ resnet-cli spec resnet34 --to torchvision\n...\n")  # a command no other test runs
    with pytest.raises(AssertionError, match="crashed:(.|\n)*ZeroDivisionError: boom"):
        compared(block)


def test_overwrite_rewrites_a_wrong_block_and_keeps_its_elision(tmp_path):
    rewrite(block_of(tmp_path, SPEC + "model: resnet50\n...\n" + TIMM + "wrong\n"))
    assert (tmp_path / "page.md").read_text() == (
        f"# A page\n\n```console\n$ resnet-cli spec resnet34\nmodel: resnet34\n...\n{TIMM}{TIMM_CALL}```\n\nProse.\n"
    )


def test_measured_output_is_compared_without_its_numbers_and_machine():
    table = ["Config    Median ms  img/s", "───────────────────────", "baseline     562.93  14.21", "Device  AMD EPYC"]
    rerun = ["Config    Median ms    img/s", "─────────────────────────", "baseline  1,240.96  2.5", "Device  Intel Xeon"]
    assert masked(table) == masked(rerun)
    assert masked(table) != masked(["Config    Median ms  img/s", "──", "channels-last  562.93  14.21", "Device  AMD EPYC"])
    assert masked(["layer1  0.707"]) != masked(["layer2  0.707"])
