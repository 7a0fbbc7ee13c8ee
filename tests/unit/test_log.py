"""The run log's handlers: rank 0 at its level, other ranks warnings only, prefixed."""

import logging

import pytest

from lepton_hpc import log


@pytest.fixture(autouse=True)
def _reset():
    yield
    log.configure(0)


def test_rank_zero_prints_plain_lines_at_its_level(capsys):
    log.configure(0, 0)
    log.emit("step       5  loss 1.0")
    log.emit("warning: the schedule is short")
    log.emit("done: 5 steps", log.RESULT)
    assert capsys.readouterr().out == "step       5  loss 1.0\nwarning: the schedule is short\ndone: 5 steps\n"
    log.configure(0, -1)
    log.emit("step      10  loss 0.5")
    log.emit("done: 10 steps", log.RESULT)
    assert capsys.readouterr().out == "done: 10 steps\n"
    log.configure(0, -2)
    log.emit("done: 10 steps", log.RESULT)
    log.emit("warning: still here")
    assert capsys.readouterr().out == "warning: still here\n"


def test_other_ranks_print_only_warnings_prefixed_with_their_rank(capsys):
    log.configure(3, 0)
    log.emit("step       5  loss 1.0")
    log.emit("done: 5 steps", log.RESULT)
    log.logger().warning("warning: disk nearly full")
    log.logger().error("error: no space left")
    got = capsys.readouterr()
    assert got.out == ""
    assert got.err == "[rank 3] warning: disk nearly full\n[rank 3] error: no space left\n"


def test_configure_replaces_its_handler_and_verbose_adds_time_and_rank(capsys):
    log.configure(0, 1)
    log.configure(0, 1)
    ours = [h for h in log.logger().handlers if getattr(h, "_lepton_handler", False)]
    assert len(ours) == 1 and log.logger().level == logging.DEBUG
    log.emit("step       5")
    line = capsys.readouterr().out
    assert line.endswith(" [rank 0] step       5\n") and line[:4].isdigit() and "\x1b" not in line
