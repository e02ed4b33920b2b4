"""A test addon, loaded after vcr-proxy's (`mitmdump -s addon.py -s option_switch.py`): a plain-HTTP
request to option-switch.test sets the options its query names, as a user changing an option of
a running mitmproxy does (mitmweb's options page, the console's `set`). It is answered here and
never leaves the proxy."""

from mitmproxy import ctx, http


def request(flow: http.HTTPFlow) -> None:
    if flow.request.host == "option-switch.test" and flow.response is None:
        ctx.options.update(**dict(flow.request.query))
        flow.response = http.Response.make(200, b"switched")
