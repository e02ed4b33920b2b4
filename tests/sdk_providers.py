"""Provider SDKs as a user's script runs them: configured by the environment alone (HTTPS_PROXY,
SSL_CERT_FILE from `vcr-proxy env`), printing, as JSON, everything they gave back. The API key
is VCR_TEST_KEY (random per run, so no file holds it)."""

import json
import os
import sys

KEY = os.environ["VCR_TEST_KEY"]


def dump(value):
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def cohere_calls():
    import cohere

    client = cohere.ClientV2(api_key=KEY)
    messages = [{"role": "user", "content": "Say hello in Spanish"}]
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    return {
        "chat": dump(client.chat(model="command-a-03-2025", messages=messages)),
        "chat_stream": [dump(e) for e in client.chat_stream(model="command-a-03-2025", messages=messages)],
        "chat_stream_tools": [dump(e) for e in client.chat_stream(
            model="command-a-03-2025", tools=[weather],
            messages=[{"role": "user", "content": "Weather in Florence?"}])],
    }


def groq_calls():
    import groq

    client = groq.Groq(api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": "Answer fast"}]
    return {
        "create": dump(client.chat.completions.create(model="llama-3.1-8b-instant", messages=messages)),
        "stream": [dump(c) for c in client.chat.completions.create(
            model="llama-3.1-8b-instant", messages=messages, stream=True)],
    }


def mistral_calls():
    from mistralai.client import Mistral

    client = Mistral(api_key=KEY)
    messages = [{"role": "user", "content": "Say hello in French"}]
    with client.chat.stream(model="mistral-small-latest", messages=messages) as events:
        streamed = [dump(e) for e in events]
    return {"complete": dump(client.chat.complete(model="mistral-small-latest", messages=messages)),
            "stream": streamed}


def langchain_anthropic_calls():
    from langchain_anthropic import ChatAnthropic

    model = ChatAnthropic(model="claude-sonnet-4-20250514", api_key=KEY, max_tokens=64, max_retries=0)
    answer = model.invoke("Say hi in Italian")
    chunks = [c.content for c in model.stream("Say hi in Italian")]
    # answer.id is langchain's own run id, new each run: not part of what the API gave back.
    return {"invoke": {"content": answer.content,
                       "usage": answer.usage_metadata, "metadata": answer.response_metadata},
            "stream": chunks}


CALLS = {"cohere": cohere_calls, "groq": groq_calls, "mistralai": mistral_calls,
         "langchain-anthropic": langchain_anthropic_calls}

if __name__ == "__main__":
    print(json.dumps(CALLS[sys.argv[1]](), sort_keys=True, default=str))
