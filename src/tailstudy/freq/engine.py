"""Fast caption matcher that computes exactly the counts of :mod:`tailstudy.freq.reference`.

Why it is the same function (each step is tested on its own in ``tests/freq``):

1. **Characters.** The reference lower-cases, then turns every character outside ``[a-zA-Z ]``
   (``[a-zA-Z0-9 ]`` with digits kept) into a space. Python's ``str.lower`` maps characters one by
   one (its only context rule, Greek final sigma, yields a non-ASCII letter, hence a space), so
   the result is a per-character map. Scanning all code points shows that an ASCII letter or digit
   comes out of a non-ASCII character only for U+0130 (``İ`` -> ``"i "``) and U+212A (Kelvin sign
   -> ``"k"``): :data:`SPECIAL_CHARS`. Every other non-ASCII character becomes spaces, so the
   engine works on UTF-8 bytes: it rewrites those two byte sequences and maps every other byte
   through a 256-entry table (ASCII letters lower-cased, digits kept or blanked, the rest -> space).
2. **Words.** The text now holds only ``[a-z0-9 ]``. On such text NLTK's word tokenizer applies
   no rule except its apostrophe-free contractions (``cannot`` -> ``can not``; ``gimme``,
   ``gonna``, ``gotta``, ``lemme``, ``wanna``), each of which rewrites one whole word. So a
   caption's tokens are the concatenation of its words' tokens, and its lemma set is the union
   over its words ``w`` of ``lemmas(w) = {lemmatize(t) for t in word_tokenize(w)}``.
3. **Relevant words.** Only lemmas in some phrase or negative phrase (the *query lemmas* ``Q``)
   can change a result. NLTK's ``lemmatize(t)`` returns ``t`` or a form of ``_morphy(t)``, which
   (NLTK >= 3.9, one pass) is ``t`` itself, an exception-list base of ``t``, or
   ``t[:-len(old)] + new`` for a noun detachment rule ``(old, new)`` with ``t.endswith(old)``.
   (the rules are skipped for exception-list keys). Hence ``lemmatize(t)`` can only be in ``Q``
   if ``t`` is in ``Q``, is an exception-list key with a base in ``Q``, or is
   ``q[:len(q) - len(new)] + old`` for some ``q`` in ``Q`` ending in ``new``. Those finitely
   many candidates (plus the contraction words) are lemmatised once, at construction, with the
   reference's own functions; the ones whose lemmas meet ``Q`` are the *relevant words*, each
   with the query-token ids it yields. Every other word yields nothing. (A probe checks the
   one-pass ``_morphy``: older NLTK versions, which repeat the rules, are refused.)
4. **Matching**, block-wise with numpy, on the set ``S`` of (caption, query-token) pairs:
   a one-token phrase ``t`` matches every caption holding ``t``; a multi-token phrase is looked up
   from one of its tokens (its *anchor*: any token gives the same result, the rarest gives the
   fewest candidates) and kept if all its other tokens are in ``S`` (a (caption, token) presence
   table); (caption, class) pairs are de-duplicated; pairs whose caption holds a negative token
   of the class are removed; what is left is counted (or weighted).

Steps 1 and 2 run on a whole block of captions at once (:func:`text_buffer`, :func:`word_spans`:
one byte buffer, words as (start, end) spans), and each span is looked up in the relevant words
by a hash of its bytes with an exact comparison of every candidate (:class:`WordIndex`), so a
hash collision can never change a count. No Python code runs per word or per caption.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailstudy.freq.conceptsets import ConceptSet

#: Non-ASCII characters whose ``lower()`` holds an ASCII letter or digit, mapped to what the
#: reference's lower-case + character filter turns them into.
SPECIAL_CHARS: dict[str, str] = {"\u0130": "i ", "\u212a": "k"}

_DOTTED_I = "\u0130".encode()  # 2 bytes -> b"i " (same length, offsets unchanged)
_KELVIN = "\u212a".encode()  # 3 bytes -> b"k" (the caption offsets shift)


def byte_table(keep_digits: bool = False) -> bytes:
    """The 256-byte ``bytes.translate`` table of step 1: ``A-Z``->``a-z``, ``a-z`` and space kept,
    ``0-9`` kept only with ``keep_digits``, every other byte (all of UTF-8's multi-byte
    sequences included) -> space."""
    table = bytearray(b" " * 256)
    for c in range(ord("a"), ord("z") + 1):
        table[c] = c
        table[c - 32] = c
    if keep_digits:
        for c in range(ord("0"), ord("9") + 1):
            table[c] = c
    return bytes(table)


def _normalise_bytes(raw: bytes, table: bytes) -> bytes:
    """Step 1 on UTF-8 bytes, with the :func:`byte_table` ``table``."""
    return raw.replace(_DOTTED_I, b"i ").replace(_KELVIN, b"k").translate(table)


def normalise_text(s: object, keep_digits: bool = False) -> str:
    """Step 1 for one string: the words (runs of ``[a-z0-9]``) of the reference's ``lower`` +
    character filter, with the same boundaries; ``""`` for a non-str. (A multi-byte character
    gives several spaces where the reference has one, which changes no word.)"""
    if not isinstance(s, str):
        return ""
    raw = s.encode("utf-8", "surrogatepass")
    return _normalise_bytes(raw, byte_table(keep_digits)).decode("ascii")


def _expand(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[starts[i], starts[i] + lens[i])``: (owner i, index) of every element."""
    owner = np.arange(len(lens)).repeat(lens)
    if len(owner) == 0:
        return owner, owner
    if len(owner) == len(lens) and lens.max() == 1:  # one element each: the usual case
        return owner, starts
    first = lens.cumsum() - lens
    return owner, np.arange(len(owner)) - first[owner] + starts[owner]


