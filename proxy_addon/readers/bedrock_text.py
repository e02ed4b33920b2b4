"""The prompt-completion schemas of Bedrock's InvokeModel: Meta Llama (`{"prompt"}` ->
`{"generation", "prompt_token_count", "generation_token_count", "stop_reason"}`, each stream
chunk the same fields) and Amazon Titan Text (`{"inputText"}` -> `{"inputTextTokenCount",
"results": [{"tokenCount", "outputText", "completionReason"}]}`, stream chunks `{"outputText",
"index", "totalOutputTextTokenCount", "completionReason", "inputTextTokenCount"}`). Neither
has tools; token counts missing from a body come from Bedrock's invocation metrics
(conversation.py)."""

from __future__ import annotations

from ..inspection import Usage
from .bedrock_invoke import chunks, prompt_messages
from .model import Exchange, Output, as_dict, as_list, number


def _largest(exchange: Exchange, input: int, output: int) -> None:
    """Stream chunks repeat counts cumulatively, or give them once: the largest seen wins."""
    usage = exchange.usage
    exchange.usage = Usage(max(usage.input, input), max(usage.output, output), usage.cached)


class Llama:
    @staticmethod
    def read_request(request: dict, exchange: Exchange) -> None:
        exchange.messages.extend(prompt_messages(request.get("prompt")))

    @staticmethod
    def read_response(events: list, exchange: Exchange) -> None:
        output = Output(exchange)
        for index, value in chunks(events, exchange):
            output.text(index, value.get("generation"))
            if value.get("stop_reason"):
                exchange.finish_reason = str(value["stop_reason"])
            _largest(exchange, number(value, "prompt_token_count"), number(value, "generation_token_count"))
        output.finish()


class Titan:
    @staticmethod
    def read_request(request: dict, exchange: Exchange) -> None:
        exchange.messages.extend(prompt_messages(request.get("inputText")))

    @staticmethod
    def read_response(events: list, exchange: Exchange) -> None:
        output = Output(exchange)
        for index, value in chunks(events, exchange):
            results = [as_dict(r) for r in as_list(value.get("results"))][:1] or [value]
            for result in results:  # the whole answer's first result, or a stream chunk
                output.text(index, result.get("outputText"))
                if result.get("completionReason"):
                    exchange.finish_reason = str(result["completionReason"])
                _largest(exchange, number(value, "inputTextTokenCount"),
                         number(result, "tokenCount", "totalOutputTextTokenCount"))
        output.finish()
