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
4. **Matching**, batch-wise with numpy, on the set ``S`` of (caption, query-token) pairs:
   a one-token phrase ``t`` matches every caption holding ``t``; a multi-token phrase is looked up
   from one of its tokens (its *anchor*: any token gives the same result, the rarest gives the
   fewest candidates) and kept if all its other tokens are in ``S`` (binary search); (caption,
   class) pairs are de-duplicated; pairs whose caption holds a negative token of the class are
   removed; what is left is counted (or weighted).

Arrow kernels do the per-word work over a whole batch (``ascii_split_whitespace`` and a hash
look-up of every word in the relevant-word set, ``index_in``), so no Python code runs per word or
per caption.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailstudy.freq.conceptsets import ConceptSet

#: Non-ASCII characters whose ``lower()`` holds an ASCII letter or digit, mapped to what the
#: reference's lower-case + character filter turns them into.
SPECIAL_CHARS: dict[str, str] = {"\u0130": "i ", "\u212a": "k"}

# action kinds of a query token (see Matcher._anchor_phrases)
_CLASS, _PHRASE, _NEGATIVE = 0, 1, 2

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


def normalise_text(s: object, keep_digits: bool = False) -> str:
    """Step 1 for one string: the words (runs of ``[a-z0-9]``) of the reference's ``lower`` +
    character filter, with the same boundaries; ``""`` for a non-str. (A multi-byte character
    gives several spaces where the reference has one, which changes no word.)"""
    if not isinstance(s, str):
        return ""
    raw = s.encode("utf-8", "surrogatepass")
    raw = raw.replace(_DOTTED_I, b"i ").replace(_KELVIN, b"k")
    return raw.translate(byte_table(keep_digits)).decode("ascii")


