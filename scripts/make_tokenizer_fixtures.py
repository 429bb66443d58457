#!/usr/bin/python3
"""make_tokenizer_fixtures.py: expected token ids for tests/test_tokenizer.c, from SentencePiece.

Run with Debian's interpreter, which has python3-sentencepiece:

    /usr/bin/python3 scripts/make_tokenizer_fixtures.py ../shared/models/tokenizer.model \
        [--tok512 ../shared/models/tok512.bin]

Reads tests/fixtures/tokenizer_corpus.txt (one case per line; '#' lines are comments;
escapes \\n \\t \\r \\\\ and \\xNN for one raw byte) and writes, one line per case, the ids
SentencePiece gives (space separated, no BOS: sp.encode adds none) to
tests/fixtures/tokenizer_llama2_expected.txt.

With --tok512, the llama2.c tokenizer.bin given is turned into a SentencePiece BPE model proto
(the format has scores but no types, so types are inferred the way src/model/tokenizer/tokenizer.c
does) and the corpus is also written as tests/fixtures/tokenizer_tok512_expected.txt.

For tests/test_tokenizer.c's live comparison, --live MODEL reads texts from stdin, one per
line as hex (an empty line is the empty text), and prints SentencePiece's ids for each; MODEL
is a .model file, a llama2.c .bin (converted as above), or with --vocab a text file of
"TYPE SCORE HEXPIECE" lines (pieces with U+2581 for space) for small synthetic vocabularies.

The SentencePiece model protobuf is written and read by hand so that no protobuf module is
needed (Debian's sentencepiece_model_pb2 imports google.protobuf, which is not installed).
"""
import argparse
import os
import struct
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")


def unescape(line: bytes, lineno: int) -> bytes:
    out = bytearray()
    i = 0
    simple = {ord("n"): b"\n", ord("t"): b"\t", ord("r"): b"\r", ord("\\"): b"\\"}
    while i < len(line):
        c = line[i]
        if c != ord("\\"):
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(line):
            sys.exit(f"corpus line {lineno}: lone backslash at the end")
        e = line[i + 1]
        if e in simple:
            out += simple[e]
            i += 2
        elif e == ord("x"):
            try:
                out.append(int(line[i + 2:i + 4].decode("ascii"), 16))
            except ValueError:
                sys.exit(f"corpus line {lineno}: bad \\x escape")
            if len(line[i + 2:i + 4]) != 2:
                sys.exit(f"corpus line {lineno}: bad \\x escape")
            i += 4
        else:
            sys.exit(f"corpus line {lineno}: unknown escape \\{chr(e)}")
    return bytes(out)


def read_corpus(path):
    data = open(path, "rb").read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    cases = []
    for n, line in enumerate(lines, 1):
        if line.startswith(b"#"):
            continue
        cases.append(unescape(line, n))
    return cases


# ---- minimal protobuf wire format ------------------------------------------------------------

def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_bytes(num, b):
    return varint(num << 3 | 2) + varint(len(b)) + b


def field_float(num, f):
    return varint(num << 3 | 5) + struct.pack("<f", f)


