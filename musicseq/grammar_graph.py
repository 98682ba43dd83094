"""The decoding grammar as TensorFlow tensors: :class:`GraphGrammar`.

:mod:`musicseq.notation.grammar` is the readable reference: :class:`TuneGrammar` follows one
tune in Python, character by character. This module is the same machine written with
tensor operations, so that constrained decoding can run inside a compiled ``tf.while_loop``
(and a SavedModel) for ``N`` streams at once: the state of each stream is one row of an
``(N, S)`` int32 tensor, and every method is a pure function of tensors (graph-safe,
shape-polymorphic in ``N``, no Python-side per-stream state).

How it maps onto the reference
------------------------------
* The state has the reference's 41 fields at the same indices (``PHASE`` .. ``SHORT``, same
  meaning and values; trie nodes of ``M:``/``L:``/``K:`` values index the full value tries,
  so they differ from the reference's node ids only when a value is forced) and four more:
  ``LASTCH`` (the last character written), ``PSLUR`` (slurs open as :func:`plain_style`
  counts them in the text), ``FINISHED`` (1 after end-of-tune, 2 after a token the grammar
  rejects) and ``CLOSE_REQ`` (:meth:`close` was asked and waits for a ``READY`` state).
* The reference's per-configuration :class:`_Machine` becomes a per-stream configuration
  row (see :meth:`GraphGrammar.plans`): forced ``M``/``L``/``K`` values, the form's parts,
  bars per part, the cadence and a forced title. The vocabulary (the reference's
  ``alphabet``), the header style and ``min_bars`` are fixed per :class:`GraphGrammar`.
* ``_Machine.step`` is :meth:`GraphGrammar._step`: it is evaluated for a whole batch of
  characters at once by broadcasting (state fields ``(..., 1)`` against characters
  ``(V,)``), with every ``if ...: return None`` of the reference turned into a validity mask
  and every assignment into a ``tf.where``. The methods keep the reference's names
  (``_ready``, ``_note_start``, ``_letter``, ``_place``, ``_token``, ``_token_form``, ...).
* What does not depend on the character (the durations that fit, which bar tokens could
  close the bar, the note that a pending note or bar token settles to) is computed once per
  stream and then looked up per character, as ``_Machine._try_all`` exploits by trying one
  character of each class.
* :meth:`GraphGrammar.plain_allowed` is ``TuneGrammar.plain_allowed``: the plain style is
  derived from the state (in the body or not, the last character, ``PSLUR``). In the phases
  the plain style writes (between tokens, notes, bar tokens, chords, grace notes) the
  one-character look-ahead is evaluated only for :data:`LOOKAHEAD_CHARS` (``[``: only an
  inline field may follow it), the one plain character after which the plain style can be
  left with nothing; after any other the grammar always allows something plain (a note, a
  bar line or the end). Inside ``!..!``, annotations, fields and continuations, which only
  texts that left the plain style reach, every character is looked ahead (a ``tf.cond``
  branch; ``full_lookahead=False`` leaves it out of the graph).
* :meth:`GraphGrammar.plain_allowed_and_next` keeps what the mask computes anyway, the
  state after every character, so a decoding loop takes the chosen token's state with a
  gather (:meth:`GraphGrammar.take`) instead of a second step (:meth:`GraphGrammar.advance`,
  the same states, stays for callers that step without a mask).
* The branches of the rarer phases (the header, fields, ``[``, chords, grace notes,
  accidentals) are ``tf.cond``s (``_lazy``) taken only when some stream is in one.
* The public methods are plain tensor code (no autograph: ``do_not_convert``), so they can be
  called from any ``tf.function`` or ``tf.while_loop`` body.
* The memoised per-state computations (``_memoized``) only shorten graph building.

Cost (scripts/bench_grammar.py, 2 CPU cores, ``full_lookahead=False``, as a graph): the
mask with its step, then ``take``, about 6.3 / 8.4 / 16.7 ms per step for 8 / 64 / 200
streams, traced in 12-15 s (mask then ``advance``: 9.0 / 11.1 / 15.6 ms, 22-25 s). The
graph has about 12.7k operations; at small batches the time is per-operation overhead, not
arithmetic (XLA fuses them, ~3× faster, but compiles for a minute per number of streams).

Limits: at most :data:`MAX_PARTS` parts in a form; forced ``M``/``L``/``K`` values must be
among :data:`METER_VALUES`/:data:`LENGTHS`/:data:`KEYS` (the corpus's values), a forced title
at most :data:`MAX_FORCED_TITLE` characters.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import tensorflow as tf

from musicseq.notation import grammar as ref
from musicseq.notation.durations import TICKS, length_multiplier
from musicseq.notation.grammar import (
    ACC_,
    BANG,
    BARTOK,
    BLANK,
    BSLASH,
    CHORD,
    CHORD_LENGTH,
    DECORATIONS,
    DONE,
    DONE_NL,
    F_K,
    F_L,
    F_M,
    F_P,
    F_Q,
    F_R,
    F_T,
    F_X,
    FIELD_COLON,
    FIELD_VALUE,
    GRACE,
    H_COLON,
    H_LETTER,
    H_LIT,
    H_VALUE,
    IN_CHORD,
    IN_GRACE,
    IN_TUNE,
    INLINE_COLON,
    INLINE_VALUE,
    IS_TONIC,
    KEYS,
    LBRACKET,
    LENGTHS,
    LOWER,
    MAX_BARS,
    METERS,
    NOTE,
    P_BAR,
    P_BROKEN,
    P_DECO,
    P_GRACE,
    P_INVISIBLE,
    P_LPAREN,
    P_NEWLINE,
    P_NOTE,
    P_OTHER,
    P_RPAREN,
    P_SPACE,
    P_TIE,
    P_TUPLET,
    PART_BODY,
    PART_DONE,
    PART_START,
    QUOTE,
    READY,
    REST,
    GrammarError,
    TuneGrammar,
)

# State fields: the reference's 41, then the plain style's and the decoding loop's.
(PHASE, NODE, FLAG, KIND, SEEN, CTX) = range(6)
(BAR, UNIT, ELAPSED, FIRST, CONTENT, PENDING_MID, MID_SEEN, BARS, REPEAT) = range(6, 15)
(SLUR, TUP_LEFT, TUP_P, BROKEN_, LAST, LAST_TONIC, SPOILED, TONIC) = range(15, 23)
(OCTAVES, ACC, CH_FIRST, CH_N, NEED_NOTE, PREV, COL, AFTER_BAR, CLOSING) = range(23, 32)
(PART, PART_PHASE, PFIRST, BAR_IN_PART, PICKUP, ENDING, END_LEN, END_BARS) = range(32, 40)
SHORT = 40
LASTCH, PSLUR, FINISHED, CLOSE_REQ = range(41, 45)
STATE_SIZE = 45
FIELD_NAMES = (*ref._FIELDS, "lastch", "pslur", "finished", "close_req")

PAD, UNK, EOT = 0, 1, 2
MAX_PARTS = 8
MAX_FORCED_TITLE = 96
# Meters a plan may force (the form prior also draws 5/4 and 9/4); unforced, only METERS.
METER_VALUES = (*METERS, "5/4", "9/4", "7/8", "5/8", "3/16")
# Configuration columns.
C_M, C_L, C_K, C_CADENCE, C_BARS, C_NPARTS = range(6)
C_PARTS = 6  # MAX_PARTS columns: 0 no part, 1 written once, 2 repeated
C_TLEN = C_PARTS + MAX_PARTS  # forced title length, -1 free
C_TITLE = C_TLEN + 1
CONFIG_SIZE = C_TITLE + MAX_FORCED_TITLE

# Characters after which the plain style may find nothing plain (see plain_allowed); the
# look-ahead for '[' is GraphGrammar._bracket_dead.
LOOKAHEAD_CHARS = "["
# Phases of the plain style (the others: !..!, "..", fields, continuations get a full look-ahead).
_PLAIN_PHASES = (READY, ACC_, NOTE, BARTOK, LBRACKET, CHORD, GRACE, DONE, DONE_NL)

_NOTE_LETTERS = ref.NOTE_LETTERS
_ACC_SHIFT = {0: 0, 1: 1, 2: 2, 3: -1, 4: -2, 5: 0}  # 0: no accidental (None in the reference)
_BAR_TOKENS = ref._BAR_TOKENS
_TOK = {t: i for i, t in enumerate(_BAR_TOKENS)}


def needs_full_lookahead(reference_state) -> bool:
    """True when a :class:`TuneGrammar` in ``reference_state`` is inside ``!..!``, an
    annotation, a field or a continuation: the phases whose look-ahead only
    ``GraphGrammar(full_lookahead=True)`` has (the plain style never enters them, so only a
    prime can end in one)."""
    phase = reference_state[PHASE]
    return phase >= READY and phase not in _PLAIN_PHASES


def _codes(chars) -> list[int]:
    return [ord(c) for c in chars]


def _char_table(chars) -> np.ndarray:
    out = np.zeros(128, bool)
    for c in chars:
        if ord(c) < 128:
            out[ord(c)] = True
    return out


class _Tries:
    """Several :class:`ref._Trie` in one set of tables (node ids offset per trie).

    ``children[node * 128 + code]`` is the child's global id or -1, ``word[node]`` the word
    ending there (global word id) or -1, ``anc[node, word]`` whether ``word`` is below
    ``node``.
    """

    def __init__(self, tries: list[ref._Trie], words: list[list[str]]):
        self.node_offset, self.word_offset = [], []
        n_nodes = n_words = 0
        for trie, ws in zip(tries, words):
            self.node_offset.append(n_nodes)
            self.word_offset.append(n_words)
            n_nodes += len(trie.children)
            n_words += len(ws)
        children = np.full((n_nodes, 128), -1, np.int32)
        word = np.full(n_nodes, -1, np.int32)
        anc = np.zeros((n_nodes, max(n_words, 1)), bool)
        for trie, ws, no, wo in zip(tries, words, self.node_offset, self.word_offset):
            index = {w: i + wo for i, w in enumerate(ws)}
            for node, kids in enumerate(trie.children):
                for ch, child in kids.items():
                    children[node + no, ord(ch)] = child + no
                if trie.word[node] is not None:
                    word[node + no] = index[trie.word[node]]
                for w in trie.below[node]:
                    anc[node + no, index[w]] = True
        self.n_nodes, self.n_words = n_nodes, n_words
        self.children_np, self.word_np, self.anc_np = children.reshape(-1), word, anc


def _gather(table, index):
    """``tf.gather`` with the index clamped into the table (lanes of other phases hold any
    value there; their results are discarded, but the lookup must stay in range)."""
    index = tf.clip_by_value(index, _k(0), _k(table.shape[0] - 1))
    return tf.gather(table, index, axis=_k(0))


def _i(x):
    return tf.cast(x, tf.int32)


# Tracing cost is per graph operation (the grammar's step is ~15k of them, and a first
# constrained call spends most of its time creating and optimising them), so the helpers
# below build as few as they can: one constant per value and graph, a membership test over
# several values as one lookup, a field as one slice of one unstack.
def _k(value, dtype=tf.int32) -> tf.Tensor:
    """``tf.constant(value, dtype)``, created once per graph (a ``tf.function`` or ``tf.cond``
    branch being traced) and reused; ``value`` a number or a NumPy array. The constants are
    kept on the graph itself, so they go with it."""
    graph = tf.compat.v1.get_default_graph()
    table = getattr(graph, "_grammar_constants", None)
    if table is None:
        table = {}
        graph._grammar_constants = table
    array = np.asarray(value)
    key = (dtype, array.shape, array.tobytes())
    if key not in table:
        table[key] = tf.constant(array, dtype)
    return table[key]


def _newaxis(x, axis: int = -1) -> tf.Tensor:
    """``x`` with a new axis of size 1 at ``axis`` (``x[..., None]``, in one operation)."""
    return tf.expand_dims(x, _k(axis))


def _scalar(v, like) -> tf.Tensor:
    """A Python number or bool as a shared constant (:func:`_k`) of ``like``'s dtype; a
    tensor as it is."""
    if isinstance(v, (bool, np.bool_)):
        return _k(bool(v), tf.bool)
    if isinstance(v, (int, np.integer)):
        return _k(int(v), like.dtype if isinstance(like, tf.Tensor) else tf.int32)
    return v


def _eq(x, y) -> tf.Tensor:
    """``tf.equal``, its Python numbers as shared constants."""
    return tf.equal(_scalar(x, y), _scalar(y, x))


def _where(cond, a, b) -> tf.Tensor:
    """``tf.where(cond, a, b)``, its Python numbers as shared constants."""
    return tf.where(cond, _scalar(a, b), _scalar(b, a))


_ISIN_SPAN = 256  # values from -1 to 255 (codes, phases, fields, trie nodes) are looked up


def _isin(x, values) -> tf.Tensor:
    """Whether each element of ``x`` (int32) is one of ``values``: a chain of comparisons
    for one to three values, a lookup in a boolean table for more."""
    values = sorted(set(values))
    if len(values) < 4 or not all(-1 <= v < _ISIN_SPAN for v in values):
        out = tf.zeros_like(x, tf.bool)
        for v in values:
            out = out | _eq(x, v)
        return out
    table = np.zeros(_ISIN_SPAN + 3, bool)  # slot v + 2; slots 0 and the last: out of range
    table[np.array(values) + 2] = True
    index = tf.clip_by_value(x, _k(-2), _k(_ISIN_SPAN)) + _k(2)
    return tf.gather(_k(table, tf.bool), index)


def _choose(cases, default: dict) -> tuple[tf.Tensor, dict]:
    """``cases`` = [(cond, ok, state), ...]: the first whose cond holds wins (as a chain of
    ``if cond: return ...``); none: not ok, ``default``. A cond of ``True`` ends the chain."""
    ok = tf.constant(False)
    out = dict(default)
    for cond, c_ok, st in reversed(cases):
        if cond is True:
            ok, out = tf.convert_to_tensor(c_ok), dict(st)
            continue
        ok = _where(cond, c_ok, ok)
        for k, v in st.items():
            if v is not out[k]:
                out[k] = _where(cond, v, out[k])
    return ok, out


def _upd(s: dict, **kw) -> dict:
    """A copy of state ``s`` with fields set by name (``_upd(s, phase=READY, node=0)``)."""
    new = dict(s)
    for k, v in kw.items():
        v = _k(int(v)) if isinstance(v, (bool, int, np.integer)) else tf.convert_to_tensor(v)
        new[_FIELD[k]] = tf.cast(v, tf.int32) if v.dtype != tf.int32 else v
    return new


_FIELD = {name: i for i, name in enumerate(FIELD_NAMES)}
_FIELD.update({"broken": BROKEN_})


def _norm(s: dict, like: tf.Tensor) -> dict:
    """Every field broadcast to the shape of ``like``."""
    shape = tf.shape(like)
    return {k: tf.broadcast_to(tf.convert_to_tensor(v, tf.int32), shape) for k, v in s.items()}


class _Memo:
    """Per-graph-build cache of :meth:`GraphGrammar._memoized` (a plain object, so that
    tf.Module does not track it)."""

    def __init__(self):
        self.table: dict = {}


class GraphGrammar(tf.Module):
    """:class:`TuneGrammar` for ``N`` streams as tensors; see the module docstring.

    ``chars``: the vocabulary's characters in id order (token id = index + 3; 0, 1, 2 are
    PAD, UNK and EOT). ``header``: ``"template"`` (``X:1 / T: / M: / L: / K:``, generation)
    or ``"corpus"`` (the corpus's headers). ``min_bars``: without a form, a tune may end
    after this many bars. ``full_lookahead``: :meth:`plain_allowed` also looks ahead inside
    ``!..!``, annotations, fields and continuations (exact, but a much larger graph to
    compile); False skips that branch, which only matters for texts that left the plain
    style (the plain style never writes ``!``, ``"``, fields or ``\\``).
    """

    def __init__(
        self, chars, *, header: str = "template", min_bars: int = 8, full_lookahead: bool = True
    ):
        super().__init__(name="graph_grammar")
        self.full_lookahead = full_lookahead
        self._memo = _Memo()
        if header not in ("template", "corpus"):
            raise GrammarError(f"header must be 'corpus' or 'template', got {header!r}")
        self.chars = tuple(chars)
        self.header = header
        self.template = header == "template"
        self.min_bars = max(0, min(min_bars, MAX_BARS))
        alphabet = frozenset(self.chars)
        self.alphabet = alphabet

        def spell(text):
            return all(c in alphabet for c in text)

        self._spell = spell
        # The reference's machine without forced values (for its tables and tries).
        machine = TuneGrammar(min_bars, None, alphabet, header=header, form=None)._machine
        self.machine = machine
        codes = np.array([ord(c) if len(c) == 1 and ord(c) < 128 else 0 for c in self.chars])
        self.vocab_codes = tf.constant(codes, tf.int32)
        self.n_vocab = len(self.chars) + 3

        # Character classes.
        tables = {
            "note": _NOTE_LETTERS,
            "rest": ref.REST_LETTERS,
            "acc": ref.ACCIDENTALS,
            "digit": "0123456789",
            "deco": DECORATIONS,
            "title": machine._charset(ref.TITLE_CHARS),
            "part": machine._charset(ref.PART_CHARS),
            "quote": machine.quote_chars,
            "alpha": "".join(chr(c) for c in range(128) if chr(c).isalpha()),
            "lower": "abcdefg",
            "grace_deco": "".join(c for c in DECORATIONS if c not in ".~") + " ",
            "plain_banned": ref._PLAIN_BANNED,
            "note_heads": ref._NOTE_HEADS,
            "before_note": ref._BEFORE_A_NOTE,
            "spell": "".join(c for c in alphabet if len(c) == 1),
        }
        self._cls = {k: tf.constant(_char_table(v)) for k, v in tables.items()}
        letter_index = np.full(128, -1, np.int32)
        for c in _NOTE_LETTERS:
            letter_index[ord(c)] = "CDEFGAB".index(c.upper())
        self._letter_index = tf.constant(letter_index)
        # Spellable letters, per tonic letter (0..6, 7 = none): a non-tonic / the tonic letter.
        letters = machine.letters
        other = np.array([any("CDEFGAB".index(c.upper()) != t for c in letters) for t in range(8)])
        same = np.array([any("CDEFGAB".index(c.upper()) == t for c in letters) for t in range(8)])
        self._has_other_letter = tf.constant(other)
        self._has_tonic_letter = tf.constant(same)
        body_fields = np.full((2, 128), -1, np.int32)  # [form?, code] -> field or -1
        inline_fields = np.full((2, 128), -1, np.int32)
        for has_form, fields in ((0, "KPML"), (1, "KP")):
            for letter in fields:
                field = ref._FIELD_LETTERS.index(letter)
                if letter in alphabet:
                    body_fields[has_form, ord(letter)] = field
                    if letter != "P":
                        inline_fields[has_form, ord(letter)] = field
        self._body_fields = tf.constant(body_fields.reshape(-1))
        self._inline_fields = tf.constant(inline_fields.reshape(-1))

        # Flags the reference computes from the alphabet.
        self.f_newline = "\n" in alphabet
        self.f_brace = spell("}")
        self.f_rbracket = spell("]")
        self.f_inv_bar = spell("[|]")
        self.f_quote = bool(machine.quote_chars)
        self.f_q_field = spell("0123456789/=")
        self.f_rep_l2 = spell("[2")
        self.f_bang = "!" in machine.bang.children[0]
        self.f_repeats = spell(":|")
        tuplet_ok = np.zeros(128, bool)
        for p in machine.tuplets:
            tuplet_ok[ord(str(p))] = True
        self._tuplet_ok = tf.constant(tuplet_ok)
        self.broken_ok = {s: s in machine.broken for s in ref.BROKEN}
        bracket_starts = machine.bracket_starts
        self.bs_bar = "|" in bracket_starts
        self.bs_ending = {c: c in bracket_starts for c in "12"}
        self.bs_fields = [c for c in "KML" if c in bracket_starts]
        self.bs_notes = any(c in bracket_starts for c in _NOTE_LETTERS)

        # Tries: bar tokens, suffixes, !decorations!, header values (M, L, K), T literal.
        self.bars = _Tries([machine.bars_trie], [list(machine.bars_trie.below[0])])
        bar_words = list(machine.bars_trie.below[0])
        self._bar_word_tok = tf.constant([_TOK[w] for w in bar_words] or [0], tf.int32)
        below = np.zeros((self.bars.n_nodes, len(_BAR_TOKENS)), bool)
        for node in range(self.bars.n_nodes):
            for w in machine.bars_trie.below[node]:
                below[node, _TOK[w]] = True
        self._bar_below = tf.constant(below)
        self._bar_children = tf.constant(self.bars.children_np)
        self._bar_word = tf.constant(
            [(_TOK[bar_words[w]] if w >= 0 else -1) for w in self.bars.word_np], tf.int32
        )

        suffix_words = list(machine.suffixes.below[0])
        self.suffix_words = suffix_words
        self.suffixes = _Tries([machine.suffixes], [suffix_words])
        self._suf_children = tf.constant(self.suffixes.children_np)
        self._suf_word = tf.constant(self.suffixes.word_np)
        self._suf_below = tf.constant(self.suffixes.anc_np)
        mult = [length_multiplier(w) for w in suffix_words]
        self._suf_num = tf.constant([m.numerator for m in mult], tf.int32)
        self._suf_den = tf.constant([m.denominator for m in mult], tf.int32)
        self._suf_empty = tf.constant([w == "" for w in suffix_words])  # after a chord's ']'

        self.bang = _Tries([machine.bang], [list(machine.bang.below[0])])
        self._bang_children = tf.constant(self.bang.children_np)
        self._bang_word = tf.constant(self.bang.word_np)

        # Header values: every spellable value, restricted per stream by the configuration.
        meter_words = [m for m in METER_VALUES if spell(m)]
        length_words = [u for u in LENGTHS if spell(u)]
        key_words = [k for k in KEYS if spell(k)]
        self.meter_words, self.length_words, self.key_words = (
            meter_words,
            length_words,
            key_words,
        )
        tries = [ref._Trie(meter_words), ref._Trie(length_words), ref._Trie(key_words)]
        self.values = _Tries(tries, [meter_words, length_words, key_words])
        v = self.values
        self._val_children = tf.constant(v.children_np)
        self._val_word = tf.constant(v.word_np)
        self._val_anc = tf.constant(v.anc_np.reshape(-1))
        self._n_val_words = v.n_words
        # Which words an unforced field may take (and with a cadence: keys with a writable tonic).
        free_ok = np.zeros(v.n_words, bool)
        cad_ok = np.zeros(v.n_words, bool)
        word_value = np.zeros(v.n_words, np.int64)
        for i, m in enumerate(meter_words):
            free_ok[v.word_offset[0] + i] = m in METERS
            word_value[v.word_offset[0] + i] = ref._bar_ticks(m)
        for i, u in enumerate(length_words):
            free_ok[v.word_offset[1] + i] = True
            word_value[v.word_offset[1] + i] = ref._unit_ticks(u)
        for i, k in enumerate(key_words):
            free_ok[v.word_offset[2] + i] = True
            cad_ok[v.word_offset[2] + i] = machine._tonic_spellable(k)
            word_value[v.word_offset[2] + i] = ref._tonic_code(k)
        cad_ok[: v.word_offset[2]] = free_ok[: v.word_offset[2]]
        self._val_free_node = tf.constant(v.anc_np[:, :].astype(bool) @ free_ok > 0)
        self._val_cad_node = tf.constant((v.anc_np.astype(np.int32) @ cad_ok.astype(np.int32)) > 0)
        self._val_free_node = tf.constant(
            (v.anc_np.astype(np.int32) @ free_ok.astype(np.int32)) > 0
        )
        self._val_free_word = tf.constant(free_ok)
        self._val_cad_word = tf.constant(cad_ok)
        self._val_value = tf.constant(word_value.astype(np.int32))
        self._val_offset = v.node_offset  # M, L, K
        self.lengths_ok = bool(length_words)

        # Durations per unit length (the reference's _unit_tables): unit ids, grid, suffix ticks,
        # and for tuplets the least sum of `left` notes scaled by q/p per residue mod grid.
        units = sorted({ref._unit_ticks(u) for u in length_words} | {TICKS // 8, TICKS // 16})
        self.units = units
        grids, ticks, valid = [], [], []
        for unit in units:
            grid, tick_of, _sums = machine._unit_tables(unit)
            grids.append(grid)
            ticks.append([tick_of.get(w, 0) for w in suffix_words])
            valid.append([w in tick_of for w in suffix_words])
        self._units = tf.constant(units, tf.int32)
        self._grid = tf.constant(grids, tf.int32)
        self._suf_ticks = tf.constant(np.array(ticks, np.int64).astype(np.int32))
        self._suf_valid = tf.constant(np.array(valid, bool))
        self._build_tuplet_tables(machine)

        # Literals and template items.
        lits = machine.literals
        lit = np.zeros((len(lits), 4), np.int32)
        for i, text in enumerate(lits):
            lit[i, : len(text)] = _codes(text)
        self._lit = tf.constant(lit.reshape(-1))
        self._lit_len = tf.constant([len(t) for t in lits], tf.int32)
        items = machine.items if self.template else ((0, 0),)
        self._item_phase = tf.constant([p for p, _ in items], tf.int32)
        self._item_kind = tf.constant([k for _, k in items], tf.int32)

        # Characters evaluated together: the vocabulary's codes.
        self._lookahead = [c for c in LOOKAHEAD_CHARS if c in alphabet]

    # --- tables -----------------------------------------------------------------------------

    def _build_tuplet_tables(self, machine):
        """``_tuplet_completes``: for (unit, left, p) the least scaled sum per residue mod grid.

        The reference tries every sum ``t`` of ``left`` note values: ``t * q % p == 0`` and
        ``e + t * q // p`` within the cap and on the grid (or anywhere in a loose bar). Here
        the scaled sums ``d`` are grouped by ``d % grid``; only the least of each group matters.
        """
        residues: list[list[list[dict[int, int]]]] = []
        all_res = set()
        for unit in self.units:
            grid, _, sums = machine._unit_tables(unit)
            per_left = []
            for left in range(len(sums)):
                per_p = []
                for p in (2, 3):
                    q = 3 if p == 2 else 2
                    best: dict[int, int] = {}
                    for t in sums[left]:
                        if t * q % p == 0:
                            d = t * q // p
                            r = d % grid
                            if r not in best or d < best[r]:
                                best[r] = d
                    all_res.update(best)
                    per_p.append(best)
                per_left.append(per_p)
            residues.append(per_left)
        big = np.iinfo(np.int32).max // 2
        n_left = len(residues[0])
        # residue values depend on the unit's grid; store (residue, least d) pairs per entry.
        width = max(len(b) for per_left in residues for per_p in per_left for b in per_p)
        res = np.full((len(self.units), n_left, 2, width), -1, np.int64)
        least = np.full((len(self.units), n_left, 2, width), big, np.int64)
        for u, per_left in enumerate(residues):
            for left, per_p in enumerate(per_left):
                for pi, best in enumerate(per_p):
                    for j, (r, d) in enumerate(sorted(best.items())):
                        res[u, left, pi, j], least[u, left, pi, j] = r, d
        self._tup_res = tf.constant(res.astype(np.int32))
        self._tup_least = tf.constant(least.astype(np.int32))

    # --- configuration ----------------------------------------------------------------------

    def plans(self, plans) -> np.ndarray:
        """(N, CONFIG_SIZE) int32 per-stream configuration from plans like
        :func:`musicseq.sampling.plan_forms` returns (``{"fixed": {...}, "form": "AABB" | None,
        "bars": 8, "cadence": "tonic" | None}``). Raises :class:`GrammarError` for what
        :class:`TuneGrammar` refuses, and for what this module cannot encode (a form of more
        than :data:`MAX_PARTS` parts, a forced value outside its tables)."""
        out = np.zeros((len(plans), CONFIG_SIZE), np.int32)
        for row, plan in zip(out, plans):
            fixed = {k: v for k, v in (plan.get("fixed") or {}).items() if v}
            form, bars = plan.get("form"), plan.get("bars", 8)
            cadence = plan.get("cadence")
            TuneGrammar(  # the reference's checks
                self.min_bars,
                fixed,
                self.alphabet,
                form=form,
                bars_per_part=bars,
                cadence=cadence,
                header=self.header,
            )
            parts = ref._parse_form(form) or ()
            if len(parts) > MAX_PARTS:
                raise GrammarError(f"form {form!r}: at most {MAX_PARTS} parts")
            row[C_M] = self._word_index(self.meter_words, fixed.get("M"), "M")
            length = fixed.get("L")
            if "M" in fixed and length is None:
                unit = Fraction(ref._default_unit(ref._bar_ticks(fixed["M"])), TICKS)
                length = f"{unit.numerator}/{unit.denominator}"
            row[C_L] = self._word_index(self.length_words, length, "L")
            row[C_K] = self._word_index(self.key_words, fixed.get("K"), "K")
            row[C_CADENCE] = int(cadence == "tonic")
            row[C_BARS] = bars
            row[C_NPARTS] = len(parts)
            for i, repeated in enumerate(parts):
                row[C_PARTS + i] = 2 if repeated else 1
            title = fixed.get("T")
            row[C_TLEN] = -1 if title is None else len(title)
            if title is not None:
                if len(title) > MAX_FORCED_TITLE or any(ord(c) >= 128 for c in title):
                    raise GrammarError(f"cannot force T:{title}: at most {MAX_FORCED_TITLE} ASCII")
                row[C_TITLE : C_TITLE + len(title)] = _codes(title)
        return out

    @staticmethod
    def _word_index(words, value, name) -> int:
        if value is None:
            return -1
        if value not in words:
            raise GrammarError(f"cannot force {name}:{value}: not among the grammar's values")
        return words.index(value)

    @tf.autograph.experimental.do_not_convert
    def config_tensor(self, meter, key, parts, bars, cadence, length=None):
        """The :meth:`plans` encoding from tensors (for a SavedModel's form controls).

        ``meter``, ``key`` (N,) int32: indexes into :attr:`meter_words` / :attr:`key_words`
        (-1 free); ``parts`` (N, MAX_PARTS) int32: 0 no part, 1 written once, 2 repeated;
        ``bars`` (N,) bars per part; ``cadence`` (N,) 1 for a tonic cadence; ``length`` (N,)
        index into :attr:`length_words` (-1: free, or ABC's default for a forced meter).
        Values are not validated (use :meth:`plans` for checked input). No forced title.
        """
        meter = tf.cast(meter, tf.int32)
        n = tf.shape(meter)[0]
        if length is None:
            length = tf.fill([n], -1)
        length = tf.cast(length, tf.int32)
        defaults = []
        for m in self.meter_words:
            unit = Fraction(ref._default_unit(ref._bar_ticks(m)), TICKS)
            text = f"{unit.numerator}/{unit.denominator}"
            defaults.append(self.length_words.index(text) if text in self.length_words else -1)
        default = _gather(tf.constant(defaults, tf.int32), tf.maximum(meter, 0))
        length = _where((length < 0) & (meter >= 0), default, length)
        parts = tf.cast(parts, tf.int32)[:, :MAX_PARTS]
        parts = tf.pad(parts, [[0, 0], [0, MAX_PARTS - tf.shape(parts)[1]]])
        nparts = tf.reduce_sum(_i(parts > 0), 1)
        columns = [meter, length, tf.cast(key, tf.int32), tf.cast(cadence, tf.int32)]
        columns += [tf.cast(bars, tf.int32), nparts]
        head = tf.stack(columns, 1)
        tail = tf.concat([tf.fill([n, 1], -1), tf.zeros([n, MAX_FORCED_TITLE], tf.int32)], 1)
        return tf.concat([head, parts, tail], 1)

    def _cfg(self, config, rank: int) -> dict:
        """Configuration columns reshaped to broadcast against state fields of ``rank``."""
        config = tf.convert_to_tensor(config, tf.int32)
        extra = [1] * (rank - 1)

        def col(i):
            return tf.reshape(config[:, i], tf.concat([[-1], tf.constant(extra, tf.int32)], 0))

        cfg = {
            name: col(i)
            for name, i in (
                ("M", C_M),
                ("L", C_L),
                ("K", C_K),
                ("cadence", C_CADENCE),
                ("bpp", C_BARS),
                ("nparts", C_NPARTS),
                ("tlen", C_TLEN),
            )
        }
        cfg["cadence"] = cfg["cadence"] > 0
        cfg["form"] = cfg["nparts"] > 0
        shape = tf.concat([[-1], tf.constant(extra, tf.int32), [MAX_PARTS]], 0)
        cfg["parts"] = tf.reshape(config[:, C_PARTS : C_PARTS + MAX_PARTS], shape)
        shape = tf.concat([[-1], tf.constant(extra, tf.int32), [MAX_FORCED_TITLE]], 0)
        cfg["title"] = tf.reshape(config[:, C_TITLE:], shape)
        return cfg

    # --- public API -------------------------------------------------------------------------

    @tf.autograph.experimental.do_not_convert
    def initial(self, config) -> tf.Tensor:
        """(N, S) int32: the state before the first character (``_Machine.initial``)."""
        n = tf.shape(config)[0]
        s = np.zeros(STATE_SIZE, np.int32)
        s[PHASE], s[KIND], s[PICKUP] = H_LIT, (0 if self.template else 5), -1
        return tf.tile(tf.constant(s)[None], [n, 1])

    @staticmethod
    def _fields(state, rank_extra: int = 0) -> dict:
        state = tf.convert_to_tensor(state, tf.int32)
        out = {}
        for i, x in enumerate(tf.unstack(state, STATE_SIZE, axis=-1)):
            for _ in range(rank_extra):
                x = _newaxis(x)
            out[i] = x
        return out

    @tf.autograph.experimental.do_not_convert
    def allowed(self, state, config) -> tf.Tensor:
        """(N, V) bool: ``TuneGrammar.allowed()`` per stream (EOT column = END)."""
        self._memo = _Memo()
        s = self._fields(state, 1)
        cfg = self._cfg(config, 2)
        return self._allowed_fields(s, cfg)

    def _char_step(self, s, cfg):
        """``_step`` for every character of the vocabulary at once: (ok, state after it)."""
        return self._memoized("chars", s, lambda: self._step(s, self.vocab_codes, cfg, False))

    def _allowed_fields(self, s, cfg):
        ok, _ = self._char_step(s, cfg)
        can_end = self._can_end(s, cfg)
        finished = s[FINISHED] > 0
        chars = ok & ~finished
        end = can_end | finished
        false = tf.zeros_like(end)
        return tf.concat([false, false, end, chars], -1)

    @tf.autograph.experimental.do_not_convert
    def plain_allowed(self, state, config) -> tf.Tensor:
        """(N, V) bool: ``TuneGrammar.plain_allowed()``: the plain style with one character
        of look-ahead (evaluated for :data:`LOOKAHEAD_CHARS`), falling back to the plain set,
        then to :meth:`allowed`."""
        self._memo = _Memo()
        return self._plain_fields(self._fields(state, 1), self._cfg(config, 2), config)

    @tf.autograph.experimental.do_not_convert
    def plain_allowed_and_next(self, state, config) -> tuple[tf.Tensor, tuple]:
        """(:meth:`plain_allowed`, the step the mask took): the mask already steps every
        stream over every character; :meth:`take` finishes that step for the token chosen
        (a gather), which equals :meth:`advance` without stepping the grammar again. The
        step is (ok (N, C), can_end (N, 1), the state fields, each (N, C) or (N, 1) where
        the character does not change it)."""
        self._memo = _Memo()
        s = self._fields(state, 1)
        cfg = self._cfg(config, 2)
        plain = self._plain_fields(s, cfg, config)
        ok, new = self._char_step(s, cfg)
        narrow = tf.shape(s[PHASE])
        wide = tf.shape(s[PHASE] + self.vocab_codes * 0)  # (N, C)

        def kept(x):  # as narrow as the character allows
            x = tf.convert_to_tensor(x)
            if x.shape.rank == 2 and x.shape[-1] == self.n_vocab - 3:
                return x
            if x.shape.rank == 0 or (x.shape.rank is not None and x.shape[-1] == 1):
                return tf.broadcast_to(x, narrow)
            return tf.broadcast_to(x, wide)

        fields = tuple(kept(new[k]) for k in range(STATE_SIZE))
        return plain, (kept(ok), tf.broadcast_to(self._can_end(s, cfg), narrow), fields)

    @tf.autograph.experimental.do_not_convert
    def take(self, state, tokens, step) -> tf.Tensor:
        """:meth:`advance` for token ids ``tokens`` (N,), from the ``step`` that
        :meth:`plain_allowed_and_next` returned for ``state``."""
        ok, can_end, fields = step
        s = self._fields(state)
        tokens = tf.convert_to_tensor(tokens, tf.int32)
        column = tf.maximum(tokens - 3, 0)

        def pick(x):  # (N, C) or (N, 1) -> (N,)
            if x.shape[-1] == 1:
                return x[:, 0]
            return tf.gather(x, column, batch_dims=1)

        new = {k: pick(fields[k]) for k in range(STATE_SIZE)}
        code = self._token_codes(tokens)
        return self._taken(s, tokens, pick(ok), self._after_char(s, new, code), can_end[:, 0])

    def _plain_fields(self, s, cfg, config):
        options = self._allowed_fields(s, cfg)
        plain = self._plain_style(options, s[PHASE] >= READY, s[LASTCH], s[PSLUR])
        if self._lookahead:
            dead = self._bracket_dead(s, cfg)
        else:
            dead = tf.zeros_like(plain)
        if self.full_lookahead:
            dead = dead | self._exotic_dead(s, cfg, config, dead)
        kept = plain & ~dead
        finished = s[FINISHED] > 0
        has_kept = tf.reduce_any(kept, -1, keepdims=True)
        has_plain = tf.reduce_any(plain, -1, keepdims=True)
        out = _where(has_kept, kept, _where(has_plain, plain, options))
        return _where(finished, options, out)

    def _exotic_dead(self, s, cfg, config, dead):  # see also needs_full_lookahead()
        """The look-ahead for every character, for streams inside ``!..!``, ``".."``, a field
        or a continuation (phases the plain style itself never enters); only evaluated when
        some stream is in one (``tf.cond``). The branch is a function of its own that is
        never inlined: a second grammar step for every character (~16k graph nodes), it is
        optimised and instantiated only when first taken, not with the loop around it (a
        SavedModel's first constrained call 31-36 s -> 20-24 s, docs/benchmarks.md); it works
        on a copy of the memo (:meth:`_apart`)."""
        exotic = (s[PHASE] >= READY) & ~_isin(s[PHASE], list(_PLAIN_PHASES))  # (N, 1)

        def look():
            return self._apart(lambda: self._dead(s, cfg, config, self.chars)) & exotic

        look = tf.function(look, autograph=False, experimental_attributes={"_noinline": True})
        return tf.cond(tf.reduce_any(exotic), look, lambda: tf.zeros_like(dead))

    def _dead(self, s, cfg, config, chars):
        """(N, V): the characters of ``chars`` after which the plain style has nothing left
        (the look-ahead of ``TuneGrammar.plain_allowed``), for state fields ``s`` (N, 1)."""
        chars = [c for c in chars if len(c) == 1 and ord(c) < 128]
        if not chars:
            return tf.zeros_like(s[PHASE] + tf.zeros([self.n_vocab], tf.int32), tf.bool)
        ahead = tf.constant(_codes(chars), tf.int32)  # (R,)
        ok, after = self._step(s, ahead, cfg)  # fields (N, R)
        after = self._after_char(s, after, ahead, apply_close=False)
        a = {k: v[..., None] for k, v in after.items()}  # (N, R, 1)
        then = self._allowed_fields(a, self._cfg(config, 3))  # (N, R, V)
        then_plain = self._plain_style(then, a[PHASE] >= READY, a[LASTCH], a[PSLUR])
        live = tf.reduce_any(then_plain, -1) | ~ok  # (N, R)
        columns = np.zeros((len(chars), self.n_vocab), bool)
        for r, c in enumerate(chars):
            columns[r, self.chars.index(c) + 3] = True
        return tf.reduce_any(~live[..., None] & tf.constant(columns), -2)  # (N, V)

    def _plain_style(self, allowed, in_body, last, pslur):
        """:func:`musicseq.notation.grammar.plain_style` on a (..., V) mask."""
        codes = tf.concat([tf.zeros([3], tf.int32), self.vocab_codes], 0)
        is_char = tf.range(self.n_vocab) >= 3

        def cls(name):
            return _gather(self._cls[name], codes) & is_char

        def col(c):
            return _eq(codes, ord(c)) & is_char

        plain = allowed & ~cls("plain_banned")
        plain = plain & ~(col(")") & (pslur <= 0))
        digits = cls("digit")
        after_paren = _eq(last, ord("("))
        tuplet_can_start = tf.reduce_any(allowed & digits, -1, keepdims=True)
        plain = plain & ~(col("(") & (pslur > 0) & ~(after_paren & tuplet_can_start))
        # A slur closes in its bar: no bar token ('|', ':', and after '[' an ending or '[|]'),
        # line break or end while one is open.
        breaks = col("|") | col(":") | col("\n") | _eq(tf.range(self.n_vocab), EOT)
        breaks = breaks | ((digits | col("|")) & _eq(last, ord("[")))
        plain = plain & ~(breaks & (pslur > 0))
        plain = _where(after_paren & (pslur >= 2), plain & digits, plain)
        heads = cls("note_heads")
        no_heads = ~tf.reduce_any(plain & heads, -1, keepdims=True)
        plain = plain & ~(cls("before_note") & no_heads)
        notes = plain & heads
        deco = _isin(last, _codes(".~")) & tf.reduce_any(notes, -1, keepdims=True)
        plain = _where(deco, notes, plain)
        plain = plain & ~(col(" ") & _isin(last, _codes(" \n")))
        plain = plain & ~(col("\n") & _eq(last, ord("\n")))
        return _where(in_body, plain, allowed)

    @tf.autograph.experimental.do_not_convert
    def advance(self, state, config, tokens) -> tf.Tensor:
        """The state after token ids ``tokens`` (N,). EOT finishes a stream (if the tune may
        end; otherwise, as for any token the grammar rejects, FINISHED becomes 2); PAD keeps a
        finished stream as it is. A requested close applies at the next READY state."""
        self._memo = _Memo()
        s = self._fields(state)
        cfg = self._cfg(config, 1)
        tokens = tf.convert_to_tensor(tokens, tf.int32)
        code = self._token_codes(tokens)
        ok, new = self._step(s, code, cfg)
        return self._taken(s, tokens, ok, self._after_char(s, new, code), self._can_end(s, cfg))

    def _token_codes(self, tokens):
        """The character code of each token id (0 for the reserved ids)."""
        return _gather(tf.concat([tf.zeros([3], tf.int32), self.vocab_codes], 0), tokens)

    def _taken(self, s, tokens, ok, new, can_end) -> tf.Tensor:
        """(N, STATE_SIZE): the state after token ids ``tokens``, given the step over their
        characters (``ok``, ``new``; ignored for the reserved ids) and whether the tune may
        end."""
        is_char = tokens >= 3
        finished = s[FINISHED] > 0
        out = {}
        for k in range(STATE_SIZE):
            out[k] = _where(is_char & ok & ~finished, new[k], s[k])
        rejected = ~finished & ((is_char & ~ok) | (_eq(tokens, EOT) & ~can_end))
        rejected = rejected | ~finished & _isin(tokens, [PAD, UNK])
        ended = ~finished & _eq(tokens, EOT) & can_end
        out[FINISHED] = _where(rejected, 2, _where(ended, 1, s[FINISHED]))
        return tf.stack([out[k] for k in range(STATE_SIZE)], -1)

    def _after_char(self, s, new, code, apply_close=True):
        """Bookkeeping after a character: last character, plain slur count, pending close."""
        new = dict(new)
        in_body = s[PHASE] >= READY
        delta = (
            _i(_eq(code, ord("(")))
            - _i(_eq(code, ord(")")))
            - _i(_gather(self._cls["digit"], code) & _eq(s[LASTCH], ord("(")))
        )
        new[PSLUR] = s[PSLUR] + _where(in_body, delta, 0)
        new[LASTCH] = tf.broadcast_to(code, tf.shape(new[PSLUR]))
        if apply_close:
            apply = (s[CLOSE_REQ] > 0) & _eq(new[PHASE], READY) & _eq(new[CLOSING], 0)
            new[CLOSING] = _where(apply, 1, new[CLOSING])
        return new

    @tf.autograph.experimental.do_not_convert
    def close(self, state, close_mask) -> tf.Tensor:
        """``TuneGrammar.close()`` for the streams where ``close_mask`` is True."""
        state = tf.convert_to_tensor(state, tf.int32)
        mask = tf.convert_to_tensor(close_mask, tf.bool)
        ready = _eq(state[:, PHASE], READY)
        req = _where(mask, 1, state[:, CLOSE_REQ])
        closing = _where(mask & ready, 1, state[:, CLOSING])
        cols = tf.unstack(state, axis=1)
        cols[CLOSE_REQ], cols[CLOSING] = req, closing
        return tf.stack(cols, 1)

    @tf.autograph.experimental.do_not_convert
    def finished(self, state) -> tf.Tensor:
        """(N,) int32: 0 running, 1 ended with EOT, 2 a token was rejected."""
        return tf.convert_to_tensor(state, tf.int32)[:, FINISHED]

    # --- the step (``_Machine.step``) --------------------------------------------------------

    def _step(self, s: dict, ch, cfg: dict, norm: bool = True) -> tuple[tf.Tensor, dict]:
        """(ok, state after ``ch``) for state fields ``s`` broadcast against codes ``ch``
        (with ``norm=False`` a field the character does not change may stay narrower)."""
        ch = tf.convert_to_tensor(ch, tf.int32)
        like = s[PHASE] + ch * 0
        phase = s[PHASE]
        header = phase < READY
        ok_h, st_h = self._lazy(header, lambda: self._header(s, ch, cfg), s, like)
        ok_b, st_b = self._body_step(s, ch, cfg)
        # COL (the reference's step, for body states)
        col = s[COL]
        is_space = _isin(ch, _codes(" \t`"))
        new_col = _where(
            _eq(ch, 10),
            0,
            _where(
                is_space,
                _where(_isin(col, [0, BLANK]), BLANK, 2),
                _where(_eq(col, 0) & self._c("alpha", ch), 1, 2),
            ),
        )
        st_b = dict(st_b)
        st_b[COL] = _where(st_b[PHASE] >= READY, new_col, st_b[COL])
        ok, out = _choose([(header, ok_h, st_h), (True, ok_b, st_b)], s)
        return ok, (_norm(out, like) if norm else out)

    def _c(self, name, ch):
        return _gather(self._cls[name], ch)

    # --- header -----------------------------------------------------------------------------

    def _header(self, s, ch, cfg):
        phase = s[PHASE]
        # H_LIT
        kind = s[KIND]
        node = s[NODE]
        lit_len = _gather(self._lit_len, kind)
        expected = _gather(self._lit, tf.minimum(kind, 5) * 4 + tf.clip_by_value(node, 0, 3))
        ok_lit = _eq(ch, expected)
        done_lit = _eq(node + 1, lit_len)
        st_lit = _upd(s, node=node + 1)
        if self.template:
            st_done = self._next_item(st_lit)
        else:
            st_done = _upd(st_lit, phase=H_VALUE, kind=F_X, node=0, flag=0)
        st_l = _choose([(done_lit, True, st_done)], st_lit)[1]
        ok_l = ok_lit
        # H_LETTER
        field = tf.zeros_like(ch) - 1
        for i, letter in enumerate(ref._FIELD_LETTERS):
            field = _where(_eq(ch, ord(letter)), i, field)
        ok_letter = (field > F_X) & self._field_open(s, field, cfg)
        st_letter = _upd(s, phase=H_COLON, kind=field)
        # H_COLON
        ok_colon = _eq(ch, ord(":"))
        st_colon = _upd(s, phase=H_VALUE, node=0, flag=0)
        # H_VALUE
        newline = _eq(ch, 10)
        done = self._value_done(s[KIND], node, s[FLAG], cfg)
        ok_fd, st_fd = self._field_done(s, cfg)
        ok_v, vnode, vflag = self._value_step(s[KIND], node, s[FLAG], ch, cfg)
        st_v = _upd(s, node=vnode, flag=vflag)
        ok_value, st_value = _choose([(newline, done & ok_fd, st_fd), (True, ok_v, st_v)], s)
        return _choose(
            [
                (_eq(phase, H_LIT), ok_l, st_l),
                (_eq(phase, H_LETTER), ok_letter, st_letter),
                (_eq(phase, H_COLON), ok_colon, st_colon),
                (True, ok_value, st_value),
            ],
            s,
        )

    def _field_open(self, s, field, cfg):
        seen = s[SEEN]
        t_count = seen // ref._T_COUNT
        bit = tf.zeros_like(field)
        for f, b in ref._SEEN_BITS.items():
            bit = _where(_eq(field, f), b, bit)
        open_ = _eq(tf.bitwise.bitwise_and(seen, bit), 0)
        if not self.f_q_field:
            open_ = open_ & tf.not_equal(field, F_Q)
        lengths_ok = (cfg["L"] >= 0) | self.lengths_ok
        open_ = open_ & (tf.not_equal(field, F_L) | lengths_ok)
        open_ = _where(
            _eq(field, F_K), tf.bitwise.bitwise_and(seen, ref._SEEN_BITS[F_M]) > 0, open_
        )
        open_ = open_ & (t_count > 0)
        return _where(_eq(field, F_T), t_count < ref.MAX_T_FIELDS, open_)

    def _next_item(self, s):
        seen = s[SEEN] + 1
        index = tf.minimum(seen, len(self.machine.items) - 1 if self.template else 0)
        return _upd(
            s,
            seen=seen,
            phase=_gather(self._item_phase, index),
            kind=_gather(self._item_kind, index),
            node=0,
            flag=0,
        )

    def _field_done(self, s, cfg):
        field = s[KIND]
        word = self._choice_word(field, s[NODE])
        value = _gather(self._val_value, tf.maximum(word, 0))
        is_choice = self._is_choice(field, cfg)
        st = _upd(
            s,
            bar=_where(is_choice & _eq(field, F_M), value, s[BAR]),
            unit=_where(is_choice & _eq(field, F_L), value, s[UNIT]),
            tonic=_where(is_choice & _eq(field, F_K), value, s[TONIC]),
        )
        st_k = self._body_start(st, cfg)
        if self.template:
            st_next = self._next_item(st)
        else:
            bit = tf.zeros_like(field)
            for f, b in ref._SEEN_BITS.items():
                bit = _where(_eq(field, f), b, bit)
            seen = _where(
                _eq(field, F_T), st[SEEN] + ref._T_COUNT, tf.bitwise.bitwise_or(st[SEEN], bit)
            )
            st_next = _upd(st, seen=seen, phase=H_LETTER, node=0, flag=0, kind=0)
        return tf.constant(True), _choose([(_eq(field, F_K), True, st_k)], st_next)[1]

    def _body_start(self, s, cfg):
        bar = s[BAR]
        default = _where(bar * 4 >= 3 * TICKS, TICKS // 8, TICKS // 16)
        unit = _where(_eq(s[UNIT], 0), default, s[UNIT])
        first_rep = _eq(cfg["parts"][..., 0], 2)
        part_phase = _where(cfg["form"], _where(first_rep, PART_START, PART_BODY), s[PART_PHASE])
        return _upd(
            s,
            unit=unit,
            phase=READY,
            node=0,
            flag=0,
            kind=0,
            seen=0,
            first=1,
            prev=P_NEWLINE,
            col=0,
            part=0,
            pfirst=1,
            pickup=-1,
            part_phase=part_phase,
        )

    # --- header values (``_value_step``, ``_value_done``) -------------------------------------

    def _is_choice(self, field, cfg):
        """M:, L:, K: values, and T: when forced."""
        return _isin(field, [F_M, F_L, F_K]) | (_eq(field, F_T) & (cfg["tlen"] >= 0))

    def _choice_global(self, field, node):
        offset = _where(
            _eq(field, F_M),
            self._val_offset[0],
            _where(_eq(field, F_L), self._val_offset[1], self._val_offset[2]),
        )
        return tf.clip_by_value(offset + node, 0, self.values.n_nodes - 1)

    def _choice_node_ok(self, field, gnode, cfg):
        """Is a value allowed for this stream below trie node ``gnode``?"""
        sel = _where(
            _eq(field, F_M),
            cfg["M"],
            _where(_eq(field, F_L), cfg["L"], cfg["K"]),
        )
        offset = _where(
            _eq(field, F_M),
            self.values.word_offset[0],
            _where(_eq(field, F_L), self.values.word_offset[1], self.values.word_offset[2]),
        )
        g = tf.clip_by_value(gnode, 0, self.values.n_nodes - 1)
        word = tf.clip_by_value(sel + offset, 0, self._n_val_words - 1)
        forced = _gather(self._val_anc, g * self._n_val_words + word)
        cad = cfg["cadence"] & _eq(field, F_K)
        free = _where(cad, _gather(self._val_cad_node, g), _gather(self._val_free_node, g))
        return (gnode >= 0) & _where(sel >= 0, forced, free)

    def _choice_word(self, field, node):
        return _gather(self._val_word, self._choice_global(field, node))

    def _title_at(self, node, cfg):
        """The forced title's character at ``node``."""
        index = tf.range(MAX_FORCED_TITLE)
        hit = _eq(index, node[..., None])
        return tf.reduce_sum(_where(hit, cfg["title"], 0), -1)

    def _value_step(self, field, node, flag, ch, cfg):
        """(ok, node, flag) after ``ch`` in the value of ``field`` (the reference's specs)."""
        # V_CHOICE: M L K tries, or the forced title.
        gnode = self._choice_global(field, node)
        child = _gather(self._val_children, gnode * 128 + ch)
        ok_choice = self._choice_node_ok(field, child, cfg)
        local_child = child - (gnode - node)  # gnode is never clipped for a choice field
        ok_title = (node < cfg["tlen"]) & _eq(ch, self._title_at(node, cfg))
        is_title = _eq(field, F_T) & (cfg["tlen"] >= 0)
        ok_choice = _where(is_title, ok_title, ok_choice)
        node_choice = _where(is_title, node + 1, local_child)
        # V_TEXT: T (title chars, 72, nonblank), R (title chars, 24), P (part chars, 24, nonblank)
        chars = _where(_eq(field, F_P), self._c("part", ch), self._c("title", ch))
        limit = _where(_eq(field, F_T), ref.MAX_TITLE, ref.MAX_TEXT)
        nonblank = _isin(field, [F_T, F_P])
        space = _eq(ch, 32)
        ok_text = chars & (node < limit)
        ok_text = ok_text & ~(
            space & nonblank & _eq(tf.bitwise.bitwise_and(flag, 1), 0) & (node >= limit - 1)
        )
        flag_text = tf.bitwise.bitwise_or(flag, _i(~space))
        # V_DIGITS: X
        ok_digits = self._c("digit", ch) & (node < ref.MAX_X_DIGITS)
        # V_TEMPO: Q
        ok_tempo, node_tempo = self._tempo_step(node, ch)
        is_text = _isin(field, [F_T, F_R, F_P]) & ~is_title
        ok = _where(
            self._is_choice(field, cfg),
            ok_choice,
            _where(is_text, ok_text, _where(_eq(field, F_X), ok_digits, ok_tempo)),
        )
        new_node = _where(
            self._is_choice(field, cfg),
            node_choice,
            _where(_eq(field, F_Q), node_tempo, node + 1),
        )
        new_flag = _where(is_text, flag_text, _where(_eq(field, F_Q), 0, flag))
        return ok, new_node, new_flag

    def _value_done(self, field, node, flag, cfg):
        # a node holding a word this stream may take
        gword = self._choice_word(field, node)
        sel = _where(
            _eq(field, F_M),
            cfg["M"],
            _where(_eq(field, F_L), cfg["L"], cfg["K"]),
        )
        offset = _where(
            _eq(field, F_M),
            self.values.word_offset[0],
            _where(_eq(field, F_L), self.values.word_offset[1], self.values.word_offset[2]),
        )
        cad = cfg["cadence"] & _eq(field, F_K)
        free = _where(
            cad,
            _gather(self._val_cad_word, tf.maximum(gword, 0)),
            _gather(self._val_free_word, tf.maximum(gword, 0)),
        )
        word_ok = (gword >= 0) & _where(sel >= 0, _eq(gword, sel + offset), free)
        is_title = _eq(field, F_T) & (cfg["tlen"] >= 0)
        done_choice = _where(is_title, _eq(node, cfg["tlen"]), word_ok)
        nonblank = _isin(field, [F_T, F_P])
        done_text = (tf.bitwise.bitwise_and(flag, 1) > 0) | ~nonblank
        done_digits = node > 0
        done_tempo = _isin(node, sorted(ref._TEMPO_FINAL))
        is_text = _isin(field, [F_T, F_R, F_P]) & ~is_title
        return _where(
            self._is_choice(field, cfg),
            done_choice,
            _where(is_text, done_text, _where(_eq(field, F_X), done_digits, done_tempo)),
        )

    def _tempo_step(self, node, ch):
        """``_tempo_step``: Q: values (1/4=120, 80, 3/8=104 "Slow", "Andante")."""
        digit = self._c("digit", ch)
        quote = _eq(ch, ord('"'))
        space = _eq(ch, 32)
        quotes = self.f_quote_ok
        bad = tf.constant(-1)
        n0 = _where(
            quote,
            10 if quotes else -1,
            _where(_isin(ch, _codes("13")), 1, _where(_isin(ch, _codes("23456789")), 2, bad)),
        )
        n1 = _where(_eq(ch, ord("/")), 5, _where(digit, 3, bad))
        n23 = _where(digit, node + 1, _where(space & _eq(node, 3) & quotes, 8, bad))
        n4 = _where(space & quotes, 8, bad)
        n5 = _where(_isin(ch, _codes("248")), 6, bad)
        n6 = _where(_eq(ch, ord("=")), 7, bad)
        n7 = _where(_isin(ch, _codes("123456789")), 2, bad)
        n8 = _where(quote, 10, bad)
        text_ok = self._c("title", ch) & ~quote & (node - 10 < ref.MAX_TEXT)
        n10 = _where(quote, _where(node > 10, 9, bad), _where(text_ok, node + 1, bad))
        out = _where(
            _eq(node, 0),
            n0,
            _where(
                _eq(node, 1),
                n1,
                _where(
                    _isin(node, [2, 3]),
                    n23,
                    _where(
                        _eq(node, 4),
                        n4,
                        _where(
                            _eq(node, 5),
                            n5,
                            _where(
                                _eq(node, 6),
                                n6,
                                _where(
                                    _eq(node, 7),
                                    n7,
                                    _where(_eq(node, 8), n8, _where(node >= 10, n10, bad)),
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        )
        return out >= 0, out

    @property
    def f_quote_ok(self) -> bool:
        return '"' in self.alphabet

    # --- body: dispatch (``_Machine._body``) ----------------------------------------------------

    def _body_step(self, s, ch, cfg):
        """The body part of the step: continuations of a pending note or bar token on ``s``,
        else the pending token is settled (``settle``) and ``ch`` dispatched on its phase."""
        phase = s[PHASE]
        in_note = _eq(phase, NOTE)
        in_bartok = _eq(phase, BARTOK)
        ok_settle, u, u2, pre = self._dispatch_state(s, cfg)
        fc = _eq(u[PHASE], FIELD_COLON)
        p2 = u2[PHASE]

        ok_r, st_r = self._ready(u2, ch, cfg, pre)
        # The rarer phases' branches run only when some stream is in one.
        like = p2 + ch * 0

        def lazy(at, compute):
            return self._lazy(at, compute, u2, like)

        ok_a, st_a = lazy(_eq(p2, ACC_), lambda: self._acc_char(u2, ch, cfg, pre))
        ok_lb, st_lb = lazy(_eq(p2, LBRACKET), lambda: self._bracket(u2, ch, cfg, pre))
        ok_ch, st_ch = lazy(_eq(p2, CHORD), lambda: self._chord(u2, ch, cfg, pre))
        ok_g, st_g = lazy(_eq(p2, GRACE), lambda: self._grace(u2, ch, cfg, pre))
        ok_q, st_q = self._quote(u2, ch)
        ok_b, st_b = self._bang(u2, ch)
        colon = _eq(ch, ord(":"))
        st_colon = _upd(u, phase=_where(fc, FIELD_VALUE, INLINE_VALUE), node=0, flag=0)
        ok_f, st_f = lazy(
            _isin(p2, [FIELD_VALUE, INLINE_VALUE]),
            lambda: self._field_char(u2, ch, _eq(p2, INLINE_VALUE), cfg),
        )
        newline = _eq(ch, 10)
        dispatch = [
            (fc & colon, True, st_colon),
            (_eq(p2, READY), ok_r, st_r),
            (_eq(p2, ACC_), ok_a, st_a),
            (_eq(p2, LBRACKET), ok_lb, st_lb),
            (_eq(p2, CHORD), ok_ch, st_ch),
            (_eq(p2, GRACE), ok_g, st_g),
            (_eq(p2, QUOTE), ok_q, st_q),
            (_eq(p2, BANG), ok_b, st_b),
            (_eq(p2, BSLASH), newline, _upd(u2, phase=READY, prev=P_NEWLINE)),
            (_eq(p2, INLINE_COLON), colon, st_colon),
            (_isin(p2, [FIELD_VALUE, INLINE_VALUE]), ok_f, st_f),
            (_eq(p2, DONE), newline, _upd(u2, phase=DONE_NL)),
        ]
        ok_d, st_d = _choose(dispatch, u2)

        # Continuations of the note (octave marks, length suffix) or of the bar token.
        ok_nc, st_nc = self._note_cont(s, ch, cfg)
        note_cont = in_note & _isin(ch, _codes(",'0123456789/"))
        child = _gather(self._bar_children, s[NODE] * 128 + ch)
        bar_cont = in_bartok & (child >= 0)
        below = _gather(self._bar_below, child)
        tok_ok_s = self._token_ok(s, cfg)
        ok_bc = tf.reduce_any(below & tok_ok_s, -1)
        return _choose(
            [
                (note_cont, ok_nc, st_nc),
                (bar_cont, ok_bc, _upd(s, node=child)),
                ((in_note | in_bartok) & ~ok_settle, False, s),
                (True, ok_d, st_d),
            ],
            s,
        )

    def _dispatch_state(self, s, cfg):
        """(settled ok, settled state u, u2, per-stream tables of u2): the state a character
        is dispatched on. u2 is u, except that 'M' at a field's place without ':' after it
        was a decoration (FIELD_COLON becomes READY)."""

        def compute():
            ok_settle, u = self._settle(s, cfg)
            fc = _eq(u[PHASE], FIELD_COLON)
            letter = _gather(tf.constant(_codes(ref._FIELD_LETTERS)), u[KIND])
            deco_letter = fc & self._c("deco", letter)
            u2 = _choose(
                [(deco_letter, True, _upd(u, phase=READY, kind=0, prev=P_DECO, after_bar=0))], u
            )[1]
            return ok_settle, u, u2, self._precompute(u2, cfg)

        return self._memoized("dispatch", s, compute)

    def _bracket_dead(self, s, cfg):
        """(N, V): '[' is dead for the plain style: after it only an inline field (K: M: L:,
        not plain) could follow, not '[|]', '[1', '[2' or a chord. Equal to the generic
        look-ahead (``_dead``) for the phases of the plain style, where '[' is a READY
        character of the settled state."""
        _, _, u2, pre = self._dispatch_state(s, cfg)
        tok = pre["tok"]
        live = tf.zeros_like(pre["fits_f"])
        if self.bs_bar and self.f_inv_bar:
            live = live | tok[..., _TOK["[|]"]]
        for c in "12":
            if self.bs_ending[c]:
                live = live | tok[..., _TOK["[" + c]]
        live = live & (s[PSLUR] <= 0)  # no bar token while a slur is open (plain style)
        if self.f_rbracket and self.bs_notes:
            live = live | (_eq(u2[CLOSING], 0) & pre["fits_f"])
        column = np.zeros(self.n_vocab, bool)
        column[self.chars.index("[") + 3] = True
        return ~live & _eq(u2[PHASE], READY) & tf.constant(column)

    def _precompute(self, u, cfg) -> dict:
        """What the dispatch needs that does not depend on the character, per stream."""
        pa_t = self._place_all(u, True, cfg)
        pa_f = self._place_all(u, False, cfg)
        sok_t = self._suffix_ok_all(u, True, cfg, pa_t, pa_f)
        sok_f = self._suffix_ok_all(u, False, cfg, pa_t, pa_f)
        tok = self._token_ok(u, cfg)
        return {
            "fits_t": tf.reduce_any(pa_t, -1),
            "fits_f": tf.reduce_any(pa_f, -1),
            "head_t": tf.reduce_any(sok_t, -1),
            "head_f": tf.reduce_any(sok_f, -1),
            "tok": tok,
        }

    def _memoized(self, name, s, compute):
        """``compute()`` once per state object while a graph is built (settle, note suffixes
        and bar tokens are needed by the step and by ``can_end``)."""
        key = (name, *(id(s[k]) for k in sorted(s)))
        got = self._memo.table.get(key)
        if got is None:  # the state is kept with the value: the ids stay unique
            got = self._memo.table[key] = (dict(s), compute())
        return got[1]

    def _apart(self, compute):
        """``compute()`` on a copy of the memo, for a branch traced into a graph of its own
        (a ``tf.cond`` branch, a function): what it computes is not reused outside it."""
        outer = self._memo
        self._memo = _Memo()
        self._memo.table = dict(outer.table)
        try:
            return compute()
        finally:
            self._memo = outer

    def _lazy(self, active, compute, s: dict, like) -> tuple[tf.Tensor, dict]:
        """``compute()`` → (ok, state), evaluated only when some stream is ``active`` (a
        ``tf.cond``): for a case of :func:`_choose` whose condition is ``active``, whose
        values do not matter when no stream takes it. Otherwise (False, ``s``). The branch
        returns only the fields it changed (the others stay ``s``'s tensors, which keeps
        ``_choose`` from selecting them), both branches broadcast to the shape of ``like``;
        it works on a copy of the memo (:meth:`_apart`)."""
        changed: list[int] = []
        shape = tf.shape(like)

        def run():
            ok, st = self._apart(compute)
            changed.extend(k for k in sorted(st) if st[k] is not s[k])
            ok = tf.broadcast_to(tf.convert_to_tensor(ok, tf.bool), shape)
            return ok, [tf.broadcast_to(st[k], shape) for k in changed]

        def skip():  # traced after run(): `changed` is known
            return tf.zeros(shape, tf.bool), [tf.broadcast_to(s[k], shape) for k in changed]

        ok, values = tf.cond(tf.reduce_any(active), run, skip)
        return ok, {**s, **dict(zip(changed, values))}

    def _settle(self, s, cfg):
        """``_Machine.settle``: finish a note or bar token that could end here."""
        return self._memoized("settle", s, lambda: self._settle_now(s, cfg))

    def _note_sok(self, s, cfg):
        """``_suffix_ok`` for every suffix, for the note being written in ``s``."""
        tonic = tf.bitwise.bitwise_and(s[FLAG], IS_TONIC) > 0
        return self._memoized("sok", s, lambda: self._suffix_ok_all(s, tonic, cfg))

    def _settle_now(self, s, cfg):
        sok = self._note_sok(s, cfg)
        ok_n, st_n = self._end_note(s, sok, cfg)
        word = _gather(self._bar_word, s[NODE])
        ok_t, st_t = self._token(s, tf.maximum(word, 0), cfg)
        return _choose(
            [
                (_eq(s[PHASE], NOTE), ok_n, st_n),
                (_eq(s[PHASE], BARTOK), ok_t & (word >= 0), st_t),
                (True, True, s),
            ],
            s,
        )

    def _can_end(self, s, cfg):
        """``_Machine.can_end``."""
        ok, t = self._settle(s, cfg)
        phase = t[PHASE]
        ready = (
            _eq(phase, READY)
            & _eq(t[CONTENT], 0)
            & (t[AFTER_BAR] > 0)
            & _eq(t[REPEAT], 0)
            & _eq(t[TUP_LEFT], 0)
            & _eq(t[BROKEN_], 0)
            & _eq(t[NEED_NOTE], 0)
            & (t[MID_SEEN] > 0)
            & ~(cfg["cadence"] & _eq(t[LAST_TONIC], 0))
        )
        ends = (t[CLOSING] > 0) | (~cfg["form"] & (t[BARS] >= self.min_bars))
        return ok & (_isin(phase, [DONE, DONE_NL]) | (ready & ends))

    # --- body: between tokens (``_ready``) -----------------------------------------------------

    def _ready(self, s, ch, cfg, pre):
        prev, closing = s[PREV], s[CLOSING] > 0
        is_note = self._c("note", ch) | self._c("rest", ch) | self._c("acc", ch)
        ok_n, st_n = self._note_start(s, ch, pre["head_t"], pre["head_f"], cfg)
        # bar tokens: the trie's first node for '|' or ':', if a token below it can be written
        bar_ok = []
        for c in "|:":
            child = int(self.bars.children_np[ord(c)])
            if child < 0:
                bar_ok.append(tf.constant(False))
            else:
                below = self._bar_below[child]
                bar_ok.append(tf.reduce_any(below & pre["tok"], -1))
        child = _gather(self._bar_children, ch)
        ok_bar = _where(_eq(ch, ord("|")), bar_ok[0], bar_ok[1])
        ok_bar = ok_bar & ~_eq(prev, P_BAR) & ~(_eq(ch, ord(":")) & _eq(s[COL], 1))
        ok_bar = ok_bar & (child >= 0)
        st_bar = _upd(s, phase=BARTOK, node=child)
        # '[': something must be able to follow it
        st_lb = _upd(s, phase=LBRACKET, node=0)
        ok_lb = self._bracket_any(s, cfg, pre)
        # space
        ok_sp = ~(closing & ~(_eq(prev, P_BAR) & (s[REPEAT] > 0)))
        st_sp = _upd(s, prev=P_SPACE)
        # ')'
        ok_rp = ~(_isin(prev, [P_LPAREN, P_TUPLET]) | (closing & _eq(s[SLUR], 0)))
        st_rp = _upd(s, slur=tf.maximum(s[SLUR] - 1, 0), prev=P_RPAREN)
        # line breaks and continuations
        backslash = _eq(ch, ord("\\"))
        bad_nl = (
            (backslash & (not self.f_newline))
            | _eq(prev, P_NEWLINE)
            | (_eq(ch, 10) & _eq(s[COL], BLANK))
            | (s[TUP_LEFT] > 0)
            | ((s[NEED_NOTE] > 0) & _eq(s[BROKEN_], 0))
        )
        st_nl = _upd(s, phase=_where(backslash, BSLASH, s[PHASE]), prev=P_NEWLINE)
        # body field lines (K: P: and without a form M: L:) at the start of a line and bar
        field = _gather(self._body_fields, _i(cfg["form"]) * 128 + ch)
        is_field = (field >= 0) & _eq(s[COL], 0) & self._at_bar_start(s, cfg)
        st_field = _upd(s, phase=FIELD_COLON, kind=field)
        st_deco = _upd(s, prev=P_DECO, after_bar=0)
        st_quote = _upd(s, phase=QUOTE, node=0, after_bar=0)
        bang_child = int(self.bang.children_np[ord("!")]) if self.f_bang else 0
        st_bang = _upd(s, phase=BANG, node=bang_child, after_bar=0)
        ok_lp = (s[SLUR] < ref.MAX_SLUR) & pre["fits_t"]
        st_lp = _upd(s, slur=s[SLUR] + 1, prev=P_LPAREN, need_note=1, after_bar=0)
        # tuplets (2 (3
        p = ch - ord("0")
        q = _where(_eq(p, 2), 3, 2)
        ok_tup = (
            _eq(prev, P_LPAREN)
            & _gather(self._tuplet_ok, ch)
            & _eq(s[TUP_LEFT], 0)
            & _eq(s[BROKEN_], 0)
            & self._tuplet_completes(s, s[ELAPSED], p, p, q, cfg)
        )
        st_tup = _upd(s, slur=s[SLUR] - 1, tup_left=p, tup_p=p, prev=P_TUPLET)
        ok_tie = _isin(prev, [P_NOTE, P_BROKEN, P_GRACE])
        st_tie = _upd(s, prev=P_TIE)
        ok_gt, st_gt = self._broken(s, ">", cfg)
        ok_lt, st_lt = self._broken(s, "<", cfg)
        st_grace = _upd(s, phase=GRACE, ctx=IN_GRACE, ch_n=0, after_bar=0)
        after_grace = s[CH_N] > 0  # a grace group waits for its note

        def is_(c):
            return _eq(ch, ord(c))

        return _choose(
            [
                (is_note, ok_n, st_n),
                (is_("|") | is_(":"), ok_bar, st_bar),
                (is_("["), ok_lb, st_lb),
                (is_(" "), ok_sp, st_sp),
                (is_(")"), ok_rp, st_rp),
                (closing, False, s),
                (is_("`") | is_("\t"), True, st_sp),
                (is_("\n") | backslash, ~bad_nl, st_nl),
                (is_field, True, st_field),
                (self._c("deco", ch), ~(is_("~") & after_grace), st_deco),
                (is_('"'), tf.constant(self.f_quote), st_quote),
                (is_("!"), tf.constant(self.f_bang), st_bang),
                (is_("("), ok_lp, st_lp),
                (_isin(ch, _codes("23456789")), ok_tup, st_tup),
                (is_("-"), ok_tie, st_tie),
                (is_(">"), ok_gt, st_gt),
                (is_("<"), ok_lt, st_lt),
                (is_("{"), tf.constant(self.f_brace) & ~after_grace, st_grace),
            ],
            s,
        )

    def _at_bar_start(self, s, cfg):
        busy = (
            (s[CONTENT] > 0)
            | (s[ELAPSED] > 0)
            | (s[TUP_LEFT] > 0)
            | (s[BROKEN_] > 0)
            | (s[NEED_NOTE] > 0)
            | (s[CLOSING] > 0)
        )
        return ~busy & tf.not_equal(s[PART_PHASE], PART_DONE)

    def _broken(self, s, c, cfg):
        """``_broken`` for the symbol character ``c`` ('>' or '<'), per stream."""
        prev = s[PREV]
        last = s[LAST]
        old = s[BROKEN_]  # 1 '>', 2 '>>', 3 '<', 4 '<<'
        single = 1 if c == ">" else 3
        double_ok = self.broken_ok[c + c]
        # 4 * (factor - 1) for each symbol
        f4 = tf.constant([0, 2, 3, -2, -3], tf.int32)
        from_broken = _eq(prev, P_BROKEN)
        ok_double = _eq(old, single) & double_ok
        ok_single = (
            _isin(prev, [P_NOTE, P_TIE, P_RPAREN, P_SPACE, P_DECO, P_OTHER])
            & _eq(old, 0)
            & self.broken_ok[c]
        )
        symbol = _where(from_broken, single + 1, single)
        e4 = 4 * s[ELAPSED] - _where(from_broken, last * _gather(f4, old), 0)
        e4 = e4 + last * _gather(f4, symbol)
        e = e4 // 4
        ok = _isin(last, sorted(ref.UNDOTTED)) & _where(from_broken, ok_double, ok_single)
        ok = ok & _eq(e4 % 4, 0) & (e >= 0) & (e <= self._cap(s, cfg))
        st = _upd(s, elapsed=e, broken=symbol, prev=P_BROKEN, need_note=1)
        ok = ok & tf.reduce_any(self._place_all(st, True, cfg), -1)
        return ok, st

    # --- body: notes ----------------------------------------------------------------------------

    def _note_start(self, s, ch, head_t, head_f, cfg):
        """``_note_start``: an accidental, note letter or rest (in the tune, a chord or grace)."""
        ctx = s[CTX]
        acc_code = _where(_eq(ch, ord("^")), 1, _where(_eq(ch, ord("_")), 3, 5))
        st_acc = _upd(s, phase=ACC_, acc=acc_code)
        ok_acc = self._letters_any(st_acc, head_t, head_f, cfg)
        ok_rest = _eq(ctx, IN_TUNE) & head_f
        st_rest = _upd(s, acc=0, phase=NOTE, node=0, flag=REST, octaves=0)
        ok_l, st_l = self._letter(_upd(s, acc=0), ch, head_t, head_f, cfg)
        return _choose(
            [
                (self._c("acc", ch), ok_acc, st_acc),
                (self._c("rest", ch), ok_rest, st_rest),
                (self._c("note", ch), ok_l, st_l),
            ],
            s,
        )

    def _acc_char(self, s, ch, cfg, pre):
        acc = s[ACC]
        double = (_eq(ch, ord("^")) & _eq(acc, 1)) | (_eq(ch, ord("_")) & _eq(acc, 3))
        st_d = _upd(s, acc=acc + 1)
        ok_d = self._letters_any(st_d, pre["head_t"], pre["head_f"], cfg)
        ok_l, st_l = self._letter(s, ch, pre["head_t"], pre["head_f"], cfg)
        return _choose([(double, ok_d, st_d), (self._c("note", ch), ok_l, st_l)], s)

    def _tonic_match(self, s):
        """(the accidental is none, it makes the tonic letter the key's tonic)."""
        acc = s[ACC]
        shift = _gather(tf.constant([_ACC_SHIFT[i] for i in range(6)], tf.int32), acc)
        return _eq(acc, 0), _eq(shift, s[TONIC] % 3 - 1)

    def _letters_any(self, s, head_t, head_f, cfg):
        """``any(self._letter(s, c) for c in self.letters)`` with s[ACC] set."""
        tonic = s[TONIC]
        t_letter = _where(tonic >= 0, tonic // 3, 7)
        none, match = self._tonic_match(s)
        tflag = _where(none, _eq(s[SPOILED], 0), match) & _eq(s[CTX], IN_TUNE)
        fail = ~none & ~match & self._final_bar(s, cfg)
        tonic_ok = (tonic >= 0) & _gather(self._has_tonic_letter, t_letter)
        tonic_ok = tonic_ok & ~fail & _where(tflag, head_t, head_f)
        return (_gather(self._has_other_letter, t_letter) & head_f) | tonic_ok

    def _letter(self, s, ch, head_t, head_f, cfg):
        """``_letter``: tonic bookkeeping for a note letter, then the head (``_head``)."""
        tonic = s[TONIC]
        is_t_letter = (tonic >= 0) & _eq(_gather(self._letter_index, ch), tonic // 3)
        none, match = self._tonic_match(s)
        is_tonic = _where(none, _eq(s[SPOILED], 0), match)
        spoil = is_t_letter & ~none & ~match
        fail = spoil & self._final_bar(s, cfg)
        tflag = is_t_letter & is_tonic & _eq(s[CTX], IN_TUNE)
        flags = _i(self._c("lower", ch)) * LOWER + _i(tflag) * IS_TONIC
        st = _upd(
            s,
            spoiled=_where(spoil, 1, s[SPOILED]),
            phase=NOTE,
            node=0,
            flag=flags,
            octaves=0,
        )
        return ~fail & _where(tflag, head_t, head_f), st

    def _note_cont(self, s, ch, cfg):
        """``_note_char`` for octave marks and the length suffix (NOTE phase)."""
        flags = s[FLAG]
        octave = _eq(ch, ord(",")) | _eq(ch, ord("'"))
        lower = tf.bitwise.bitwise_and(flags, LOWER) > 0
        ok_oct = (
            _eq(s[NODE], 0)
            & _eq(tf.bitwise.bitwise_and(flags, REST), 0)
            & (s[OCTAVES] < ref.MAX_OCTAVES)
            & tf.not_equal(_eq(ch, ord(",")), lower)
        )
        st_oct = _upd(s, octaves=s[OCTAVES] + 1)
        child = _gather(self._suf_children, s[NODE] * 128 + ch)
        sok = self._note_sok(s, cfg)
        below = _gather(self._suf_below, child)
        ok_suf = (child >= 0) & tf.reduce_any(below & sok, -1)
        return _choose([(octave, ok_oct, st_oct), (True, ok_suf, _upd(s, node=child))], s)

    def _end_note(self, s, sok, cfg):
        """``_end_note``: add the finished note to the bar, chord or grace group."""
        word = _gather(self._suf_word, s[NODE])
        w = tf.maximum(word, 0)
        onehot = _eq(tf.range(len(self.suffix_words)), w[..., None])
        ok = (word >= 0) & tf.reduce_any(onehot & sok, -1)
        ctx = s[CTX]
        base = _upd(s, node=0, octaves=0, acc=0)
        st_grace = _upd(base, phase=GRACE, ch_n=s[CH_N] + 1)
        chord_ticks = s[CH_FIRST] * _gather(self._suf_num, w) // _gather(self._suf_den, w)
        ok_cl, st_cl = self._add(
            _upd(base, ctx=IN_TUNE, ch_n=0, ch_first=0, flag=0), chord_ticks, False, cfg
        )
        uidx = self._unit_index(s[UNIT])
        ticks = _gather(tf.reshape(self._suf_ticks, [-1]), uidx * len(self.suffix_words) + w)
        st_chord = _upd(
            base,
            ch_first=_where(_eq(s[CH_N], 0), ticks, s[CH_FIRST]),
            ch_n=s[CH_N] + 1,
            phase=CHORD,
        )
        tonic = tf.bitwise.bitwise_and(s[FLAG], IS_TONIC) > 0
        ok_t, st_t = self._add(_upd(base, flag=0), ticks, tonic, cfg)
        ok2, st = _choose(
            [
                (_eq(ctx, IN_GRACE), True, st_grace),
                (_eq(ctx, CHORD_LENGTH), ok_cl, st_cl),
                (_eq(ctx, IN_CHORD), True, st_chord),
                (True, ok_t, st_t),
            ],
            s,
        )
        return ok & ok2, st

    def _add(self, s, ticks, tonic, cfg):
        """``_add``: a note of ``ticks`` joins the bar."""
        ok, end, x = self._place(s, ticks, tonic, cfg)
        pending = s[PENDING_MID] > 0
        st = _upd(
            s,
            elapsed=end,
            last=_where(s[BROKEN_] > 0, 0, x),  # no broken rhythm chained onto a pair
            tup_left=tf.maximum(s[TUP_LEFT] - 1, 0),
            broken=0,
            content=1,
            need_note=0,
            ch_n=0,
            last_tonic=_i(tf.convert_to_tensor(tonic)),
            pending_mid=0,
            mid_seen=_where(pending, 1, s[MID_SEEN]),
            phase=READY,
            prev=P_NOTE,
            after_bar=0,
        )
        return ok, st

    # --- body: brackets, chords, grace notes, annotations, fields ---------------------------------

    def _bracket_any(self, s, cfg, pre):
        """``any(self._bracket(s, c) for c in self.bracket_starts)`` after '['."""
        tok = pre["tok"]
        ok = tf.zeros_like(pre["fits_f"])
        if self.bs_bar and self.f_inv_bar:
            ok = ok | tok[..., _TOK["[|]"]]
        for c in "12":
            if self.bs_ending[c]:
                ok = ok | tok[..., _TOK["[" + c]]
        if self.f_rbracket:
            for c in self.bs_fields:
                field = _gather(self._inline_fields, _i(cfg["form"]) * 128 + ord(c))
                ok = ok | ((field >= 0) & self._at_bar_start(s, cfg))
            if self.bs_notes:
                ok = ok | (_eq(s[CLOSING], 0) & pre["fits_f"])
        return ok

    def _bracket(self, s, ch, cfg, pre):
        """``_bracket``: after '[' a chord, an ending [1 [2, the invisible bar [|] or a field."""
        tok = _where(
            _eq(ch, ord("1")),
            _TOK["[1"],
            _where(_eq(ch, ord("2")), _TOK["[2"], _TOK["[|]"]),
        )
        ok_tok, st_tok = self._token(s, tok, cfg)
        field = _gather(self._inline_fields, _i(cfg["form"]) * 128 + ch)
        ok_field = self._at_bar_start(s, cfg) & self.f_rbracket
        st_field = _upd(s, phase=INLINE_COLON, kind=field)
        chord = _upd(s, phase=CHORD, ctx=IN_CHORD, ch_n=0, ch_first=0)
        fits = pre["fits_f"]
        ok_n, st_n = self._note_start(chord, ch, fits, fits, cfg)
        ok_n = ok_n & _eq(s[CLOSING], 0) & self.f_rbracket & fits

        def is_(c):
            return _eq(ch, ord(c))

        return _choose(
            [
                (s[NODE] > 0, is_("]") & ok_tok, st_tok),
                (is_("|"), self.f_inv_bar & pre["tok"][..., _TOK["[|]"]], _upd(s, node=1)),
                (is_("1") | is_("2"), ok_tok, st_tok),
                (field >= 0, ok_field, st_field),
                (self._c("note", ch) | self._c("acc", ch), ok_n, st_n),
            ],
            s,
        )

    def _chord(self, s, ch, cfg, pre):
        st_end = _upd(s, phase=NOTE, ctx=CHORD_LENGTH, node=0, flag=REST, octaves=0)
        ok_n, st_n = self._note_start(s, ch, pre["head_t"], pre["head_f"], cfg)
        return _choose(
            [
                (_eq(ch, ord("]")), s[CH_N] >= 2, st_end),
                (s[CH_N] >= ref.MAX_CHORD, False, s),
                (True, ok_n, st_n),
            ],
            s,
        )

    def _grace(self, s, ch, cfg, pre):
        st_end = _upd(s, phase=READY, ctx=IN_TUNE, ch_n=1, prev=P_GRACE, after_bar=0)
        ok_n, st_n = self._note_start(s, ch, pre["head_t"], pre["head_f"], cfg)
        return _choose(
            [
                (_eq(ch, ord("}")), s[CH_N] > 0, st_end),
                (self._c("grace_deco", ch), True, s),
                (s[CH_N] >= ref.MAX_GRACE, False, s),
                (True, ok_n, st_n),
            ],
            s,
        )

    def _quote(self, s, ch):
        st_end = _upd(s, phase=READY, node=0, prev=P_OTHER, after_bar=0)
        ok = self._c("quote", ch) & (s[NODE] < ref.MAX_QUOTE)
        return _choose(
            [(_eq(ch, ord('"')), s[NODE] > 0, st_end), (True, ok, _upd(s, node=s[NODE] + 1))],
            s,
        )

    def _bang(self, s, ch):
        child = _gather(self._bang_children, s[NODE] * 128 + ch)
        word = _gather(self._bang_word, child)
        st_end = _upd(s, phase=READY, node=0, prev=P_DECO, after_bar=0)
        return _choose(
            [(word >= 0, child >= 0, st_end), (True, child >= 0, _upd(s, node=child))], s
        )

    def _field_char(self, s, ch, inline, cfg):
        """``_field_char``: the value of a body field line or inline field."""
        field = s[KIND]
        flag = s[FLAG]
        space = _eq(ch, 32) & _eq(s[NODE], 0) & _eq(tf.bitwise.bitwise_and(flag, 2), 0) & ~inline
        term = _where(inline, _eq(ch, ord("]")), _eq(ch, 10))
        f1 = tf.bitwise.bitwise_and(flag, 1)
        done = self._value_done(field, s[NODE], f1, cfg)
        ok_a, st_a = self._apply_field(s, field, inline, cfg)
        ok_v, node, vflag = self._value_step(field, s[NODE], f1, ch, cfg)
        st_v = _upd(
            s, node=node, flag=tf.bitwise.bitwise_or(vflag, tf.bitwise.bitwise_and(flag, 2))
        )
        return _choose(
            [
                (space, True, _upd(s, flag=tf.bitwise.bitwise_or(flag, 2))),
                (term, done & ok_a, st_a),
                (True, ok_v, st_v),
            ],
            s,
        )

    def _apply_field(self, s, field, inline, cfg):
        word = self._choice_word(field, s[NODE])
        value = _gather(self._val_value, tf.maximum(word, 0))
        is_m, is_l, is_k = (_eq(field, f) for f in (F_M, F_L, F_K))
        unit = _where(is_l, value, s[UNIT])
        ok = ~is_l | _eq(s[BAR] % self._grid_of(unit), 0)
        st = _upd(
            s,
            bar=_where(is_m, value, s[BAR]),
            first=_where(is_m, 1, s[FIRST]),
            pending_mid=_where(is_m, 0, s[PENDING_MID]),
            short=_where(is_m, 0, s[SHORT]),
            unit=unit,
            tonic=_where(is_k, value, s[TONIC]),
            spoiled=_where(is_k, 0, s[SPOILED]),
            phase=READY,
            node=0,
            flag=0,
            kind=0,
            prev=_where(inline, P_OTHER, P_NEWLINE),
            after_bar=0,
        )
        return ok, st

    # --- durations (``_place``, ``_fits``, ``_tuplet_completes``) --------------------------------

    def _unit_index(self, unit):
        """The index of ``unit`` in :attr:`units` (0 where it is none of them)."""
        hits = _eq(_newaxis(unit), _k(self.units))  # the units are distinct
        return tf.reduce_sum(_where(hits, _k(np.arange(len(self.units))), 0), -1)

    def _grid_of(self, unit):
        return _gather(self._grid, self._unit_index(unit))

    def _last_bar(self, s, cfg):
        body = cfg["form"] & _eq(s[CLOSING], 0) & _eq(s[PART_PHASE], PART_BODY) & _eq(s[PFIRST], 0)
        ending = s[ENDING]
        in_ending = _eq(s[END_BARS], s[END_LEN] - 1)
        in_part = _eq(ending, 0) & _eq(s[BAR_IN_PART], cfg["bpp"] - 1)
        return body & _where(_isin(ending, [1, 2]), in_ending, in_part)

    def _cap(self, s, cfg):
        later_pickup = (
            cfg["form"]
            & _eq(s[CLOSING], 0)
            & _eq(s[PART_PHASE], PART_BODY)
            & (s[PFIRST] > 0)
            & (s[PICKUP] > 0)
        )
        cap = _where(later_pickup, s[PICKUP], s[BAR])
        return _where(self._last_bar(s, cfg), s[BAR] - tf.maximum(s[PICKUP], 0), cap)

    def _final_bar(self, s, cfg):
        closing = (s[MID_SEEN] > 0) | (s[PENDING_MID] > 0)
        last = _eq(s[PART], cfg["nparts"] - 1) & _isin(s[ENDING], [0, 2]) & self._last_bar(s, cfg)
        return cfg["cadence"] & _where(s[CLOSING] > 0, closing, last)

    def _no_music(self, s, cfg):
        return (
            cfg["form"]
            & _eq(s[CLOSING], 0)
            & (tf.not_equal(s[PART_PHASE], PART_BODY) | _eq(s[ENDING], 3))
        )

    def _loose_bar(self, s, cfg):
        return ~cfg["form"] & (s[FIRST] > 0) & _eq(s[CLOSING], 0)

    def _place(self, s, ticks, tonic, cfg):
        """``_place``: (ok, elapsed, duration) after a note of ``ticks``."""
        ok = ~self._no_music(s, cfg) & _eq(s[SHORT], 0)
        e = s[ELAPSED]
        cap = self._cap(s, cfg)
        grid = self._grid_of(s[UNIT])
        tup = s[TUP_LEFT] > 0
        p = tf.maximum(s[TUP_P], 1)
        q = _where(_eq(p, 2), 3, 2)
        x = ticks
        ok = ok & (~tup | _eq(x * q % p, 0))
        x = _where(tup, x * q // p, x)
        ok = ok & (_eq(s[BROKEN_], 0) | _eq(x, s[LAST]))  # a pair is written alike
        num = _gather(tf.constant([1, 1, 1, 3, 7], tf.int32), s[BROKEN_])
        den = _gather(tf.constant([1, 2, 4, 2, 4], tf.int32), s[BROKEN_])
        ok = ok & _eq(x * num % den, 0)
        x = x * num // den
        end = e + x
        more = self._tuplet_completes(s, end, p, s[TUP_LEFT] - 1, q, cfg)
        fits = (end <= cap) & (_eq(end % grid, 0) | self._loose_bar(s, cfg))
        cadence = ~tf.convert_to_tensor(tonic) & (end > cap - s[UNIT]) & self._final_bar(s, cfg)
        ok = ok & _where(s[TUP_LEFT] > 1, more, fits & ~cadence)
        return ok, end, x

    def _tuplet_completes(self, s, e, p, left, q, cfg):
        """``_tuplet_completes``: can ``left`` more tuplet notes end within the bar?"""
        del q  # the tables hold the sums already scaled by q/p
        u = self._unit_index(s[UNIT])
        shape = self._tup_res.shape  # (units, lefts, 2, J)
        pi = tf.clip_by_value(p - 2, 0, 1)
        left = tf.clip_by_value(left, 0, shape[1] - 1)
        base = ((u * shape[1] + left) * 2 + pi) * shape[3]
        index = base[..., None] + tf.range(shape[3])
        res = _gather(tf.reshape(self._tup_res, [-1]), index)
        least = _gather(tf.reshape(self._tup_least, [-1]), index)
        grid = self._grid_of(s[UNIT])[..., None]
        room = (self._cap(s, cfg) - e)[..., None]
        on_grid = _eq((e[..., None] + res) % grid, 0) | self._loose_bar(s, cfg)[..., None]
        hit = (res >= 0) & (least <= room) & on_grid
        return ~self._no_music(s, cfg) & tf.reduce_any(hit, -1)

    @staticmethod
    def _expand(s: dict, cfg: dict) -> tuple[dict, dict]:
        """State and configuration with a trailing axis (for per-word evaluations)."""
        s_w = {k: _newaxis(v) for k, v in s.items()}
        c_w = {k: _newaxis(v, -2 if k in ("parts", "title") else -1) for k, v in cfg.items()}
        return s_w, c_w

    def _place_all(self, s, tonic, cfg):
        """(..., W): may a note of each suffix (in the current unit) come now (``_fits``)."""
        s_w, c_w = self._expand(s, cfg)
        uidx = self._unit_index(s[UNIT])
        ticks = _gather(self._suf_ticks, uidx)  # (..., W)
        valid = _gather(self._suf_valid, uidx)
        ok, _, _ = self._place(s_w, ticks, tonic, c_w)
        return ok & valid

    def _suffix_ok_all(self, s, tonic, cfg, pa_t=None, pa_f=None):
        """(..., W): ``_suffix_ok`` for every suffix word (``tonic``: the note's IS_TONIC)."""
        ctx = s[CTX]
        if pa_t is None:
            pa_t = self._place_all(s, True, cfg)
            pa_f = self._place_all(s, False, cfg)
        s_w, c_w = self._expand(s, cfg)
        chord_ticks = s_w[CH_FIRST] * self._suf_num
        whole = _eq(chord_ticks % self._suf_den, 0)
        ok_cl, _, _ = self._place(s_w, chord_ticks // self._suf_den, False, c_w)
        tonic = tf.convert_to_tensor(tonic) & _eq(ctx, IN_TUNE)
        general = _where(tonic[..., None], pa_t, pa_f)
        always = _eq(ctx, IN_GRACE) | (_eq(ctx, IN_CHORD) & (s[CH_N] > 0))
        return _where(
            always[..., None],
            True,
            _where(_eq(ctx, CHORD_LENGTH)[..., None], whole & ok_cl & self._suf_empty, general),
        )

    # --- bar lines (``_token`` and its three cases) -----------------------------------------------

    def _token_ok(self, s, cfg):
        """(..., 17): may each bar token of ``_BAR_TOKENS`` be written from ``s``?"""
        return self._memoized("token_ok", s, lambda: self._token_ok_now(s, cfg))

    def _token_ok_now(self, s, cfg):
        s_w, c_w = self._expand(s, cfg)
        ok, _ = self._token(s_w, tf.range(len(_BAR_TOKENS)), c_w)
        return ok

    def _token(self, s, tok, cfg):
        """``_token``: the state after bar token ``tok`` (an index of ``_BAR_TOKENS``)."""
        tok = tf.convert_to_tensor(tok, tf.int32)
        blocked = (s[TUP_LEFT] > 0) | (s[BROKEN_] > 0) | (s[NEED_NOTE] > 0)
        ok_c, st_c = self._token_closing(s, tok, cfg)
        ok_f, st_f = self._token_form(s, tok, cfg)
        ok_r, st_r = self._token_free(s, tok, cfg)
        ok, st = _choose(
            [(s[CLOSING] > 0, ok_c, st_c), (cfg["form"], ok_f, st_f), (True, ok_r, st_r)], s
        )
        inv = _eq(tok, _TOK["[|]"])
        st = _upd(
            st,
            phase=_where(_eq(st[PHASE], DONE), DONE, READY),
            node=0,
            prev=_where(inv, P_INVISIBLE, P_BAR),
            after_bar=1,
        )
        return ok & ~blocked, st

    def _close_bar(self, s, boundary):
        boundary = tf.convert_to_tensor(boundary)
        has = s[CONTENT] > 0
        return _upd(
            s,
            bars=_where(has, tf.minimum(s[BARS] + 1, self.min_bars), s[BARS]),
            pending_mid=_where(
                has,
                _where(boundary | (s[FIRST] > 0), 0, 1),
                _where(boundary, 0, s[PENDING_MID]),
            ),
            first=_where(has | boundary, _i(boundary), s[FIRST]),
            elapsed=0,
            content=0,
            last=0,
            spoiled=0,
        )

    def _token_free(self, s, tok, cfg):
        plain = _isin(tok, [_TOK["|"], _TOK["[|]"]])
        closes = _isin(tok, [i for t, i in _TOK.items() if t.startswith(":")])
        opens = _isin(tok, [i for t, i in _TOK.items() if t.endswith(":")])
        short = (s[CONTENT] > 0) & ~(_eq(s[ELAPSED], s[BAR]) | (s[FIRST] > 0))
        st_short = _upd(self._close_bar(s, False), short=1, pending_mid=0)
        st_plain = self._close_bar(s, False)
        st_b = self._close_bar(_upd(s, short=0), True)
        st_b = _upd(
            st_b,
            repeat=_where(opens, 1, _where(closes, 0, st_b[REPEAT])),
        )
        ok_b = ~(opens & (s[REPEAT] > 0) & ~closes)
        return _choose(
            [
                (plain & short, _eq(s[CLOSING], 0), st_short),
                (plain, True, st_plain),
                (True, ok_b, st_b),
            ],
            s,
        )

    def _token_closing(self, s, tok, cfg):
        """After close(): ':|' or '|]' as soon as the tune may end; '|' only to get there."""
        final = _where(s[REPEAT] > 0, _TOK[":|"], _TOK["|]"])
        ok_final = (s[MID_SEEN] > 0) & ~(cfg["cadence"] & _eq(s[LAST_TONIC], 0))
        st_final = _upd(self._close_bar(s, True), repeat=0, short=0, phase=DONE)
        full = (s[CONTENT] > 0) & (_eq(s[ELAPSED], s[BAR]) | (s[FIRST] > 0))
        return _choose(
            [
                (_eq(tok, final), ok_final, st_final),
                (_eq(tok, _TOK["|"]) & full, True, self._close_bar(s, False)),
                (
                    _eq(tok, _TOK["||"]) & (s[SHORT] > 0),
                    True,
                    self._close_bar(_upd(s, short=0), True),
                ),
            ],
            s,
        )

    def _part_code(self, part, cfg):
        """The form's entry for ``part``: 0 none, 1 written once, 2 repeated."""
        hit = _eq(tf.range(MAX_PARTS), part[..., None])
        return tf.reduce_sum(_where(hit, cfg["parts"], 0), -1)

    def _next_part(self, s, cfg):
        part = s[PART] + 1
        done = part >= cfg["nparts"]
        rep = _eq(self._part_code(part, cfg), 2)
        return _upd(
            s,
            part=part,
            bar_in_part=0,
            pfirst=1,
            ending=0,
            end_len=0,
            end_bars=0,
            part_phase=_where(done, PART_DONE, _where(rep, PART_START, PART_BODY)),
            phase=_where(done, DONE, s[PHASE]),
        )

    def _ending_length_ok(self, m, cfg):
        n = cfg["bpp"]
        return (n >= 4) & (m >= 1) & (m <= n // 4)

    def _token_form(self, s, tok, cfg):
        """``_token_form``: the bar tokens of a form (parts, repeats, endings, pickups)."""
        n = cfg["bpp"]
        repeated = _eq(self._part_code(s[PART], cfg), 2)
        e, bar, has = s[ELAPSED], s[BAR], s[CONTENT] > 0
        ending = s[ENDING]

        def is_(t):
            return _eq(tok, _TOK[t])

        # PART_START: '|:' opens the part
        st_start = self._close_bar(_upd(s, part_phase=PART_BODY, repeat=1), True)
        # ENDING 3: '[2'
        st_e3 = self._close_bar(_upd(s, ending=2, end_bars=0), True)
        # '[1' after a plain bar line
        m = n - s[BAR_IN_PART]
        ok_l1 = (
            repeated
            & _eq(ending, 0)
            & (s[AFTER_BAR] > 0)
            & _eq(s[PFIRST], 0)
            & self._ending_length_ok(m, cfg)
        )
        st_l1 = self._close_bar(_upd(s, ending=1, end_len=m, end_bars=0), True)
        last = self._last_bar(s, cfg)
        # '|'
        pfirst = s[PFIRST] > 0
        full = _eq(e, bar)
        pick = ((s[PICKUP] < 0) & (e < bar)) | ((s[PICKUP] > 0) & _eq(e, s[PICKUP]))
        ok_bar = ~last & _where(pfirst, (full & (s[PICKUP] <= 0)) | pick, full)
        st_bar = _upd(
            s,
            bar_in_part=_where(
                (pfirst & full) | (~pfirst & _eq(ending, 0)),
                s[BAR_IN_PART] + 1,
                s[BAR_IN_PART],
            ),
            pickup=_where(pfirst, _where(full, 0, e), s[PICKUP]),
            pfirst=0,
            end_bars=_where(~pfirst & (ending > 0), s[END_BARS] + 1, s[END_BARS]),
        )
        st_bar = self._close_bar(st_bar, False)
        # '|1'
        c = s[BAR_IN_PART] + 1
        ok_e1 = repeated & _eq(ending, 0) & full & ~last & self._ending_length_ok(n - c, cfg)
        st_e1 = _upd(
            s,
            pickup=_where(pfirst, 0, s[PICKUP]),
            pfirst=0,
            bar_in_part=c,
            ending=1,
            end_len=n - c,
            end_bars=0,
        )
        st_e1 = self._close_bar(st_e1, True)
        # ':|' ':|2' ':|:' '::' closing a repeat
        close_end1 = _upd(
            s,
            ending=_where(is_(":|2"), 2, 3),
            end_bars=_where(is_(":|2"), 0, s[END_BARS]),
            repeat=0,
        )
        ok_end1 = (is_(":|") & self.f_rep_l2) | is_(":|2")
        st_end1 = self._close_bar(close_end1, True)
        st_rep = self._next_part(self._close_bar(_upd(s, repeat=0), True), cfg)
        reopen = ~is_(":|")
        ok_rep = ~(ending > 0) & repeated & ~is_(":|2")
        ok_rep = ok_rep & (~reopen | _eq(st_rep[PART_PHASE], PART_START))
        st_rep = _upd(
            st_rep,
            part_phase=_where(reopen, PART_BODY, st_rep[PART_PHASE]),
            repeat=_where(reopen, 1, st_rep[REPEAT]),
        )
        ok_r, st_r = _choose([(_eq(ending, 1), ok_end1, st_end1), (True, ok_rep, st_rep)], s)
        # '||' '|]' ending a part
        ok_dbl = (_eq(ending, 0) & ~repeated) | _eq(ending, 2)
        ok_dbl = ok_dbl & ~(is_("|]") & tf.not_equal(s[PART], cfg["nparts"] - 1))
        st_dbl = self._next_part(self._close_bar(s, True), cfg)
        phase = s[PART_PHASE]
        return _choose(
            [
                (_eq(phase, PART_START), is_("|:") & ~has, st_start),
                (tf.not_equal(phase, PART_BODY), False, s),
                (_eq(ending, 3), is_("[2"), st_e3),
                (is_("[1"), ok_l1, st_l1),
                (~has, False, s),
                (is_("|"), ok_bar, st_bar),
                (is_("|1"), ok_e1, st_e1),
                (~last | tf.not_equal(e, self._cap(s, cfg)), False, s),
                (is_(":|") | is_(":|2") | is_(":|:") | is_("::"), ok_r, st_r),
                (is_("||") | is_("|]"), ok_dbl, st_dbl),
            ],
            s,
        )
