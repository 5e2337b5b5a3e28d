"""WordNet 3.0 for NLTK's ``WordNetLemmatizer``, set up with no person acting.

The reference lemmatiser (METHODS §2.2) is NLTK's ``WordNetLemmatizer`` (noun POS) on WordNet
3.0. NLTK reads WordNet from ``<nltk_data>/corpora/wordnet/``. :func:`ensure_wordnet` fills such a
folder from the first source that works, and logs which ("WordNet 3.0 from ..."):

1. WordNet already on NLTK's search path (``NLTK_DATA``, ``~/nltk_data``, ...), copied.
2. Debian's ``wordnet-base`` package (plus ``wordnet-sense-index``) where installed: the WordNet
   3.0 database in ``/usr/share/wordnet``. NLTK additionally expects a ``lexnames`` file (the 45
   lexicographer file names, a fixed fact of WordNet 3.0, written here from :data:`LEXNAMES`) and
   an ``index.sense`` file (an empty one is written when ``wordnet-sense-index`` is missing; the
   lemmatiser never reads it). Files are copied, not linked: NLTK refuses links that leave its
   data folder.
3. ``nltk.download('wordnet')``, where the machine has internet.
4. The same two Debian packages fetched from the machine's package archive with ``apt-get
   download`` and unpacked with ``dpkg-deb -x`` next to the data folder: no root, no install.
   Where the machine's package lists lack them, a private ``apt-get update`` into that folder
   fetches the lists first (verified against the archive keys the machine trusts).

When none works, the one-line error names every source tried and what to do.
:func:`load_lemmatizer` returns NLTK's lemmatiser bound to a given data folder.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from urllib.parse import unquote

from tailstudy.io import UserError

log = logging.getLogger(__name__)

#: Where Debian's ``wordnet-base`` package puts the WordNet 3.0 database, and where it is once
#: installed.
_DEBIAN_PACKAGE_DIR = "usr/share/wordnet"
DEBIAN_WORDNET_DIR = Path("/") / _DEBIAN_PACKAGE_DIR

#: WordNet 3.0 database files NLTK's corpus reader opens (``lexnames`` and ``index.sense`` are
#: handled separately).
_DB_FILES = tuple(
    f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")
) + tuple(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv"))

#: The 45 WordNet 3.0 lexicographer files in file-number order, with their syntactic category
#: (1 noun, 2 verb, 3 adjective, 4 adverb); see the ``lexnames(5WN)`` manual page.
LEXNAMES: tuple[tuple[str, int], ...] = (
    ("adj.all", 3),
    ("adj.pert", 3),
    ("adv.all", 4),
    ("noun.Tops", 1),
    ("noun.act", 1),
    ("noun.animal", 1),
    ("noun.artifact", 1),
    ("noun.attribute", 1),
    ("noun.body", 1),
    ("noun.cognition", 1),
    ("noun.communication", 1),
    ("noun.event", 1),
    ("noun.feeling", 1),
    ("noun.food", 1),
    ("noun.group", 1),
    ("noun.location", 1),
    ("noun.motive", 1),
    ("noun.object", 1),
    ("noun.person", 1),
    ("noun.phenomenon", 1),
    ("noun.plant", 1),
    ("noun.possession", 1),
    ("noun.process", 1),
    ("noun.quantity", 1),
    ("noun.relation", 1),
    ("noun.shape", 1),
    ("noun.state", 1),
    ("noun.substance", 1),
    ("noun.time", 1),
    ("verb.body", 2),
    ("verb.change", 2),
    ("verb.cognition", 2),
    ("verb.communication", 2),
    ("verb.competition", 2),
    ("verb.consumption", 2),
    ("verb.contact", 2),
    ("verb.creation", 2),
    ("verb.emotion", 2),
    ("verb.motion", 2),
    ("verb.perception", 2),
    ("verb.possession", 2),
    ("verb.social", 2),
    ("verb.stative", 2),
    ("verb.weather", 2),
    ("adj.ppl", 3),
)


def lexnames_text() -> str:
    """The ``lexnames`` file: ``NN<TAB>name<TAB>category`` per line, 45 lines."""
    return "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(LEXNAMES))


def _corpus_dir(nltk_data_dir: Path) -> Path:
    return nltk_data_dir / "corpora" / "wordnet"


def _has_wordnet(nltk_data_dir: Path) -> bool:
    d = _corpus_dir(nltk_data_dir)
    if (nltk_data_dir / "corpora" / "wordnet.zip").is_file():
        return True
    return all((d / f).is_file() for f in (*_DB_FILES, "lexnames"))


def _copy_debian(src: Path, nltk_data_dir: Path) -> None:
    """Copy Debian's WordNet 3.0 files into ``nltk_data_dir`` (atomically: a temp folder)."""
    final = _corpus_dir(nltk_data_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".wordnet.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name in _DB_FILES:
            shutil.copyfile(src / name, tmp / name)
        (tmp / "lexnames").write_text(lexnames_text())
        if (src / "index.sense").is_file():
            shutil.copyfile(src / "index.sense", tmp / "index.sense")
        else:  # read at load time by some NLTK versions; the lemmatiser never needs its content
            (tmp / "index.sense").write_text("")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _debian_source(src: Path) -> bool:
    return all((src / f).is_file() for f in _DB_FILES)


def _nltk_installed(exclude: Path) -> Path | None:
    """WordNet already on NLTK's search path (``NLTK_DATA``, ``~/nltk_data``, ...): the folder
    ``corpora/wordnet`` or the file ``corpora/wordnet.zip``, or None."""
    try:
        import nltk
    except ImportError:
        return None
    for base in map(Path, nltk.data.path):
        if base.resolve() == exclude:
            continue
        if _has_wordnet(base):
            z = base / "corpora" / "wordnet.zip"
            return z if z.is_file() else _corpus_dir(base)
    return None


def _copy_nltk(found: Path, nltk_data_dir: Path) -> None:
    corpora = nltk_data_dir / "corpora"
    corpora.mkdir(parents=True, exist_ok=True)
    tmp = corpora / f".{found.name}.{os.getpid()}.tmp"
    try:
        if found.is_file():
            shutil.copyfile(found, tmp)
        else:
            shutil.copytree(found, tmp)
        target = corpora / found.name
        if target.is_dir():  # a partial copy left by an interrupted run
            shutil.rmtree(target)
        target.unlink(missing_ok=True)
        tmp.rename(target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


#: Debian's packages of the WordNet 3.0 database (``index.sense`` is in the second).
DEBIAN_PACKAGES = ("wordnet-base", "wordnet-sense-index")

#: Extra ``apt-get`` options of the first ``apt-get download`` try (the machine's own lists).
APT_OPTIONS: tuple[str, ...] = ()

_APT_TIMEOUT_S = 600


def _first_line(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.startswith("W:")]
    return next((x for x in lines if x.startswith("E:")), lines[-1] if lines else "")


def _run(cmd: list[str], cwd: Path) -> None:
    """Run a command quietly; a failure raises RuntimeError with its first error line."""
    import subprocess

    try:
        p = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=_APT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(cmd[:2])} took over {_APT_TIMEOUT_S} s") from None
    if p.returncode != 0:
        raise RuntimeError(_first_line(p.stderr + p.stdout) or f"{cmd[0]} exit {p.returncode}")


def _apt_fetch(work: Path) -> list[Path]:
    """``apt-get download`` Debian's WordNet packages into ``work``; returns the ``.deb`` files.

    Needs no root: the first try uses the machine's package lists; where they lack the packages
    (a fresh container whose lists were never fetched), a private ``apt-get update`` into
    ``work`` fetches them (signed by the archive keys the machine trusts) and the download is
    retried with those lists.
    """
    apt = shutil.which("apt-get")
    if apt is None or shutil.which("dpkg-deb") is None:
        raise RuntimeError("apt-get/dpkg-deb not found (not a Debian-based machine)")
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        _run([apt, "download", "-q", *APT_OPTIONS, *DEBIAN_PACKAGES], debs)
    except RuntimeError as first:
        lists, cache = work / "apt-lists", work / "apt-cache"
        for d in (lists / "partial", cache / "archives" / "partial"):
            d.mkdir(parents=True, exist_ok=True)
        opts = ["-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={cache}"]
        log.info("apt-get download: %s; fetching the package lists into %s", first, lists)
        _run([apt, "update", "-q", *opts], work)
        _run([apt, "download", "-q", *opts, *DEBIAN_PACKAGES], debs)
    found = sorted(debs.glob("*.deb"))
    if len(found) < len(DEBIAN_PACKAGES):
        raise RuntimeError(f"apt-get download left {len(found)} package files in {debs}")
    return found


def _from_debian_archive(root: Path) -> str:
    """Fetch and unpack Debian's WordNet 3.0 packages without root (``apt-get download`` +
    ``dpkg-deb -x``) and copy the database into ``root``; returns the package files' names."""
    work = root.parent / f".wordnet-debs.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        debs = _apt_fetch(work)
        unpacked = work / "root"
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(unpacked)], work)
        src = unpacked / _DEBIAN_PACKAGE_DIR
        if not _debian_source(src):
            raise RuntimeError(f"the packages hold no WordNet database in /{_DEBIAN_PACKAGE_DIR}")
        _copy_debian(src, root)
        return ", ".join(unquote(d.name) for d in debs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _nltk_download(root: Path) -> None:
    """``nltk.download('wordnet')`` into ``root``; raises RuntimeError when it fails."""
    import socket

    try:
        import nltk
    except ImportError:
        raise RuntimeError("NLTK is not installed") from None
    root.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)  # NLTK's downloader sets none: a dropped connection would hang
    try:  # NLTK prints its errors even when quiet; they are raised and reported here
        ok = nltk.download(
            "wordnet",
            download_dir=str(root),
            quiet=True,
            raise_on_error=True,
            print_error_to=io.StringIO(),
        )
    except Exception as e:  # no network, a proxy refusing, ...
        ok, why = False, _first_line(str(e)) or type(e).__name__
    else:
        why = "the download did not complete"
    finally:
        socket.setdefaulttimeout(old)
    if not ok or not _has_wordnet(root):  # leave no partial download for the next run to trust
        (root / "corpora" / "wordnet.zip").unlink(missing_ok=True)
        shutil.rmtree(_corpus_dir(root), ignore_errors=True)
        raise RuntimeError(why)


