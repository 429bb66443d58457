"""The `openai` Python package (pinned by scripts/setup.sh: openai==3.63.0, in out/pyenv) as a
real client of `uhlm run --listen`, run by tests/cli_openai.sh:

    openai_client.py BASE_URL QUESTION CHAT_RUN.json COMPLETION_RUN.json

CHAT_RUN.json is `uhlm run --chat -p QUESTION -n 24 -s 3 --temp 0.7 --json` and
COMPLETION_RUN.json `uhlm run -p "The capital of France is" -n 12 -s 5 --json`, both on the
listener's models. Chat and completions, streamed and not, must give their text and token
counts through the client's own types; n=2 must raise the client's BadRequestError (400).
Prints one line per check and exits 1 on the first failure."""
import json
import sys

import openai


def main():
    base, question, chat_run, comp_run = sys.argv[1:5]
    chat_run = json.load(open(chat_run))
    comp_run = json.load(open(comp_run))
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)
    msgs = [{"role": "user", "content": question}]
    kw = dict(model="smollm2", messages=msgs, max_tokens=24, seed=3, temperature=0.7)

    r = client.chat.completions.create(**kw)
    assert r.choices[0].message.content == chat_run["text"], (r.choices[0].message.content,
                                                              chat_run["text"])
    assert r.choices[0].finish_reason == ("stop" if chat_run["stop"] == "eos" else "length")
    assert r.usage.prompt_tokens == chat_run["prompt_tokens"]
    assert r.usage.completion_tokens == chat_run["generated_tokens"]
    assert r.model == "smollm2"
    print("chat: ok")

    parts, usage, finish = [], None, None
    for ch in client.chat.completions.create(**kw, stream=True,
                                             stream_options={"include_usage": True}):
        if ch.choices:
            parts.append(ch.choices[0].delta.content or "")
            finish = ch.choices[0].finish_reason or finish
        if ch.usage:
            usage = ch.usage
    assert "".join(parts) == chat_run["text"], ("".join(parts), chat_run["text"])
    assert finish == r.choices[0].finish_reason
    assert usage.completion_tokens == chat_run["generated_tokens"]
    # the hybrid statistics ride along as an extra field of usage
    extra = usage.model_extra["uhlm"]
    assert extra["transmitted_tokens"] == chat_run["transmitted_tokens"], extra
    assert extra["skipped_tokens"] == chat_run["skipped_tokens"], extra
    print("chat stream: ok")

    ckw = dict(model="smollm2", prompt="The capital of France is", max_tokens=12, seed=5)
    c = client.completions.create(**ckw)
    assert c.choices[0].text == comp_run["text"], (c.choices[0].text, comp_run["text"])
    assert c.usage.completion_tokens == comp_run["generated_tokens"]
    print("completions: ok")
    text = "".join(ch.choices[0].text for ch in client.completions.create(**ckw, stream=True)
                   if ch.choices)
    assert text == comp_run["text"], (text, comp_run["text"])
    print("completions stream: ok")

    try:
        client.chat.completions.create(**kw, n=2)
        raise AssertionError("n=2 was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and "'n' must be 1" in str(e), e
    print("n=2: BadRequestError: ok")

    models = client.models.list()
    assert len(models.data) == 1 and models.data[0].id.endswith(".gguf"), models
    print("models: ok")


if __name__ == "__main__":
    main()
