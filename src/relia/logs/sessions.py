"""Abnormal sessions: the lines that share a session key (a block, request or job id).

A session is the sequence of template ids of its lines. :class:`SessionModel` learns what normal
sessions look like from unlabelled training sessions and flags a new session when it shows
something that training sessions rarely or never showed. Every piece of evidence is a *feature*
with a training frequency ``f`` (the share of training sessions that showed it); a session is
anomalous when its rarest feature has ``f < alpha`` (default 1 %). One rule, no fitted threshold:
training data may hold some anomalies, so "rare" rather than "never seen" is what counts.

The features, each a reason a person can check against the raw lines:

- ``unseen_template`` / ``rare_template``: a template absent from training, or in < alpha of it;
- ``count_high`` / ``count_low``: a template repeated more, or fewer times than (nearly) all
  training sessions show (a retry storm, a step done once instead of three times);
- ``missing_template``: a template that (nearly) every training session has is absent;
- ``invariant_violated``: two templates whose counts keep a fixed ratio in > 1 - alpha of the
  training sessions that have either (Invariant Mining, Lou et al., USENIX ATC 2010, restricted to
  pairs so that each invariant reads as "as many X as Y");
- ``unseen_transition``: template B directly after A (or A first, or A last) never seen in
  training. Only *never seen* counts here: concurrent components interleave their lines, so a
  single rare order is normal (on HDFS, normal orders seen in 1-2 % of sessions abound).

Scores lie in [0, 1]: ``0.5 * log(f) / log(alpha)`` of the rarest feature, clipped, so the flag is
``score > 0.5`` (relia's default threshold) and a never-seen feature scores 1.
:class:`SessionTracker` is the streaming side: it groups ``(session key, template id, ts)`` events,
closes a session after an idle timeout and scores it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import chain, pairwise
from typing import Any, Literal

import numpy as np
import polars as pl
from numpy.typing import NDArray

from relia.detect.checkpoint import pack, unpack
from relia.errors import ConfigError, DataError, DetectorError
from relia.incidents.model import Finding, FindingKind, severity_for_score
from relia.signals import describe, series_key

__all__ = [
    "Reason",
    "ReasonKind",
    "SESSION_DETECTOR",
    "ScoredSession",
    "SessionFindings",
    "SessionModel",
    "SessionScores",
    "SessionTracker",
]

Token = int | str
SessionKey = int | str
SessionLike = Sequence[Token] | NDArray[np.integer[Any]]  # one session's template ids
Tokens = NDArray[np.int64] | list[Any]  # all sessions' tokens: int64 array, or the ids as given
ReasonKind = Literal[
    "unseen_template",
    "rare_template",
    "count_high",
    "count_low",
    "missing_template",
    "invariant_violated",
    "unseen_transition",
]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

_M = np.int64(1 << 31)  # key stride: template * _M + count; counts are clipped below it
_MODEL_KIND = "relia.logs.SessionModel"
_TRACKER_KIND = "relia.logs.SessionTracker"


@dataclass(frozen=True)
class Reason:
    """One piece of evidence: what fired, on which templates, and how rare it was in training."""

    kind: ReasonKind
    frequency: float  # share of training sessions that showed this (0 = never)
    templates: tuple[Token, ...]
    detail: str


@dataclass(frozen=True)
class SessionScores:
    """Per session: the flag, the score in [0, 1] and the reasons (rarest first)."""

    anomaly: NDArray[np.bool_]
    score: F64
    reasons: list[tuple[Reason, ...]]


def _clip_text(token: Token) -> str:
    text = token if isinstance(token, str) else f"template {token}"
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _share(f: float) -> str:
    return f"in {_pct(f)} of training sessions" if f > 0 else "in no training session"


def _pct(f: float) -> str:
    if f >= 0.01:
        return f"{100.0 * f:.2f}".rstrip("0").rstrip(".") + "%"
    return f"{100.0 * f:.2g}%"


class SessionModel:
    """Unsupervised model of normal sessions (template-id sequences); see the module docstring.

    ``alpha`` is the one rarity level for every feature; ``max_invariant_templates`` bounds the
    invariant search to the most frequent templates (pairs grow quadratically);
    ``max_reasons`` bounds the reasons kept per session.
    """

    def __init__(
        self, alpha: float = 0.01, *, max_invariant_templates: int = 64, max_reasons: int = 10
    ) -> None:
        if not (isinstance(alpha, int | float) and 0.0 < alpha < 0.5):
            raise ConfigError(f"must be in (0, 0.5), got {alpha!r}", where="alpha")
        for name, value, least in (
            ("max_invariant_templates", max_invariant_templates, 0),
            ("max_reasons", max_reasons, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"must be an integer >= {least}, got {value!r}", where=name)
        self.alpha = float(alpha)
        self.max_invariant_templates = int(max_invariant_templates)
        self.max_reasons = int(max_reasons)
        self.vocab: list[Token] = []
        self.n_sessions = 0
        self._index: dict[Token, int] = {}
        self._int_vocab = np.zeros(0, np.int64)  # sorted int templates and their codes
        self._int_ids = np.zeros(0, np.int64)
        self._str_vocab: list[str] = []  # str templates and their codes
        self._str_ids: list[int] = []
        self._df = np.zeros(0, np.int64)  # training sessions holding each template
        self._hist_keys = np.zeros(0, np.int64)  # sorted template * _M + count (count >= 1)
        self._hist_cum = np.zeros(1, np.int64)  # cumulative sessions over _hist_keys, from 0
        self._inv = np.zeros((0, 4), np.int64)  # rows (i, j, p, q): q * c_i == p * c_j
        self._inv_support = np.zeros(0, np.float64)
        self._trans = np.zeros(0, np.int64)  # sorted keys a * (V + 3) + b of seen transitions

    # ------------------------------------------------------------------ fitting

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_bytes`) has given the model its state."""
        return self.n_sessions > 0

    @property
    def invariants(self) -> list[tuple[Token, Token, int, int, float]]:
        """Mined count invariants ``(X, Y, p, q, support)``: ``count(X):count(Y) = p:q``."""
        return [
            (self.vocab[i], self.vocab[j], p, q, float(s))
            for (i, j, p, q), s in zip(self._inv.tolist(), self._inv_support, strict=True)
        ]

    def fit(self, sessions: Sequence[SessionLike]) -> SessionModel:
        """Learn normal sessions from unlabelled ``sessions`` (each a sequence of template ids)."""
        if len(sessions) == 0:
            raise DataError("no sessions to fit the session model on", where="sessions")
        lengths, flat = _flatten(sessions)
        uniq, codes = _factorize(flat)
        self.vocab = uniq
        self._build_index()
        v = len(uniq)
        n = len(sessions)
        self.n_sessions = n
        sess = np.repeat(np.arange(n, dtype=np.int64), lengths)
        ent_s, ent_t, ent_c = _entries(sess, codes, v)
        self._df = np.bincount(ent_t, minlength=v).astype(np.int64)
        hkeys, hcounts = np.unique(ent_t * _M + np.minimum(ent_c, _M - 1), return_counts=True)
        self._hist_keys = hkeys.astype(np.int64)
        self._hist_cum = np.concatenate([[0], np.cumsum(hcounts)]).astype(np.int64)
        self._fit_invariants(ent_s, ent_t, ent_c, n)
        tkeys = _transition_keys(lengths, codes, v)
        self._trans = _unique(tkeys[1])
        return self

    def _fit_invariants(self, ent_s: I64, ent_t: I64, ent_c: I64, n: int) -> None:
        """Pairs of frequent templates whose counts keep one ratio in > 1 - alpha of sessions."""
        cand = self._candidates()
        rows: list[tuple[int, int, int, int]] = []
        support: list[float] = []
        if len(cand) >= 2:
            u, w = _count_rows(ent_s, ent_t, ent_c, n, cand, self._vocab_size())
            pres = u > 0
            # Sessions holding both / either of each pair, all pairs in one product. An invariant
            # holds at most where both are present, so most pairs are ruled out here.
            pf = pres.astype(np.float64)  # float, so that the product runs in BLAS
            co = (pf.T * w) @ pf
            either = np.diag(co)[:, None] + np.diag(co)[None, :] - co
            pa, pb = np.nonzero(np.triu(co > (1.0 - self.alpha) * either, 1))
            for a, b in zip(pa.tolist(), pb.tolist(), strict=True):
                both = pres[:, a] & pres[:, b]
                x, y, wb = u[both, a], u[both, b], w[both]
                g = np.gcd(x, y)
                ratio, inv = np.unique((x // g) * _M + y // g, return_inverse=True)
                mode = ratio[np.argmax(np.bincount(inv.ravel(), weights=wb))]
                p, q = int(mode // _M), int(mode % _M)
                s = float(wb[x * q == y * p].sum() / either[a, b])
                if s > 1.0 - self.alpha:
                    rows.append((int(cand[a]), int(cand[b]), p, q))
                    support.append(s)
        self._inv = np.array(rows, np.int64).reshape(-1, 4)
        self._inv_support = np.array(support, np.float64)

    def _candidates(self) -> I64:
        """Templates frequent enough to carry an invariant, most frequent first (capped)."""
        freq = np.flatnonzero(self._df >= self.alpha * self.n_sessions)
        order = np.argsort(-self._df[freq], kind="stable")
        return freq[order][: self.max_invariant_templates].astype(np.int64)

    # ------------------------------------------------------------------ scoring

    def predict(self, sessions: Sequence[SessionLike]) -> NDArray[np.bool_]:
        """Anomaly flag per session."""
        return self.score(sessions).anomaly

    def score(self, sessions: Sequence[SessionLike]) -> SessionScores:
        """Flag, score in [0, 1] and reasons per session (vectorized over all sessions)."""
        if not self.fitted:
            raise DetectorError("the session model is not fitted (call fit first)")
        n = len(sessions)
        if n == 0:
            return SessionScores(np.zeros(0, bool), np.zeros(0), [])
        lengths, flat = _flatten(sessions)
        codes = self._encode(flat)
        v = self._vocab_size()
        unk = v  # code of a template never seen in training
        sess = np.repeat(np.arange(n, dtype=np.int64), lengths)
        ent_s, ent_t, ent_c = _entries(sess, codes, v + 1)
        nn = float(self.n_sessions)
        fmin = np.ones(n)
        ev_s: list[I64] = []  # evidence below alpha: session, kind, a, b, value, frequency
        ev_k: list[I64] = []
        ev_a: list[I64] = []
        ev_b: list[I64] = []
        ev_v: list[I64] = []
        ev_f: list[F64] = []

        def note(kind: int, s: I64, f: F64, a: I64, b: I64, val: I64) -> None:
            np.minimum.at(fmin, s, f)
            hit = f < self.alpha
            if hit.any():
                ev_s.append(s[hit])
                ev_k.append(np.full(int(hit.sum()), kind, np.int64))
                ev_a.append(a[hit])
                ev_b.append(b[hit])
                ev_v.append(val[hit])
                ev_f.append(f[hit])

        # Templates present in a session: presence, then the count's upper and lower tails.
        known = ent_t < unk
        pres = np.append(self._df, 0)[ent_t] / nn  # the unseen code v has no training sessions
        c = np.minimum(ent_c, _M - 1)
        ge = np.where(known, self._sessions_ge(ent_t, c) / nn, 0.0)
        le = np.where(known, 1.0 - self._sessions_ge(ent_t, c + 1) / nn, 0.0)
        kind = np.where(pres < self.alpha, np.where(known, 1, 0), np.where(ge <= le, 2, 3))
        f = np.where(pres < self.alpha, pres, np.minimum(ge, le))
        for k in range(1, 4):
            sel = kind == k
            note(k, ent_s[sel], f[sel], ent_t[sel], ent_t[sel], ent_c[sel])
        # Unseen templates all share the code ``unk``: their reasons go back to the ids as given,
        # one per distinct template and session, so that each names what a person looks for.
        at = np.flatnonzero(codes == unk)
        unseen: list[Token] = []
        if len(at):
            given = flat[at] if isinstance(flat, np.ndarray) else [flat[i] for i in at.tolist()]
            unseen, which = _factorize(given)
            pair, times = np.unique(sess[at] * len(unseen) + which, return_counts=True)
            us, ut = pair // len(unseen), pair % len(unseen)
            note(0, us, np.zeros(len(us)), ut, ut, times.astype(np.int64))
        # Templates nearly every training session has, absent here.
        p0 = 1.0 - self._df / nn
        always = np.flatnonzero(p0 < self.alpha)
        if len(always):
            pos = np.searchsorted(always, ent_t)
            ok = (pos < len(always)) & (always[np.minimum(pos, len(always) - 1)] == ent_t)
            short = np.flatnonzero(np.bincount(ent_s[ok], minlength=n) < len(always))
            row = np.full(n, -1, np.int64)
            row[short] = np.arange(len(short))
            has = np.zeros((len(short), len(always)), bool)
            keep = ok & (row[ent_s] >= 0)
            has[row[ent_s[keep]], pos[keep]] = True
            ms, mi = np.nonzero(~has)
            ms = short[ms]
            mt = always[mi].astype(np.int64)
            note(4, ms.astype(np.int64), p0[mt], mt, mt, np.zeros(len(mt), np.int64))
        # Count invariants, on distinct count rows (sessions repeat a few shapes).
        if len(self._inv):
            cand = np.unique(self._inv[:, :2])
            u, _, inverse = _count_rows(ent_s, ent_t, ent_c, n, cand, v + 1, with_inverse=True)
            col = np.searchsorted(cand, self._inv[:, :2])
            ci, cj = u[:, col[:, 0]], u[:, col[:, 1]]
            step = max(1, (1 << 22) // len(self._inv))  # rows per chunk: a few MB of flags
            hits = [
                np.nonzero(
                    ci[lo : lo + step] * self._inv[:, 3] != cj[lo : lo + step] * self._inv[:, 2]
                )
                for lo in range(0, len(u), step)
            ]
            ur = np.concatenate(
                [h[0] + lo for h, lo in zip(hits, range(0, len(u), step), strict=True)]
            )
            kk = np.concatenate([h[1] for h in hits])
            if len(ur):
                order = np.argsort(inverse, kind="stable")
                starts = np.searchsorted(inverse[order], ur)
                ends = np.searchsorted(inverse[order], ur, side="right")
                reps = ends - starts
                s = order[np.repeat(ends - reps.cumsum(), reps) + np.arange(reps.sum())]
                kk_r = np.repeat(kk, reps)
                ur_r = np.repeat(ur, reps)
                val = ci[ur_r, kk_r] * _M + cj[ur_r, kk_r]
                note(
                    5,
                    s.astype(np.int64),
                    1.0 - self._inv_support[kk_r],
                    kk_r.astype(np.int64),
                    kk_r.astype(np.int64),
                    val.astype(np.int64),
                )
        # Transitions never seen in training (those touching an unseen template are already
        # explained by it).
        ts_, tk = _transition_keys(lengths, codes, v)
        a, b = tk // (v + 3), tk % (v + 3)
        real = (a != unk) & (b != unk)
        pos = np.searchsorted(self._trans, tk)
        seen = (pos < len(self._trans)) & (self._trans[np.minimum(pos, len(self._trans) - 1)] == tk)
        new = real & ~seen
        note(
            6,
            ts_[new],
            np.zeros(int(new.sum())),
            a[new],
            b[new],
            np.zeros(int(new.sum()), np.int64),
        )

        score = np.where(
            fmin <= 0.0, 1.0, 0.5 * np.log(np.maximum(fmin, 1e-300)) / math.log(self.alpha)
        )
        score = np.clip(score, 0.0, 1.0)
        anomaly = fmin < self.alpha
        reasons = self._reasons(n, ev_s, ev_k, ev_a, ev_b, ev_v, ev_f, unseen)
        return SessionScores(anomaly, score, reasons)

    def _reasons(
        self,
        n: int,
        ev_s: list[I64],
        ev_k: list[I64],
        ev_a: list[I64],
        ev_b: list[I64],
        ev_v: list[I64],
        ev_f: list[F64],
        unseen: list[Token],
    ) -> list[tuple[Reason, ...]]:
        """Each session's reasons, rarest first; ``unseen`` holds the templates the evidence
        of kind 0 (unseen template) points at."""
        out: list[tuple[Reason, ...]] = [() for _ in range(n)]
        if not ev_s:
            return out
        s = np.concatenate(ev_s)
        k, a, b, v = (np.concatenate(x) for x in (ev_k, ev_a, ev_b, ev_v))
        f = np.concatenate(ev_f)
        order = np.lexsort((k, f, s))  # per session, rarest first
        s, k, a, b, v, f = s[order], k[order], a[order], b[order], v[order], f[order]
        bounds = np.flatnonzero(np.diff(s)) + 1
        for lo, hi in zip(
            np.concatenate([[0], bounds]), np.concatenate([bounds, [len(s)]]), strict=True
        ):
            hi = min(int(hi), int(lo) + self.max_reasons)
            out[int(s[lo])] = tuple(
                self._reason(int(k[i]), int(a[i]), int(b[i]), int(v[i]), float(f[i]), unseen)
                for i in range(int(lo), hi)
            )
        return out

    def _token(self, code: int) -> Token:
        return self.vocab[code] if 0 <= code < len(self.vocab) else "<unseen>"

    def _reason(self, kind: int, a: int, b: int, val: int, f: float, unseen: list[Token]) -> Reason:
        v = self._vocab_size()
        if kind == 0:
            tok = unseen[a]
            times = f" (x{val})" if val > 1 else ""
            return Reason(
                "unseen_template",
                0.0,
                (tok,),
                f"{_clip_text(tok)}{times} never seen in training",
            )
        if kind == 5:
            i, j, p, q = (int(x) for x in self._inv[a])
            ti, tj = self._token(i), self._token(j)
            ci, cj = val // int(_M), val % int(_M)
            return Reason(
                "invariant_violated",
                f,
                (ti, tj),
                f"count({_clip_text(ti)}) : count({_clip_text(tj)}) = {p}:{q} in "
                f"{_pct(1.0 - f)} of training sessions with either; here {ci}:{cj}",
            )
        if kind == 6:
            names = {v + 1: "session start", v + 2: "session end"}
            ta = names.get(a) or _clip_text(self._token(a))
            tb = names.get(b) or _clip_text(self._token(b))
            toks = tuple(self._token(x) for x in (a, b) if x < v)
            return Reason("unseen_transition", 0.0, toks, f"{ta} -> {tb} never seen in training")
        tok = self._token(a)
        text = _clip_text(tok)
        if kind == 1:
            return Reason("rare_template", f, (tok,), f"{text} in {_pct(f)} of training sessions")
        if kind == 2:
            return Reason(
                "count_high",
                f,
                (tok,),
                f"{text} x{val}; >= {val} {_share(f)}",
            )
        if kind == 3:
            return Reason("count_low", f, (tok,), f"{text} x{val}; <= {val} {_share(f)}")
        return Reason(
            "missing_template",
            f,
            (tok,),
            f"{text} absent; present in {_pct(1.0 - f)} of training sessions",
        )

    def _sessions_ge(self, t: I64, c: I64) -> I64:
        """Training sessions in which template ``t`` occurs at least ``c`` (>= 1) times."""
        lo = np.searchsorted(self._hist_keys, t * _M + np.maximum(c, 1))
        hi = np.searchsorted(self._hist_keys, (t + 1) * _M)
        out: I64 = self._hist_cum[hi] - self._hist_cum[lo]
        return out

    # ------------------------------------------------------------------ vocabulary

    def _vocab_size(self) -> int:
        return len(self.vocab)

    def _build_index(self) -> None:
        self._index = {tok: i for i, tok in enumerate(self.vocab)}
        ints = sorted(
            (tok, i)
            for i, tok in enumerate(self.vocab)
            if isinstance(tok, int) and -(2**63) <= tok < 2**63  # larger ones never arrive as int64
        )
        self._int_vocab = np.array([t for t, _ in ints], np.int64)
        self._int_ids = np.array([i for _, i in ints], np.int64)
        strs = [(tok, i) for i, tok in enumerate(self.vocab) if isinstance(tok, str)]
        self._str_vocab = [t for t, _ in strs]
        self._str_ids = [i for _, i in strs]

    def _encode(self, flat: Tokens) -> I64:
        """Template ids to codes; a template unseen in training gets ``len(vocab)``."""
        v = self._vocab_size()
        if isinstance(flat, np.ndarray):
            if len(self._int_vocab) == 0:
                return np.full(len(flat), v, np.int64)
            pos = np.minimum(np.searchsorted(self._int_vocab, flat), len(self._int_vocab) - 1)
            return np.where(self._int_vocab[pos] == flat, self._int_ids[pos], v).astype(np.int64)
        if _all_str(flat):
            # A hash lookup in Polars: a Python loop over millions of strings takes seconds.
            codes = pl.Series(flat, dtype=pl.String).replace_strict(
                self._str_vocab, self._str_ids, default=v, return_dtype=pl.Int64
            )
            return codes.to_numpy().astype(np.int64)
        index = self._index
        return np.fromiter((index.get(_py(t), v) for t in flat), np.int64, len(flat))

    # ------------------------------------------------------------------ state

    def to_bytes(self) -> bytes:
        """Compact, pickle-free bytes of the fitted state (:meth:`from_bytes` reads them)."""
        return pack(
            {
                "kind": _MODEL_KIND,
                "version": 1,
                "alpha": self.alpha,
                "max_invariant_templates": self.max_invariant_templates,
                "max_reasons": self.max_reasons,
                "n_sessions": self.n_sessions,
                "vocab": list(self.vocab),
                "state": {
                    "df": self._df,
                    "hist_keys": self._hist_keys,
                    "hist_cum": self._hist_cum,
                    "inv": self._inv,
                    "inv_support": self._inv_support,
                    "trans": self._trans,
                },
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionModel:
        """Rebuild a model from :meth:`to_bytes`; :class:`DetectorError` when malformed."""
        ck = unpack(data)
        if ck.get("kind") != _MODEL_KIND:
            raise DetectorError(f"not a session model checkpoint (kind {ck.get('kind')!r})")
        try:
            m = cls(
                ck["alpha"],
                max_invariant_templates=ck["max_invariant_templates"],
                max_reasons=ck["max_reasons"],
            )
            m.n_sessions = int(ck["n_sessions"])
            m.vocab = [tok for tok in ck["vocab"] if isinstance(tok, int | str)]
            st = ck["state"]
            m._df = st["df"].astype(np.int64)
            m._hist_keys = st["hist_keys"].astype(np.int64)
            m._hist_cum = st["hist_cum"].astype(np.int64)
            m._inv = st["inv"].astype(np.int64).reshape(-1, 4)
            m._inv_support = st["inv_support"].astype(np.float64)
            m._trans = st["trans"].astype(np.int64)
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise DetectorError(f"corrupt session model checkpoint: {exc}") from None
        if len(m.vocab) != len(ck["vocab"]) or len(m._df) != len(m.vocab):
            raise DetectorError("corrupt session model checkpoint: vocabulary and counts differ")
        m._build_index()
        return m


# ---------------------------------------------------------------------- array helpers


def _py(x: Any) -> Token:
    """A NumPy scalar as the Python int or str used in the vocabulary."""
    return int(x) if isinstance(x, int | np.integer) else str(x)


def _flatten(
    sessions: Sequence[SessionLike], *, what: str = "template ids", where: str = "sessions"
) -> tuple[I64, Tokens]:
    """Session lengths and all tokens: an int64 array when all are ints, else a list.

    ``what`` and ``where`` name the tokens in the error about a wrong type.
    """
    lengths = np.fromiter((len(s) for s in sessions), np.int64, len(sessions))
    if all(isinstance(s, np.ndarray) and s.ndim == 1 and s.dtype.kind in "iu" for s in sessions):
        arrays = [np.asarray(s, np.int64) for s in sessions]
        return lengths, np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    tokens = list(chain.from_iterable(sessions))
    types = set(map(type, tokens))  # one pass in C, then a check per distinct type
    for t in types:
        if not issubclass(t, str | int | np.integer) or issubclass(t, bool | np.bool_):
            raise DataError(f"{what} must be ints or strings, got {t.__name__}", where=where)
    if not any(issubclass(t, str) for t in types):
        try:
            return lengths, np.fromiter(tokens, np.int64, len(tokens))
        except OverflowError:
            pass  # ints beyond int64 stay Python ints
    return lengths, tokens


def _all_str(tokens: list[Any]) -> bool:
    return all(issubclass(t, str) for t in set(map(type, tokens)))


def _factorize(flat: Tokens) -> tuple[list[Token], I64]:
    """Distinct tokens (first-seen order) and each token's code."""
    if isinstance(flat, np.ndarray):
        uniq, first, inv = np.unique(flat, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        return [int(x) for x in uniq[order]], rank[inv.ravel()]
    if _all_str(flat):
        series = pl.Series(flat, dtype=pl.String)
        uniq_s = series.unique(maintain_order=True)
        codes = series.replace_strict(
            uniq_s, pl.int_range(len(uniq_s), eager=True), return_dtype=pl.Int64
        )
        return uniq_s.to_list(), codes.to_numpy().astype(np.int64)
    index: dict[Token, int] = {}
    codes_np = np.fromiter(
        (index.setdefault(_py(t), len(index)) for t in flat), np.int64, len(flat)
    )
    return list(index), codes_np


def _unique(x: I64) -> I64:
    """Sorted distinct values (NumPy's hash-based np.unique is several times slower here)."""
    x = np.sort(x)
    keep = np.ones(len(x), bool)
    keep[1:] = x[1:] != x[:-1]
    out: I64 = x[keep]
    return out


def _entries(sess: I64, codes: I64, width: int) -> tuple[I64, I64, I64]:
    """Sparse count matrix as (session, template, count) rows, sorted by session then template."""
    keys, counts = np.unique(sess * np.int64(width) + codes, return_counts=True)
    return keys // width, keys % width, counts.astype(np.int64)


def _count_rows(
    ent_s: I64,
    ent_t: I64,
    ent_c: I64,
    n: int,
    cols: I64,
    width: int,
    *,
    with_inverse: bool = False,
) -> Any:
    """Distinct rows of the dense count matrix over ``cols`` (sorted), with their weights."""
    lut = np.full(width, -1, np.int64)
    lut[cols] = np.arange(len(cols))
    col = lut[ent_t]
    ok = col >= 0
    dense = np.zeros((n, len(cols)), np.int64)
    dense[ent_s[ok], col[ok]] = np.minimum(ent_c[ok], _M - 1)  # keeps ratio keys in int64
    # Rows as opaque bytes: sorting those is much faster than np.unique(axis=0).
    rows = np.ascontiguousarray(dense).view(np.dtype((np.void, 8 * len(cols)))).ravel()
    _, first, inv, w = np.unique(rows, return_index=True, return_inverse=True, return_counts=True)
    u = dense[first]
    if with_inverse:
        return u, w, inv.ravel()
    return u, w


def _transition_keys(lengths: I64, codes: I64, v: int) -> tuple[I64, I64]:
    """Distinct (session, key) of the transitions a -> b in each session.

    Codes: templates ``0..v-1``, unseen ``v``, session start ``v + 1``, end ``v + 2``; the key is
    ``a * (v + 3) + b``. A transition counts once per session, like a template.
    """
    n = len(lengths)
    width = np.int64(v + 3)
    ends = np.cumsum(lengths)
    nonempty = lengths > 0
    prev = np.empty(len(codes), np.int64)
    prev[1:] = codes[:-1]
    prev[(ends - lengths)[nonempty]] = v + 1
    last = np.full(n, v + 1, np.int64)  # an empty session is start -> end
    last[nonempty] = codes[ends[nonempty] - 1]
    keys = np.concatenate([prev * width + codes, last * width + (v + 2)])
    sess = np.concatenate([np.repeat(np.arange(n, dtype=np.int64), lengths), np.arange(n)])
    span = int(width) * int(width)
    if n * span < 2**62:  # one int64 key per (session, transition): a plain sort
        both = _unique(sess * np.int64(span) + keys)
        return both // span, both % span
    order = np.lexsort((keys, sess))
    sess, keys = sess[order], keys[order]
    first = np.ones(len(keys), bool)
    first[1:] = (sess[1:] != sess[:-1]) | (keys[1:] != keys[:-1])
    return sess[first].astype(np.int64), keys[first].astype(np.int64)


# ---------------------------------------------------------------------- streaming

ClosedBy = Literal["idle", "max_events", "evicted", "flush"]


@dataclass(frozen=True)
class ScoredSession:
    """A closed session with its verdict; ``templates`` in arrival order."""

    key: SessionKey
    start_ms: int
    end_ms: int
    templates: I64
    anomaly: bool
    score: float
    reasons: tuple[Reason, ...]
    closed_by: ClosedBy
    # 0 for a session opened fresh; n for the n-th continuation of a key whose sessions reached
    # ``max_events_per_session`` one after another (they can share a start time).
    part: int = 0


@dataclass
class _Open:
    start: int
    last: int
    chunks: list[I64]
    n: int
    part: int = 0


@dataclass(frozen=True)
class _Closed:
    key: SessionKey
    start: int
    end: int
    templates: I64
    closed_by: ClosedBy
    part: int = 0


class SessionTracker:
    """Groups ``(session key, template id, ts)`` events into sessions and scores closed ones.

    A session closes when no event came for ``idle_timeout_ms`` (event time: the clock is the
    largest timestamp seen, or what :meth:`close_idle` is given), when it reaches
    ``max_events_per_session`` (the next events open a new session under the same key), or when
    more than ``max_open_sessions`` are open (the least recently active is closed first), so memory
    stays bounded on endless input. Without a fitted model the first ``warmup_sessions`` closed
    sessions are kept, the model is fitted on them (no labels), and they are returned scored; they
    stay kept (as many as the warm-up held), so that :meth:`remap` can fit the model again when
    template ids merge. Sessions are kept in order of last activity; idle ones are closed from the
    oldest on.
    """

    def __init__(
        self,
        model: SessionModel | None = None,
        *,
        idle_timeout_ms: int = 60_000,
        warmup_sessions: int = 1_000,
        max_open_sessions: int = 100_000,
        max_events_per_session: int = 10_000,
    ) -> None:
        for name, value in (
            ("idle_timeout_ms", idle_timeout_ms),
            ("warmup_sessions", warmup_sessions),
            ("max_open_sessions", max_open_sessions),
            ("max_events_per_session", max_events_per_session),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"must be an integer >= 1, got {value!r}", where=name)
        self.model = model if model is not None else SessionModel()
        self.idle_timeout_ms = idle_timeout_ms
        self.warmup_sessions = warmup_sessions
        self.max_open_sessions = max_open_sessions
        self.max_events_per_session = max_events_per_session
        self.clock_ms: int | None = None
        self._open: OrderedDict[SessionKey, _Open] = OrderedDict()
        self._warm: list[_Closed] = []
        # The sessions the model was fitted on (None for a model given fitted): a template merge
        # refits the model on them, rewritten (see remap).
        self._trained: list[I64] | None = None
        #: Bumped whenever the model changes (fitted, refitted, restored): its saved state is old.
        self.model_version = 0

    @property
    def open_sessions(self) -> int:
        """How many sessions are open now."""
        return len(self._open)

    @property
    def warming_up(self) -> int:
        """Closed sessions held back until the model is fitted on them."""
        return len(self._warm)

    def observe(
        self,
        keys: Sequence[SessionKey] | NDArray[Any],
        template_ids: Sequence[int] | NDArray[np.integer[Any]],
        ts: Sequence[int] | NDArray[np.integer[Any]],
    ) -> list[ScoredSession]:
        """Add events (parallel arrays, arrival order); return the sessions this closed, scored."""
        tids = np.asarray(template_ids)
        tsa = np.asarray(ts)
        if len(keys) != len(tids) or len(tids) != len(tsa):
            raise DataError(
                f"keys, template_ids and ts differ in length ({len(keys)}, {len(tids)}, "
                f"{len(tsa)})",
                where="events",
            )
        if tids.ndim != 1 or tsa.ndim != 1:
            raise DataError(
                f"template ids and ts must be one-dimensional, got {tids.ndim} and {tsa.ndim} "
                "dimensions",
                where="events",
            )
        if len(tids) == 0:
            return []
        if tids.dtype.kind not in "iu" or tsa.dtype.kind not in "iu":
            raise DataError("template ids and ts must be integers", where="events")
        tids, tsa = tids.astype(np.int64), tsa.astype(np.int64)
        _, flat = _flatten([list(keys)], what="session keys", where="keys")
        uniq, codes = _factorize(flat)
        order = np.argsort(codes, kind="stable")  # per key, arrival order kept
        bounds = np.searchsorted(codes[order], np.arange(len(uniq) + 1))
        closed: list[_Closed] = []
        # Visit keys by their last event in the batch, so the open sessions stay in order of
        # last activity (idle closing and eviction take the oldest first).
        last_event = order[bounds[1:] - 1]
        tok_sorted, ts_sorted = tids[order], tsa[order]
        gmin = np.minimum.reduceat(ts_sorted, bounds[:-1]).tolist()
        gmax = np.maximum.reduceat(ts_sorted, bounds[:-1]).tolist()
        lo_hi = bounds.tolist()
        # Keys whose events in this call stop for the idle timeout somewhere (rare: the engine
        # stamps a tick's lines with one time) are split there below, as if given one by one.
        sorted_codes = codes[order]
        idle_gap = (np.diff(ts_sorted) >= self.idle_timeout_ms) & (
            sorted_codes[1:] == sorted_codes[:-1]
        )
        gapped = set(sorted_codes[1:][idle_gap].tolist())
        for g in np.argsort(last_event, kind="stable").tolist():
            key = uniq[g]
            lo, hi = lo_hi[g], lo_hi[g + 1]
            if g not in gapped:
                self._add(key, lo, hi, gmin[g], gmax[g], tok_sorted, ts_sorted, closed)
                continue
            t = ts_sorted[lo:hi]
            latest = np.maximum.accumulate(t)
            cuts = (np.flatnonzero(t[1:] - latest[:-1] >= self.idle_timeout_ms) + 1 + lo).tolist()
            edges = [lo, *cuts, hi]
            for k, (a, b) in enumerate(pairwise(edges)):
                if k and key in self._open:
                    closed.append(self._close(key, "idle"))  # the events stopped long enough
                tmin, tmax = int(ts_sorted[a:b].min()), int(ts_sorted[a:b].max())
                self._add(key, a, b, tmin, tmax, tok_sorted, ts_sorted, closed)
        now = int(tsa.max())
        self.clock_ms = now if self.clock_ms is None else max(self.clock_ms, now)
        closed.extend(self._close_idle(self.clock_ms))
        while len(self._open) > self.max_open_sessions:
            closed.append(self._close(next(iter(self._open)), "evicted"))
        return self._score(closed)

    def _add(
        self,
        key: SessionKey,
        lo: int,
        hi: int,
        tmin: int,
        tmax: int,
        tok_sorted: I64,
        ts_sorted: I64,
        closed: list[_Closed],
    ) -> None:
        """Add one key's events ``[lo, hi)`` of the sorted batch (times ``tmin``..``tmax``)."""
        limit = self.max_events_per_session
        sess = self._open.get(key)
        if sess is not None and tmin - sess.last >= self.idle_timeout_ms:
            # Back after the idle timeout (no call came in between to close it): that
            # session is over, these events open a new one.
            closed.append(self._close(key, "idle"))
            sess = None
        if sess is not None and sess.n + hi - lo < limit:  # the common case: append
            sess.chunks.append(tok_sorted[lo:hi].copy())  # not a view: frees the batch
            sess.n += hi - lo
            sess.start = min(sess.start, tmin)
            sess.last = max(sess.last, tmax)
            self._open.move_to_end(key)
            return
        pos = lo
        number = 0  # the part number of the next session this key opens
        while pos < hi:
            sess = self._open.get(key)
            if sess is None:
                first = int(ts_sorted[pos])
                sess = self._open[key] = _Open(first, first, [], 0, number)
            take = min(limit - sess.n, hi - pos)
            part = slice(pos, pos + take)
            sess.chunks.append(tok_sorted[part].copy())
            sess.n += take
            sess.start = min(sess.start, int(ts_sorted[part].min()))
            sess.last = max(sess.last, int(ts_sorted[part].max()))
            self._open.move_to_end(key)
            pos += take
            if sess.n >= limit:
                closed.append(self._close(key, "max_events"))
                number = sess.part + 1  # the next events continue it under the same key

    def close_idle(self, now_ms: int) -> list[ScoredSession]:
        """Close the sessions idle for ``idle_timeout_ms`` at ``now_ms``; return them scored."""
        self.clock_ms = now_ms if self.clock_ms is None else max(self.clock_ms, now_ms)
        return self._score(self._close_idle(self.clock_ms))

    def flush(self) -> list[ScoredSession]:
        """Close every open session (end of input); a model still warming up is fitted now."""
        closed = [self._close(key, "flush") for key in list(self._open)]
        return self._score(closed, force_fit=True)

    def _close(self, key: SessionKey, why: ClosedBy) -> _Closed:
        sess = self._open.pop(key)
        tokens = np.concatenate(sess.chunks) if sess.chunks else np.zeros(0, np.int64)
        return _Closed(key, sess.start, sess.last, tokens, why, sess.part)

    def _close_idle(self, now: int) -> list[_Closed]:
        out: list[_Closed] = []
        while self._open:
            key, sess = next(iter(self._open.items()))
            if now - sess.last < self.idle_timeout_ms:
                break
            out.append(self._close(key, "idle"))
        return out

    def _score(self, closed: list[_Closed], *, force_fit: bool = False) -> list[ScoredSession]:
        if not self.model.fitted:
            self._warm.extend(closed)
            if len(self._warm) < self.warmup_sessions and not (force_fit and self._warm):
                return []
            closed, self._warm = self._warm, []
            self._trained = [c.templates for c in closed]
            self.model.fit(self._trained)
            self.model_version += 1
        if not closed:
            return []
        sc = self.model.score([c.templates for c in closed])
        return [
            ScoredSession(
                c.key,
                c.start,
                c.end,
                c.templates,
                bool(sc.anomaly[i]),
                float(sc.score[i]),
                sc.reasons[i],
                c.closed_by,
                c.part,
            )
            for i, c in enumerate(closed)
        ]

    def remap(self, merged: Mapping[int, int]) -> None:
        """Templates merged into others (``merged``: old id -> the id it answers as now).

        Open and warming-up sessions are rewritten, and a fitted model whose vocabulary holds a
        merged id is fitted again on its training sessions rewritten: the same model as if the
        ids had been merged from the start, so a merge turns no normal session into an anomaly.
        A model given fitted (its training sessions unknown) is dropped and learned again.
        """
        if not merged:
            return
        old = np.array(sorted(merged), np.int64)
        new = np.array([merged[k] for k in sorted(merged)], np.int64)

        def rewrite(tokens: I64) -> I64:
            pos = np.minimum(np.searchsorted(old, tokens), len(old) - 1)
            out: I64 = np.where(old[pos] == tokens, new[pos], tokens)
            return out

        for sess in self._open.values():
            sess.chunks = [rewrite(c) for c in sess.chunks]
        self._warm = [replace(c, templates=rewrite(c.templates)) for c in self._warm]
        if not self.model.fitted or not any(t in merged for t in self.model.vocab):
            return
        m = self.model
        fresh = SessionModel(
            m.alpha, max_invariant_templates=m.max_invariant_templates, max_reasons=m.max_reasons
        )
        if self._trained:
            self._trained = [rewrite(t) for t in self._trained]
            fresh.fit(self._trained)
        else:
            self._trained = None
        self.model = fresh
        self.model_version += 1

    def restore_model(self, data: bytes) -> None:
        """Take the fitted model and its training sessions from a :meth:`to_bytes` checkpoint
        (this tracker's settings, open sessions and warm-up stay); :class:`DetectorError` when
        malformed."""
        saved = SessionTracker.from_bytes(data)
        self.model, self._trained = saved.model, saved._trained
        self.model_version += 1

    def to_bytes(self, *, sessions: bool = True) -> bytes:
        """Open sessions, the warm-up buffer and the model (with the sessions it was fitted on)
        as compact bytes; ``sessions=False`` leaves the open and warming-up sessions out."""
        opened = (
            [(k, s.start, s.last, self._join(s.chunks)) for k, s in self._open.items()]
            if sessions
            else []
        )
        warm = [(c.key, c.start, c.end, c.templates) for c in self._warm] if sessions else []
        state: dict[str, NDArray[Any]] = {}
        if self._trained is not None:
            state["train_len"] = np.array([len(t) for t in self._trained], np.int64)
            state["train_tokens"] = self._join(self._trained)
        for name, rows in (("open", opened), ("warm", warm)):
            state[f"{name}_span"] = np.array([[r[1], r[2]] for r in rows], np.int64).reshape(-1, 2)
            state[f"{name}_len"] = np.array([len(r[3]) for r in rows], np.int64)
            state[f"{name}_tokens"] = self._join([r[3] for r in rows])
        model = self.model.to_bytes() if self.model.fitted else b""
        state["model"] = np.frombuffer(model, np.uint8)
        return pack(
            {
                "kind": _TRACKER_KIND,
                "version": 1,
                "idle_timeout_ms": self.idle_timeout_ms,
                "warmup_sessions": self.warmup_sessions,
                "max_open_sessions": self.max_open_sessions,
                "max_events_per_session": self.max_events_per_session,
                "clock_ms": self.clock_ms,
                "model_params": [
                    self.model.alpha,
                    self.model.max_invariant_templates,
                    self.model.max_reasons,
                ],
                "open_keys": [r[0] for r in opened],
                "warm_keys": [r[0] for r in warm],
                "warm_closed_by": [c.closed_by for c in self._warm] if sessions else [],
                "open_parts": [s.part for s in self._open.values()] if sessions else [],
                "warm_parts": [c.part for c in self._warm] if sessions else [],
                "state": state,
            }
        )

    @staticmethod
    def _join(chunks: Sequence[I64]) -> I64:
        return np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, np.int64)

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionTracker:
        """Rebuild a tracker from :meth:`to_bytes`; :class:`DetectorError` when malformed."""
        ck = unpack(data)
        if ck.get("kind") != _TRACKER_KIND:
            raise DetectorError(f"not a session tracker checkpoint (kind {ck.get('kind')!r})")
        try:
            st = ck["state"]
            blob = st["model"].tobytes()
            alpha, max_inv, max_reasons = ck["model_params"]
            model = (
                SessionModel.from_bytes(blob)
                if blob
                else SessionModel(alpha, max_invariant_templates=max_inv, max_reasons=max_reasons)
            )
            tr = cls(
                model,
                idle_timeout_ms=ck["idle_timeout_ms"],
                warmup_sessions=ck["warmup_sessions"],
                max_open_sessions=ck["max_open_sessions"],
                max_events_per_session=ck["max_events_per_session"],
            )
            tr.clock_ms = ck["clock_ms"]
            if "train_len" in st:  # checkpoints from before the training sessions were kept
                lens = st["train_len"]
                cuts = np.cumsum(lens)[:-1]
                tr._trained = np.split(st["train_tokens"], cuts) if len(lens) else []
                if sum(map(len, tr._trained)) != len(st["train_tokens"]):
                    raise ValueError("training sessions: lengths and tokens differ")
            for name in ("open", "warm"):
                keys = ck[f"{name}_keys"]
                span, lens = st[f"{name}_span"], st[f"{name}_len"]
                parts = np.split(st[f"{name}_tokens"], np.cumsum(lens)[:-1]) if len(lens) else []
                # Checkpoints from before session parts were kept: every session a first part.
                numbers = ck.get(f"{name}_parts", [0] * len(keys))
                if not (len(keys) == len(span) == len(lens) == len(parts) == len(numbers)):
                    raise ValueError(f"{name} sessions: keys and arrays differ in length")
                for i, key in enumerate(keys):
                    start, last, number = int(span[i, 0]), int(span[i, 1]), int(numbers[i])
                    if name == "open":
                        tr._open[key] = _Open(start, last, [parts[i]], len(parts[i]), number)
                    else:
                        why = ck["warm_closed_by"][i]
                        tr._warm.append(_Closed(key, start, last, parts[i], why, number))
        except (KeyError, TypeError, ValueError, IndexError, ConfigError) as exc:
            raise DetectorError(f"corrupt session tracker checkpoint: {exc}") from None
        return tr


# ---------------------------------------------------------------------- engine hook

SESSION_DETECTOR = "log-session"
_MAX_EVIDENCE_TEMPLATES = 200


class SessionFindings:
    """The engine's session scorer for one log file (``relia.logs.engine.SessionScorer``).

    The engine hands over each tick's lines as session keys (None where the key pattern did not
    match: those lines are left out) and template ids, stamped with the tick's time; anomalous
    closed sessions come back as log findings with their reasons as evidence. ``template_text``
    (e.g. the miner's ``template``) puts template text into the summaries and the reasons.
    """

    def __init__(
        self,
        name: str,
        tracker: SessionTracker | None = None,
        *,
        template_text: Callable[[int], str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"must be a non-empty string, got {name!r}", where="name")
        if tracker is not None and not isinstance(tracker, SessionTracker):
            raise ConfigError(
                f"must be a SessionTracker, got {type(tracker).__name__}", where="tracker"
            )
        if template_text is not None and not callable(template_text):
            raise ConfigError(
                f"must be callable, got {type(template_text).__name__}", where="template_text"
            )
        self.name = name
        self.tracker = tracker if tracker is not None else SessionTracker()
        self.template_text = template_text
        self._state: tuple[int, bytes] | None = None  # (model version, saved_state bytes)

    def observe(
        self,
        keys: Sequence[str | None],
        template_ids: Sequence[int] | NDArray[np.integer[Any]],
        now_ms: int,
    ) -> list[Finding]:
        """Add one tick's lines; findings for the anomalous sessions this closed."""
        ids = np.asarray(template_ids, np.int64)
        if len(keys) != len(ids):
            raise DataError(
                f"keys and template_ids differ in length ({len(keys)}, {len(ids)})",
                where=self.name,
            )
        keep = [i for i, k in enumerate(keys) if k is not None]
        present: list[SessionKey] = [k for k in keys if k is not None]
        closed = self.tracker.observe(present, ids[keep], np.full(len(keep), now_ms, np.int64))
        closed += self.tracker.close_idle(now_ms)
        return [self._finding(s) for s in closed if s.anomaly]

    def close_idle(self, now_ms: int) -> list[Finding]:
        """Close the sessions idle at ``now_ms`` (a tick in which the file gave no lines);
        findings for the anomalous ones."""
        return [self._finding(s) for s in self.tracker.close_idle(now_ms) if s.anomaly]

    def remap_templates(self, merged: Mapping[int, int]) -> None:
        """Template ids merged into others (old -> live id): see :meth:`SessionTracker.remap`."""
        self.tracker.remap(merged)

    def saved_state(self) -> bytes:
        """The learned model and its training sessions (not the open sessions), for the engine
        to store with the file's state; empty while warming up. Made again only when the model
        changed."""
        version = self.tracker.model_version
        if self._state is None or self._state[0] != version:
            data = self.tracker.to_bytes(sessions=False) if self.tracker.model.fitted else b""
            self._state = (version, data)
        return self._state[1]

    def restore(self, data: bytes) -> None:
        """Take back the model of :meth:`saved_state` (after a restart); :class:`DetectorError`
        when malformed."""
        self.tracker.restore_model(data)

    def flush(self) -> list[Finding]:
        """Close every open session (shutdown, end of a replay); findings for anomalous ones."""
        return [self._finding(s) for s in self.tracker.flush() if s.anomaly]

    def _finding(self, s: ScoredSession) -> Finding:
        # Not quoted though "log-session" is no legacy metric name: the documented key, and the
        # finding ids made from it, stay as they were.
        key = describe(
            series_key(SESSION_DETECTOR, {"file": self.name, "session": str(s.key)}),
            quote_name=False,
        )
        first = s.reasons[0].detail if s.reasons else "abnormal session"
        if self.template_text is not None and s.reasons and s.reasons[0].templates:
            texts = [self._text(t) for t in s.reasons[0].templates]
            first += " [" + " | ".join(t[:80] for t in texts) + "]"
        # Keyed by the session's start (a replay after a crash gives the same id) and, for the
        # continuations of a key that reached max_events_per_session, by their part number:
        # within one tick they all start at the tick's time.
        id_key = key if s.part == 0 else f"{key}#part{s.part}"
        return Finding(
            id=Finding.make_id(FindingKind.LOG, id_key, s.start_ms, SESSION_DETECTOR),
            kind=FindingKind.LOG,
            key=key,
            start=s.start_ms,
            end=s.end_ms,
            score=s.score,
            severity=severity_for_score(s.score),
            detector=SESSION_DETECTOR,
            summary=f"{self.name}: abnormal session {s.key} ({len(s.templates)} lines): {first}",
            evidence={
                "file": self.name,
                "session": s.key,
                "lines": len(s.templates),
                "closed_by": s.closed_by,
                "template_ids": s.templates[:_MAX_EVIDENCE_TEMPLATES].tolist(),
                "reasons": [
                    {
                        "kind": r.kind,
                        "detail": r.detail,
                        "frequency": r.frequency,
                        "templates": list(r.templates),
                        **(
                            {"texts": [self._text(t)[:200] for t in r.templates]}
                            if self.template_text is not None
                            else {}
                        ),
                    }
                    for r in s.reasons
                ],
            },
        )

    def _text(self, template: Token) -> str:
        """A template's text; its id where ``template_text`` does not know it."""
        if self.template_text is None or not isinstance(template, int):
            return str(template)
        try:
            return self.template_text(template)
        except (KeyError, IndexError):
            return f"template {template}"

    def to_bytes(self) -> bytes:
        """The tracker's state (open sessions, model): what a checkpoint needs."""
        return self.tracker.to_bytes()

    @classmethod
    def from_bytes(
        cls, name: str, data: bytes, *, template_text: Callable[[int], str] | None = None
    ) -> SessionFindings:
        """Rebuild from :meth:`to_bytes`."""
        return cls(name, SessionTracker.from_bytes(data), template_text=template_text)