def ensure_wordnet(nltk_data_dir: str | os.PathLike) -> Path:
    """Make ``nltk_data_dir`` an NLTK data folder holding WordNet 3.0; return it (absolute).

    Sources, in order (the first that works is logged as "WordNet 3.0 from ..."): what the
    folder already holds; WordNet on NLTK's own search path (copied); Debian's
    ``/usr/share/wordnet`` (packages ``wordnet-base`` and ``wordnet-sense-index``, installed);
    ``nltk.download('wordnet')`` (needs internet); the same Debian packages fetched from the
    machine's package archive with ``apt-get download`` and unpacked with ``dpkg-deb -x``, which
    needs no root and no person. Raises :class:`tailstudy.io.UserError` naming every source tried
    when none works.
    """
    root = Path(nltk_data_dir).resolve()
    if _has_wordnet(root):
        log.info("WordNet 3.0 from %s (set up before)", root)
        return root
    tried = []
    found = _nltk_installed(exclude=root)
    if found is not None:
        _copy_nltk(found, root)
        log.info("WordNet 3.0 from NLTK's data path: copied %s into %s", found, root)
        return root
    tried.append("NLTK's data path (none)")
    if _debian_source(DEBIAN_WORDNET_DIR):
        _copy_debian(DEBIAN_WORDNET_DIR, root)
        log.info(
            "WordNet 3.0 from Debian's installed packages: copied %s into %s",
            DEBIAN_WORDNET_DIR,
            root,
        )
        return root
    tried.append(f"{DEBIAN_WORDNET_DIR} (wordnet-base not installed)")
    try:
        _nltk_download(root)
        log.info("WordNet 3.0 from nltk.download('wordnet') into %s", root)
        return root
    except RuntimeError as e:
        tried.append(f"nltk.download ({e})")
    try:
        debs = _from_debian_archive(root)
        log.info(
            "WordNet 3.0 from Debian's package archive (apt-get download, dpkg-deb -x: %s) into %s",
            debs,
            root,
        )
        return root
    except RuntimeError as e:
        tried.append(f"apt-get download {' '.join(DEBIAN_PACKAGES)} ({e})")
    raise UserError(
        f"WordNet 3.0 is not available for {root}; tried {'; '.join(tried)}: install the Debian "
        "packages (apt-get install wordnet-base wordnet-sense-index), allow nltk.download's "
        "internet access, or put WordNet in an NLTK data folder on NLTK_DATA"
    )


