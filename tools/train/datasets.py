#!/usr/bin/python3
"""The shipped evaluation datasets (datasets/kjv/), from the same corpus and split as prepare.py.

  datasets/kjv/test/*.txt     the held-out test documents: prepare.py's 6 runs of 10 consecutive
                              chapters (never trained on; the documents of docs/EVALUATIONS.md)
  datasets/kjv/search/*.txt   the validation chapters (never trained on either; only watched during
                              training), in canonical order, joined 10 chapters to a document: the
                              fitness set of LongRoPE searches, disjoint from the test documents

Both are PiServe `pg19` folders. Needs only Debian's bible-kjv: `/usr/bin/python3 tools/train/datasets.py`.
The defaults are prepare.py's (seed 1234, 6 runs of 10 chapters, 3% validation), so the split is
the one the shipped models were trained with.
"""
import argparse
import os
import shutil

from prepare import chapter_text, read_bible, split_chapters

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "datasets", "kjv"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--test-runs", type=int, default=6)
    ap.add_argument("--run-length", type=int, default=10)
    ap.add_argument("--val-fraction", type=float, default=0.03)
    ap.add_argument("--search-chapters", type=int, default=10, help="validation chapters per search document")
    args = ap.parse_args()

    books = read_bible()
    test, val = split_chapters(books, args.seed, args.test_runs, args.run_length, args.val_fraction)
    test_docs, val_chapters = [], []
    for b, (name, chs) in enumerate(books):
        run = []
        for c, verses in enumerate(chs):
            if (b, c) in test:
                run.append(chapter_text(verses))
                continue
            if run:  # named as prepare.py names them (the last chapter index is exclusive there too)
                test_docs.append((f"{name}-{c - len(run) + 1}-{c}", "\n\n".join(run)))
                run = []
            if (b, c) in val:
                val_chapters.append((f"{name}{c + 1}", chapter_text(verses)))
        if run:
            test_docs.append((f"{name}-{len(chs) - len(run) + 1}-{len(chs)}", "\n\n".join(run)))

    for split in ("test", "search"):
        shutil.rmtree(os.path.join(args.out, split), ignore_errors=True)
        os.makedirs(os.path.join(args.out, split))
    for doc_id, text in test_docs:
        with open(os.path.join(args.out, "test", f"{doc_id}.txt"), "w") as f:
            f.write(text + "\n")
    k = args.search_chapters
    for i in range(0, len(val_chapters) - k + 1, k):  # whole documents only
        group = val_chapters[i:i + k]
        with open(os.path.join(args.out, "search", f"val-{i // k:02d}-{group[0][0]}-{group[-1][0]}.txt"), "w") as f:
            f.write("\n\n".join(text for _, text in group) + "\n")
    print(f"{len(test_docs)} test documents, {len(val_chapters) // k} search documents in {args.out}")


if __name__ == "__main__":
    main()
