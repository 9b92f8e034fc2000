"""Checks a running `deepfeed serve` with the official `openai` Python client.

    /root/venv-ref/bin/python scripts/openai_client_check.py http://127.0.0.1:8000/v1 MODEL [ADAPTER_MODEL] [--kb]

Plain and streamed chat completions, a completion, the model list, usage fields, and that a
bad request raises the client's BadRequestError / NotFoundError. With --kb (the server has a
knowledge base for MODEL): retrieval switched on and off through `extra_body`, the responses
still parse, and the extra `citations` field is reachable (`model_extra`, `to_dict()`, the first
stream chunk). Exits non-zero on a failure.
"""
import sys

import openai
from openai import OpenAI


def main() -> None:
    kb = "--kb" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--kb"]
    base_url, model = args[0], args[1]
    adapter = args[2] if len(args) > 2 else None
    client = OpenAI(base_url=base_url, api_key="sk-unused", max_retries=0)

    ids = [m.id for m in client.models.list().data]
    assert model in ids, ids
    print("models:", ids)

    for m in [model] + ([adapter] if adapter else []):
        r = client.chat.completions.create(
            model=m, messages=[{"role": "user", "content": "Hello, 你好"}], max_tokens=8, temperature=0, seed=1,
            extra_body={"kb": False} if kb and m == model else None,
        )
        text = r.choices[0].message.content
        assert r.object == "chat.completion" and r.choices[0].finish_reason in ("stop", "length")
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        streamed = ""
        usage = None
        for chunk in client.chat.completions.create(
            model=m, messages=[{"role": "user", "content": "Hello, 你好"}], max_tokens=8, temperature=0,
            stream=True, stream_options={"include_usage": True},
            extra_body={"kb": False} if kb and m == model else None,
        ):
            if chunk.choices:
                streamed += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage
        assert streamed == text, (streamed, text)
        assert usage is not None and usage.completion_tokens == r.usage.completion_tokens
        print(f"{m}: {text!r} usage={r.usage.prompt_tokens}+{r.usage.completion_tokens} (stream identical)")

    if kb:
        check_kb(client, model)

    c = client.completions.create(model=model, prompt="The data", max_tokens=5, temperature=0)
    assert c.object == "text_completion" and c.usage.completion_tokens >= 1
    print("completion:", repr(c.choices[0].text))

    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], n=2)
        raise SystemExit("n=2 was accepted")
    except openai.BadRequestError as e:
        print("n=2 -> 400:", e.body["message"] if isinstance(e.body, dict) else e.body)
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise SystemExit("an unknown model was accepted")
    except openai.NotFoundError:
        print("unknown model -> 404")
    print("openai client check: OK (openai", openai.__version__ + ")")


def check_kb(client: OpenAI, model: str) -> None:
    question = [{"role": "user", "content": "How many years does the warranty cover the battery?"}]
    r = client.chat.completions.create(
        model=model, messages=question, max_tokens=8, temperature=0, extra_body={"kb": {"k": 1, "mode": "bm25"}}
    )
    assert r.object == "chat.completion" and isinstance(r.choices[0].message.content, str)
    citations = r.model_extra["citations"]
    assert citations == r.to_dict()["citations"], (citations, r.to_dict())
    assert len(citations) == 1 and citations[0]["source"].endswith("warranty.md"), citations
    assert {"n", "source", "page", "chunk", "score"} <= set(citations[0]), citations
    off = client.chat.completions.create(model=model, messages=question, max_tokens=8, temperature=0, extra_body={"kb": False})
    assert "citations" not in (off.model_extra or {}), off.model_extra
    assert off.usage.prompt_tokens < r.usage.prompt_tokens, (off.usage, r.usage)
    chunks = list(client.chat.completions.create(
        model=model, messages=question, max_tokens=8, temperature=0, stream=True, extra_body={"kb": {"k": 1, "mode": "bm25"}}
    ))
    assert chunks[0].model_extra["citations"] == citations, chunks[0].model_extra
    assert all("citations" not in (c.model_extra or {}) for c in chunks[1:])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    print(f"kb: citations {[(c['n'], c['source'].rsplit('/', 1)[-1], c['chunk']) for c in citations]}; "
          f"prompt {off.usage.prompt_tokens} -> {r.usage.prompt_tokens} tokens; kb off: no citations; stream: first chunk")


if __name__ == "__main__":
    main()
