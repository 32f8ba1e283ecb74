#!/usr/bin/env python3
"""Records Python's unicodedata.normalize as an independent reference for the managed normalizer's tests.

    /usr/bin/python3 tools/unicode/gen_python_fixture.py | gzip -9n > tests/fixtures/unicode/python-unicodedata.txt.gz

Output lines (code points in hex, as in NormalizationTest.txt):
    # comments, including the unicodedata version
    @assigned LO..HI LO..HI ...      every code point Python's unicodedata has assigned (category != Cn),
                                     surrogates included: alone, each normalizes to itself in all four forms
                                     unless it has its own line below
    SRC;NFC;NFD;NFKC;NFKD            a case
Cases: every assigned code point whose four forms are not all itself, then seeded random strings of combining
marks, Hangul jamo (L, V, T, LV and LVT syllables), precomposed letters, base letters, non-characters
(U+FFFE, U+FFFF, U+FDD0) and lone surrogates (never a high surrogate directly before a low one).
Only code points assigned in this Python's Unicode version are used, so the fixture also holds for the
newer UCD the tables are generated from (Unicode's normalization stability policy).
"""
import random
import sys
import unicodedata

FORMS = ("NFC", "NFD", "NFKC", "NFKD")


def hexs(s):
    return " ".join("%04X" % ord(c) for c in s)


def line(s):
    return ";".join([hexs(s)] + [hexs(unicodedata.normalize(f, s)) for f in FORMS])


assigned = [cp for cp in range(0x110000) if unicodedata.category(chr(cp)) != "Cn"]
ranges = []
for cp in assigned:
    if ranges and ranges[-1][1] == cp - 1:
        ranges[-1][1] = cp
    else:
        ranges.append([cp, cp])

out = sys.stdout
out.write("# Python %s unicodedata.normalize, Unicode %s\n" % (sys.version.split()[0], unicodedata.unidata_version))
out.write("@assigned " + " ".join("%04X..%04X" % (a, b) for a, b in ranges) + "\n")

changed = 0
for cp in assigned:
    s = chr(cp)
    if any(unicodedata.normalize(f, s) != s for f in FORMS):
        out.write(line(s) + "\n")
        changed += 1

marks = [chr(cp) for cp in assigned if unicodedata.combining(chr(cp))]
precomposed = [chr(cp) for cp in assigned if unicodedata.decomposition(chr(cp)) and not (0xAC00 <= cp <= 0xD7A3)]
L = [chr(cp) for cp in range(0x1100, 0x1113)]
V = [chr(cp) for cp in range(0x1161, 0x1176)]
T = [chr(cp) for cp in range(0x11A8, 0x11C3)]
old_jamo = [chr(cp) for cp in list(range(0x1113, 0x1160)) + list(range(0x1176, 0x11A8)) + list(range(0x11C3, 0x1200))]
syllables_lv = [chr(0xAC00 + i * 28) for i in range(19 * 21)]
syllables_lvt = [chr(0xAC00 + i) for i in range(11172) if i % 28]
bases = list("aeiouAEIOUcnsyzgkwhrl ") + ["\u0391", "\u03B1", "\u0410", "\u0430", "\u05D0", "\u0627", "\u0915", "\u0B47", "\u0BC6", "\u0CC6", "\u0DD9", "\u1025", "\u3046", "\u30A6", "\U0001109B"]
specials = ["\uFFFE", "\uFFFF", "\uFDD0", "\U0010FFFF", "\uDC80", "\uDFFF", "\uD800"]
pools = [marks, marks, precomposed, bases, bases, L, V, T, old_jamo, syllables_lv, syllables_lvt, specials]

rng = random.Random(20240612)
random_cases = 0
for _ in range(6000):
    n = rng.randint(1, 8)
    chars = []
    for _ in range(n):
        c = rng.choice(rng.choice(pools))
        if chars and 0xD800 <= ord(chars[-1]) <= 0xDBFF and 0xDC00 <= ord(c) <= 0xDFFF:
            continue
        chars.append(c)
    out.write(line("".join(chars)) + "\n")
    random_cases += 1

out.write("# %d assigned code points, %d with their own line, %d random strings\n" % (len(assigned), changed, random_cases))
