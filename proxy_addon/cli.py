"""The `vcr-proxy` command line.

Every user error is one line on stderr naming the file (and line) and what to do; no tracebacks.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from .cassette import load
from .devshell import SHELLS, default_confdir, exports, variables
from .durations import format_duration
from .credentials import cassette_findings, redact_cassette
from .inspection import describe, summarize
from .errors import CassetteError
from .files import CASSETTE_ADVICE, read_regular, regular_problem
from .persisters.filesystem import write_atomic
from .serializers.emitter import LAYOUTS, Layout

CASSETTE_SUFFIXES = (".yaml", ".yml")


def cassette_files(paths: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """The cassette files named by `paths` (folders searched recursively), and problems.

    A FIFO, device or socket (named, or a cassette name in a folder) is a problem here, by
    its type: opening one to read it could wait forever.
    """
    files: list[Path] = []
    problems: list[str] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.suffix in CASSETTE_SUFFIXES
                                and not p.name.startswith(".") and p.exists() and not p.is_dir()):
                problem = regular_problem(found)
                if problem:
                    problems.append(f"{found}: {problem}; {CASSETTE_ADVICE}")
                else:
                    files.append(found)
        elif path.exists():
            problem = regular_problem(path)
            if problem:
                problems.append(f"{name}: {problem}; {CASSETTE_ADVICE}")
            else:
                files.append(path)
        else:
            problems.append(f"{name}: no such file or folder")
    return files, problems


def loaded_cassettes(paths: tuple[str, ...], problems: list[str]):
    """(path, cassette) for each cassette named by `paths` that loads; the others' one-line
    errors go to `problems`."""
    files, missing = cassette_files(paths)
    problems.extend(missing)
    for path in files:
        try:
            yield path, load(path)
        except CassetteError as error:
            problems.append(str(error))


def parse_layout(value: str | None) -> Layout | None:
    if value is None:
        return None
    if value in LAYOUTS:
        return LAYOUTS[value]
    raise click.BadParameter(f"unknown layout {value!r}; choose one of {', '.join(LAYOUTS)}")


def _report(lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vcr-proxy", prog_name="vcr-proxy")
def main() -> None:
    """vcr-proxy: record and replay LLM API traffic as go-vcr cassettes."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def check(paths: tuple[str, ...]) -> None:
    """Validate cassettes (files, or folders searched recursively).

    Prints one line per bad file and exits 1 if there is any.
    """
    problems: list[str] = []
    cassettes = interactions = 0
    for path, cassette in loaded_cassettes(paths, problems):
        cassettes += 1
        interactions += len(cassette.interactions)
        for note in cassette.ignored:
            problems.append(f"{path}: {note}: Go ignores it and drops it on save; remove it")
        for finding in cassette_findings(cassette):
            problems.append(f"{path}: {finding}: looks like a credential; run "
                            f"`vcr-proxy redact {path}`")
    _report(problems)
    found = (f"{len(problems)} problem{'s' if len(problems) != 1 else ''}" if problems
             else "no problems")
    click.echo(f"{cassettes} cassette{'s' if cassettes != 1 else ''}, {interactions} "
               f"interaction{'s' if interactions != 1 else ''}, {found}")
    sys.exit(1 if problems else 0)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def redact(paths: tuple[str, ...]) -> None:
    """Scrub credentials from cassettes: auth headers, cookies, key= parameters and API-key
    shapes in bodies. Files are rewritten atomically, in Go's bytes and their own layout."""
    problems: list[str] = []
    for path, cassette in loaded_cassettes(paths, problems):
        if redact_cassette(cassette):
            write_atomic(path, cassette.dumps().encode("utf-8"))
            click.echo(f"redacted {path}")
    _report(problems)
    sys.exit(1 if problems else 0)


@main.command("ls")
@click.argument("folder", default="recordings", type=click.Path())
def list_cassettes(folder: str) -> None:
    """A table of the cassettes under FOLDER (default: recordings)."""
    problems: list[str] = []
    rows = [("CASSETTE", "INTERACTIONS", "HOSTS", "MODELS", "STREAMED", "DURATION", "TOKENS IN/OUT")]
    from .transcript import escape_controls

    for path, cassette in loaded_cassettes((folder,), problems):
        summary = summarize(cassette)
        rows.append((str(path.relative_to(folder)) if Path(folder).is_dir() else str(path),
                     str(summary.interactions), ",".join(summary.hosts) or "-",
                     ",".join(summary.models) or "-", f"{summary.streamed}/{summary.interactions}",
                     format_duration(summary.duration),
                     f"{summary.usage.input}/{summary.usage.output}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(escape_controls("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()))
    _report(problems)
    sys.exit(1 if problems else 0)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