def parse(buf):
    """Yields (field, wiretype, value) of one message."""
    i = 0
    while i < len(buf):
        key = 0
        shift = 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        f, w = key >> 3, key & 7
        if w == 0:
            v = 0
            shift = 0
            while True:
                b = buf[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
        elif w == 2:
            n = 0
            shift = 0
            while True:
                b = buf[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            v = buf[i:i + n]
            i += n
        elif w == 5:
            v = buf[i:i + 4]
            i += 4
        elif w == 1:
            v = buf[i:i + 8]
            i += 8
        else:
            raise ValueError(f"unsupported wire type {w}")
        yield f, w, v


def check_llama_normalizer(model_path):
    """Our encoder implements only this normalizer; refuse to write fixtures for another."""
    spec = {}
    for f, _, v in parse(open(model_path, "rb").read()):
        if f == 3:  # ModelProto.normalizer_spec
            spec = {ff: vv for ff, _, vv in parse(v)}
    name = spec.get(1, b"").decode()
    # proto defaults: add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces = true
    dummy, extra, escape = spec.get(3, 1), spec.get(4, 1), spec.get(5, 1)
    charsmap = spec.get(2, b"")
    if name != "identity" or not dummy or extra or not escape or charsmap:
        sys.exit(f"{model_path}: normalizer is {name!r} (dummy prefix {dummy}, remove extra "
                 f"whitespace {extra}, escape {escape}, charsmap {len(charsmap)} bytes); "
                 "the C tokenizer implements only Llama's identity normalizer")


def infer_type(piece: bytes) -> int:
    if piece == b"<unk>":
        return 2
    if piece in (b"<s>", b"</s>"):
        return 3
    if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">") and \
            all(c in b"0123456789ABCDEF" for c in piece[3:5]):
        return 6
    return 1


def pieces_to_model_proto(pieces, byte_fallback):
    """pieces: (text bytes with U+2581 for space, score, type) in id order."""
    msg = bytearray()
    for text, score, t in pieces:
        msg += field_bytes(1, field_bytes(1, text) + field_float(2, score) + field_varint(3, t))
    trainer = (field_varint(3, 2)  # model_type BPE
               + field_varint(4, len(pieces))
               + field_varint(35, 1 if byte_fallback else 0)
               + field_varint(40, 0) + field_varint(41, 1) + field_varint(42, 2)
               + field_varint(43, -1))  # no pad piece
    normalizer = (field_bytes(1, b"identity") + field_varint(3, 1) + field_varint(4, 0)
                  + field_varint(5, 1))
    msg += field_bytes(2, trainer) + field_bytes(3, normalizer)
    return bytes(msg)


def bin_to_model_proto(path):
    data = open(path, "rb").read()
    (maxlen,) = struct.unpack_from("<i", data, 0)
    off = 4
    pieces = []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        p = data[off:off + n]
        off += n
        if p == b"\n<s>\n":
            p = b"<s>"
        elif p == b"\n</s>\n":
            p = b"</s>"
        pieces.append((p, score))
    out = []
    for p, score in pieces:
        t = infer_type(p)
        out.append((p.replace(b" ", "\u2581".encode()) if t == 1 else p, score, t))
    return pieces_to_model_proto(out, any(t == 6 for _, _, t in out))


def vocab_to_model_proto(path):
    out = []
    for line in open(path, encoding="ascii"):
        t, score, hexpiece = line.split()
        out.append((bytes.fromhex(hexpiece), float(score), int(t)))
    return pieces_to_model_proto(out, any(t == 6 for _, _, t in out))


def live(sp):
    for line in sys.stdin:
        text = bytes.fromhex(line.strip())
        sys.stdout.write(" ".join(str(i) for i in sp.encode(text)) + "\n")


def write_expected(sp, cases, out_path):
    with open(out_path, "w", encoding="ascii") as f:
        for c in cases:
            f.write(" ".join(str(i) for i in sp.encode(c)) + "\n")
    print(f"wrote {out_path}: {len(cases)} cases")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="Llama-2 tokenizer.model")
    ap.add_argument("--live", action="store_true", help="encode hex lines from stdin")
    ap.add_argument("--vocab", action="store_true", help="MODEL is a TYPE SCORE HEXPIECE list")
    ap.add_argument("--tok512",
                    help="llama2.c tok512.bin: also write tokenizer_tok512_expected.txt")
    ap.add_argument("--corpus", default=os.path.join(FIXTURES, "tokenizer_corpus.txt"))
    ap.add_argument("--out-dir", default=FIXTURES)
    a = ap.parse_args()
    if a.live:
        if a.vocab:
            sp = spm.SentencePieceProcessor(model_proto=vocab_to_model_proto(a.model))
        elif a.model.endswith(".bin"):
            sp = spm.SentencePieceProcessor(model_proto=bin_to_model_proto(a.model))
        else:
            sp = spm.SentencePieceProcessor(model_file=a.model)
        live(sp)
        return
    cases = read_corpus(a.corpus)
    check_llama_normalizer(a.model)
    sp = spm.SentencePieceProcessor(model_file=a.model)
    write_expected(sp, cases, os.path.join(a.out_dir, "tokenizer_llama2_expected.txt"))
    if a.tok512:
        sp512 = spm.SentencePieceProcessor(model_proto=bin_to_model_proto(a.tok512))
        write_expected(sp512, cases, os.path.join(a.out_dir, "tokenizer_tok512_expected.txt"))
    print(f"sentencepiece {spm.__version__}")


if __name__ == "__main__":
    main()
