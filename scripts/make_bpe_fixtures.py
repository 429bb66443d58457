#!/usr/bin/env python3
"""Makes tests/fixtures/bpe_<vocab>.txt: llama.cpp's token ids (and decoded text) for a
deterministic corpus of varied strings, for the byte-level BPE vocabularies uhlm supports.

Oracle: llama-cpp-python==0.3.36 (its vendored llama.cpp), vocabulary loaded with
vocab_only=True. Corpus: 1,100 strings drawn with random.Random(20261204) from pools of code,
numbers (digit grouping differs per pre-tokenizer), whitespace runs, contractions in any case,
non-Latin scripts, emoji/ZWJ sequences, combining marks, special-token text (whole, partial,
malformed), invalid UTF-8, and random mixes of all of these, plus the empty string.

Line format (UTF-8, one case per line, fields separated by tabs):
  ADD_SPECIAL  TEXT  IDS_PARSE_SPECIAL_OFF  IDS_PARSE_SPECIAL_ON  [DECODED]
TEXT and DECODED escape \\ \\t \\n \\r, other control bytes and bytes that are not UTF-8 as
\\xNN; ids are space-separated ("-" for none; "=" in the fourth field: same as the third).
DECODED (every fourth case) is the concatenation of llama_token_to_piece(id, special=false)
over IDS_PARSE_SPECIAL_OFF, with ill-formed UTF-8 replaced by U+FFFD as Python does.

Usage: out/oracle/venv/bin/python scripts/make_bpe_fixtures.py [MODEL_DIR]
(MODEL_DIR holds SmolLM2-135M-Instruct.Q4_1.gguf, ggml-vocab-llama-bpe.gguf,
ggml-vocab-qwen2.gguf and ggml-vocab-llama-spm.gguf; default models/). The last is
SentencePiece, there for parse_special (llama.cpp's partition in front of the SPM encoder)."""
import ctypes
import os
import random
import sys

import llama_cpp

VOCABS = [("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
          ("llama_bpe", "ggml-vocab-llama-bpe.gguf"),
          ("qwen2", "ggml-vocab-qwen2.gguf"),
          ("llama_spm", "ggml-vocab-llama-spm.gguf")]
SEED = 20261204
N_CASES = 1100

CODE = ["def f(x):\n    return x**2  # square\n", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
        "const x = () => { console.log('hi'); };", "if x != None and y >= 3:\n\tpass",
        "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); }", "SELECT * FROM t WHERE id=7;",
        "x = [1, 2, 3]\r\ny = {'a': 1}\r\n", "fn main() -> Result<(), Box<dyn Error>> {}",
        "<div class=\"a\">&nbsp;</div>", "$ ls -la | grep '^d' && echo ok", "a_b__c___d", "a//b/*c*/",
        "    indented\n        more\n", "i++; j--; k **= 2; l <<= 1;", "@decorator\nclass A(B):"]
WORDS = ["hello", "world", "Hello", "WORLD", "the", "quick", "brown", "fox", "jumps", "über",
         "naïve", "café", "straße", "Ölfass", "résumé", "test", "tokenizer", "llama", "GGUF",
         "HTTPServer", "camelCase", "snake_case", "x", "I", "a", "ABC", "déjà", "vu"]
CONTRACTIONS = ["I'm", "you'll", "DON'T", "she'S", "they're", "We'VE", "he'd", "it's", "I'LL",
                "ma'am", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve",
                "'M", "'Ll", "'D", "o'clock", "rock 'n' roll", "''", "'''", "' s"]
NUMBERS = ["1", "12", "123", "1234", "12345", "123456", "1234567", "12345678901234567890",
           "3.14159", "-42", "1,000,000", "0x1F", "1e-9", "2024-12-04", "10:30", "٣٤٥", "１２３",
           "²³", "Ⅻ", "½", "007", "a1b2c3", "v1.2.3", "+1 (555) 010-9999", "100%", "$5.99"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n", "\n ", " \t ",
          "\u00a0", "\u3000", "\u2009", "\u000b", "\u000c", "\u0085", "\u2028", "          ",
          " \r", "\r", "\n\n\n", "\t\n"]
SCRIPTS = ["中文测试", "日本語のテキスト", "한국어 문장", "Привет, мир!", "Съешь же ещё этих булок",
           "مرحبا بالعالم", "नमस्ते दुनिया", "สวัสดีครับ", "Γειά σου Κόσμε", "שלום עולם",
           "ქართული", "Ελληνικά", "Tiếng Việt có dấu", "ภาษาไทย", "汉字漢字", "ㄅㄆㄇ",
           "አማርኛ", "ಕನ್ನಡ", "தமிழ்", "বাংলা"]
EMOJI = ["😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "🇩🇪🇯🇵", "❤️", "🤖💬",
         "✊🏿", "🧑\u200d💻", "©®™", "☃", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "🀄", "1️⃣"]
COMBINING = ["e\u0301", "a\u0308\u0304", "n\u0303", "\u0301", "Z\u0351\u0352\u0353", "ก\u0e31",
             "\u093f", "x\u20dd", "o\u0338"]
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>",
           "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|im_sta", "im_end|>",
           "<|endoftext", "<||>", "<|<|im_start|>|>", "<|im_start|>user\nhi<|im_end|>\n",
           "<|fim_prefix|>", "<|reserved_special_token_5|>", "<repo_name>", "<file_sep>",
           "<|file_sep|>", "<s>", "</s>", "<unk>", "<|IM_START|>", "< |im_start| >"]
