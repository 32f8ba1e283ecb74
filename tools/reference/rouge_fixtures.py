#!/usr/bin/python3
"""Reference fixtures for PiServe's ROUGE (src/Eval/Metrics/Rouge.cs, PorterStemmer.cs).

Writes
  tests/fixtures/rouge/porter_nltk_extensions.tsv   word<TAB>stem, sorted, one line per distinct word
  tests/fixtures/rouge/rouge_pairs.json             prediction/reference pairs with rouge-score's scores

Stems come from NLTK itself: nltk.stem.porter.PorterStemmer() in its default mode
(NLTK_EXTENSIONS), which is what Google's rouge-score builds when use_stemmer=True.

The scores come from the scorer below, written from rouge-score's documented algorithm
(rouge_scorer.py / tokenize.py); the rouge-score package itself is not installable here (no PyPI).

Text: the KJV Bible (Debian package bible-kjv, read through `bible -f gen1:1-rev22:21`) and every
file under /usr/share/common-licenses. Run with Debian's /usr/bin/python3 (python3-nltk 3.8):

    /usr/bin/python3 tools/reference/rouge_fixtures.py
"""

import collections
import json
import os
import random
import re
import subprocess
import sys

from nltk.stem.porter import PorterStemmer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "rouge")
LICENSES = "/usr/share/common-licenses"
SEED = 13
PAIR_COUNT = 300

STEMMER = PorterStemmer()  # default mode, as rouge-score constructs it
assert STEMMER.mode == PorterStemmer.NLTK_EXTENSIONS


# ---------------------------------------------------------------------------------------------
# rouge-score, from its documented algorithm
# ---------------------------------------------------------------------------------------------

def tokenize(text, use_stemmer):
    """Lowercase; every run outside [a-z0-9] becomes a space; split on whitespace; stem tokens
    longer than 3 characters; keep only tokens that are wholly [a-z0-9]."""
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    tokens = re.split(r"\s+", text)
    if use_stemmer:
        tokens = [STEMMER.stem(t) if len(t) > 3 else t for t in tokens]
    return [t for t in tokens if re.match(r"^[a-z0-9]+$", t)]


def fmeasure(p, r):
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def score(p, r):
    return {"precision": p, "recall": r, "f1": fmeasure(p, r)}


def ngrams(tokens, n):
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(ref, pred, n):
    r, p = ngrams(ref, n), ngrams(pred, n)
    overlap = sum(min(c, p[g]) for g, c in r.items())
    return score(overlap / max(sum(p.values()), 1), overlap / max(sum(r.values()), 1))


def lcs_table(a, b):
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            t[i][j] = t[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1][j], t[i][j - 1])
    return t


