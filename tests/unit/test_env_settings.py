"""Settings read from the environment: a value that is not a number is a warning and the default,
never a traceback on every rank."""

from lepton_hpc import comm as C


def test_error_wait_seconds_from_the_environment(monkeypatch, capsys):
    for text, want in (("2.5", 2.5), ("", 10.0), ("0", 0.0)):
        monkeypatch.setenv("LEPTON_ERROR_WAIT_S", text)
        assert C._env_seconds("LEPTON_ERROR_WAIT_S", 10.0) == want
    assert capsys.readouterr().err == ""
    for text in ("abc", "-1", "inf", "nan"):
        monkeypatch.setenv("LEPTON_ERROR_WAIT_S", text)
        assert C._env_seconds("LEPTON_ERROR_WAIT_S", 10.0) == 10.0
        err = capsys.readouterr().err
        assert err == f"warning: LEPTON_ERROR_WAIT_S={text!r} is not a number of seconds >= 0; using 10\n"
