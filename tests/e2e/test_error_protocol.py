"""The error protocol of lepton_hpc.comm.run_app, end to end: real ranks under mpiexec.

tests/e2e/apps/late_error.py is a tiny entry point that fails in one way per mode;
each test checks what the user sees (stderr), the exit code, and that nothing hangs.
"""

import subprocess
import sys
import time

import pytest

from mpirun import ROOT, mpiexec, rank_env

APP = ROOT / "tests" / "e2e" / "apps" / "late_error.py"
WAIT_S = 2  # LEPTON_ERROR_WAIT_S: how long a rank with an unagreed user error waits


def launch(mode: str, n: int = 3):
    """Run the app at ``n`` ranks; (completed process, seconds). Never hangs the test."""
    env = rank_env({"MPIEXEC_TIMEOUT": "60", "LEPTON_ERROR_WAIT_S": str(WAIT_S)})
    start = time.monotonic()
    proc = subprocess.run([mpiexec(), "-n", str(n), sys.executable, str(APP), mode],
                          capture_output=True, text=True, timeout=90, env=env, cwd=ROOT)
    return proc, time.monotonic() - start


def error_lines(proc) -> list:
    return [line for line in proc.stderr.splitlines() if line.startswith("error")]


def test_ok_exits_0_quietly():
    proc, _ = launch("ok")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.parametrize("mode", ["all-user", "all-user-staggered"])
def test_a_user_error_on_every_rank_is_one_sentence_and_exit_1(mode):
    proc, _ = launch(mode)
    assert proc.returncode == 1, proc.stderr
    assert error_lines(proc) == ["error: the setting x=3 is invalid on rank 0; use x=1"], proc.stderr
    assert proc.stderr.splitlines() == error_lines(proc), proc.stderr  # nothing else: no abort
    assert "Traceback" not in proc.stderr


def test_a_user_error_on_one_rank_while_the_others_wait_aborts_after_the_wait():
    proc, seconds = launch("one-user")
    assert proc.returncode != 0, proc.stderr
    assert error_lines(proc) == [
        "error (rank 1): the shard file part1.h5 is truncated; re-run the importer"], proc.stderr
    assert "Traceback" not in proc.stderr
    assert WAIT_S <= seconds < 30, f"took {seconds:.1f} s"


def test_a_bug_on_one_rank_prints_its_traceback_and_aborts_at_once():
    proc, seconds = launch("one-bug")
    assert proc.returncode != 0, proc.stderr
    assert "[rank 1] unhandled error, aborting all ranks:" in proc.stderr
    assert "Traceback (most recent call last):" in proc.stderr
    assert "KeyError: 'no_such_key'" in proc.stderr
    assert error_lines(proc) == [], proc.stderr  # a bug is not dressed up as a user error
    assert seconds < 30, f"took {seconds:.1f} s"


def test_a_user_error_inside_agree_on_one_rank_is_one_sentence_and_exit_1():
    proc, _ = launch("agreed")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        "error (rank 2): data.path on rank 2 does not exist; fix the config"], proc.stderr