def lcs_positions(a, b):
    """Positions in a of one LCS, read back from the end; on a tie the walk moves up in a."""
    t = lcs_table(a, b)
    i, j, out = len(a), len(b), []
    while i > 0 and j > 0:
        if a[i - 1] == b[j - 1]:
            out.append(i - 1)
            i -= 1
            j -= 1
        elif t[i][j - 1] > t[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return out[::-1]


def rouge_l(ref, pred):
    if not ref or not pred:
        return score(0, 0)
    lcs = lcs_table(ref, pred)[-1][-1]
    return score(lcs / len(pred), lcs / len(ref))


def rouge_lsum(reference, prediction, use_stemmer):
    """Sentences are the non-empty newline-separated pieces; per reference sentence, the union of
    its LCS positions against every prediction sentence; a hit spends one count of that token on
    each side so nothing is counted twice."""
    ref_sents = [tokenize(s, use_stemmer) for s in reference.split("\n") if len(s)]
    pred_sents = [tokenize(s, use_stemmer) for s in prediction.split("\n") if len(s)]
    if not ref_sents or not pred_sents:
        return score(0, 0)
    m, n = sum(map(len, ref_sents)), sum(map(len, pred_sents))
    if not m or not n:
        return score(0, 0)
    ref_left = collections.Counter(t for s in ref_sents for t in s)
    pred_left = collections.Counter(t for s in pred_sents for t in s)
    hits = 0
    for r in ref_sents:
        union = sorted(set().union(*[lcs_positions(r, c) for c in pred_sents]))
        for tok in (r[i] for i in union):
            if pred_left[tok] > 0 and ref_left[tok] > 0:
                hits += 1
                pred_left[tok] -= 1
                ref_left[tok] -= 1
    return score(hits / n, hits / m)


def rouge(reference, prediction, use_stemmer):
    ref, pred = tokenize(reference, use_stemmer), tokenize(prediction, use_stemmer)
    return {
        "rouge1": rouge_n(ref, pred, 1),
        "rouge2": rouge_n(ref, pred, 2),
        "rougeL": rouge_l(ref, pred),
        "rougeLsum": rouge_lsum(reference, prediction, use_stemmer),
    }


def self_check():
    """A few hand-worked cases, so a slip in the reference shows before fixtures are written."""
    s = rouge("the cat sat on the mat", "the cat lay on the mat", False)
    assert s["rouge1"]["precision"] == 5 / 6 and s["rouge2"]["recall"] == 3 / 5 and s["rougeL"]["f1"] == 5 / 6
    s = rouge("a b c\nd e f", "d e f\na b c", False)
    assert s["rougeL"]["precision"] == 0.5 and s["rougeLsum"]["precision"] == 1.0
    assert rouge_lsum("x", "x\nx", False) == score(0.5, 1.0)
    assert tokenize("Officials reviewed 20% (B)!", True) == ["offici", "review", "20", "b"]
    assert rouge("!!!", "", True)["rougeLsum"] == score(0, 0)


# ---------------------------------------------------------------------------------------------
# Text sources
# ---------------------------------------------------------------------------------------------

def kjv_verses():
    out = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    verses = []
    for line in out.splitlines():
        label, _, text = line.partition(" ")  # "Ge1:1 In the beginning ..."
        assert re.match(r"^[0-9A-Za-z]+[0-9]+:[0-9]+$", label), line
        verses.append(text)
    assert len(verses) == 31102, len(verses)
    return verses


def license_files():
    texts = {}
    for name in sorted(os.listdir(LICENSES)):
        path = os.path.join(LICENSES, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                texts[name] = f.read()
    return texts


def license_paragraphs(texts):
    """Blank-line separated paragraphs, keeping their internal line breaks (multi-line texts)."""
    paras = []
    for text in texts.values():
        for p in re.split(r"\n\s*\n", text):
            p = "\n".join(line.strip() for line in p.strip("\n").split("\n"))
            if len(tokenize(p, False)) >= 5:
                paras.append(p)
    return paras


# ---------------------------------------------------------------------------------------------
# Fixture 1: NLTK stems of every distinct word
# ---------------------------------------------------------------------------------------------

def write_stems(verses, licenses):
    words = set()
    for v in verses:
        words.update(tokenize(v, False))
    for t in licenses.values():
        words.update(tokenize(t, False))
    # NLTK's own table of irregular forms, so each of its entries is checked even when the texts lack it.
    words.update(STEMMER.pool.keys())
    rows = sorted((w, STEMMER.stem(w)) for w in words)
    path = os.path.join(OUT, "porter_nltk_extensions.tsv")
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for w, s in rows:
            f.write(f"{w}\t{s}\n")
    return len(rows), os.path.getsize(path)


# ---------------------------------------------------------------------------------------------
# Fixture 2: prediction/reference pairs
# ---------------------------------------------------------------------------------------------

def sibling_forms(words):
    """Groups of distinct words that share an NLTK stem (e.g. created/creation/creating):
    swapping one for another changes the plain scores but not the stemmed ones."""
    by_stem = collections.defaultdict(list)
    for w in words:
        if len(w) > 3:
            by_stem[STEMMER.stem(w)].append(w)
    return {w: [x for x in g if x != w] for g in by_stem.values() if len(g) > 1 for w in g}


def make_pairs(verses, paras, rng):
    vocab = sorted({t for v in verses for t in tokenize(v, False)})
    siblings = sibling_forms(vocab)

    def mutate(text, drop, swap, shuffle, inflect):
        """Word-level edits of a text, keeping its punctuation attached and its line breaks."""
        lines = []
        for line in text.split("\n"):
            ws = line.split(" ")
            ws = [w for w in ws if rng.random() >= drop] or ws[:1]
            ws = [rng.choice(vocab) if rng.random() < swap else w for w in ws]
            out = []
            for w in ws:
                core = re.sub(r"[^A-Za-z]", "", w).lower()
                if core in siblings and rng.random() < inflect:
                    w = w.lower().replace(core, rng.choice(siblings[core]))
                out.append(w)
            if shuffle and len(out) > 3:
                i = rng.randrange(len(out) - 2)
                j = rng.randrange(i + 1, len(out))
                seg = out[i:j]
                rng.shuffle(seg)
                out[i:j] = seg
            lines.append(" ".join(out))
        return "\n".join(lines)

    def verse_run(k):
        i = rng.randrange(len(verses) - k)
        return verses[i:i + k]

    pairs = []

    def add(kind, reference, prediction):
        pairs.append({"kind": kind, "reference": reference, "prediction": prediction})

    # Edge cases: empty, whitespace, punctuation-only, blank lines, non-ASCII (incl. the two
    # characters whose Python lower() yields ASCII: U+0130 -> "i\u0307", U+212A KELVIN SIGN -> "k").
    v = verses[0]
    for ref, pred in [
        ("", ""), (v, ""), ("", v), ("!!!", v), (v, "?! -- ;;"), ("...\n,,,\n", "...\n"),
        ("\n\n", "\n"), (v, v), (v + "\n\n" + verses[1], "\n" + verses[1] + "\n\n" + v + "\n"),
        ("Caf\u00e9 na\u00efve \u0130stanbul \u212Aelvin", "cafe naive istanbul kelvin"),
        ("\u0130\u0130 DYING lying SKIES Skies sky", "die lie skies sky tying innings news"),
        ("Running runs ran; the RUNNER's runners.", "run, running, runner"),
        ("a\r\nb c\r\n", "a b\nc"), ("x", "x\nx"), ("42 is 42", "42\n42 is"),
    ]:
        add("edge", ref, pred)

    # Verses with a word whose conflations differ between NLTK's extensions and the 1980 rules
    # (dying/die/died, always/alway, ...), the word swapped for a form that one mode stems alike and
    # the other does not: these are the pairs where the stemmer's mode shows in the scores.
    original = PorterStemmer(mode=PorterStemmer.ORIGINAL_ALGORITHM)
    by_nltk, by_original = collections.defaultdict(set), collections.defaultdict(set)
    for w in vocab:
        if len(w) > 3:
            by_nltk[STEMMER.stem(w)].add(w)
            by_original[original.stem(w)].add(w)
    divergent = {}
    for w in vocab:
        if len(w) > 3:
            other = by_nltk[STEMMER.stem(w)] ^ by_original[original.stem(w)]
            if other:
                divergent[w] = sorted(other)
    verses_with = collections.defaultdict(list)
    for i, v in enumerate(verses):
        for t in set(tokenize(v, False)):
            if t in divergent:
                verses_with[t].append(i)
    for w in rng.sample(sorted(verses_with), 30):
        ref = verses[rng.choice(verses_with[w])]
        pred = re.sub(r"\b" + w + r"\b", rng.choice(divergent[w]), ref, flags=re.IGNORECASE)
        add("stem-divergent", ref, mutate(pred, drop=0.1, swap=0, shuffle=False, inflect=0.2))

    while len(pairs) < PAIR_COUNT:
        r = rng.random()
        if r < 0.30:
            # One verse against an edited copy of itself.
            ref = rng.choice(verses)
            pred = mutate(ref, drop=rng.uniform(0, 0.4), swap=rng.uniform(0, 0.3), shuffle=rng.random() < 0.5,
                          inflect=rng.uniform(0, 0.6))
            add("verse-edit", ref, pred)
        elif r < 0.55:
            # Several verses, one per line; the prediction keeps, drops, reorders and edits lines and
            # merges some neighbours onto one line.
            ref_lines = verse_run(rng.randint(2, 6))
            pred_lines = [mutate(x, drop=rng.uniform(0, 0.3), swap=rng.uniform(0, 0.2), shuffle=False,
                                 inflect=rng.uniform(0, 0.5)) for x in ref_lines if rng.random() < 0.8]
            if rng.random() < 0.5:
                rng.shuffle(pred_lines)
            if rng.random() < 0.3:
                pred_lines.append(rng.choice(verses))
            merged = []
            for x in pred_lines:
                if merged and rng.random() < 0.3:
                    merged[-1] += " " + x
                else:
                    merged.append(x)
            add("verses-multiline", "\n".join(ref_lines), "\n".join(merged))
        elif r < 0.70:
            # Unrelated verses (low but non-zero overlap from function words).
            add("verse-unrelated", rng.choice(verses), rng.choice(verses))
        elif r < 0.80:
            # A cut: the prediction is a prefix / suffix / middle of a longer reference.
            ref = " ".join(verse_run(rng.randint(1, 4)))
            ws = ref.split(" ")
            i = rng.randrange(len(ws))
            j = rng.randrange(i, len(ws)) + 1
            add("verse-cut", ref, " ".join(ws[i:j]))
        else:
            # License paragraphs (multi-line as in the files), edited.
            ref = rng.choice(paras)
            if rng.random() < 0.5:
                lines = ref.split("\n")
                rng.shuffle(lines)
                pred = "\n".join(lines)
            else:
                pred = ref
            pred = mutate(pred, drop=rng.uniform(0, 0.3), swap=rng.uniform(0, 0.15), shuffle=rng.random() < 0.3,
                          inflect=rng.uniform(0, 0.5))
            if rng.random() < 0.3:
                pred = " ".join(pred.split("\n"))
            add("license-paragraph", ref, pred)

    for i, p in enumerate(pairs):
        p["id"] = i
        p["scores"] = {"plain": rouge(p["reference"], p["prediction"], False),
                       "stemmed": rouge(p["reference"], p["prediction"], True)}
    return pairs


def main():
    self_check()
    os.makedirs(OUT, exist_ok=True)
    verses = kjv_verses()
    licenses = license_files()
    n_words, size = write_stems(verses, licenses)
    assert size < 2 * 1024 * 1024, size
    rng = random.Random(SEED)
    pairs = make_pairs(verses, license_paragraphs(licenses), rng)
    doc = {
        "generator": "tools/reference/rouge_fixtures.py",
        "stemmer": "nltk.stem.porter.PorterStemmer() (NLTK_EXTENSIONS), nltk " + __import__("nltk").__version__,
        "seed": SEED,
        "pairs": pairs,
    }
    path = os.path.join(OUT, "rouge_pairs.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        # One pair per line: compact, and a regenerated fixture diffs pair by pair.
        head = json.dumps({k: v for k, v in doc.items() if k != "pairs"})[:-1]
        f.write(head + ', "pairs": [\n' + ",\n".join(json.dumps(p) for p in pairs) + "\n]}\n")
    kinds = collections.Counter(p["kind"] for p in pairs)
    differ = sum(p["scores"]["plain"] != p["scores"]["stemmed"] for p in pairs)
    multiline = sum("\n" in p["reference"] or "\n" in p["prediction"] for p in pairs)
    print(f"stems: {n_words} words, {size} bytes")
    print(f"pairs: {len(pairs)} {dict(kinds)}; stemmer changes the scores of {differ}; multi-line {multiline};"
          f" {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    sys.exit(main())
