"""The control token kept in the confdir, driven without a proxy; and a proxy that refuses one
it cannot trust."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from proxy_addon.control_token import (TOKEN_FILE, TokenError, chosen_token, load_token,
                                       token_matches)

from .proxy import Proxy


def test_a_token_is_made_once_readable_by_its_owner_only(tmp_path):
    confdir = tmp_path / "new" / "confdir"
    token = load_token(confdir)
    path = confdir / TOKEN_FILE
    assert len(token) >= 40 and path.read_text() == token + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(confdir.stat().st_mode) == 0o700  # made here: the owner's alone
    assert load_token(confdir) == token
    assert sorted(p.name for p in confdir.iterdir()) == [TOKEN_FILE]  # no temporary left


def test_processes_starting_together_agree_on_one_token(tmp_path):
    found: list[str] = []
    threads = [threading.Thread(target=lambda: found.append(load_token(tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1 and len(found) == 8


def test_a_token_file_anyone_else_could_know_is_refused_in_one_line(tmp_path):
    path = tmp_path / TOKEN_FILE
    load_token(tmp_path)
    path.chmod(0o644)
    with pytest.raises(TokenError, match=r"can be read or written by other users \(mode 0644\)"):
        load_token(tmp_path)
    path.unlink()
    elsewhere = tmp_path / "chosen-by-someone"
    elsewhere.write_text("x" * 40)
    elsewhere.chmod(0o600)
    path.symlink_to(elsewhere)
    with pytest.raises(TokenError, match="is a symbolic link"):
        load_token(tmp_path)
    path.unlink()
    os.mkfifo(path, 0o600)  # must not hang
    with pytest.raises(TokenError, match="is not a regular file"):
        load_token(tmp_path)
    path.unlink()
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(TokenError, match="too easy to guess"):
        load_token(tmp_path)
    if os.geteuid() == 0:
        path.write_text("y" * 40)
        os.chown(path, 65534, 65534)
        with pytest.raises(TokenError, match="belongs to uid 65534"):
            load_token(tmp_path)
        assert "y" * 40 not in str(pytest.raises(TokenError, load_token, tmp_path).value)


def test_a_token_given_explicitly_comes_first_and_must_be_hard_to_guess(monkeypatch):
    monkeypatch.delenv("VCR_PROXY_CONTROL_TOKEN", raising=False)
    assert chosen_token("") is None
    monkeypatch.setenv("VCR_PROXY_CONTROL_TOKEN", "from-the-environment-0123")
    assert chosen_token("") == ("from-the-environment-0123", "VCR_PROXY_CONTROL_TOKEN")
    assert chosen_token("given-as-an-option-0123456") == ("given-as-an-option-0123456", "vcr_control_token")
    for bad in ("1", "with a space 0123456789", "ünïcödé-0123456789"):
        with pytest.raises(TokenError):
            chosen_token(bad)


def test_tokens_compare_whole():
    token = "abcdefghijklmnopqrstuvwxyz"
    assert token_matches(token, token)
    assert not any(token_matches(sent, token) for sent in (None, "", "1", token[:-1], token + "z",
                                                           token.upper(), "ü" + token))


@pytest.mark.parametrize("launcher", [False, True], ids=["mitmdump", "vcr-proxy-start"])
def test_a_proxy_refuses_to_start_on_a_token_others_could_read(tmp_path, launcher):
    confdir = tmp_path / "mitmproxy"
    confdir.mkdir()
    (confdir / TOKEN_FILE).write_text("z" * 43 + "\n")
    (confdir / TOKEN_FILE).chmod(0o640)
    proxy = Proxy(tmp_path, launcher=launcher, vcr_mode="replay")
    try:
        proxy.start()  # mitmdump may listen a moment before its error check stops it
    except RuntimeError:
        pass
    try:
        assert proxy.process.wait(10) != 0
    finally:
        proxy.stop()  # never left running, whatever happened
    output = proxy.output()
    assert (f"vcr_control_token: {confdir / TOKEN_FILE} can be read or written by other users "
            "(mode 0640)") in output
    assert "z" * 43 not in output
    if launcher:  # mitmdump prints a script's option errors with their traceback
        assert "Traceback" not in output