@click.option("--raw", is_flag=True, help="Bodies' previews instead of the conversation.")
@click.argument("cassette", type=click.Path())
def show(as_json: bool, raw: bool, cassette: str) -> None:
    """Each interaction of CASSETTE as a transcript: request line, model, the new input
    messages, the assistant's text and tool calls, finish reason, usage and timings."""
    from .realtime.format import read as read_sessions
    from .realtime.format import sidecar_path
    from .realtime.reading import realtime_lines, session_json
    from .transcript import escape_controls, raw_lines, transcript, transcript_json

    try:
        # WebSocket sessions, from NAME.realtime.jsonl beside the cassette (realtime/).
        sessions = [] if raw or as_json else realtime_lines(Path(cassette))
        if as_json and not Path(cassette).exists() and sidecar_path(Path(cassette)).is_file():
            click.echo(_json_text({"cassette": cassette, "interactions": [], "sessions": [
                session_json(s) for s in read_sessions(sidecar_path(Path(cassette)))]}))
            return
        if sessions and not Path(cassette).exists():
            click.echo(escape_controls("\n".join(sessions)))
            return
        loaded = load(cassette)
        # Cassette text is untrusted: control characters are printed visibly (escape_controls),
        # and in JSON DEL and C1 controls are escaped too (json.dumps escapes C0 only).
        if not raw:
            # The sidecar is read here: one that is a FIFO or a device is an error too.
            if as_json:
                document = transcript_json(Path(cassette), loaded)
                document["sessions"] = [session_json(s) for s in read_sessions(sidecar_path(Path(cassette)))]
                click.echo(_json_text(document))
            else:
                click.echo(escape_controls("\n".join(transcript(Path(cassette), loaded)
                                                     + ([""] if sessions else []) + sessions)))
            return
    except CassetteError as error:
        _report([str(error)])
        sys.exit(1)
    if as_json:
        click.echo(_json_text({"cassette": cassette, "layout": loaded.layout.name,
                               "interactions": [describe(i) for i in loaded.interactions]}))
        return
    for interaction in loaded.interactions:
        click.echo(escape_controls("\n".join(raw_lines(interaction, []))))


def _json_text(value) -> str:
    """JSON for a terminal or a script: non-ASCII kept, control characters all escaped."""
    import json as json_module
    import re

    text = json_module.dumps(value, ensure_ascii=False, indent=2)
    return re.sub("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]", lambda m: f"\\u{ord(m.group()):04x}", text)


@main.command()
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(),
              help="The HTML file to write.")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def report(output: str, paths: tuple[str, ...]) -> None:
    """One self-contained HTML page for cassettes (files, or folders searched recursively):
    an index, and each interaction's transcript with its timeline."""
    from .realtime.format import SUFFIX, sidecar_path
    from .report import read, render, sessions_only, unreadable

    refused = _overwrites_input(Path(output), paths)
    if refused:
        _report([f"{output}: {refused}; choose another -o path (a .html file)"])
        sys.exit(1)
    # A cassette of realtime sessions alone has a sidecar and no NAME.yaml: reported too.
    alone = [Path(name) for name in paths if not Path(name).exists()
             and sidecar_path(Path(name)).is_file()]
    alone += [side.with_name(side.name[:-len(SUFFIX)] + ".yaml") for name in paths if Path(name).is_dir()
              for side in sorted(Path(name).rglob("*" + SUFFIX))
              if not side.with_name(side.name[:-len(SUFFIX)] + ".yaml").exists()]
    files, problems = cassette_files(tuple(name for name in paths if Path(name) not in alone))
    readings = [sessions_only(path) for path in alone]
    for path in files:
        try:
            readings.append(read(path, load(path)))
        except CassetteError as error:  # listed on the page and on stderr; the rest still render
            readings.append(unreadable(path, str(error)))
        except Exception as error:
            readings.append(unreadable(path, f"{path}: cannot read ({type(error).__name__}: {error})"))
    problems.extend(r.problem for r in readings if r.problem)
    _report(problems)
    if not readings:
        _report([f"{' '.join(paths)}: no cassette to report on; name .yaml files or folders that hold them"])
        sys.exit(1)
    try:
        # Through a symbolic link to the file it names, rather than over the link itself.
        write_atomic(Path(os.path.realpath(output)), render(readings).encode("utf-8"))
    except OSError as error:
        _report([f"{output}: cannot write the report ({error.strerror}); choose another -o path"])
        sys.exit(1)
    click.echo(f"wrote {output} ({len(readings)} cassette{'s' if len(readings) != 1 else ''})")
    sys.exit(1 if problems else 0)