@cache
def load_lemmatizer(nltk_data_dir: str | None = None) -> Callable[[str], str]:
    """NLTK's ``WordNetLemmatizer().lemmatize`` (noun POS), with WordNet loaded and checked.

    ``nltk_data_dir`` (an NLTK data folder, e.g. from :func:`ensure_wordnet`) is put first on
    NLTK's search path; ``None`` keeps NLTK's own search path (``NLTK_DATA`` and the defaults).
    NLTK's ``wordnet`` corpus is a process-wide singleton: the first folder it loads from wins.
    """
    try:
        import nltk
        from nltk.corpus import wordnet
        from nltk.stem import WordNetLemmatizer
    except ImportError:
        raise UserError("caption matching needs NLTK: pip install nltk") from None
    if nltk_data_dir is not None:
        path = str(Path(nltk_data_dir).resolve())
        if path not in nltk.data.path:
            nltk.data.path.insert(0, path)
    try:
        version = wordnet.get_version()
    except LookupError:
        raise UserError(
            "NLTK cannot find WordNet: run `tailstudy freq wordnet --data-dir DIR` and pass that "
            "folder (--nltk-data DIR, or the NLTK_DATA environment variable)"
        ) from None
    if version != "3.0":
        raise UserError(f"NLTK loaded WordNet {version}; the reference lemmatiser needs 3.0")
    return WordNetLemmatizer().lemmatize
