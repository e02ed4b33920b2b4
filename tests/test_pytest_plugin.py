"""The pytest plugin, exercised on small test projects with pytester (real pytest processes, a
real proxy, a local upstream)."""

from __future__ import annotations

import pytest

from proxy_addon.cassette import load
# Imported now, not at the first load() inside a pytester test: pytester drops the modules a
# test imported, and PyYAML's C extension cannot be imported twice into one process.
from proxy_addon.serializers import loader  # noqa: F401

from .upstream import Upstream, make_certificate

pytest_plugins = ["pytester"]

PROJECT_TEST = '''
import os

import httpx
import openai
import pytest

pytestmark = pytest.mark.vcr_proxy

# Built at import time, before any test: it must go through the proxy all the same.
CLIENT = openai.OpenAI(api_key="sk-test-not-on-disk", max_retries=0)


def test_chat(vcr_cassette):
    response = httpx.post("https://openrouter.ai/api/v1/chat/completions",
                          json={"model": "m", "messages": []},
                          headers={"Authorization": "Bearer sk-test-not-on-disk"})
    assert response.json()["id"] == "gen-test-2"
    assert response.headers["x-vcr-proxy"].startswith(("recorded ", "replayed "))
    assert response.headers["x-vcr-proxy"].endswith("test_example/test_chat.yaml#0")


def test_stream():
    with httpx.stream("POST", "https://openrouter.ai/api/v1/chat/completions",
                      json={"stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


def test_module_level_client():
    completion = CLIENT.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert completion.id == "gen-test-2"


def test_new_client_streamed():
    client = openai.OpenAI(api_key="sk-test-not-on-disk", max_retries=0)
    stream = client.chat.completions.create(model="m", stream=True,
                                            messages=[{"role": "user", "content": "hi"}])
    assert [chunk for chunk in stream]
'''


@pytest.fixture
def upstream(tmp_path):
    cert, key = make_certificate(tmp_path)
    server = Upstream(cert, key, event_delay=0.0).start()
    server.cert = cert
    yield server
    server.stop()


def common(tmp_path) -> list[str]:
    return [f"--vcr-confdir={tmp_path / 'conf'}", "-p", "no:cacheprovider"]


def recording_args(upstream) -> list[str]:
    return [f"--vcr-upstream={upstream.url}",
            f"--vcr-set=ssl_verify_upstream_trusted_ca={upstream.cert}", "--vcr-set=vcr_headers=all"]


def test_plugin_records_then_replays_a_project_offline(pytester: pytest.Pytester, tmp_path, upstream):
    pytester.makepyfile(test_example=PROJECT_TEST)
    first = pytester.runpytest_subprocess(*common(tmp_path), *recording_args(upstream))
    first.assert_outcomes(passed=4)
    upstream.stop()
    cassettes = pytester.path / "tests" / "cassettes" / "test_example"
    assert sorted(p.name for p in cassettes.glob("*.yaml")) == [
        "test_chat.yaml", "test_module_level_client.yaml", "test_new_client_streamed.yaml",
        "test_stream.yaml"]
    for path in cassettes.glob("*.yaml"):
        text = path.read_text()
        assert "sk-test-not-on-disk" not in text
        assert "X-Vcr-Proxy" not in text  # the client's note, never on disk
        assert len(load(path).interactions) == 1
    # The upstream is gone: replay answers everything from the cassettes.
    second = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay")
    second.assert_outcomes(passed=4)
    # The log is in pytest's cache folder, one file per session, not in the project.
    assert not (pytester.path / ".vcr-proxy.log").exists()


def test_unmarked_tests_start_no_proxy(pytester: pytest.Pytester):
    pytester.makepyfile(test_plain='''
import os


def test_plain():
    assert "HTTPS_PROXY" not in os.environ
    assert "VCR_PROXY_URL" not in os.environ
''')
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "vcr-proxy: 127.0.0.1" not in result.stdout.str()
    assert not (pytester.path / ".pytest_cache" / "vcr-proxy").exists()


