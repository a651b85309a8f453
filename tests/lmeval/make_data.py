"""Writes the lm-eval task data (mc.jsonl, gen.jsonl) from the embedded corpus.

The documents are the embedded corpus's own (the made-up language of
ports/src/corpus), decoded from a `gidd train` cache directory:

    python3 tests/lmeval/make_data.py .gidd-cache/embedded-*-vocab*/

mc.jsonl: the first words of a document, then four choices of the next words: the true
ones and the same span of three other documents. gen.jsonl: the first words of a
document and its next word. Deterministic: the same cache gives the same files.
"""

import json
import struct
import sys
from pathlib import Path


def byte_decoder():
    # the byte-level BPE alphabet: printable bytes as themselves, the rest shifted past 255
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def documents(cache: Path):
    tj = json.loads((cache / "tokenizer.json").read_text())
    inv = {i: t for t, i in tj["model"]["vocab"].items()}
    for t in tj["added_tokens"]:
        inv[t["id"]] = None  # special: not text
    meta = json.loads((cache / "corpus.json").read_text())
    assert meta["dtype"] == "u16", meta
    raw = (cache / "corpus.bin").read_bytes()
    ids = struct.unpack(f"<{len(raw) // 2}H", raw)
    dec = byte_decoder()
    doc = []
    for i in ids:
        if i == meta["separator"]:
            if doc:
                yield bytes(dec[c] for t in doc for c in t).decode("utf-8")
            doc = []
        elif inv.get(i) is not None:
            doc.append(inv[i])


def main():
    cache = Path(sys.argv[1])
    out = Path(__file__).parent
    docs = [d.split() for d in documents(cache)]
    docs = [d for d in docs if len(d) >= 12][:200]
    ctx_words, span = 5, 2
    mc, gen = [], []
    for k in range(24):
        d = docs[k]
        context = " ".join(d[:ctx_words])
        true = " ".join(d[ctx_words : ctx_words + span])
        others = [docs[(k + 50 + 17 * j) % len(docs)] for j in range(3)]
        wrong = [" ".join(o[ctx_words : ctx_words + span]) for o in others]
        gold = k % 4
        choices = wrong[:gold] + [true] + wrong[gold:]
        mc.append({"context": context, "choices": choices, "gold": gold})
    for k in range(100, 112):
        d = docs[k]
        gen.append({"context": " ".join(d[:ctx_words]), "target": d[ctx_words]})
    for name, rows in [("mc.jsonl", mc), ("gen.jsonl", gen)]:
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"wrote {len(rows)} rows to {out / name}")


if __name__ == "__main__":
    main()
