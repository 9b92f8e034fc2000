"""Checks a running `deepfeed serve` with the official `openai` Python client.

    /root/venv-ref/bin/python scripts/openai_client_check.py http://127.0.0.1:8000/v1 MODEL [ADAPTER_MODEL]

Plain and streamed chat completions, a completion, the model list, usage fields, and that a
bad request raises the client's BadRequestError / NotFoundError. Exits non-zero on a failure.
"""
import sys

import openai
from openai import OpenAI


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    adapter = sys.argv[3] if len(sys.argv) > 3 else None
    client = OpenAI(base_url=base_url, api_key="sk-unused", max_retries=0)

    ids = [m.id for m in client.models.list().data]
    assert model in ids, ids
    print("models:", ids)

    for m in [model] + ([adapter] if adapter else []):
        r = client.chat.completions.create(
            model=m, messages=[{"role": "user", "content": "Hello, 你好"}], max_tokens=8, temperature=0, seed=1
        )
        text = r.choices[0].message.content
        assert r.object == "chat.completion" and r.choices[0].finish_reason in ("stop", "length")
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        streamed = ""
        usage = None
        for chunk in client.chat.completions.create(
            model=m, messages=[{"role": "user", "content": "Hello, 你好"}], max_tokens=8, temperature=0,
            stream=True, stream_options={"include_usage": True},
        ):
            if chunk.choices:
                streamed += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage
        assert streamed == text, (streamed, text)
        assert usage is not None and usage.completion_tokens == r.usage.completion_tokens
        print(f"{m}: {text!r} usage={r.usage.prompt_tokens}+{r.usage.completion_tokens} (stream identical)")

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


if __name__ == "__main__":
    main()