def test_a_swallowed_miss_fails_its_test_and_names_the_request(pytester: pytest.Pytester, tmp_path):
    (pytester.path / "tests" / "cassettes").mkdir(parents=True)
    pytester.makepyfile(test_miss='''
import openai
import pytest


@pytest.mark.vcr_proxy
def test_swallows():
    client = openai.OpenAI(api_key="sk-x", max_retries=0)
    try:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello"}])
    except openai.NotFoundError as error:
        assert "vcr-proxy" in str(error)  # the SDK shows the proxy's message as its own error
''')
    result = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "vcr-proxy" in output
    assert "miss: vcr-proxy: POST https://api.openai.com/v1/chat/completions" in output
    assert "does not exist" in output


def test_unused_interactions_warn_and_fail_under_strict(pytester: pytest.Pytester, tmp_path, upstream,
                                                       monkeypatch):
    pytester.makepyfile(test_stale='''
import os

import httpx
import pytest

URL = "https://openrouter.ai/api/v1/chat/completions"


@pytest.mark.vcr_proxy
def test_calls():
    httpx.post(URL, json={"n": 1})
    if os.environ.get("BOTH"):
        httpx.post(URL, json={"n": 2})
''')
    monkeypatch.setenv("BOTH", "1")
    pytester.runpytest_subprocess(*common(tmp_path), *recording_args(upstream)).assert_outcomes(passed=1)
    monkeypatch.delenv("BOTH")
    warned = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay")
    warned.assert_outcomes(passed=1, warnings=1)
    assert "interaction(s) #1 never requested" in warned.stdout.str()
    strict = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay", "--vcr-strict")
    # Judged once the test's fixtures are torn down too (a teardown may use the interaction).
    strict.assert_outcomes(passed=1, errors=1)
    assert "ERROR at teardown of test_calls" in strict.stdout.str()
    assert "holds interaction(s) #1 that this test never requested" in strict.stdout.str()


def test_xdist_workers_each_run_their_own_proxy(pytester: pytest.Pytester, tmp_path, upstream):
    pytester.makepyfile(test_par='''
import os

import httpx
import pytest

pytestmark = pytest.mark.vcr_proxy


@pytest.mark.parametrize("n", range(6))
def test_call(n):
    response = httpx.post("https://openrouter.ai/api/v1/chat/completions", json={"n": n})
    assert response.status_code == 200
    print("PROXY", os.environ["VCR_PROXY_URL"])
''')
    result = pytester.runpytest_subprocess(*common(tmp_path), *recording_args(upstream), "-n", "2", "-s")
    result.assert_outcomes(passed=6)
    upstream.stop()
    cassettes = sorted(p.name for p in (pytester.path / "tests" / "cassettes" / "test_par").glob("*.yaml"))
    assert cassettes == [f"test_call_{n}.yaml" for n in range(6)]
    replayed = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay", "-n", "2")
    replayed.assert_outcomes(passed=6)


def test_side_by_side_with_pytest_recording(pytester: pytest.Pytester, tmp_path, upstream):
    pytester.makepyfile(test_both=f'''
import httpx
import pytest


@pytest.mark.vcr
def test_with_pytest_recording():
    response = httpx.post("{upstream.url}/v1/chat/completions", json={{}}, verify="{upstream.cert}")
    assert response.json()["id"] == "gen-test-2"
    assert "x-vcr-proxy" not in response.headers


@pytest.mark.vcr_proxy
def test_with_vcr_proxy():
    response = httpx.post("https://openrouter.ai/api/v1/chat/completions", json={{}})
    assert response.json()["id"] == "gen-test-2"
    assert "x-vcr-proxy" in response.headers
''')
    first = pytester.runpytest_subprocess(*common(tmp_path), *recording_args(upstream),
                                          "--record-mode=once")
    first.assert_outcomes(passed=2)
    upstream.stop()
    assert (pytester.path / "cassettes" / "test_both" / "test_with_pytest_recording.yaml").exists()
    assert (pytester.path / "tests" / "cassettes" / "test_both" / "test_with_vcr_proxy.yaml").exists()
    second = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay", "--record-mode=none")
    second.assert_outcomes(passed=2)
    # Each plugin can be turned off alone.
    alone = pytester.runpytest_subprocess("-p", "no:vcr_proxy", "--record-mode=none",
                                          "-k", "pytest_recording", "-p", "no:cacheprovider")
    alone.assert_outcomes(passed=1)