def _expand(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[starts[i], starts[i] + lens[i])``: (owner i, index) of every element."""
    owner = np.repeat(np.arange(len(lens)), lens)
    if len(owner) == 0:
        return owner, owner
    first = np.cumsum(lens) - lens
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


def _isin_sorted(values: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    """``np.isin`` for a sorted ``sorted_ref``."""
    if len(sorted_ref) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ref, values), len(sorted_ref) - 1)
    return sorted_ref[pos] == values


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


def _valid_positions(arr: pa.Array) -> np.ndarray:
    """Indices of the non-null entries of an Arrow array."""
    if arr.null_count == 0:
        return np.arange(len(arr))
    if arr.null_count == len(arr):
        return np.zeros(0, dtype=np.int64)
    bits = np.unpackbits(
        np.frombuffer(arr.buffers()[0], dtype=np.uint8), count=arr.offset + len(arr),
        bitorder="little",
    )  # fmt: skip
    return np.flatnonzero(bits[arr.offset :])


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
        self._table = byte_table(keep_digits)
        self._compile()
        self._index_words()

    def __getstate__(self) -> dict:
        """Pickled without the lemmatiser: counting never needs it once the relevant words are
        known, so worker processes need neither NLTK's WordNet nor the time to load it."""
        state = self.__dict__.copy()
        state["_lemmatize"] = state["_tokenize"] = None
        return state

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
            w for w, bases in wordnet._exception_map[wordnet.NOUN].items()
            if query.intersection(bases)
        }  # fmt: skip
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
        self._word_set = pa.array(list(self.relevant_words), pa.large_string())
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
        self._single = [sorted(single.get(t, ())) for t in range(V)]
        self._negative = [sorted(negative.get(t, ())) for t in range(V)]
        self._multi = list(multi)
        self._m_class = np.array([k for k, _ in self._multi], dtype=np.int64)
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
        """Build the per-token action lists, indexing every multi-token phrase under its rarest
        token (by ``self._tok_seen``).

        A caption holding token ``t`` triggers the actions of ``t``: *class* ``k`` (a one-token
        phrase of class ``k``), *phrase* ``j`` (multi-token phrase ``j`` anchored at ``t``: check
        its other tokens) and *negative* ``k`` (``t`` blocks class ``k``). Any token of a phrase
        would give the same matches as anchor; the rarest one gives the fewest candidates.
        """
        anchors: list[list[int]] = [[] for _ in range(self.n_tokens)]
        rest: list[list[int]] = []
        for j, (_, toks) in enumerate(self._multi):
            a = min(toks, key=lambda t: (self._tok_seen[t], -self._lemma_len[t], t))
            anchors[a].append(j)
            rest.append(sorted(toks - {a}))
        kinds, ids = [], []
        for t in range(self.n_tokens):
            acts = [(_CLASS, k) for k in self._single[t]] + [(_PHRASE, j) for j in anchors[t]]
            acts += [(_NEGATIVE, k) for k in self._negative[t]]
            kinds.append([a for a, _ in acts])
            ids.append([i for _, i in acts])
        self._act_start, self._act_len, kind = _csr(kinds)
        self._act_kind = kind.astype(np.int8)
        self._act_id = _csr(ids)[2]
        self._rest = _csr(rest)

    @property
    def query_tokens(self) -> list[str]:
        """The lemmas that occur in some phrase or negative phrase, by id."""
        return sorted(self._qtok, key=self._qtok.__getitem__)

    # ---- batches --------------------------------------------------------------------------

    def _normalised(self, arr: pa.Array) -> pa.Array:
        """Step 1 on a whole Arrow array: a ``large_string`` of ``[a-z0-9 ]`` with the same rows."""
        n = len(arr)
        if arr.null_count:
            binary = pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)
            arr = pc.fill_null(arr, pa.scalar(b"" if binary else "", arr.type))
        large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
        dtype = np.int64 if large else np.int32
        bufs = arr.buffers()
        offsets = np.frombuffer(
            bufs[1], dtype=dtype, count=n + 1, offset=arr.offset * dtype().itemsize
        )
        lo, hi = int(offsets[0]), int(offsets[-1])
        raw = bufs[2][lo:hi].to_pybytes() if bufs[2] is not None and hi > lo else b""
        offsets = offsets.astype(np.int64) - lo
        text = raw.translate(self._table)
        # the two special characters, found with vectorised byte compares (UTF-8 lead bytes
        # cannot occur inside another character, so these byte patterns are those characters)
        u = np.frombuffer(raw, dtype=np.uint8)
        dotted = np.flatnonzero(u[:-1] == _DOTTED_I[0])
        dotted = dotted[u[dotted + 1] == _DOTTED_I[1]]
        kelvin = np.flatnonzero(u[2:] == _KELVIN[2])  # index of the last byte, minus 2
        kelvin = kelvin[(u[kelvin] == _KELVIN[0]) & (u[kelvin + 1] == _KELVIN[1])]
        if len(dotted) or len(kelvin):
            t = np.frombuffer(text, dtype=np.uint8).copy()
            t[dotted] = ord("i")  # its second byte is already a space: "i "
            t[kelvin] = ord("k")  # its other two bytes are dropped: later captions shift left
            if len(kelvin):
                t = np.delete(t, np.concatenate([kelvin + 1, kelvin + 2]))
                offsets -= (len(_KELVIN) - 1) * np.searchsorted(kelvin, offsets, side="left")
            text = t.tobytes()
        return pa.Array.from_buffers(
            pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)]
        )

    def _expand_codes(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner, query token) for each query token that ``codes`` stand for."""
        V = self.n_tokens
        single = codes <= V
        owner = np.flatnonzero(single)
        toks = codes[single] - 1
        if single.all():
            return owner, toks
        starts, lens, flat = self._combo_arrays
        where = np.flatnonzero(~single)
        c = codes[where] - V - 1
        o, idx = _expand(starts[c], lens[c])
        return np.concatenate([owner, where[o]]), np.concatenate([toks, flat[idx]])

    def caption_tokens(self, texts: object) -> tuple[np.ndarray, np.ndarray]:
        """The set ``S`` of one batch: sorted unique (caption, query-token id) pairs."""
        words = pc.ascii_split_whitespace(self._normalised(as_text_array(texts)))
        values = words.values
        if values.type != self._word_set.type:
            self._word_set = self._word_set.cast(values.type)
        found = pc.index_in(values, value_set=self._word_set)  # null: not a relevant word
        at = _valid_positions(found)
        if len(at) == 0:
            return at, at
        which = np.frombuffer(found.buffers()[1], dtype=np.int32)[found.offset + at]
        owner, tok = self._expand_codes(self._word_code_arr[which])
        cap = pc.list_parent_indices(words).to_numpy()[at[owner]]
        key = _unique((cap << self._tok_bits) | tok)
        cap, tok = key >> self._tok_bits, key & ((1 << self._tok_bits) - 1)
        # re-pick the anchors from observed frequencies after batches 1, 2, 4, 8, ...
        self._tok_seen += np.bincount(tok, minlength=self.n_tokens)
        self._n_batches += 1
        if self._n_batches & (self._n_batches - 1) == 0:
            self._anchor_phrases()
        return cap, tok

    def match_pairs(self, texts: object) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique (caption index, class index) pairs of one batch (step 4)."""
        tb, cb = self._tok_bits, self._class_bits
        cap, tok = self.caption_tokens(texts)
        key = (cap << tb) | tok  # sorted: the set S
        o, idx = _expand(self._act_start[tok], self._act_len[tok])
        a_cap, kind, ident = cap[o], self._act_kind[idx], self._act_id[idx]
        # one-token phrases match outright
        is_class = kind == _CLASS
        m_cap, m_cls = [a_cap[is_class]], [ident[is_class]]
        # multi-token phrases: the anchor is present; every other token must be in S too
        is_phrase = kind == _PHRASE
        if is_phrase.any():
            c_cap, c_phr = a_cap[is_phrase], ident[is_phrase]
            r_start, r_len, r_tok = self._rest
            o2, idx2 = _expand(r_start[c_phr], r_len[c_phr])
            found = _isin_sorted((c_cap[o2] << tb) | r_tok[idx2], key)
            ok = np.bincount(o2[~found], minlength=len(c_phr)) == 0
            m_cap.append(c_cap[ok])
            m_cls.append(self._m_class[c_phr[ok]])
        pairs = _unique((np.concatenate(m_cap) << cb) | np.concatenate(m_cls))
        # negatives: drop (caption, class) pairs whose caption holds a negative token of the class
        is_negative = kind == _NEGATIVE
        if is_negative.any():
            blocked = _unique((a_cap[is_negative] << cb) | ident[is_negative])
            pairs = pairs[~_isin_sorted(pairs, blocked)]
        return pairs >> cb, pairs & ((1 << cb) - 1)

    def count(self, texts: object, weights: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Per-class counts (int64, label order) over ``texts`` (Arrow text or a sequence);
        with ``weights`` (one int per text, e.g. MetaCLIP datacard counts) each match adds its
        weight instead of 1."""
        data = as_text_array(texts)
        w = None if weights is None else np.asarray(weights, dtype=np.int64)
        if w is not None and len(w) != len(data):
            raise ValueError(f"{len(data)} texts but {len(w)} weights")
        counts = np.zeros(self.n_classes, dtype=np.int64)
        done = 0
        for chunk in data.chunks if isinstance(data, pa.ChunkedArray) else [data]:
            for i in range(0, len(chunk), self.batch_size):
                batch = chunk.slice(i, self.batch_size)
                cap, cls = self.match_pairs(batch)
                if w is None:
                    counts += np.bincount(cls, minlength=self.n_classes)
                else:
                    np.add.at(counts, cls, w[done + cap])
                done += len(batch)
        return counts
