"""Metrical inputs: where in the bar and where in the part each character stands.

A character model has to add up note lengths to know where a bar ends (``A3/2B/ c2``) and
count bars to know where a part ends; it learns the first only roughly (the first shipped
Transformer wrote 64% of its bars exact, the corpus 99%). The :class:`MeterClock` reads the
same characters a model reads -- header fields ``M:`` and ``L:``, notes and rests with their
lengths, chords, broken rhythm, tuplets, bar lines and repeat signs, skipping annotations,
decorations and grace notes -- and gives, after every character, two small integers:

- **position**: what is left of the bar, in half units of ``L:`` (0 in the header, 1 for a
  free meter, 2 for an overfull bar, then ``3 + remaining`` capped), counting the note being
  written (``A2`` leaves two units fewer than ``A``);
- **bar**: complete bars since the last repeat sign or double bar (0 in the header, then
  ``1 + bars`` capped): the bar number in the part.

A *tonal* model (``--tonal``) reads two more, from the ``K:`` field in force and the notes:

- **tonic**: the letter of the key's tonic (0 in the header and for ``K:none``, then
  ``1 + letter``, A = 1): ``K:G``, ``K:Gm`` and ``K:G mix`` all give G;
- **degree**: the diatonic degree of the last note letter above that tonic (0 before the first
  note, then ``1 + steps``, accidentals aside), so "the tune is on its tonic" or "on the
  fifth" reads the same in every key (grace notes, chord symbols and fields leave it as it was).

Every clock computes all four; a model without tonal inputs ignores the last two.

They reach the model *packed* into the input id (:func:`pack`: ``id + vocab * feature``), so
a metrical model still maps ``(batch, time)`` int32 to logits: training windows, the
compiled sampling loop and the SavedModel carry them without another input. Targets stay
plain ids. The clock is TensorFlow only and runs the same way over the training corpus
(:func:`pack_texts`, once per run), inside the sampling loop (one step per character) and in
the scorer, so training and generation see the same numbers by construction. It never
rejects a character: on text it cannot follow the features are only less informative.
"""

from __future__ import annotations

import numpy as np

from musicseq.vocab import EOT, RESERVED

NUM_POSITIONS = 40  # 0 header, 1 free meter, 2 overfull, 3 + half units left (capped)
NUM_BARS = 18  # 0 header, 1 + complete bars in the part (capped)
NUM_DEGREES = 8  # 0 no note yet (or no tonic), 1 + diatonic degree of the last note
NUM_TONICS = 8  # 0 no tonic (K:none, the header), 1 + letter of the key's tonic (A = 1)
NUM_FEATURES = NUM_TONICS * NUM_DEGREES * NUM_POSITIONS * NUM_BARS

_FIELDS = (
    *("mode", "hdr", "col0", "fletter", "finline", "fld", "fnum", "fden", "fslash", "fc"),
    *("bar_len", "unit", "unit_set", "elapsed", "bars"),
    *("pend", "base", "lnum", "lden", "lslash", "last_val", "next_factor"),
    *("tup_left", "tup_factor", "lparen", "lbrack", "chord", "ch_len", "inbar"),
    *("ktonic", "tonic", "degree"),
)
_I = {name: i for i, name in enumerate(_FIELDS)}
STATE_SIZE = len(_FIELDS)

# Modes.
HEADER, BODY, FIELD, QUOTE, BANG, GRACE, COMMENT, PLUS = range(8)
_SKIP_END = {QUOTE: '"', BANG: "!", GRACE: "}", PLUS: "+"}
_FIELD_CODES = {"M": 1, "L": 2, "K": 3}
# Letters that start a field line in the body (at the start of a line, before ':') or an
# inline field after '[': not note or rest letters.
_FIELD_LETTERS = "HIKLMNOPQRSTUVWw"
_TUPLET_Q = {2: 3, 3: 2, 4: 3, 5: 2, 6: 2, 7: 2, 8: 3, 9: 2}  # p notes in the time of q
_EPS = 1e-4


def _table(chars_true: str) -> np.ndarray:
    t = np.zeros(128, bool)
    for c in chars_true:
        t[ord(c)] = True
    return t


def _initial_row() -> np.ndarray:
    s = np.zeros(STATE_SIZE, np.float32)
    s[_I["mode"]], s[_I["hdr"]], s[_I["col0"]] = HEADER, 1, 1
    s[_I["unit"]], s[_I["next_factor"]], s[_I["tup_factor"]] = 0.125, 1, 1
    return s