MODULE_CLIENT_TEST = '''
import openai
import pytest

{marking}

CLIENT = openai.OpenAI(api_key="sk-test-not-on-disk", max_retries=0)  # built at import time


def test_module_client():
    completion = CLIENT.chat.completions.create(model="m", messages=[{{"role": "user", "content": "hi"}}])
    assert completion.id == "gen-test-2"
'''


@pytest.mark.parametrize("marking", ["module", "conftest"])
def test_a_module_level_client_is_served_with_no_option_given(pytester: pytest.Pytester, tmp_path,
                                                               upstream, monkeypatch, marking):
    """No --vcr-* option, no `vcr_proxy = true`: the plugin sees the marker in the module (or in
    a conftest.py that adds it) before the module is imported, so its client is built with the
    proxy's variables."""
    monkeypatch.setenv("VCR_PROXY_CONFDIR", str(tmp_path / "conf"))
    if marking == "module":
        pytester.makepyfile(test_mod=MODULE_CLIENT_TEST.format(marking="pytestmark = pytest.mark.vcr_proxy"))
    else:
        pytester.makepyfile(test_mod=MODULE_CLIENT_TEST.format(marking=""))
        pytester.makeconftest('''
def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker("vcr_proxy")
''')
    recorded = pytester.runpytest_subprocess("-p", "no:cacheprovider", *recording_args(upstream))
    recorded.assert_outcomes(passed=1)
    upstream.stop()
    pytester.makeini("[pytest]\nvcr_proxy_mode = replay\n")
    replayed = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    replayed.assert_outcomes(passed=1)  # offline: only the proxy can have answered