def _csr(lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, length, flat values) of a list of int lists."""
    lens = np.array([len(x) for x in lists], dtype=np.int64)
    starts = np.cumsum(lens) - lens
    flat = np.array([v for x in lists for v in x], dtype=np.int64)
    return starts, lens, flat


def _unique(x: np.ndarray) -> np.ndarray:
    """Sorted unique values (``np.unique``, faster on the nearly sorted keys used here)."""
    x = np.sort(x, kind="stable")
    if len(x) < 2:
        return x
    keep = np.empty(len(x), dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def _lookup(
    cap: np.ndarray, key: np.ndarray, csr: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(cap, value) for every value listed under each ``key`` in ``csr`` (see :func:`_csr`)."""
    starts, lens, flat = csr
    n = lens.take(key)
    has = n.nonzero()[0]
    if len(has) == 0:
        return has, has
    n = n.take(has)
    first = starts.take(key.take(has))
    if n.max() == 1:  # one value each: the usual case
        return cap.take(has), flat.take(first)
    o, idx = _expand(first, n)
    return cap.take(has.take(o)), flat.take(idx)


def _caption_of(starts: np.ndarray, pos: np.ndarray, size: int) -> np.ndarray:
    """Index of the caption that holds each position ``pos`` of a :func:`text_buffer` of
    ``size`` bytes whose captions begin at ``starts`` (sorted)."""
    if len(pos) == 0:
        return np.zeros(0, dtype=np.int64)
    n = len(starts)
    dtype = np.uint16 if n <= 2**16 else np.int64
    lens = np.empty(n, dtype=np.int64)
    np.subtract(starts[1:], starts[:-1], out=lens[:-1])
    lens[-1] = size - starts[-1]
    owner = np.arange(n, dtype=dtype).repeat(lens)
    return owner.take(pos - starts[0]).astype(np.int64)


def as_text_array(texts: object) -> pa.Array | pa.ChunkedArray:
    """Arrow text (``string``/``binary``, any width) from Arrow data or a sequence of objects.

    Items that are not ``str`` (None, NaN, numbers) become nulls, i.e. empty captions, as in the
    reference. Strings holding lone surrogates are passed as ``surrogatepass`` UTF-8 bytes.
    """
    if isinstance(texts, pa.ChunkedArray | pa.Array):
        t = texts.type
        if pa.types.is_dictionary(t):
            return as_text_array(texts.cast(t.value_type))
        if pa.types.is_string_view(t):
            return texts.cast(pa.large_string())
        if pa.types.is_binary_view(t):
            return texts.cast(pa.large_binary())
        if (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
        ):
            return texts
        if pa.types.is_null(t):
            return pa.nulls(len(texts), pa.large_string())
        raise TypeError(f"captions must be text, got Arrow type {t}")
    items = [t if isinstance(t, str) else None for t in texts]
    try:
        return pa.array(items, pa.large_string())
    except (UnicodeEncodeError, pa.ArrowException):
        enc = [None if t is None else t.encode("utf-8", "surrogatepass") for t in items]
        return pa.array(enc, pa.large_binary())