def _overwrites_input(output: Path, paths: tuple[str, ...]) -> str:
    """Why writing the report to `output` would overwrite a cassette it reads, or something
    that is no file of its own, or "": the output is one of the named files, a cassette-named
    file inside a named folder, or no regular file. The report replaces its file whole, by a
    rename: `-o /dev/null` (or /dev/stdout, a link to a pipe) run as root would leave a regular
    file where the device or the link was, for every program on the machine."""
    problem = regular_problem(output)
    if problem is not None:
        return problem
    # realpath, not Path.resolve: a symlink loop among the names is reported by cassette_files
    # as missing, where Path.resolve raises RuntimeError.
    target = Path(os.path.realpath(output))
    for name in paths:
        path = Path(os.path.realpath(name))
        if target == path:
            return f"is one of the cassettes to report on ({name})"
        if path.is_dir() and path in target.parents and target.suffix in CASSETTE_SUFFIXES:
            return f"would be a cassette inside {name}, which the report reads"
    return ""


@main.command("diff")
@click.option("--text", "show_text", is_flag=True, help="A text diff under each wording change.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
@click.argument("old", type=click.Path())
@click.argument("new", type=click.Path())
def diff(show_text: bool, as_json: bool, old: str, new: str) -> None:
    """What changed between two recordings (cassettes, or folders paired by file name).

    One line per change. Exit 0 when the same or only the wording changed, 1 when behaviour
    changed (tool calls, arguments, finish reason, status, response structure) or requests were
    added or are missing, 2 on an error.
    """

    from .drift import REQUESTS, SEVERITY, Change, CassetteDrift, compare, overall
    from .realtime.diff import compare_sessions
    from .cassette import Cassette
    from .realtime.format import SUFFIX
    from .realtime.format import read as read_sessions
    from .realtime.format import sidecar_path
    from .transcript import escape_controls

    old_path, new_path = Path(old), Path(new)
    for path in (old_path, new_path):
        if not path.exists() and not sidecar_path(path).is_file():
            _report([f"{path}: no such file or folder"])
            sys.exit(2)
    if old_path.is_dir() != new_path.is_dir():
        _report([f"{new if new_path.is_dir() else old}: is a folder and the other is a file; "
                 "compare two cassettes or two folders"])
        sys.exit(2)
    if old_path.is_dir():
        def relative(root):
            files, problems = cassette_files((str(root),))
            if problems:  # a FIFO or a device named like a cassette
                _report(problems)
                sys.exit(2)
            found = {str(f.relative_to(root)): f for f in files}
            # A cassette of realtime sessions alone has a sidecar and no NAME.yaml: compared
            # too (as `report` reads it), paired by that NAME.yaml.
            for side in sorted(root.rglob("*" + SUFFIX)):
                cassette = side.with_name(side.name[:-len(SUFFIX)] + ".yaml")
                if (not side.name.startswith(".") and not cassette.exists()
                        and not cassette.with_suffix(".yml").exists()):
                    found.setdefault(str(cassette.relative_to(root)), cassette)
            return found
        olds, news = relative(old_path), relative(new_path)
        names = sorted(set(olds) | set(news))
        if not names:
            _report([f"no cassettes under {old} or {new}; compare folders that hold .yaml cassettes"])
            sys.exit(2)
    else:
        olds, news, names = {str(new_path): old_path}, {str(new_path): new_path}, [str(new_path)]
    drifts = []
    for name in names:
        if name not in news or name not in olds:
            what = "missing" if name not in news else "added"
            drifts.append(CassetteDrift(name, [Change(REQUESTS, None, "cassette", detail=what)]))
            continue
        try:
            # A cassette of realtime sessions alone has no NAME.yaml: its sessions still compare.
            # One side's HTTP exchanges against none on the other: each missing or added.
            if olds[name].exists() or news[name].exists():
                drift = compare(name, *(load(path) if path.exists() else Cassette([])
                                        for path in (olds[name], news[name])))
            else:
                drift = CassetteDrift(name)
            drift.changes += compare_sessions(read_sessions(sidecar_path(olds[name])),
                                              read_sessions(sidecar_path(news[name])))
            drifts.append(drift)
        except CassetteError as error:
            _report([f"{error}"])
            sys.exit(2)
        except Exception as error:  # a reading bug must still end in one line, not a traceback
            _report([f"{news[name]}: cannot compare with {olds[name]} ({type(error).__name__}: {error})"])
            sys.exit(2)
    kind = overall(d.kind for d in drifts)
    if as_json:
        click.echo(_json_text({"class": kind, "cassettes": [
            {"name": d.name, "class": d.kind, "changes": [c.to_json() for c in d.changes]}
            for d in drifts]}))
    else:
        prefix = old_path.is_dir()
        for drift in drifts:
            for change in drift.changes:
                click.echo(escape_controls(f"{drift.name} {change.line()}" if prefix else change.line()))
                if show_text and change.text_diff:
                    click.echo(escape_controls("\n".join(f"    {line}" for line in change.text_diff)))
        counts = {k: sum(c.kind == k for d in drifts for c in d.changes) for k in SEVERITY[1:]}
        click.echo(f"{kind}: " + (", ".join(f"{n} {k}" for k, n in counts.items() if n)
                                  or f"{len(drifts)} cassette{'s' if len(drifts) != 1 else ''} compared"))
    sys.exit(1 if kind in ("behaviour", "requests") else 0)


@main.command("fmt")
@click.option("--check", "check_only", is_flag=True,
              help="Write nothing; list the files that would change and exit 1 if any.")
@click.option("--layout", metavar="NAME", help=f"Rewrite in this layout ({', '.join(LAYOUTS)}) "
              "instead of each file's own.")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def fmt(check_only: bool, layout: str | None, paths: tuple[str, ...]) -> None:
    """Rewrite cassettes in exactly the bytes Go's go-vcr writes.

    Each file keeps its own layout unless --layout says otherwise. Files are replaced
    atomically; a file that does not load is reported and left alone.
    """
    target = parse_layout(layout)
    problems: list[str] = []
    changed = []
    for path, cassette in loaded_cassettes(paths, problems):
        try:  # read again: a FIFO swapped in since it loaded must not block
            original = read_regular(path, advice=CASSETTE_ADVICE)
        except CassetteError as error:
            problems.append(str(error))
            continue
        except OSError as error:
            problems.append(f"{path}: cannot read: {error.strerror}")
            continue
        formatted = cassette.dumps(target).encode("utf-8")
        if formatted == original:
            continue
        changed.append(path)
        if check_only:
            click.echo(str(path))
            continue
        for note in cassette.ignored:
            click.echo(f"{path}: {note}: dropped, as Go does on save", err=True)
        write_atomic(path, formatted)
        click.echo(f"formatted {path}")
    _report(problems)
    sys.exit(1 if problems or (check_only and changed) else 0)


def _proxy_address_options(function):
    function = click.option("--confdir", default=None, envvar="VCR_PROXY_CONFDIR",
                            help="mitmproxy's folder for its CA (default ~/.mitmproxy).")(function)
    function = click.option("--listen-host", default="127.0.0.1", show_default=True,
                            envvar="VCR_PROXY_LISTEN_HOST", help="The proxy's address.")(function)
    return click.option("--port", default=8080, show_default=True, envvar="VCR_PROXY_PORT",
                        help="The proxy's port.")(function)


def _variables(listen_host: str, port: int, confdir: str | None) -> dict[str, str]:
    from .control_token import TokenError

    folder = Path(confdir).expanduser() if confdir else default_confdir()
    try:
        return variables(listen_host, port, folder)
    except (CassetteError, TokenError) as error:  # a confdir that is a file, or holds a FIFO; a bad token file
        _report([f"vcr-proxy: {error}"])
        sys.exit(1)


@main.command()
@_proxy_address_options
@click.option("--shell", "shell", type=click.Choice(SHELLS), default="bash", show_default=True,
              help="Syntax of the exports.")
def env(port, listen_host, confdir, shell):
    """Print the exports that send a shell's clients through the proxy:
    eval "$(vcr-proxy env)".

    HTTPS_PROXY, HTTP_PROXY, NO_PROXY, a CA bundle (the system's roots plus mitmproxy's
    CA, created if missing) in SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE,
    NODE_EXTRA_CA_CERTS and GIT_SSL_CAINFO, and the control token (the header
    X-Vcr-Control's value) in VCR_PROXY_CONTROL_TOKEN.
    """
    click.echo(exports(_variables(listen_host, port, confdir), shell), nl=False)


@main.command()
@_proxy_address_options
def shell(port, listen_host, confdir):
    """Start a subshell whose clients go through the proxy (exit it to leave)."""

    environment = dict(os.environ, **_variables(listen_host, port, confdir), VCR_PROXY_SHELL="1")
    program = os.environ.get("SHELL", "/bin/sh")
    click.echo(f"vcr-proxy shell: clients go through http://{listen_host}:{port}; exit to leave",
               err=True)
    os.execvpe(program, [program], environment)


@main.command()
@click.option("--mode", default="once", show_default=True, envvar="VCR_PROXY_MODE",
              help="once: replay an existing cassette, record a missing one; replay: only from "
                   "disk; record: always upstream, the cassette rewritten; new-episodes: replay "
                   "hits, record misses; passthrough: neither.")
@click.option("--timing", default="none", show_default=True, envvar="VCR_PROXY_TIMING",
              help="Replay pacing: none, duration (go-vcr's), or events (each event at its "
                   "recorded time).")
@click.option("--speed", default=1.0, show_default=True, envvar="VCR_PROXY_SPEED",
              help="Replay pacing factor (2.0: twice as fast).")
@click.option("--dir", "folder", default="recordings", show_default=True, envvar="VCR_PROXY_DIR",
              help="Folder that holds the cassettes.")
@click.option("--cassette", default="default", show_default=True, envvar="VCR_PROXY_CASSETTE",
              help="Cassette for requests without an X-Vcr-Cassette header.")
@_proxy_address_options
@click.option("--upstream", default="", envvar="VCR_PROXY_UPSTREAM",
              help="Send recorded hosts' traffic to this base URL instead (cassettes keep the "
                   "public URLs).")
@click.option("--headers", default="minimal", show_default=True, envvar="VCR_PROXY_HEADERS",
              help="Headers to record: minimal or all (credentials never).")
@click.option("--layout", default="indent4-compact", show_default=True,
              envvar="VCR_PROXY_LAYOUT", help=f"Layout of new cassettes: {', '.join(LAYOUTS)}.")
@click.option("--hosts", default=None, envvar="VCR_PROXY_HOSTS",
              help="Comma-separated hosts to record (default: the major LLM APIs); +host adds "
                   "to the defaults.")
@click.option("--passthrough-host", "passthrough_hosts", multiple=True, metavar="PATTERN",
              help="A host that reaches the network untouched, in replay mode too (repeatable; "
                   "VCR_PROXY_PASSTHROUGH_HOSTS, comma-separated).")
@click.option("--allow-repeats", is_flag=True, envvar="VCR_PROXY_ALLOW_REPEATS",
              help="Once every matching interaction was replayed, serve the last one again "
                   "instead of a miss.")
@click.option("--workers", default=1, show_default=True, envvar="VCR_PROXY_WORKERS",
              type=click.IntRange(1, 64),
              help="Replay processes sharing the port, e.g. one per core for a load test "
                   "(--mode replay only; control selections are then refused: use the "
                   "X-Vcr-Cassette header).")
@click.option("--front", type=click.Choice(["mitmproxy", "direct"]), default=None,
              envvar="VCR_PROXY_FRONT",
              help="What serves replayed connections: mitmproxy, or direct (HTTPS over HTTP/1.1 "
                   "without mitmproxy's layers, for load tests). Default: direct with "
                   "--workers above 1, else mitmproxy.")
@click.option("--set", "extra", multiple=True, metavar="OPTION=VALUE",
              help="Any other mitmproxy option, e.g. --set ssl_verify_upstream_trusted_ca=ca.pem.")
def start(mode, timing, speed, folder, cassette, port, listen_host, upstream, headers, layout,
          hosts, passthrough_hosts, allow_repeats, workers, front, confdir, extra):
    """Start the proxy. Point clients at it with HTTPS_PROXY=http://127.0.0.1:PORT."""
    from .launcher import run_proxy

    settings = {"vcr_mode": mode, "vcr_timing": timing, "vcr_speed": str(speed),
                "vcr_dir": folder, "vcr_cassette": cassette,
                "vcr_upstream": upstream, "vcr_headers": headers, "vcr_layout": layout}
    if hosts:
        settings["vcr_hosts"] = hosts
    if allow_repeats:
        settings["vcr_allow_repeats"] = "true"
    settings["vcr_front"] = front or ("direct" if workers > 1 else "mitmproxy")
    passthrough = [*passthrough_hosts, os.environ.get("VCR_PROXY_PASSTHROUGH_HOSTS", "")]
    if any(passthrough):
        settings["vcr_passthrough_hosts"] = ",".join(p for p in passthrough if p)
    for item in extra:
        key, equals, value = item.partition("=")
        if not equals:
            raise click.BadParameter(f"{item!r} is not OPTION=VALUE", param_hint="--set")
        settings[key] = value
    status = run_proxy(listen_host, port, settings, confdir, workers)
    # Every save has finished once run_proxy returns (asyncio.run joins its worker threads).
    # Tearing the interpreter down object by object would take another ~150 ms, which a test
    # session waiting for its proxy to stop pays in full.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    main()
