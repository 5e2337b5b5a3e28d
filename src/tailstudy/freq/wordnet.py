"""WordNet 3.0 for NLTK's ``WordNetLemmatizer``, set up offline.

The reference lemmatiser (METHODS §2.2) is NLTK's ``WordNetLemmatizer`` (noun POS) on WordNet
3.0. NLTK reads WordNet from ``<nltk_data>/corpora/wordnet/``. Where NLTK already finds WordNet on
its own search path, that copy is used; otherwise two sources can fill the folder:

1. Debian's ``wordnet-base`` package (plus ``wordnet-sense-index``), which installs the WordNet 3.0
   database in ``/usr/share/wordnet``. NLTK additionally expects a ``lexnames`` file (the 45
   lexicographer file names, a fixed fact of WordNet 3.0, written here from :data:`LEXNAMES`) and
   an ``index.sense`` file (an empty one is written when ``wordnet-sense-index`` is missing; the
   lemmatiser never reads it). Files are copied, not linked: NLTK refuses links that leave its
   data folder.
2. ``nltk.download('wordnet')``, where the machine has internet.

:func:`ensure_wordnet` tries them in that order; :func:`load_lemmatizer` returns NLTK's
lemmatiser bound to a given data folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path

from tailstudy.io import UserError

log = logging.getLogger(__name__)

#: Where Debian's ``wordnet-base`` installs the WordNet 3.0 database.
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

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


def ensure_wordnet(nltk_data_dir: str | os.PathLike) -> Path:
    """Make ``nltk_data_dir`` an NLTK data folder holding WordNet 3.0; return it (absolute).

    Uses, in order: what the folder already holds, WordNet on NLTK's own search path (copied),
    Debian's ``/usr/share/wordnet`` (packages ``wordnet-base`` and ``wordnet-sense-index``), then
    ``nltk.download('wordnet')``. Raises
    :class:`tailstudy.io.UserError` when none of them works.
    """
    root = Path(nltk_data_dir).resolve()
    if _has_wordnet(root):
        return root
    found = _nltk_installed(exclude=root)
    if found is not None:
        _copy_nltk(found, root)
        log.info("copied WordNet from %s into %s", found, root)
        return root
    if _debian_source(DEBIAN_WORDNET_DIR):
        _copy_debian(DEBIAN_WORDNET_DIR, root)
        log.info("copied WordNet 3.0 from %s into %s", DEBIAN_WORDNET_DIR, root)
        return root
    try:
        import nltk

        root.mkdir(parents=True, exist_ok=True)
        ok = nltk.download("wordnet", download_dir=str(root), quiet=True, raise_on_error=True)
    except Exception:  # no network, no nltk, ...: fall through to the one-line error
        ok = False
    if ok and _has_wordnet(root):
        return root
    raise UserError(
        f"WordNet 3.0 is not available for {root}: install the Debian packages wordnet-base and "
        "wordnet-sense-index (apt-get install wordnet-base wordnet-sense-index) or allow "
        "nltk.download('wordnet')"
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