def contraction_words() -> dict[str, tuple[str, ...]]:
    """NLTK's apostrophe-free contractions: word -> its tokens (``cannot`` -> ``can``, ``not``).

    Read from the tokenizer's own pattern list, keeping patterns made of letter groups only.
    """
    from nltk.tokenize.destructive import NLTKWordTokenizer

    out = {}
    for rx in NLTKWordTokenizer.CONTRACTIONS2 + NLTKWordTokenizer.CONTRACTIONS3:
        groups = re.findall(r"\(([^()?]*)\)", rx.pattern)
        if groups and all(g.isalpha() and g.islower() for g in groups):
            out["".join(groups)] = tuple(groups)
    return out


# ---- steps 1 and 2 on a batch: one byte buffer, word spans -----------------------------------

#: Spaces before and after a batch's byte buffer, so that the 8-byte windows read at the start
#: and at the end of every word lie inside the buffer.
PAD = 8
#: Captions per step of :meth:`Matcher.count`: small enough for the per-word arrays of a step
#: to stay in the CPU cache (the result does not depend on it).
BLOCK = 4096
#: Bytes of text per step at most (unless one caption is longer): a step also holds the 8-byte
#: window at every byte (:func:`windows`), 8 times as much.
BLOCK_BYTES = 1 << 20
#: Bytes of the (caption, token) presence table of a step at most; larger vocabularies look
#: tokens up by search instead.
SCRATCH_MAX = 1 << 26
_SPACE = 0x20


def _offsets(arr: pa.Array) -> np.ndarray:
    """The offsets (``len + 1``, as stored: int32 or int64, no copy) of an Arrow text array."""
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    dtype = np.int64 if large else np.int32
    return np.frombuffer(
        arr.buffers()[1], dtype=dtype, count=len(arr) + 1, offset=arr.offset * dtype().itemsize
    )


def _data(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets from 0 (int64, ``len + 1``), bytes (uint8, no copy)) of a null-free text array."""
    offsets = _offsets(arr)
    lo, hi = int(offsets[0]), int(offsets[-1])
    if hi == lo:
        return offsets.astype(np.int64) - lo, np.zeros(0, dtype=np.uint8)
    return offsets.astype(np.int64) - lo, np.frombuffer(arr.buffers()[2], np.uint8, hi - lo, lo)


_SEPARATOR: dict[pa.DataType, pa.Scalar] = {}  # " " as a scalar of each text type


def text_buffer(arr: pa.Array, keep_digits: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 for a whole Arrow text array: ``(buf, starts)``.

    ``buf`` (uint8) holds :data:`PAD` spaces, the captions' UTF-8 bytes with one space between
    captions, and :data:`PAD` spaces; ``starts[i]`` is where caption ``i`` begins (nulls are
    empty captions). Every byte is OR-ed with ``0x20``, which lower-cases ASCII letters and keeps
    digits and spaces, so a byte is a word byte of :func:`word_spans` iff :func:`byte_table`
    keeps it as a letter (or digit); bytes ``0x10-0x19``, which would read as digits after the
    OR, are blanked when digits are kept. The two :data:`SPECIAL_CHARS` (UTF-8 sequences whose
    lead byte cannot occur inside another character) are rewritten as :func:`normalise_text`
    does: ``İ`` (2 bytes) becomes ``"i "`` in place; the Kelvin sign (3 bytes) becomes ``"k"``,
    the rest of its caption moving 2 bytes left and 2 spaces filling the caption's end. Hence
    the words of caption ``i`` in ``buf`` are exactly those of ``normalise_text(caption i)``.
    """
    if arr.null_count:
        binary = pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)
        arr = pc.fill_null(arr, pa.scalar(b"" if binary else "", arr.type))
    n = len(arr)
    offsets, _ = _data(arr)
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    lists = (pa.LargeListArray if large else pa.ListArray).from_arrays(
        pa.array(np.array([0, n], dtype=np.int64 if large else np.int32)), arr
    )
    if arr.type not in _SEPARATOR:
        _SEPARATOR[arr.type] = pa.scalar(b" ", pa.binary()).cast(arr.type)
    _, src = _data(pc.binary_join(lists, _SEPARATOR[arr.type]))
    starts = PAD + offsets[:-1] + np.arange(n)
    buf = np.empty(len(src) + 2 * PAD, dtype=np.uint8)
    buf[:PAD] = buf[len(buf) - PAD :] = _SPACE
    body = buf[PAD : len(buf) - PAD]
    np.bitwise_or(src, _SPACE, out=body)
    if keep_digits:
        np.putmask(body, (src - 0x10) < 10, _SPACE)
    # lead bytes 0xC4 (İ) and 0xE2 (Kelvin sign), among the few b with b | 0x26 == 0xE6
    lead = ((src | 0x26) == 0xE6).nonzero()[0]
    if len(lead):
        dotted, kelvin = (_find_sequence(src, lead, seq) for seq in (_DOTTED_I, _KELVIN))
        body[dotted] = ord("i")  # its second byte is no word byte: "i "
        # a Kelvin sign becomes "k" and the rest of its caption moves 2 bytes left, leaving
        # 2 spaces at the caption's end (right to left, so that positions stay valid)
        kelvin += PAD
        row = np.searchsorted(starts, kelvin, side="right")
        row_end = np.append(starts, len(buf) - PAD + 1).take(row) - 1
        for p, end in zip(kelvin[::-1].tolist(), row_end[::-1].tolist(), strict=True):
            buf[p] = ord("k")
            buf[p + 1 : end - 2] = buf[p + 3 : end]
            buf[end - 2 : end] = _SPACE
    return buf, starts


