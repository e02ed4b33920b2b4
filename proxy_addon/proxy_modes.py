"""mitmproxy's proxy modes, as replay sees them: which of them carry only HTTP(S) requests,
which the addon answers from cassettes, and which relay raw bytes past it."""

from __future__ import annotations

from mitmproxy.proxy import mode_specs

# The mitmproxy modes whose traffic replay answers itself: HTTP(S) requests, however they
# arrive. Every other mode (reverse:tcp/udp/tls/dtls/dns/quic/http3, dns, wireguard,
# transparent, tun) relays raw bytes or resolves names through the system's resolver, past the
# request hook where replay answers: in replay mode that would reach the network.
_ANSWERED_MODES = (mode_specs.RegularMode, mode_specs.UpstreamMode, mode_specs.Socks5Mode,
                   mode_specs.LocalMode)
_ANSWERED_REVERSE = ("http", "https")


# Modes whose client connections carry a sockname that is not a listener's address: the
# original destination (transparent, local, tun) or one inside the tunnel (wireguard).
ADDRESSED_ELSEWHERE = (mode_specs.TransparentMode, mode_specs.LocalMode,
                        mode_specs.WireGuardMode, mode_specs.TunMode)


def unanswered_modes(specs) -> list[str]:
    """The mode specs (mitmproxy's `mode` option) that replay mode cannot keep off the network."""
    found = []
    for spec in specs:
        try:
            mode = mode_specs.ProxyMode.parse(spec)
        except ValueError:
            continue  # mitmproxy's own check names it
        if isinstance(mode, _ANSWERED_MODES) or (isinstance(mode, mode_specs.ReverseMode)
                                                 and mode.scheme in _ANSWERED_REVERSE):
            continue
        found.append(spec)
    return found


def replay_mode_problem(specs) -> str | None:
    """Why replay mode cannot run with mitmproxy modes `specs`, in one line, or None."""
    found = unanswered_modes(specs)
    if not found:
        return None
    return (f"{', '.join(found)} relays raw TCP, UDP or DNS to the network, which replay "
            "mode never does; replay answers HTTP(S) only: use the regular, upstream:URL, socks5, "
            "local or reverse:http(s)://HOST modes, or another vcr_mode")
