#!/usr/bin/python3
"""Stage 1 of the KJV recipe: corpus, splits, tokenizer, token files.

Reads the King James Bible from Debian's bible-kjv (`bible -f gen1:1-rev22:21`), strips the verse
references, splits held-out text by chapter, trains a SentencePiece BPE tokenizer with Debian's
spm_train (byte_fallback, split_digits), exports it as a Hugging Face tokenizer.json (the Llama-2
layout PiServe's tokenizer loads) and writes the token streams train.py reads.

Everything it writes goes under --work (default .train/ at the repository root, git-ignored):
  corpus/train.txt        training verses, one per line (the tokenizer's training input)
  heldout/*.txt           test documents: runs of consecutive held-out chapters (a PiServe `pg19`
                          dataset folder for the evaluation jobs)
  tokenizer/              kjv.model, kjv.vocab, tokenizer.json, tokenizer_config.json
  tokens/                 train.bin, val.bin, test.bin (uint16 little-endian) and meta.json
  tokenizer_cases.json    strings with SentencePiece's ids, for the differential test

Deterministic: the split comes from --seed, spm_train gets --random_seed and reads every line.
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys

try:
    import numpy as np
    import sentencepiece as spm
except ImportError:  # datasets.py reuses the corpus reader and the split, which need neither
    np = spm = None

REF = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
SPECIAL = ["<unk>", "<s>", "</s>"]
# The passkey prompt of Mohtashami & Jaggi, as PiServe's passkey suite writes it (PasskeySuite.cs).
PASSKEY_TASK = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
                "I will quiz you about the important information there.")
PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
PASSKEY_QUESTION = "What is the pass key? The pass key is"


def read_bible():
    """[(book, [chapter verses])] in canonical order, verse references stripped."""
    raw = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    books, last = [], None
    for line in raw.splitlines():
        m = REF.match(line)
        if not m:
            raise SystemExit(f"prepare.py: unexpected line from `bible`: {line[:80]!r}")
        book, chapter, text = m.group(1), int(m.group(2)), m.group(4).strip()
        if (book, chapter) != last:
            if not books or books[-1][0] != book:
                books.append((book, []))
            books[-1][1].append([])
            last = (book, chapter)
        books[-1][1][-1].append(text)
    return books


def split_chapters(books, seed, test_runs, run_length, val_fraction):
    """Test: `test_runs` runs of `run_length` consecutive chapters (long documents for the windows
    up to 8L); validation: a random `val_fraction` of the remaining chapters; the rest trains."""
    rng = random.Random(seed)
    chapters = [(b, c) for b, (_, chs) in enumerate(books) for c in range(len(chs))]
    eligible = [i for i, (_, chs) in enumerate(books) if len(chs) >= 2 * run_length]
    test = set()
    for b in sorted(rng.sample(eligible, test_runs)):
        start = rng.randrange(0, len(books[b][1]) - run_length + 1)
        test.update((b, c) for c in range(start, start + run_length))
    rest = [x for x in chapters if x not in test]
    val = set(rng.sample(rest, max(1, int(len(rest) * val_fraction))))
    return test, val


def chapter_text(verses):
    return "\n".join(verses)


def train_tokenizer(work, vocab_size, seed):
    out = os.path.join(work, "tokenizer")
    os.makedirs(out, exist_ok=True)
    prefix = os.path.join(out, "kjv")
    subprocess.run([
        "spm_train", f"--input={os.path.join(work, 'corpus', 'tokenizer.txt')}", f"--model_prefix={prefix}",
        "--model_type=bpe", f"--vocab_size={vocab_size}", "--byte_fallback=true", "--split_digits=true",
        "--character_coverage=1.0", "--normalization_rule_name=identity",
        "--remove_extra_whitespaces=false", "--add_dummy_prefix=true", "--input_sentence_size=0",
        "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1", f"--random_seed={seed}", "--num_threads=1",
        "--minloglevel=1",
    ], check=True)
    return prefix + ".model"


def hf_tokenizer_json(model_path):
    """The SentencePiece BPE model as tokenizer.json in the Llama-2 layout: Prepend/Replace '▁'
    normalizer, BPE with byte fallback, merges ordered by the merged piece's id (the piece's score
    in a BPE model), ties by the parts' ids, as transformers' SentencePieceExtractor orders them."""
    sp = spm.SentencePieceProcessor(model_file=model_path)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = []
    for piece, pid in vocab.items():
        if sp.is_control(pid) or sp.is_unknown(pid) or sp.is_byte(pid) or len(piece) < 2:
            continue
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab and not sp.is_byte(vocab[left]) and not sp.is_byte(vocab[right]):
                merges.append((pid, vocab[left], vocab[right], f"{left} {right}"))
    merges.sort()
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(SPECIAL)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [m[3] for m in merges]},
    }


TOKENIZER_CONFIG = {
    "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
    "pad_token": None, "clean_up_tokenization_spaces": False, "legacy": False, "model_max_length": 1000000,
    "tokenizer_class": "LlamaTokenizer",
}


def tokenizer_cases(sp, seed):
    """Strings for the differential test against SentencePiece: passkey prompts (the eval's format),
    digits, punctuation, bytes outside the corpus, and random mixes of vocabulary pieces; no corpus text."""
    rng = random.Random(seed)
    task, filler = PASSKEY_TASK, PASSKEY_FILLER
    cases = [
        "", " ", "  leading spaces", "trailing space ", "a  b   c", "\n", "line one\nline two\n\nline four",
        "0123456789", "The pass key is 71432. Remember it. 71432 is the pass key.", "What is the pass key? The pass key is",
        "Ünïcödé — “quotes” ‘single’ … ελληνικά 中文 🙂", "tab\tseparated\tvalues", "CAPITALS and MiXeD case",
        "punctuation!?;:,.()'\"-", "\u00a0non-breaking", "x" * 50,
    ]
    for n in (0, 1, 3):
        cases.append("\n".join([task, " ".join([filler] * n), f"The pass key is {rng.randrange(10000, 100000)}. "
                                "Remember it. 12345 is the pass key.", " ".join([filler] * 2), "What is the pass key? The pass key is"]))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_byte(i) or sp.is_unknown(i))]
    for _ in range(40):
        words = [rng.choice(pieces).replace("▁", " ") for _ in range(rng.randrange(1, 30))]
        sep = rng.choice(["", " ", "\n"])
        cases.append(sep.join(words))
    return [{"text": t, "ids": sp.encode(t)} for t in cases]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".train"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--test-runs", type=int, default=6)
    ap.add_argument("--run-length", type=int, default=10)
    ap.add_argument("--val-fraction", type=float, default=0.03)
    args = ap.parse_args()
    work = os.path.abspath(args.work)
    for d in ("corpus", "heldout", "tokens"):
        shutil.rmtree(os.path.join(work, d), ignore_errors=True)
        os.makedirs(os.path.join(work, d))

    books = read_bible()
    test, val = split_chapters(books, args.seed, args.test_runs, args.run_length, args.val_fraction)
    n_chapters = sum(len(chs) for _, chs in books)

    # Training text: each book with its held-out chapters cut out; val and test kept apart.
    train_docs, val_docs, test_docs = [], [], []
    for b, (name, chs) in enumerate(books):
        kept, run = [], []
        for c, verses in enumerate(chs):
            if (b, c) in test:
                run.append(chapter_text(verses))
                continue
            if run:
                test_docs.append((f"{name}-{c - len(run) + 1}-{c}", "\n\n".join(run)))
                run = []
            if (b, c) in val:
                val_docs.append(chapter_text(verses))
            else:
                kept.append(chapter_text(verses))
        if run:
            test_docs.append((f"{name}-{len(chs) - len(run) + 1}-{len(chs)}", "\n\n".join(run)))
        if kept:
            train_docs.append("\n\n".join(kept))

    with open(os.path.join(work, "corpus", "train.txt"), "w") as f:
        for doc in train_docs:
            for line in doc.split("\n"):
                if line:
                    f.write(line + "\n")
    for doc_id, text in test_docs:
        with open(os.path.join(work, "heldout", f"{doc_id}.txt"), "w") as f:
            f.write(text + "\n")

    # The tokenizer also sees the passkey documents' lines the model trains on (digits appear nowhere
    # in the KJV, and spm_train's BPE cannot be forced to keep characters it never saw).
    rng = random.Random(args.seed)
    with open(os.path.join(work, "corpus", "tokenizer.txt"), "w") as f, open(os.path.join(work, "corpus", "train.txt")) as src:
        f.write(src.read())
        for _ in range(2000):
            key = rng.randrange(10000, 100000)
            f.write(f"{PASSKEY_TASK}\n{PASSKEY_FILLER}\nThe pass key is {key}. Remember it. {key} is the pass key.\n{PASSKEY_QUESTION} {key}.\n")

    model_path = train_tokenizer(work, args.vocab_size, args.seed)
    sp = spm.SentencePieceProcessor(model_file=model_path)
    tok_dir = os.path.join(work, "tokenizer")
    with open(os.path.join(tok_dir, "tokenizer.json"), "w") as f:
        json.dump(hf_tokenizer_json(model_path), f, ensure_ascii=False, indent=1)
    with open(os.path.join(tok_dir, "tokenizer_config.json"), "w") as f:
        json.dump(TOKENIZER_CONFIG, f, indent=1)
    with open(os.path.join(work, "tokenizer_cases.json"), "w") as f:
        json.dump({"tokenizer": "kjv.model (SentencePiece " + spm.__version__ + ")", "add_bos": True,
                   "cases": tokenizer_cases(sp, args.seed)}, f, ensure_ascii=False, indent=1)

    # Token streams: every document starts with BOS (as PiServe's evals tokenize) and ends with EOS.
    def stream(docs):
        ids = []
        for d in docs:
            ids.append(sp.bos_id())
            ids.extend(sp.encode(d))
            ids.append(sp.eos_id())
        return np.asarray(ids, dtype="<u2")

    meta = {"seed": args.seed, "vocab_size": sp.get_piece_size(), "bos_id": sp.bos_id(), "eos_id": sp.eos_id(),
            "chapters": n_chapters, "test_chapters": len(test), "val_chapters": len(val),
            "test_documents": [d for d, _ in test_docs]}
    for name, docs in (("train", train_docs), ("val", val_docs), ("test", [t for _, t in test_docs])):
        arr = stream(docs)
        arr.tofile(os.path.join(work, "tokens", f"{name}.bin"))
        meta[f"{name}_tokens"] = int(arr.size)
    with open(model_path, "rb") as f:
        meta["tokenizer_sha256"] = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(work, "tokens", "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    sys.exit(main())