def _find_sequence(data: np.ndarray, lead: np.ndarray, seq: bytes) -> np.ndarray:
    """Where ``seq`` starts in ``data``, given a superset ``lead`` of its positions."""
    at = lead[data[lead] == seq[0]]
    at = at[at + len(seq) <= len(data)]
    for k in range(1, len(seq)):
        at = at[data[at + k] == seq[k]]
    return at


def word_spans(buf: np.ndarray, keep_digits: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Step 2's words in a :func:`text_buffer`: (start, end) of every maximal run of ASCII
    letters (and digits, with ``keep_digits``), in order. ``buf`` must begin and end with a
    space."""
    word = (buf - ord("a")) < 26
    if keep_digits:
        word |= (buf - ord("0")) < 10
    edge = np.empty(len(buf), dtype=bool)  # edge[i]: a word starts or ends at i
    edge[:1] = False
    np.not_equal(word[1:], word[:-1], out=edge[1:])
    edges = edge.nonzero()[0]
    return edges[0::2], edges[1::2]


#: ``8 * (8 - min(L, 8))`` for a word of ``L`` bytes, indexed by ``min(L, 8)``
_SHIFT = np.array([8 * (8 - k) for k in range(9)], dtype=np.uint64)
#: the low ``k`` bytes of a 64-bit integer, indexed by ``k <= 8``
_LOW = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


def windows(buf: np.ndarray) -> np.ndarray:
    """The 8 bytes at every position of ``buf`` as little-endian integers (``len(buf) - 7``),
    copied out of an overlapping view (gathering from that unaligned view directly is several
    times slower than copying it once)."""
    return np.ascontiguousarray(np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,)))


class WordIndex:
    """Exact look-up of word spans in a fixed list of words, vectorised.

    A span ``buf[s:e]`` of length ``L`` has two keys: ``k1``, the integer (little-endian) of its
    last ``min(L, 8)`` bytes, and ``k2``, that of its first ``min(L, 8)`` bytes (shifted to the
    top). Two spans of at most 16 bytes are equal iff their ``(L, k1, k2)`` are (``k1`` alone
    is the whole span up to 8 bytes); longer spans iff also their bytes ``[8, L - 8)`` are.
    A hash of ``k1`` and ``L`` picks a slot of a table ~32 times larger than the list, which
    holds the chain of listed words with that slot (mostly none or one); every span whose slot
    is not empty is compared exactly with the words of its chain. So a hash collision costs
    time, never a wrong answer. ``table_bits`` fixes the table size (small sizes test
    collisions).
    """

    def __init__(self, words: Sequence[str], *, seed: int = 0, table_bits: int | None = None):
        if not all(w.isascii() and w.isalnum() and w == w.lower() for w in words):
            raise ValueError("words must be non-empty runs of lower-case ASCII letters and digits")
        enc = [w.encode("ascii") for w in words]
        if len(set(enc)) != len(enc):
            raise ValueError("the word list must hold distinct words")
        self.words = list(words)
        n = self._none = len(enc)
        lens = np.array([len(w) for w in enc], dtype=np.int64)
        starts = PAD + np.cumsum(lens + 1) - lens - 1
        text = b" " * PAD + b"".join(w + b" " for w in enc) + b" " * PAD
        win = self._vwin = windows(np.frombuffer(text, dtype=np.uint8))
        shift = _SHIFT.take(np.minimum(lens, 8))
        # entry n is a sentinel: the end of every chain, never equal to a span (length -1)
        self._k1 = np.append(win.take(starts + lens - 8) >> shift, np.uint64(0))
        self._k2 = np.append(win.take(starts) << shift, np.uint64(0))
        self._len = np.append(lens, -1)
        self._longest = int(lens.max()) if n else 0
        self._start = np.append(starts, 0)
        bits = table_bits or max(6, int(np.ceil(np.log2(32 * max(n, 1)))))
        self._shift = np.uint64(64 - bits)
        mult = np.random.default_rng(seed).integers(0, 2**63, dtype=np.uint64)
        self._mult = mult * np.uint64(2) + np.uint64(1)  # odd: the hash keeps all bits of k1
        slot = self._slot(self._k1[:n], lens)
        order = np.argsort(slot, kind="stable")
        same = slot[order[1:]] == slot[order[:-1]]
        self._next = np.full(n + 1, n, dtype=np.int64)
        self._next[order[:-1][same]] = order[1:][same]
        first = order[np.concatenate([[True], ~same])] if n else order
        self._head = np.full(1 << bits, n, dtype=np.int32 if n < 2**31 else np.int64)
        self._head[slot[first]] = first

    def _slot(self, k1: np.ndarray, length: np.ndarray) -> np.ndarray:
        return ((k1 ^ length.view(np.uint64)) * self._mult) >> self._shift

    def find(
        self, buf: np.ndarray, start: np.ndarray, end: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(span index, word index) of every span ``buf[start:end]`` that is a listed word, in
        no particular order; ``buf`` needs :data:`PAD` bytes of room around the spans."""
        win = windows(buf)
        length = end - start
        shift = _SHIFT.take(np.minimum(length, 8))
        k1 = win.take(end - 8) >> shift
        entry = self._head.take(self._slot(k1, length))
        at = (entry != self._none).nonzero()[0]
        entry, k1, length = entry.take(at).astype(np.intp), k1.take(at), length.take(at)
        k2 = win.take(start[at]) << shift.take(at)
        found_at, found_entry = [], []
        while len(at):
            ok = self._len.take(entry) == length
            ok &= self._k1.take(entry) == k1
            ok &= self._k2.take(entry) == k2
            if self._longest > 16:
                long = (ok & (length > 16)).nonzero()[0]
                if len(long):
                    ok[long] = self._middle_equal(win, start[at.take(long)], entry.take(long))
            hit = ok.nonzero()[0]
            if len(hit) == len(at):
                found_at.append(at)
                found_entry.append(entry)
                break
            found_at.append(at.take(hit))
            found_entry.append(entry.take(hit))
            # the others try the next word of their chain
            miss = (~ok).nonzero()[0]
            entry = self._next.take(entry.take(miss))
            more = (entry != self._none).nonzero()[0]
            entry, miss = entry.take(more), miss.take(more)
            at, k1, k2, length = at.take(miss), k1.take(miss), k2.take(miss), length.take(miss)
        if len(found_at) <= 1:
            return (found_at[0], found_entry[0]) if found_at else (at, entry)
        return np.concatenate(found_at), np.concatenate(found_entry)

    def _middle_equal(self, win: np.ndarray, start: np.ndarray, entry: np.ndarray) -> np.ndarray:
        """Whether bytes ``[8, L - 8)`` of the spans at ``start`` (``win``: the
        :func:`windows` of their buffer) equal those of the words, 8 bytes at a time."""
        length = self._len.take(entry)
        equal = np.ones(len(entry), dtype=bool)
        for offset in range(8, int(length.max()) - 8, 8):
            rest = length - 8 - offset  # bytes left before the last 8, compared up to 8
            todo = (rest > 0).nonzero()[0]
            mask = _LOW.take(np.minimum(rest.take(todo), 8))
            span = win.take(start.take(todo) + offset) & mask
            word = self._vwin.take(self._start.take(entry.take(todo)) + offset) & mask
            equal[todo] &= span == word
        return equal


class Matcher:
    """Counts how many captions match each class of a :class:`ConceptSet` (METHODS §2.5).

    ``lemmatize`` must be NLTK's ``WordNetLemmatizer().lemmatize`` (see
    :func:`tailstudy.freq.wordnet.load_lemmatizer`); the relevant-word set is derived from the
    WordNet data that NLTK loaded for it.
    """

    def __init__(
        self,
        concepts: ConceptSet,
        lemmatize: Callable[[str], str],
        *,
        keep_digits: bool = False,
        batch_size: int = 65_536,
    ):
        from nltk.tokenize import word_tokenize

        self.concepts = concepts
        self.keep_digits = keep_digits
        self.batch_size = batch_size
        self._lemmatize = lemmatize
        self._tokenize = word_tokenize
        self._scratch: np.ndarray | None = None  # (caption, token) presence table of a block
        self._compile()
        self._index_words()

    # ---- words ----------------------------------------------------------------------------

    def word_lemmas(self, word: str) -> list[str]:
        """Step 2: the reference's tokens of one normalised word, lemmatised."""
        if self._lemmatize is None:
            raise RuntimeError("this Matcher was unpickled without its lemmatiser")
        return [self._lemmatize(t) for t in self._tokenize(word, preserve_line=True)]

    def text_lemmas(self, s: object) -> list[str]:
        """The lemmas of one text, word by word (equals ``reference.norm`` as a set)."""
        words = normalise_text(s, self.keep_digits).split()
        return [lemma for w in words for lemma in self.word_lemmas(w)]

    def candidate_words(self) -> set[str]:
        """Step 3: every word whose lemmas can meet the query lemmas (a superset)."""
        from nltk.corpus import wordnet

        if self._lemmatize("dogss") != "dogss":  # 'dogs' is no WordNet noun; 'dog' is
            raise RuntimeError(
                "this NLTK applies the morphological rules repeatedly (NLTK < 3.9): the engine "
                "needs NLTK >= 3.9; the reference implementation works with any version"
            )
        query = set(self._qtok)
        rules = wordnet.MORPHOLOGICAL_SUBSTITUTIONS[wordnet.NOUN]
        stems = {
            q[: len(q) - len(new)] + old for q in query for old, new in rules if q.endswith(new)
        }
        # an exception-list key is lemmatised to itself or to one of its listed bases only
        exceptions = {
            w
            for w, bases in wordnet._exception_map[wordnet.NOUN].items()
            if query.intersection(bases)
        }
        word = re.compile(r"[a-z0-9]+" if self.keep_digits else r"[a-z]+")
        candidates = query | stems | exceptions | set(contraction_words())
        return {w for w in candidates if word.fullmatch(w)}

    def _word_code(self, word: str) -> int:
        """0: no query token; ``t + 1``: the single query token ``t``; larger: a combination."""
        ids = sorted({self._qtok[x] for x in self.word_lemmas(word) if x in self._qtok})
        if not ids:
            return 0
        if len(ids) == 1:
            return ids[0] + 1
        key = tuple(ids)
        if key not in self._combo_code:
            self._combo_code[key] = self.n_tokens + 1 + len(self._combos)
            self._combos.append(key)
        return self._combo_code[key]

    def _index_words(self) -> None:
        self._combos: list[tuple[int, ...]] = []
        self._combo_code: dict[tuple[int, ...], int] = {}
        codes = {w: self._word_code(w) for w in sorted(self.candidate_words())}
        self.relevant_words = {w: c for w, c in codes.items() if c}
        self._words = WordIndex(list(self.relevant_words))
        self._word_code_arr = np.array(list(self.relevant_words.values()), dtype=np.int64)
        self._combo_arrays = _csr(self._combos)

    # ---- query ----------------------------------------------------------------------------

    def _compile(self) -> None:
        qtok: dict[str, int] = {}

        def ids(s: str) -> list[int]:
            return [qtok.setdefault(x, len(qtok)) for x in self.text_lemmas(s)]

        single: dict[int, set[int]] = {}
        multi: dict[tuple[int, frozenset[int]], None] = {}  # ordered set of (class, tokens)
        negative: dict[int, set[int]] = {}
        for k, c in enumerate(self.concepts.classes):
            for p in c.phrases:
                toks = frozenset(ids(p))
                if not toks:
                    raise ValueError(
                        f"class {c.name!r}: phrase {p!r} has no words after normalisation and "
                        "would match every caption"
                    )
                if len(toks) == 1:
                    single.setdefault(next(iter(toks)), set()).add(k)
                else:
                    multi[(k, toks)] = None
            for n in c.negatives:
                for t in ids(n):
                    negative.setdefault(t, set()).add(k)
        self._qtok = qtok
        V = self.n_tokens = len(qtok)
        self.n_classes = len(self.concepts)
        # pair keys pack (caption, token) and (caption, class) into one int64 with shifts
        self._tok_bits = max(1, (V - 1).bit_length())
        self._class_bits = max(1, (self.n_classes - 1).bit_length())
        # per token: 2k + 1 for each class k it matches outright (a one-token phrase), 2k for
        # each class k it is a negative of
        self._outright = _csr(
            [
                [2 * k + 1 for k in sorted(single.get(t, ()))]
                + [2 * k for k in sorted(negative.get(t, ()))]
                for t in range(V)
            ]
        )
        self._multi = list(multi)
        self._m_class = np.array([k for k, _ in self._multi], dtype=np.int64)
        self._m_value = 2 * self._m_class + 1
        self._phrase_tokens = _csr([sorted(t) for _, t in self._multi])
        # before any caption is seen, a token's rarity is guessed from the number of phrases
        # using it (then its length); :meth:`_anchor_phrases` later uses observed frequencies
        self._lemma_len = np.array([len(x) for x in qtok], dtype=np.int64)
        self._tok_seen = np.zeros(V, dtype=np.int64)
        for toks in [t for _, t in self._multi] + [[t] for t in single]:
            self._tok_seen[list(toks)] += 1
        self._anchor_phrases()
        self._tok_seen[:] = 0
        self._n_batches = 0

    def _anchor_phrases(self) -> None:
        """Index every multi-token phrase under its rarest token (by ``self._tok_seen``).

        A caption holding token ``t`` matches the classes of ``t``'s one-token phrases and
        cannot match the classes that ``t`` is a negative of (both in ``self._outright``), and
        is a candidate for the multi-token phrases anchored at ``t`` (``self._anchors``: it
        matches one if it also holds the phrase's other tokens, ``self._rest``). Any token of a
        phrase would give the same matches as anchor; the rarest one gives the fewest
        candidates.
        """
        V = self.n_tokens
        p_start, p_len, p_tok = self._phrase_tokens
        if len(p_len) == 0:
            self._anchors = _csr([[] for _ in range(V)])
            self._rest = _csr([])
            return
        # rank of each token: rarest first, then longest lemma, then id
        order = np.lexsort((np.arange(V), -self._lemma_len, self._tok_seen))
        rank = np.empty(V, dtype=np.int64)
        rank[order] = np.arange(V)
        anchor = order[np.minimum.reduceat(rank[p_tok], p_start)]
        rest = p_tok[p_tok != np.repeat(anchor, p_len)]
        self._rest = (np.cumsum(p_len - 1) - (p_len - 1), p_len - 1, rest)
        a_len = np.bincount(anchor, minlength=V)
        self._anchors = (np.cumsum(a_len) - a_len, a_len, np.argsort(anchor, kind="stable"))

    @property
    def query_tokens(self) -> list[str]:
        """The lemmas that occur in some phrase or negative phrase, by id."""
        return sorted(self._qtok, key=self._qtok.__getitem__)

    # ---- batches --------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        """Pickled without the lemmatiser (counting never needs it once the relevant words are
        known, so worker processes need neither NLTK's WordNet nor the time to load it) and
        without the scratch table, which is made again on first use."""
        state = self.__dict__.copy()
        state["_lemmatize"] = state["_tokenize"] = None
        state["_scratch"] = None
        return state

    def _expand_codes(self, codes: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(owner, query token) for each query token that ``codes`` stand for; owner None
        when each code stands for one token."""
        V = self.n_tokens
        if len(codes) == 0 or codes.max() <= V:
            return None, codes - 1
        single = codes <= V
        owner = np.flatnonzero(single)
        toks = codes[single] - 1
        starts, lens, flat = self._combo_arrays
        where = np.flatnonzero(~single)
        c = codes[where] - V - 1
        o, idx = _expand(starts[c], lens[c])
        return np.concatenate([owner, where[o]]), np.concatenate([toks, flat[idx]])

    def _block_tokens(self, arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(caption, query token) for every relevant word of a block (Arrow text, no chunks):
        the set ``S`` of step 4, in no particular order and with repeats."""
        buf, starts = text_buffer(arr, self.keep_digits)
        start, end = word_spans(buf, self.keep_digits)
        at, word = self._words.find(buf, start, end)
        cap = _caption_of(starts, start[at], len(buf))
        owner, tok = self._expand_codes(self._word_code_arr.take(word))
        if owner is not None:
            cap = cap.take(owner)
        # re-pick the anchors from observed frequencies after blocks 1, 2, 4, 8, ...
        self._tok_seen += np.bincount(tok, minlength=self.n_tokens)
        self._n_batches += 1
        if self._n_batches & (self._n_batches - 1) == 0:
            self._anchor_phrases()
        return cap, tok

    def _block_pairs(self, arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Step 4 on one block of at most :data:`BLOCK` captions: sorted unique (caption, class)."""
        cap, tok = self._block_tokens(arr)
        V, cb = self.n_tokens, self._class_bits
        # (caption, class) keys (caption << cb | class) << 1 | flag: flag 1 for a match, 0 for
        # a block (the caption holds a negative token of the class); first the one-token
        # phrases, which match outright, and the negative tokens, of each token
        k_cap, k_val = _lookup(cap, tok, self._outright)
        keys = [(k_cap << (cb + 1)) | k_val]
        # multi-token phrases: the anchor is present; every other token must be in S too,
        # looked up in a (caption, token) presence table that is cleared again afterwards
        c_cap, c_phr = _lookup(cap, tok, self._anchors)
        if len(c_phr):
            held = cap * V + tok
            r_start, r_len, r_tok = self._rest
            o, idx = _expand(r_start.take(c_phr), r_len.take(c_phr))
            query = c_cap.take(o) * V + r_tok.take(idx)
            if len(arr) * V > SCRATCH_MAX:  # a huge vocabulary: search instead
                missing = ~np.isin(query, held)
            else:
                if self._scratch is None or len(self._scratch) < len(arr) * V:
                    self._scratch = np.zeros(len(arr) * V, dtype=bool)
                present = self._scratch
                try:
                    present.put(held, True)
                    missing = ~present.take(query)
                finally:
                    present.put(held, False)
            ok = (np.bincount(o.compress(missing), minlength=len(c_phr)) == 0).nonzero()[0]
            keys.append((c_cap.take(ok) << (cb + 1)) | self._m_value.take(c_phr.take(ok)))
        # de-duplicated matches without the blocked ones: after sorting, a match survives iff
        # it comes first among its equals (no block, no earlier copy)
        keys = np.concatenate(keys)
        keys.sort()
        keep = (keys & 1).astype(bool)
        keep[1:] &= (keys[1:] >> 1) != (keys[:-1] >> 1)
        pairs = keys[keep] >> 1
        return pairs >> cb, pairs & ((1 << cb) - 1)

    def _blocks(self, texts: object) -> Iterator[tuple[int, pa.Array]]:
        """(first caption index, block) over ``texts``, in blocks of at most :data:`BLOCK`
        (and ``batch_size``) captions and :data:`BLOCK_BYTES` bytes (or one caption)."""
        data = as_text_array(texts)
        step = max(1, min(self.batch_size, BLOCK))
        done = 0
        for chunk in data.chunks if isinstance(data, pa.ChunkedArray) else [data]:
            offsets = _offsets(chunk)
            i = 0
            while i < len(chunk):
                j = min(i + step, len(chunk))
                if offsets[j] - offsets[i] > BLOCK_BYTES:
                    j = int(np.searchsorted(offsets, offsets[i] + BLOCK_BYTES, side="right")) - 1
                    j = max(j, i + 1)
                yield done + i, chunk.slice(i, j - i)
                i = j
            done += len(chunk)

    def caption_tokens(self, texts: object) -> tuple[np.ndarray, np.ndarray]:
        """The set ``S`` of a batch: sorted unique (caption index, query-token id) pairs."""
        tb = self._tok_bits
        keys = [
            (((cap + i) << tb) | tok)
            for i, b in self._blocks(texts)
            for cap, tok in [self._block_tokens(b)]
        ]
        key = _unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
        return key >> tb, key & ((1 << tb) - 1)

    def match_pairs(self, texts: object) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique (caption index, class index) pairs of a batch (step 4)."""
        caps, classes = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for i, block in self._blocks(texts):
            cap, cls = self._block_pairs(block)
            caps.append(cap + i)
            classes.append(cls)
        return np.concatenate(caps), np.concatenate(classes)

    def count(self, texts: object, weights: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Per-class counts (int64, label order) over ``texts`` (Arrow text or a sequence);
        with ``weights`` (one int per text, e.g. MetaCLIP datacard counts) each match adds its
        weight instead of 1."""
        data = as_text_array(texts)
        w = None if weights is None else np.asarray(weights, dtype=np.int64)
        if w is not None and len(w) != len(data):
            raise ValueError(f"{len(data)} texts but {len(w)} weights")
        counts = np.zeros(self.n_classes, dtype=np.int64)
        for i, block in self._blocks(data):
            cap, cls = self._block_pairs(block)
            if w is None:
                counts += np.bincount(cls, minlength=self.n_classes)
            else:
                np.add.at(counts, cls, w[i + cap])
        return counts
