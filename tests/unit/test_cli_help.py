"""The one command: every subcommand and option has a help line, help shows the job in use."""

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_hpc import __version__
from lepton_hpc.bench import BENCHES
from lepton_hpc.cli import COMMANDS, main
from lepton_hpc.config import load, sections_for

ROOT = Path(__file__).resolve().parents[2]


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def _parser_of(entry, argv, monkeypatch) -> argparse.ArgumentParser:
    """The parser an entry point builds, caught at its parse_args (nothing runs)."""
    def catch(self, *a, **k):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", catch)
    with pytest.raises(_Captured) as got:
        entry(argv)
    return got.value.parser


def _missing_help(parser, where="") -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if not helps.get(name):
                    out.append(f"{where} {name} (subcommand)")
                out += _missing_help(sub, f"{where} {name}")
        elif not action.help:  # argparse.SUPPRESS (an internal worker option, hidden on purpose) counts
            out.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
    return out


ENTRIES = {name: target for name, (target, _) in COMMANDS.items() if name != "bench"}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_option_of_every_command_has_a_help_line(name, monkeypatch):
    module, func = ENTRIES[name].split(":")
    entry = getattr(importlib.import_module(module), func)
    parser = _parser_of(entry, [], monkeypatch)
    assert _missing_help(parser) == []


@pytest.mark.parametrize("bench", sorted(BENCHES))
def test_every_benchmark_option_has_a_help_line(bench, monkeypatch):
    parser = _parser_of(importlib.import_module(BENCHES[bench][0]).cli, [], monkeypatch)
    assert _missing_help(parser) == []


def test_bench_help_lists_every_registered_benchmark(capsys):
    assert main(["bench", "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: lepton-hpc bench")
    for name, (_, line) in BENCHES.items():
        assert f"  {name}" in text and line in text


def test_version_and_usage(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"lepton_hpc {__version__}"
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(f"  {c}" in text for c in COMMANDS)
    assert main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err


def test_subcommand_help_names_the_command_as_typed(capsys):
    with pytest.raises(SystemExit) as e:
        main(["scaling", "strong", "--help"])
    assert e.value.code == 0
    first = capsys.readouterr().out.splitlines()[0]
    # the subcommand's own usage line, not the parent's usage text run together with "strong"
    assert first.startswith("usage: lepton-hpc scaling strong [-h]"), first
    with pytest.raises(SystemExit):
        main(["data", "synth", "mf", "--help"])
    text = capsys.readouterr().out
    assert text.startswith("usage: lepton-hpc data synth mf") and "--density" in text


def test_train_help_shows_the_job_in_use_and_hides_unused_sections(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--job", str(ROOT / "jobs/mf_synthetic.toml"), "--set", "train.steps=7", "--help"])
    text = capsys.readouterr().out
    assert "model.kind = 'mf'" in text
    assert "    steps = 7  -- " in text and "[default: 200]" in text      # the --set value, the default beside
    assert "    log_every = 1  -- " in text                               # the job file's value
    assert "  [matmul]" not in text and "hidden: [matmul]" in text
    with pytest.raises(SystemExit):
        main(["train", str(ROOT / "jobs/matmul_seed.toml"), "--help"])
    text = capsys.readouterr().out
    assert "  [matmul]" in text and "  [optimizer]" not in text and "  [checkpoint]" not in text


def test_config_toml_keeps_only_the_sections_that_apply():
    mm = load(str(ROOT / "jobs/matmul_seed.toml"))
    assert sections_for("matmul") == tuple(mm.to_dict())
    text = mm.to_toml()
    assert "[matmul]" in text and "[optimizer]" not in text and "[checkpoint]" not in text
    lin = load(None).to_toml()
    assert "[optimizer]" in lin and "[matmul]" not in lin
    assert sections_for("no-such-kind")[-1] == "matmul"   # unknown kind: everything (the error comes later)


def test_python_dash_m_lepton_hpc_is_the_same_command():
    proc = subprocess.run([sys.executable, "-m", "lepton_hpc", "jobs", "list"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "diabetes_linear" in proc.stdout and "default" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "lepton_hpc.train", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m lepton_hpc.train")


def test_train_job_given_twice_differently_is_a_usage_error(capsys):
    from lepton_hpc.train import parse_args

    assert parse_args(["--job", "a.toml"]).job == "a.toml"
    assert parse_args(["a.toml", "--job", "a.toml"]).job == "a.toml"
    with pytest.raises(SystemExit) as e:
        parse_args(["a.toml", "--job", "b.toml"])
    assert e.value.code == 2 and "two job files given" in capsys.readouterr().err