class MeterClock:
    """The metrical state of ``N`` streams of token ids over the character vocabulary ``chars``
    (token id = index + 3; 0, 1, 2 are PAD, UNK and EOT). State: ``(N, STATE_SIZE)`` float32."""

    def __init__(self, chars):
        import tensorflow as tf

        self.chars = tuple(chars)
        codes = [0] * len(RESERVED) + [ord(c) if len(c) == 1 and ord(c) < 128 else 0 for c in chars]
        self.codes = tf.constant(codes, tf.int32)
        self.vocab_size = len(codes)
        classes = {
            "note": "ABCDEFGabcdefg",
            "rest": "zx",
            "acc": "^_=",
            "digit": "0123456789",
            "octave": ",'",
            "letter": "".join(chr(c) for c in range(65, 91))
            + "".join(chr(c) for c in range(97, 123)),
            "field": _FIELD_LETTERS,
            "upper_note": "ABCDEFG",
        }
        self._cls = {k: tf.constant(_table(v)) for k, v in classes.items()}
        fld = np.zeros(128, np.float32)
        for c, v in _FIELD_CODES.items():
            fld[ord(c)] = v
        self._fld = tf.constant(fld)
        q = np.ones(10, np.float32)
        for p, qq in _TUPLET_Q.items():
            q[p] = qq / p
        self._tuplet = tf.constant(q)

    def initial(self, n):
        import tensorflow as tf

        return tf.tile(tf.constant(_initial_row())[None], tf.stack([n, 1]))

    # --- one character ----------------------------------------------------------------------

    def advance(self, state, ids):
        """The state after token ids ``ids`` (N,): EOT starts a new tune, PAD and UNK change
        nothing, a character is read."""
        import tensorflow as tf

        ids = tf.convert_to_tensor(ids, tf.int32)
        code = tf.gather(self.codes, tf.clip_by_value(ids, 0, self.vocab_size - 1))
        new = self._read(state, code)
        new = tf.where((ids >= len(RESERVED))[:, None], new, state)
        fresh = tf.tile(tf.constant(_initial_row())[None], [tf.shape(ids)[0], 1])
        return tf.where(tf.equal(ids, EOT)[:, None], fresh, new)

    def _read(self, state, code):
        import tensorflow as tf

        s = {name: state[:, i] for name, i in _I.items()}
        f = tf.cast
        fl = tf.float32

        def cls(name):
            return tf.gather(self._cls[name], code)

        def is_(c):
            return tf.equal(code, ord(c))

        def where(mask, a, b):
            return tf.where(mask, f(a, fl) if not isinstance(a, tf.Tensor) else a, b)

        mode = s["mode"]
        newline = is_("\n")
        digit = cls("digit")
        dval = f(code - ord("0"), fl)
        out = dict(s)

        # Header: 'X:' at the start of a line opens a field; the K: line ends the header.
        in_header = tf.equal(mode, HEADER)
        starts_field = in_header & (s["col0"] > 0) & cls("letter")
        out["fletter"] = where(starts_field, f(code, fl), out["fletter"])
        opens_h = in_header & (s["fletter"] > 0) & is_(":")

        # Body: a letter at the start of a line that is a field letter, or after '[', may
        # open a field; ':' next confirms it.
        in_body = tf.equal(mode, BODY)
        pending_letter = in_body & (s["fletter"] > 0)
        opens_b = pending_letter & is_(":")
        body = in_body & ~opens_b  # characters read as music
        opens = opens_h | opens_b
        letter = tf.cast(tf.clip_by_value(s["fletter"], 0, 127), tf.int32)
        out["mode"] = where(opens, FIELD, out["mode"])
        out["fld"] = where(opens, tf.gather(self._fld, letter), out["fld"])
        out["finline"] = where(opens_h, 0.0, out["finline"])
        for k in ("fnum", "fden", "fslash", "fc", "ktonic"):
            out[k] = where(opens, 0.0, out[k])
        out["fletter"] = where(opens | pending_letter | (in_header & newline), 0.0, out["fletter"])

        # Field values: M: and L: numbers, 'C' (common time); the end applies them.
        in_field = tf.equal(mode, FIELD)
        fdigit = in_field & digit
        out["fnum"] = where(fdigit & (s["fslash"] < 1), s["fnum"] * 10 + dval, out["fnum"])
        out["fden"] = where(fdigit & (s["fslash"] > 0), s["fden"] * 10 + dval, out["fden"])
        out["fslash"] = where(in_field & is_("/"), 1.0, out["fslash"])
        out["fc"] = where(in_field & is_("C"), 1.0, out["fc"])
        # K: its tonic is the first capital A-G of the value ("K:F#m", "K:A dor"; K:none: none).
        tonic_letter = in_field & tf.equal(s["fld"], 3) & (s["ktonic"] < 1) & cls("upper_note")
        out["ktonic"] = where(tonic_letter, f(code - ord("A") + 1, fl), out["ktonic"])
        ends = in_field & tf.where(s["finline"] > 0, is_("]"), newline)
        fraction = tf.where(
            (s["fnum"] > 0) & (s["fden"] > 0), s["fnum"] / tf.maximum(s["fden"], 1.0), 0.0
        )
        set_m = ends & tf.equal(s["fld"], 1)
        bar_len = tf.where(s["fc"] > 0, 1.0, fraction)
        out["bar_len"] = where(set_m, bar_len, out["bar_len"])
        default_unit = tf.where((bar_len > 0) & (bar_len < 0.75), 0.0625, 0.125)
        out["unit"] = where(set_m & (s["unit_set"] < 1), default_unit, out["unit"])
        set_l = ends & tf.equal(s["fld"], 2) & (fraction > 0)
        out["unit"] = where(set_l, fraction, out["unit"])
        out["unit_set"] = where(set_l, 1.0, out["unit_set"])
        to_body = ends & ((s["hdr"] < 1) | tf.equal(s["fld"], 3))
        out["mode"] = where(ends, tf.where(to_body, float(BODY), float(HEADER)), out["mode"])
        out["tonic"] = where(ends & tf.equal(s["fld"], 3), s["ktonic"], out["tonic"])
        starts_music = ends & (s["hdr"] > 0) & tf.equal(s["fld"], 3)
        out["hdr"] = where(starts_music, 0.0, out["hdr"])

        # Skipped spans: annotations, decorations, grace notes, comments.
        for m, closing in _SKIP_END.items():
            out["mode"] = where(tf.equal(mode, m) & (is_(closing) | newline), BODY, out["mode"])
        out["mode"] = where(tf.equal(mode, COMMENT) & newline, BODY, out["mode"])

        # --- music: first finish the pending note unless this character continues it.
        pending = (s["pend"] > 0) & body
        continues = digit | is_("/") | cls("octave")
        finish = pending & ~continues
        value = self._value(s)
        in_chord_note = tf.equal(s["pend"], 1) & (s["chord"] > 0)
        out["ch_len"] = where(finish & in_chord_note & (s["ch_len"] <= 0), value, out["ch_len"])
        counts = finish & ~in_chord_note
        tup = tf.where(s["tup_left"] > 0, s["tup_factor"], 1.0)
        v = value * s["next_factor"] * tup
        elapsed = tf.where(counts, s["elapsed"] + v, s["elapsed"])
        out["last_val"] = where(counts, v, out["last_val"])
        out["next_factor"] = where(counts, 1.0, out["next_factor"])
        out["tup_left"] = where(counts, tf.maximum(s["tup_left"] - 1, 0.0), out["tup_left"])
        out["pend"] = where(finish, 0.0, out["pend"])

        # Length characters of the pending note.
        lengthening = pending & continues
        ld = lengthening & digit
        out["lnum"] = where(ld & (s["lslash"] < 1), s["lnum"] * 10 + dval, out["lnum"])
        out["lden"] = where(ld & (s["lslash"] > 0), s["lden"] * 10 + dval, out["lden"])
        out["lslash"] = where(lengthening & is_("/"), s["lslash"] + 1, out["lslash"])

        # A note, rest or chord starts; '[' before a note or accidental opens a chord.
        starts_note = body & (cls("note") | cls("rest") | is_("Z"))
        opens_chord = body & (s["lbrack"] > 0) & (cls("note") | cls("rest") | cls("acc"))
        out["chord"] = where(opens_chord, 1.0, out["chord"])
        out["ch_len"] = where(opens_chord, 0.0, out["ch_len"])
        closes_chord = body & (s["chord"] > 0) & is_("]")
        out["chord"] = where(closes_chord, 0.0, out["chord"])
        chord_len = tf.where(s["ch_len"] > 0, s["ch_len"], s["unit"])
        chord_len = tf.where(finish & in_chord_note & (s["ch_len"] <= 0), value, chord_len)
        begins = starts_note | closes_chord
        out["pend"] = where(begins, tf.where(closes_chord, 2.0, 1.0), out["pend"])
        base = tf.where(is_("Z"), s["bar_len"], s["unit"])
        out["base"] = where(begins, tf.where(closes_chord, chord_len, base), out["base"])
        for k in ("lnum", "lden", "lslash"):
            out[k] = where(begins, 0.0, out[k])
        # The diatonic degree of a note letter above the key's tonic (accidentals aside).
        letter_index = f(tf.where(code >= ord("a"), code - ord("a"), code - ord("A")), fl)
        degree = tf.math.floormod(letter_index - (out["tonic"] - 1), 7.0) + 1
        sets_degree = body & cls("note") & (out["tonic"] > 0)
        out["degree"] = where(sets_degree, degree, out["degree"])

        # Tuplets '(3', broken rhythm '>' '<'.
        tuplet = body & (s["lparen"] > 0) & digit & ~pending
        p = tf.cast(tf.clip_by_value(code - ord("0"), 0, 9), tf.int32)
        out["tup_left"] = where(tuplet & (dval >= 2), dval, out["tup_left"])
        out["tup_factor"] = where(
            tuplet & (dval >= 2), tf.gather(self._tuplet, p), out["tup_factor"]
        )
        last = out["last_val"]
        elapsed = tf.where(body & is_(">"), elapsed + 0.5 * last, elapsed)
        elapsed = tf.where(body & is_("<"), elapsed - 0.5 * last, elapsed)
        out["next_factor"] = where(body & is_(">"), 0.5, out["next_factor"])
        out["next_factor"] = where(body & is_("<"), 1.5, out["next_factor"])

        # Bar lines: the first character of a bar token closes the bar (a complete one counts);
        # ':' and a second '|' or a ']' after one end the section.
        bar_char = body & (is_("|") | is_(":"))
        closes_bar = bar_char & (s["inbar"] < 1)
        complete = (s["bar_len"] > 0) & (elapsed >= s["bar_len"] - _EPS)
        bars = tf.where(closes_bar & complete, s["bars"] + 1, s["bars"])
        section = body & (
            is_(":")
            | ((s["inbar"] > 0) & (is_("|") | is_("]")) & ~closes_chord)
            | ((s["lbrack"] > 0) & is_("|"))
        )
        out["bars"] = tf.where(section, 0.0, bars)
        out["elapsed"] = tf.where(closes_bar, 0.0, elapsed)
        out["inbar"] = where(
            body, tf.where(bar_char | (is_("]") & (s["inbar"] > 0)), 1.0, 0.0), out["inbar"]
        )

        # Flags of one character: '(' (slur or tuplet), '[' (chord, inline field, '[1', '[|').
        out["lparen"] = where(body, tf.where(is_("("), 1.0, 0.0), out["lparen"])
        out["lbrack"] = where(body, tf.where(is_("["), 1.0, 0.0), out["lbrack"])
        field_letter = body & cls("field") & ((s["col0"] > 0) | (s["lbrack"] > 0))
        out["fletter"] = where(field_letter, f(code, fl), out["fletter"])
        out["finline"] = where(field_letter, tf.where(s["lbrack"] > 0, 1.0, 0.0), out["finline"])

        # Spans that start here.
        for m, opening in ((QUOTE, '"'), (BANG, "!"), (GRACE, "{"), (PLUS, "+"), (COMMENT, "%")):
            out["mode"] = where(body & is_(opening), m, out["mode"])

        out["col0"] = tf.where(newline, 1.0, 0.0)
        return tf.stack([out[name] for name in _FIELDS], 1)

    @staticmethod
    def _value(s):
        """Length in whole notes of the pending note (before broken rhythm and tuplets)."""
        import tensorflow as tf

        num = tf.where(s["lnum"] > 0, s["lnum"], 1.0)
        den = tf.where(s["lden"] > 0, s["lden"], tf.pow(2.0, s["lslash"]))
        return s["base"] * num / den

    # --- what the model sees ----------------------------------------------------------------

    def features(self, state):
        """(N,) int32 feature index of each state: ``((tonic * NUM_DEGREES + degree) *
        NUM_POSITIONS + position) * NUM_BARS + bar``. A model without tonal inputs reads
        position and bar only."""
        import tensorflow as tf

        s = {name: state[:, i] for name, i in _I.items()}
        counted = (s["pend"] > 0) & ~(tf.equal(s["pend"], 1) & (s["chord"] > 0))
        tup = tf.where(s["tup_left"] > 0, s["tup_factor"], 1.0)
        pending = tf.where(counted, self._value(s) * s["next_factor"] * tup, 0.0)
        left = s["bar_len"] - s["elapsed"] - pending
        halves = tf.round(2.0 * left / tf.maximum(s["unit"], 1e-3))
        position = 3 + tf.minimum(halves, NUM_POSITIONS - 4)
        position = tf.where(left < -_EPS, 2.0, position)
        position = tf.where(s["bar_len"] <= 0, 1.0, position)
        music = s["hdr"] < 1
        position = tf.where(music, position, 0.0)
        bar = tf.where(music, 1 + tf.minimum(s["bars"], NUM_BARS - 2), 0.0)
        tonic = tf.where(music, s["tonic"], 0.0)
        degree = tf.where(music, s["degree"], 0.0)
        tonal = tf.cast(tonic, tf.int32) * NUM_DEGREES + tf.cast(degree, tf.int32)
        return (tonal * NUM_POSITIONS + tf.cast(position, tf.int32)) * NUM_BARS + tf.cast(
            bar, tf.int32
        )

    def pack(self, ids, state):
        """``ids`` (N,) with the features of ``state`` (the state after reading them)."""
        return pack(ids, self.features(state), self.vocab_size)

    def pack_sequences(self, ids, state=None):
        """``ids`` (N, T) -> (packed ids (N, T), final state), reading from ``state`` (default:
        a fresh tune; the rows should then start with EOT)."""
        import tensorflow as tf

        ids = tf.convert_to_tensor(ids, tf.int32)
        n, t = tf.shape(ids)[0], tf.shape(ids)[1]
        if state is None:
            state = self.initial(n)
        columns = tf.transpose(ids)
        out = tf.TensorArray(tf.int32, size=t)

        def body(i, state, out):
            state = self.advance(state, columns[i])
            return i + 1, state, out.write(i, self.pack(columns[i], state))

        _, state, out = tf.while_loop(lambda i, *_: i < t, body, (tf.constant(0), state, out))
        return tf.transpose(out.stack()), state


