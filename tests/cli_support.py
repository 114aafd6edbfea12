"""Helpers for tests that run the command line in-process and expect a one-line error."""
from slmlib.__main__ import main


def cli(capsys, *argv) -> tuple[int, str, str]:
    """Run `python -m slmlib ...` in-process; an exception escaping main() is a traceback."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse refuses an argument
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *names):
    assert code not in (0, None), "a bad input must exit non-zero"
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last, err
    for name in names:
        assert name in last, f"{name!r} not named in: {last}"