def test_requests_made_in_fixture_teardown_belong_to_their_test(pytester: pytest.Pytester, tmp_path,
                                                                upstream, monkeypatch):
    pytester.makepyfile(test_fixtures='''
import os

import httpx
import pytest

URL = "https://openrouter.ai/api/v1/chat/completions"
pytestmark = pytest.mark.vcr_proxy


@pytest.fixture
def resource():
    httpx.post(URL, json={"step": "create"})
    yield
    httpx.post(URL, json={"step": os.environ.get("TEARDOWN_STEP", "delete")})


def test_first(resource):
    httpx.post(URL, json={"step": "use"})


def test_second():
    httpx.post(URL, json={"step": "second"})
''')
    first = pytester.runpytest_subprocess(*common(tmp_path), *recording_args(upstream))
    first.assert_outcomes(passed=2)
    upstream.stop()
    cassettes = pytester.path / "tests" / "cassettes" / "test_fixtures"
    steps = [i.request.body for i in _by_id(cassettes / "test_first.yaml")]
    assert steps == ['{"step":"create"}', '{"step":"use"}', '{"step":"delete"}']
    assert [i.request.body for i in load(cassettes / "test_second.yaml").interactions] == [
        '{"step":"second"}']
    replayed = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay", "--vcr-strict")
    replayed.assert_outcomes(passed=2)
    # A teardown whose request was never recorded: its test errors at teardown, naming it.
    monkeypatch.setenv("TEARDOWN_STEP", "archive")
    missed = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay")
    missed.assert_outcomes(passed=2, errors=1)
    output = missed.stdout.str()
    assert "ERROR at teardown of test_first" in output
    assert "1 miss(es) during teardown in test_fixtures/test_first" in output


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGKILL"])
def test_the_proxy_does_not_outlive_a_killed_pytest(pytester: pytest.Pytester, tmp_path, signum):
    """SIGTERM's default action and SIGKILL end pytest without its unconfigure: the proxy
    notices its parent is gone and stops, instead of holding its port for ever."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    port_file = tmp_path / "port"
    pytester.makepyfile(test_slow=f'''
import os
import time

import pytest


@pytest.mark.vcr_proxy
def test_slow(vcr_proxy_url):
    with open({str(port_file)!r}, "w") as out:
        out.write(vcr_proxy_url.rsplit(":", 1)[1])
    time.sleep(60)
''')
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:randomly", *common(tmp_path)],
                               cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        port = int(port_file.read_text())
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # the proxy listens
        process.send_signal(getattr(signal, signum))
        process.wait(10)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                break  # stopped
            assert time.monotonic() < deadline, "the proxy outlived pytest"
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()


def test_a_proxy_that_cannot_start_is_one_error_without_a_traceback(pytester: pytest.Pytester, tmp_path):
    pytester.makepyfile(test_three='''
import pytest

pytestmark = pytest.mark.vcr_proxy


@pytest.mark.parametrize("n", range(3))
def test_n(n):
    pass
''')
    result = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-set=vcr_timing=bogus")
    result.assert_outcomes(errors=1)  # and the session stops there
    output = result.stdout.str()
    assert "vcr-proxy: vcr_timing: 'bogus' is not one of" in output
    assert "Interrupted: vcr-proxy did not start" in output
    assert "pytest_plugin.py" not in output  # no traceback into the plugin


def test_tests_whose_cassettes_would_be_one_file_error_instead(pytester: pytest.Pytester, tmp_path):
    """The module is its file's stem and parameters are sanitised: two test_api.py in two
    folders, or ids `a b` and `a_b`, would record over each other and then miss."""
    same = '''
import pytest


@pytest.mark.vcr_proxy
def test_list():
    pass
'''
    for folder in ("a", "b"):
        (pytester.path / folder).mkdir()
        (pytester.path / folder / "test_api.py").write_text(same)
    pytester.makepyfile(test_params='''
import pytest

pytestmark = pytest.mark.vcr_proxy


@pytest.mark.parametrize("x", ["a b", "a_b", "c"])
def test_p(x):
    pass


@pytest.mark.vcr_proxy("a/named")
@pytest.mark.parametrize("x", ["a b", "a_b"])
def test_named(x):
    pass
''')
    result = pytester.runpytest_subprocess(*common(tmp_path), "--import-mode=importlib")
    result.assert_outcomes(passed=3, errors=4)
    output = result.stdout.str()
    assert ("a/test_api.py::test_list and b/test_api.py::test_list would share the cassette "
            "test_api/test_list") in output
    assert "test_p[a b] and test_params.py::test_p[a_b] would share the cassette test_params/test_p_a_b" in output
    # Deselected (-k, --deselect, --lf), the other still names the same file.
    alone = pytester.runpytest_subprocess(*common(tmp_path), "--import-mode=importlib",
                                          "--deselect", "b/test_api.py::test_list", "a", "b")
    alone.assert_outcomes(errors=1)


def test_an_interaction_that_could_not_be_saved_fails_its_test(pytester: pytest.Pytester, tmp_path,
                                                               upstream):
    """The save happens after the client has its answer; the plugin, told that a recording
    began, asks for the test's report, which waits for the save."""
    pytester.makepyfile(test_save='''
import httpx
import pytest


@pytest.mark.vcr_proxy
def test_records():
    assert httpx.post("https://openrouter.ai/api/v1/chat/completions", json={}).status_code == 200


@pytest.mark.vcr_proxy
def test_records_nothing():
    pass
''')
    # A response body over vcr_max_body reaches the client whole and is not recorded.
    result = pytester.runpytest_subprocess(*common(tmp_path), *recording_args(upstream),
                                           "--vcr-mode=record", "--vcr-set=vcr_max_body=100")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "FAILED test_save.py::test_records - vcr-proxy: 1 interaction(s) not saved" in output
    assert "not saved: POST https://openrouter.ai/api/v1/chat/completions" in output


