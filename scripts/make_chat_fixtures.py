#!/usr/bin/env python3
"""make_chat_fixtures.py: chat prompts rendered by llama.cpp itself, for tests/test_chat.c.

Run with the oracle venv (python 3.11, llama-cpp-python==0.3.36):

    out/oracle/venv/bin/python scripts/make_chat_fixtures.py [MODELS_DIR]

Writes tests/fixtures/chat_templates.json: a list of cases
    {"template": STR, "messages": [[ROLE, CONTENT], ...], "add_assistant": BOOL,
     "expected": STR or null}
where "expected" is what llama.cpp's llama_chat_apply_template (llm_chat_detect_template +
llm_chat_apply_template, src/llama-chat.cpp) returns, null when llama.cpp does not recognise
the template. Templates: llama.cpp's own names for the kinds uhlm renders, the templates of
SmolLM2-135M-Instruct and Qwen2 (ChatML with a Jinja default system message, which llama.cpp's
renderer does not inject), Llama 2 variants and Llama 3 and Zephyr templates taken from
llama.cpp's tests/test-chat-template.cpp, and a few templates of other kinds (Phi-4, Gemma,
Mistral v7) that must not be mistaken for ours.

Also writes tests/fixtures/chat_tokens.json: for ggml-vocab-qwen2.gguf and
SmolLM2-135M-Instruct.Q4_1.gguf in MODELS_DIR (default ./models, as scripts/setup.sh fetches
them), each file's own template rendered by llama.cpp for a few (system, user) pairs, and the
ids llama_tokenize gives that text with add_special and parse_special on (vocabulary only);
and tests/fixtures/smollm2_chat_greedy.json: llama.cpp's greedy answer of SmolLM2 to
"Give three tips for staying healthy." (--chat), with each step's top-1/top-2 logit margin and
the number of leading steps whose margin is >= 0.25 (tests/cli_chat.sh compares those).
Deterministic.
"""
import ctypes
import json
import os
import sys

import llama_cpp as L

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "chat_templates.json")
OUT_TOKENS = os.path.join(HERE, "..", "tests", "fixtures", "chat_tokens.json")
OUT_GREEDY = os.path.join(HERE, "..", "tests", "fixtures", "smollm2_chat_greedy.json")

SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
           "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
           "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
           "{{ '<|im_start|>assistant\\n' }}{% endif %}")
QWEN2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
         "{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{% endif %}"
         "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA2_MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
                  "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
                  "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
                  "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
                  "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only "
                  "user and assistant roles are supported!') }}{% endif %}{% endfor %}")
LLAMA2_SYS_BOS = ("{%- for idx in range(0, messages|length) -%}\n{%- if messages[idx]['role'] == 'user' "
                  "-%}\n{%- if idx > 1 -%}\n{{- bos_token + '[INST] ' + messages[idx]['content'] + ' "
                  "[/INST]' -}}\n{%- else -%}\n{{- messages[idx]['content'] + ' [/INST]' -}}\n{%- endif "
                  "-%}\n{% elif messages[idx]['role'] == 'system' %}\n{{- '[INST] <<SYS>>\\n' + "
                  "messages[idx]['content'] + '\\n<</SYS>>\\n\\n' -}}\n{%- elif messages[idx]['role'] == "
                  "'assistant' -%}\n{{- ' '  + messages[idx]['content'] + ' ' + eos_token -}}\n{% endif "
                  "%}\n{% endfor %}")
LLAMA2_SYS = "{% if messages[0]['role'] == 'system' %}<<SYS>>{% endif %}[INST] {{ content }} [/INST]"
LLAMA2_STRIP = "[INST] {{ content.strip() }} [/INST] <<SYS>>"
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
          " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
          "{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}")
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
          "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n'"
          " + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ "
          "'<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and "
          "add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}<|endoftext|>")
# HuggingFaceH4/zephyr's own template has <|assistant|> and <|user|>, which llama.cpp's detector
# tests before Zephyr's markers: it renders it as glmedge. The minimal one reaches zephyr.
ZEPHYR_MIN = "{% for m in messages %}<|user|>\n{{ m['content'] }}<|endoftext|>\n{% endfor %}"
PHI4 = "{% for m in messages %}<|im_start|>{{ m['role'] }}<|im_sep|>{{ m['content'] }}<|im_end|>{% endfor %}"
GEMMA = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
MISTRAL_V7 = "{{ bos_token }}[SYSTEM_PROMPT]{{ system }}[/SYSTEM_PROMPT][INST]{{ user }}[/INST]"
UNKNOWN = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"

TEMPLATES = ["chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "llama3",
             "zephyr", SMOLLM2, QWEN2, LLAMA2_MISTRAL, LLAMA2_SYS_BOS, LLAMA2_SYS, LLAMA2_STRIP,
             LLAMA3, ZEPHYR, ZEPHYR_MIN, PHI4, GEMMA, MISTRAL_V7, UNKNOWN]

