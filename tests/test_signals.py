"""`sweep` under signals: SIGTERM and Ctrl-C shut the worker pool down, and nothing outlives the sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from cli_runner import run

import resnet_cli.analysis.sweep as sweep_module

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.isdir("/proc"), reason="reads processes from /proc"
)

# 400 resnet50 variants on 2 workers: many seconds of work, so the signal always lands mid-sweep
TWENTY = ",".join(map(str, range(1, 21)))
SWEEP = ["sweep", "resnet50", "--vary", f"num-classes={TWENTY}", "--vary", f"in-channels={TWENTY}", "--workers", "2"]
WORKERS = 2


def session_processes(session: int) -> dict[int, str]:
    """Live (not zombie) processes of a session, with their command lines."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                fields = stat.read().rpartition(")")[2].split()
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found[int(entry)] = command
    return found


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def running_sweep():
    """A `python -m resnet_cli sweep` in its own session, once its forkserver and both workers are up."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "resnet_cli", *SWEEP, "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its session id is its pid: every process it starts is found by that
        # as a terminal starts it: a shell's background job (pytest run with `&`) ignores SIGINT, and a child
        # inherits that, so Ctrl-C would never reach the sweep
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        forkserver_processes = lambda: [c for c in session_processes(proc.pid).values() if "forkserver" in c]  # noqa: E731
        assert wait_until(lambda: len(forkserver_processes()) >= 1 + WORKERS, timeout=60), "workers never started"
        yield proc
    finally:  # never leave a stray process behind, even when a test fails
        for pid in session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=15)


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    """stdout and stderr once every holder of the pipes has exited (an orphan would keep them open)."""
    out, err = proc.communicate(timeout=15)
    return out.decode(), err.decode()


def assert_nothing_left(proc: subprocess.Popen) -> None:
    assert wait_until(lambda: not session_processes(proc.pid), timeout=5), session_processes(proc.pid)


def test_sigterm_shuts_the_pool_down_and_exits_143(running_sweep):
    started = time.monotonic()
    running_sweep.send_signal(signal.SIGTERM)  # `kill PID`: the sweep process only, not its group
    out, err = finish(running_sweep)
    assert running_sweep.returncode == 143, err
    assert time.monotonic() - started < 5  # the workers' chunks in hand are dropped, not finished
    assert "Traceback" not in err and out == ""
    assert_nothing_left(running_sweep)


def test_ctrl_c_exits_130_without_a_worker_traceback(running_sweep):
    os.killpg(running_sweep.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    out, err = finish(running_sweep)
    assert running_sweep.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert_nothing_left(running_sweep)


def test_workers_die_with_a_killed_sweep(running_sweep):
    running_sweep.send_signal(signal.SIGKILL)  # no handler runs: the workers must notice on their own
    finish(running_sweep)
    assert_nothing_left(running_sweep)


def test_a_killed_worker_is_one_line_and_exit_2(running_sweep):
    processes = session_processes(running_sweep.pid)
    server = next(
        pid for pid, command in processes.items() if "forkserver" in command and parent_of(pid) == running_sweep.pid
    )
    worker = next(pid for pid in processes if parent_of(pid) == server)
    os.kill(worker, signal.SIGKILL)  # as the out-of-memory killer would
    out, err = finish(running_sweep)
    assert running_sweep.returncode == 2, err
    [line] = err.splitlines()
    assert line.startswith("Error: a sweep worker process died") and out == ""
    assert_nothing_left(running_sweep)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rpartition(")")[2].split()[1])


def test_sigterm_during_a_measurement_in_process_exits_143(monkeypatch):
    measured = []
    measure = sweep_module.measure_request

    def measure_then_terminate(request):
        measured.append(request)
        if len(measured) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # lands inside _measure_job's `except Exception`
        return measure(request)

    monkeypatch.setattr(sweep_module, "measure_request", measure_then_terminate)
    previous = signal.getsignal(signal.SIGTERM)
    result = run("sweep", "resnet18", "--vary", "num-classes=1,2,3,4", "--workers", "1")
    assert result.exit_code == 143, result.output
    assert len(measured) == 2 and result.stdout == ""
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is the command's only