def test_after_a_failure_under_x_no_cassette_is_left_selected(pytester: pytest.Pytester, tmp_path,
                                                               upstream):
    """-x stops the session after a failing test: the next test's cassette must not be
    selected then, or what runs after the last teardown (a sessionfinish hook, a background
    thread) would be recorded into the cassette of a test that never ran."""
    pytester.makeconftest('''
import httpx


def pytest_sessionfinish(session):
    try:  # no cassette is selected now: the proxy passes it on, to a network that may be absent
        httpx.post("https://openrouter.ai/api/v1/chat/completions", json={"step": "sessionfinish"})
    except httpx.HTTPError:
        pass
''')
    pytester.makepyfile(test_stop='''
import httpx
import pytest

URL = "https://openrouter.ai/api/v1/chat/completions"


@pytest.fixture(scope="session")
def account():
    yield
    httpx.post(URL, json={"step": "close the account"})


@pytest.mark.vcr_proxy
def test_fails(account):
    httpx.post(URL, json={"step": "fail"})
    assert False


@pytest.mark.vcr_proxy
def test_never_runs(account):
    httpx.post(URL, json={"step": "never"})
''')
    result = pytester.runpytest_subprocess(*common(tmp_path), *recording_args(upstream), "-x")
    result.assert_outcomes(failed=1)
    cassettes = pytester.path / "tests" / "cassettes" / "test_stop"
    # pytest tears the session fixture down in the failing test's teardown: it is that test's.
    assert [i.request.body for i in _by_id(cassettes / "test_fails.yaml")] == [
        '{"step":"fail"}', '{"step":"close the account"}']
    assert not (cassettes / "test_never_runs.yaml").exists()


def _by_id(path):
    """A cassette's interactions in request order (the file holds them as their saves ended)."""
    return sorted(load(path).interactions, key=lambda interaction: interaction.id)


def test_every_host_a_marked_test_reaches_is_recorded_and_replayed(pytester: pytest.Pytester, tmp_path,
                                                                   upstream):
    """huggingface_hub asks huggingface.co which provider serves a model before it calls the
    router: a host outside the default list. Replay answers every host, so recording must
    record it too, or the test that passed while recording misses on replay."""
    pytester.makepyfile(test_hub='''
import httpx
import pytest


@pytest.mark.vcr_proxy
def test_two_hosts():
    mapping = httpx.get("https://huggingface.co/api/models/m?expand=inferenceProviderMapping")
    answer = httpx.post("https://router.huggingface.co/v1/chat/completions", json={"model": "m"})
    for response in (mapping, answer):
        assert response.headers["x-vcr-proxy"].startswith(("recorded ", "replayed "))
    assert answer.json()["id"] == "gen-test-2"
''')
    pytester.runpytest_subprocess(*common(tmp_path), *recording_args(upstream)).assert_outcomes(passed=1)
    upstream.stop()
    cassette = load(pytester.path / "tests" / "cassettes" / "test_hub" / "test_two_hosts.yaml")
    assert [i.request.url.split("/")[2] for i in cassette.interactions] == [
        "huggingface.co", "router.huggingface.co"]
    pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay").assert_outcomes(passed=1)


def test_markers_bring_their_own_match_rules(pytester: pytest.Pytester, tmp_path, upstream):
    """Values a test makes anew each run (a date in a system prompt, a uuid, the Agents SDK's
    prompt_cache_key) match when normalised or ignored, per module and per test, like
    pytest-recording's vcr_config."""
    pytester.makepyfile(test_volatile='''
import datetime
import os
import uuid

import httpx
import pytest

pytestmark = pytest.mark.vcr_proxy(normalize=[r"\\d{4}-\\d\\d-\\d\\dT[\\d:.]+"])
URL = "https://openrouter.ai/api/v1/chat/completions"


def chat(**fields):
    response = httpx.post(URL, json={"model": "m", **fields})
    assert response.status_code == 200, response.text
    return response


def test_a_date_in_the_prompt():
    chat(messages=[{"role": "system", "content": f"Now is {datetime.datetime.now().isoformat()}"}])


@pytest.mark.vcr_proxy(ignore_fields=["metadata.request_id"])
def test_an_ignored_field_and_the_module_normalizer():
    chat(metadata={"request_id": str(uuid.uuid4())},
         messages=[{"role": "system", "content": f"Now is {datetime.datetime.now().isoformat()}"}])


def test_the_agents_sdk_cache_key_preset():
    chat(prompt_cache_key="agents-sdk:run:" + uuid.uuid4().hex)
''')
    pytester.runpytest_subprocess(*common(tmp_path), *recording_args(upstream)).assert_outcomes(passed=3)
    upstream.stop()
    replayed = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay")
    replayed.assert_outcomes(passed=3)