def pack(ids, features, vocab_size: int):
    """Packed input ids: ``id + vocab_size * feature`` (feature 0, the header, leaves ids as
    they are)."""
    return ids + vocab_size * features


def unpack(packed, vocab_size: int):
    """``(ids, position, bar, tonic, degree)`` of packed input ids."""
    ids = packed % vocab_size
    feature = packed // vocab_size
    metre = feature % (NUM_POSITIONS * NUM_BARS)
    tonal = feature // (NUM_POSITIONS * NUM_BARS)
    return ids, metre // NUM_BARS, metre % NUM_BARS, tonal // NUM_DEGREES, tonal % NUM_DEGREES


_COMPILED: dict = {}


def pack_texts(texts: list[str], vocab, batch: int = 512) -> list[np.ndarray]:
    """Each text as packed ids of ``EOT text`` (numpy int32, one array per text), read by the
    clock in batches of similar length."""
    import tensorflow as tf

    key = tuple(vocab.chars)
    if key not in _COMPILED:
        clock = MeterClock(vocab.chars)
        _COMPILED[key] = tf.function(
            lambda ids: clock.pack_sequences(ids)[0],
            input_signature=[tf.TensorSpec([None, None], tf.int32)],
        )
    run = _COMPILED[key]
    from musicseq.data import length_batches

    rows = [np.asarray([EOT, *vocab.encode(t)], np.int32) for t in texts]
    out: list[np.ndarray] = [None] * len(rows)  # type: ignore[list-item]
    for chunk, ids in length_batches(rows, batch):
        packed = run(tf.constant(ids)).numpy()
        for r, i in enumerate(chunk):
            out[i] = packed[r, : len(rows[i])]
    return out


def pack_stream(texts: list[str], vocab) -> np.ndarray:
    """``EOT t1 EOT t2 … EOT`` as packed ids (:func:`musicseq.data.encode_stream`'s layout)."""
    return np.concatenate([*pack_texts(texts, vocab), [EOT]]).astype(np.int32)


__all__ = [
    "MeterClock",
    "NUM_BARS",
    "NUM_DEGREES",
    "NUM_FEATURES",
    "NUM_POSITIONS",
    "NUM_TONICS",
    "pack",
    "pack_stream",
    "pack_texts",
    "unpack",
]
