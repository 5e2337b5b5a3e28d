"""WordNet 3.0 for NLTK from each source, in order, and the one-line error when none works."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

import tailstudy.freq.wordnet as wn
from tailstudy.freq.cli import main

nltk = pytest.importorskip("nltk")

needs_apt = pytest.mark.skipif(
    shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None,
    reason="apt-get download needs a Debian-based machine (apt-get, dpkg-deb)",
)


@pytest.fixture
def no_sources(tmp_path, monkeypatch):
    """Nothing on NLTK's path, no Debian packages installed, no internet for nltk.download."""
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    monkeypatch.setattr(wn, "DEBIAN_WORDNET_DIR", tmp_path / "not-installed")

    def offline(*a, **k):
        raise ValueError("Error loading wordnet: <urlopen error no network>")

    monkeypatch.setattr(nltk, "download", offline)


@pytest.fixture
def debian_dir(tmp_path, nltk_data) -> Path:
    """A folder laid out like Debian's /usr/share/wordnet (no lexnames: Debian has none)."""
    src = Path(nltk_data) / "corpora" / "wordnet"
    out = tmp_path / "usr-share-wordnet"
    out.mkdir()
    for name in (*wn._DB_FILES, "index.sense"):
        shutil.copyfile(src / name, out / name)
    return out


def _check_corpus(root: Path) -> None:
    corpus = root / "corpora" / "wordnet"
    assert (corpus / "lexnames").read_text().count("\n") == 45
    assert (corpus / "lexnames").read_text().splitlines()[5] == "05\tnoun.animal\t1"
    assert (corpus / "data.noun").stat().st_size > 1e6
    assert (corpus / "index.sense").stat().st_size > 1e6  # wordnet-sense-index's real file
    assert "3.0" in (corpus / "data.noun").read_text(errors="replace")[:3000]
    assert not list((root / "corpora").glob(".*tmp")) and not list(root.parent.glob(".*tmp"))


def _source_logged(caplog) -> str:
    lines = [r.getMessage() for r in caplog.records if r.name == "tailstudy.freq.wordnet"]
    return next(x for x in lines if x.startswith("WordNet 3.0 from "))


def test_installed_debian_packages(tmp_path, no_sources, debian_dir, monkeypatch, capsys, caplog):
    monkeypatch.setattr(wn, "DEBIAN_WORDNET_DIR", debian_dir)
    monkeypatch.setattr(wn, "_apt_fetch", lambda work: pytest.fail("no apt-get expected"))
    caplog.set_level(logging.INFO, "tailstudy")
    assert main(["wordnet", "--data-dir", str(tmp_path / "nd")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "nd")
    _check_corpus(tmp_path / "nd")
    assert _source_logged(caplog).startswith("WordNet 3.0 from Debian's installed packages")
    caplog.clear()  # idempotent: the second call finds the folder set up
    assert main(["wordnet", "--data-dir", str(tmp_path / "nd")]) == 0
    assert "set up before" in _source_logged(caplog)


def test_found_on_nltks_path_is_copied(tmp_path, no_sources, monkeypatch, nltk_data, caplog):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty"), nltk_data])
    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("no download expected"))
    caplog.set_level(logging.INFO, "tailstudy")
    assert main(["wordnet", "--data-dir", str(tmp_path / "nd")]) == 0
    copied = tmp_path / "nd" / "corpora" / "wordnet"
    assert (copied / "data.noun").stat().st_size == (
        Path(nltk_data) / "corpora" / "wordnet" / "data.noun"
    ).stat().st_size
    assert _source_logged(caplog).startswith("WordNet 3.0 from NLTK's data path")
    assert not list((tmp_path / "nd" / "corpora").glob(".*tmp"))


def test_nltk_download_where_there_is_internet(tmp_path, no_sources, monkeypatch, nltk_data):
    """nltk.download comes before the package archive (stood in for: no internet here)."""
    calls = []

    def download(name, download_dir, **kw):
        calls.append(name)
        shutil.copytree(
            Path(nltk_data) / "corpora" / "wordnet", Path(download_dir) / "corpora" / "wordnet"
        )
        return True

    monkeypatch.setattr(nltk, "download", download)
    monkeypatch.setattr(wn, "_apt_fetch", lambda work: pytest.fail("no apt-get expected"))
    assert wn.ensure_wordnet(tmp_path / "nd") == tmp_path / "nd"
    assert calls == ["wordnet"]
    assert wn._has_wordnet(tmp_path / "nd")


def test_failed_nltk_download_leaves_nothing_behind(tmp_path, no_sources, monkeypatch):
    def partial(name, download_dir, **kw):
        (Path(download_dir) / "corpora").mkdir(parents=True)
        (Path(download_dir) / "corpora" / "wordnet.zip").write_bytes(b"PK\x03\x04trunc")
        raise ValueError("Error loading wordnet: connection reset")

    monkeypatch.setattr(nltk, "download", partial)
    with pytest.raises(RuntimeError, match="connection reset"):
        wn._nltk_download(tmp_path / "nd")
    assert not wn._has_wordnet(tmp_path / "nd")


@needs_apt
def test_debian_archive_without_root_or_install(tmp_path, no_sources, caplog):
    """The last source, for real: apt-get download + dpkg-deb -x of Debian's packages."""
    caplog.set_level(logging.INFO, "tailstudy")
    assert main(["wordnet", "--data-dir", str(tmp_path / "results" / "nd")]) == 0
    _check_corpus(tmp_path / "results" / "nd")
    msg = _source_logged(caplog)
    assert msg.startswith("WordNet 3.0 from Debian's package archive")
    assert "wordnet-base_" in msg and "wordnet-sense-index_" in msg
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["nd"]  # debs cleaned up


@needs_apt
@pytest.mark.slow
def test_debian_archive_fetches_package_lists_when_the_machine_has_none(
    tmp_path, no_sources, monkeypatch, caplog
):
    """A fresh container has no package lists: a private apt-get update fetches them."""
    monkeypatch.setattr(wn, "APT_OPTIONS", ("-o", f"Dir::State::Lists={tmp_path / 'no-lists'}"))
    caplog.set_level(logging.INFO, "tailstudy")
    assert wn.ensure_wordnet(tmp_path / "nd") == tmp_path / "nd"
    _check_corpus(tmp_path / "nd")
    messages = [r.getMessage() for r in caplog.records]
    assert any("fetching the package lists" in m for m in messages)
    assert _source_logged(caplog).startswith("WordNet 3.0 from Debian's package archive")


def test_unavailable_names_every_source(tmp_path, no_sources, monkeypatch, capsys):
    def no_apt(work):
        raise RuntimeError("apt-get/dpkg-deb not found (not a Debian-based machine)")

    monkeypatch.setattr(wn, "_apt_fetch", no_apt)
    assert main(["wordnet", "--data-dir", str(tmp_path / "nd")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: WordNet 3.0 is not available") and err.count("\n") == 1
    for source in ("NLTK's data path", "not-installed", "nltk.download (", "no network"):
        assert source in err
    assert "apt-get download wordnet-base wordnet-sense-index (apt-get/dpkg-deb not found" in err
    assert "apt-get install wordnet-base wordnet-sense-index" in err
    assert not list(tmp_path.glob(".*tmp"))