INVALID = [b"\x80", b"\xbf", b"\xc3", b"\xe4\xb8", b"\xf0\x9f\x98", b"\xff", b"\xfe", b"\xc0\x80",
           b"\xed\xa0\x80", b"\xe0\x80\xaf", b"abc\x80def", b"\xc3\x28", b"\xf8\x88\x80\x80\x80"]
POOLS = [CODE, WORDS, CONTRACTIONS, NUMBERS, SPACES, SCRIPTS, EMOJI, COMBINING, SPECIAL]


def corpus():
    rnd = random.Random(SEED)
    out = [b"", b" ", b"\n", b"Hello world", b"<|im_start|>", b"1234567890"]
    while len(out) < N_CASES:
        kind = rnd.randrange(12)
        if kind < 9:  # mostly one pool, with a few neighbours from others
            pool = POOLS[kind]
            parts = [rnd.choice(pool) for _ in range(rnd.randint(1, 5))]
            for _ in range(rnd.randint(0, 2)):
                parts.insert(rnd.randrange(len(parts) + 1), rnd.choice(rnd.choice(POOLS)))
            seps = ["", " ", "", "\n"]
            s = "".join(p + rnd.choice(seps) for p in parts).encode()
        elif kind == 9:  # invalid UTF-8 spliced into text
            parts = [rnd.choice(rnd.choice(POOLS)).encode() for _ in range(rnd.randint(1, 3))]
            parts.insert(rnd.randrange(len(parts) + 1), rnd.choice(INVALID))
            s = b"".join(parts)
        elif kind == 10:  # random code points
            cps = []
            for _ in range(rnd.randint(1, 12)):
                r = rnd.random()
                c = rnd.randrange(0x20, 0x7F) if r < 0.5 else (
                    rnd.randrange(0xA0, 0x3000) if r < 0.8 else rnd.randrange(0x3000, 0x2FFFF))
                if 0xD800 <= c <= 0xDFFF:
                    c = 0x41
                cps.append(chr(c))
            s = "".join(cps).encode()
        else:  # long mix
            s = "".join(rnd.choice(rnd.choice(POOLS)) for _ in range(rnd.randint(8, 30))).encode()
        out.append(s)
    return out


def esc(b):
    o = []
    t = b.decode("utf-8", "surrogateescape")
    for ch in t:
        c = ord(ch)
        if ch == "\\":
            o.append("\\\\")
        elif ch == "\t":
            o.append("\\t")
        elif ch == "\n":
            o.append("\\n")
        elif ch == "\r":
            o.append("\\r")
        elif 0xDC80 <= c <= 0xDCFF:
            o.append("\\x%02X" % (c - 0xDC00))
        elif c < 0x20 or c == 0x7F or 0x80 <= c < 0xA0 or c in (0x2028, 0x2029, 0x85):
            o.append("".join("\\x%02X" % x for x in ch.encode()))
        else:
            o.append(ch)
    return "".join(o)


def tokenize(vocab, text, add_special, parse_special):
    n = len(text) + 16
    buf = (llama_cpp.llama_token * n)()
    k = llama_cpp.llama_tokenize(vocab, text, len(text), buf, n, add_special, parse_special)
    if k < 0:
        n = -k
        buf = (llama_cpp.llama_token * n)()
        k = llama_cpp.llama_tokenize(vocab, text, len(text), buf, n, add_special, parse_special)
    assert k >= 0
    return list(buf[:k])


def detok(vocab, ids):
    out = b""
    buf = ctypes.create_string_buffer(4096)
    for t in ids:
        n = llama_cpp.llama_token_to_piece(vocab, t, buf, 4096, 0, False)
        assert 0 <= n <= 4096
        out += buf.raw[:n]
    return out.decode("utf-8", "replace").encode()


def main():
    mdir = sys.argv[1] if len(sys.argv) > 1 else "models"
    here = os.path.dirname(os.path.abspath(__file__))
    cases = corpus()
    for name, fn in VOCABS:
        llm = llama_cpp.Llama(os.path.join(mdir, fn), vocab_only=True, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        path = os.path.join(here, "..", "tests", "fixtures", "bpe_%s.txt" % name)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for i, s in enumerate(cases):
                add = i % 3 == 1
                off = tokenize(vocab, s, add, False)
                on = tokenize(vocab, s, add, True)
                fields = [str(int(add)), esc(s), " ".join(map(str, off)) or "-",
                          "=" if on == off else (" ".join(map(str, on)) or "-")]
                if i % 4 == 0:
                    fields.append(esc(detok(vocab, off)))
                f.write("\t".join(fields) + "\n")
        print("%s: %d cases -> %s (%d bytes)" % (name, len(cases), path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
