"""The openai and anthropic SDKs as a user's script runs them: configured by the environment
alone (HTTPS_PROXY, SSL_CERT_FILE), printing what they received."""

import json
import sys

which = sys.argv[1]
if which.startswith("openai"):
    import openai

    client = openai.OpenAI(api_key="sk-or-v1-" + "ab" * 32, base_url="https://openrouter.ai/api/v1",
                           max_retries=0)
    arguments = {"model": "moonshotai/kimi-k2-0905", "messages": [{"role": "user", "content": "hi"}]}
    if which == "openai-stream":
        print(json.dumps([c.model_dump() for c in client.chat.completions.create(stream=True, **arguments)]))
    else:
        print(client.chat.completions.create(**arguments).model_dump_json())
else:
    import anthropic

    client = anthropic.Anthropic(api_key="sk-ant-api03-" + "k" * 40, max_retries=0)
    arguments = {"model": "claude-sonnet-4-20250514", "max_tokens": 64,
                 "messages": [{"role": "user", "content": "Say hi in Italian"}]}
    if which == "anthropic-stream":
        with client.messages.stream(**arguments) as stream:
            print(json.dumps([event.model_dump() for event in stream]))
    else:
        print(client.messages.create(**arguments).model_dump_json())