CONVERSATIONS = [
    [["user", "Give three tips for staying healthy."]],
    [["system", "You are a helpful assistant"], ["user", "Hello"]],
    # llama.cpp's test conversation: padded content shows which kinds trim
    [["system", "You are a helpful assistant"], ["user", "Hello"], ["assistant", "Hi there"],
     ["user", "Who are you"], ["assistant", "   I am an assistant   "],
     ["user", "Another question"]],
    [["system", " \tpadded system\n"], ["user", "\n multi\nline user turn \n\n"]],
]


def apply(tmpl, conv, add_ass):
    msgs = (L.llama_chat_message * len(conv))(
        *[L.llama_chat_message(r.encode(), c.encode()) for r, c in conv])
    cap = 4096
    buf = ctypes.create_string_buffer(cap)
    n = L.llama_chat_apply_template(tmpl.encode(), msgs, len(conv), add_ass, buf, cap)
    if n < 0:
        return None
    assert n < cap
    return buf.raw[:n].decode()


# Token ids of rendered chat prompts, as llama.cpp tokenizes them (add_special, parse_special):
# the vocabularies scripts/setup.sh fetches into models/.
TOKEN_MODELS = ["ggml-vocab-qwen2.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"]
TOKEN_CHATS = [(None, "Give three tips for staying healthy."),
               ("You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                "What are the three primary colors?"),
               (None, "Rewrite this sentence.\n\nThe cat   sat on the mat. <|im_end|> ok")]


def chat_tokens(models_dir):
    out = []
    L.llama_backend_init()
    for name in TOKEN_MODELS:
        path = os.path.join(models_dir, name)
        mp = L.llama_model_default_params()
        mp.vocab_only = True
        model = L.llama_model_load_from_file(path.encode(), mp)
        if not model:
            raise RuntimeError("llama.cpp could not load " + path)
        vocab = L.llama_model_get_vocab(model)
        tmpl = L.llama_model_chat_template(model, None)
        for system, user in TOKEN_CHATS:
            conv = ([["system", system]] if system else []) + [["user", user]]
            text = apply(tmpl.decode(), conv, True)
            buf = (L.llama_token * 4096)()
            raw = text.encode()
            n = L.llama_tokenize(vocab, raw, len(raw), buf, 4096, True, True)
            assert n > 0
            out.append({"model": name, "system": system, "user": user, "text": text,
                        "ids": list(buf[:n])})
        L.llama_model_free(model)
    return out


def smollm2_greedy(models_dir, n_max=200):
    """llama.cpp's greedy chat answer of SmolLM2 (F32 KV cache, no flash attention), with the
    top-1/top-2 logit margin of each step: where it is small, float rounding may pick the
    other token, so a test can compare only the leading steps with a clear margin."""
    import numpy as np
    path = os.path.join(models_dir, "SmolLM2-135M-Instruct.Q4_1.gguf")
    model = L.llama_model_load_from_file(path.encode(), L.llama_model_default_params())
    vocab = L.llama_model_get_vocab(model)
    cp = L.llama_context_default_params()
    cp.n_ctx = cp.n_batch = 512
    cp.n_threads = 2
    cp.type_k = cp.type_v = 0
    cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = L.llama_init_from_model(model, cp)
    user = "Give three tips for staying healthy."
    text = apply(L.llama_model_chat_template(model, None).decode(), [["user", user]], True)
    buf = (L.llama_token * 512)()
    raw = text.encode()
    n = L.llama_tokenize(vocab, raw, len(raw), buf, 512, True, True)
    ids = list(buf[:n])
    arr = (L.llama_token * n)(*ids)
    assert L.llama_decode(ctx, L.llama_batch_get_one(arr, n)) == 0
    V = L.llama_vocab_n_tokens(vocab)
    out, margins = [], []
    for _ in range(n_max):
        lg = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), (V,)).copy()
        top = np.sort(lg)[::-1]
        t = int(lg.argmax())
        out.append(t)
        margins.append(round(float(top[0] - top[1]), 4))
        if L.llama_vocab_is_eog(vocab, t):
            break
        one = (L.llama_token * 1)(t)
        assert L.llama_decode(ctx, L.llama_batch_get_one(one, 1)) == 0
    L.llama_free(ctx)
    L.llama_model_free(model)
    clear = 0
    while clear < len(margins) and margins[clear] >= 0.25:
        clear += 1
    return {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "user": user, "prompt_ids": ids,
            "greedy": out, "margins": margins, "clear_prefix": clear}


def main():
    models_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "models")
    g = smollm2_greedy(models_dir)
    with open(OUT_GREEDY, "w") as f:
        json.dump(g, f)
        f.write("\n")
    print(f"wrote SmolLM2's greedy answer ({len(g['greedy'])} tokens, first {g['clear_prefix']} "
          f"with a margin >= 0.25) to {OUT_GREEDY}")
    toks = chat_tokens(models_dir)
    with open(OUT_TOKENS, "w") as f:
        json.dump(toks, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(toks)} tokenized chat prompts to {OUT_TOKENS}")
    cases = []
    for t in TEMPLATES:
        for conv in CONVERSATIONS:
            for add_ass in (True, False):
                cases.append({"template": t, "messages": conv, "add_assistant": add_ass,
                              "expected": apply(t, conv, add_ass)})
    with open(OUT, "w") as f:
        json.dump(cases, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
