"""The command line is one parser tree; the package data pyproject names exists."""

from __future__ import annotations

import glob
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tailstudy.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
GROUPS = ("dataset", "variant", "train", "evaluate", "collect", "plot", "claims", "freq", "acquire")


def test_help_lists_every_command_group():
    res = subprocess.run(
        [sys.executable, "-m", "tailstudy", "--help"], capture_output=True, text=True, check=True
    )
    listed = {line.split()[0] for line in res.stdout.splitlines() if line.startswith("    ")}
    assert set(GROUPS) <= listed, res.stdout


@pytest.mark.parametrize(
    ("group", "commands"),
    [
        ("freq", ("count", "merge", "correlate", "wordnet")),
        ("acquire", ("lemmas", "laionet-label", "cls-match", "download", "download-manifest")),
        ("data", ("lemmas", "cls-urls")),  # the acquisition group's former name still works
    ],
)
def test_groups_are_nested_subparsers(group, commands, capsys):
    with pytest.raises(SystemExit) as e:
        main([group, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tailstudy {'acquire' if group == 'data' else group} ")
    for cmd in commands:
        assert f"    {cmd} " in out or f"    {cmd}\n" in out, (cmd, out)


def test_one_parser_resolves_nested_commands():
    from tailstudy.acquire.cli import cmd_lemmas
    from tailstudy.freq.cli import cmd_merge

    p = build_parser()
    assert p.parse_args(["freq", "merge", "a.tsv", "--out", "b.tsv"]).func is cmd_merge
    assert p.parse_args(["acquire", "lemmas", "--out", "l.tsv"]).func is cmd_lemmas
    assert p.parse_args(["data", "lemmas", "--out", "l.tsv"]).func is cmd_lemmas


def test_unknown_nested_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["freq", "nonsense"])
    assert e.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


def test_package_data_names_only_files_that_exist():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]
    root = REPO / "src"
    covered = set()
    for package, globs in patterns.items():
        pkg_dir = root / package.replace(".", "/")
        for pattern in globs:
            hits = glob.glob(str(pkg_dir / pattern))
            assert hits, f"package-data {package}: {pattern!r} matches no file"
            covered.update(Path(h).resolve() for h in hits)
    data = {
        p.resolve()
        for p in (root / "tailstudy").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert data <= covered, f"files the package reads but does not ship: {sorted(data - covered)}"
