"""The README and every docs page stay true, and the docs site builds and works offline.

For every page (README.md, CONTRIBUTING.md, docs/*.md): its relative links and pictures exist, its anchors
name headings, its ``ortpipe …`` command lines parse with today's CLI, its Python blocks run and give the
results they document, and it names no path of the machine it was written on. The site builds with
``mkdocs build --strict`` and, in headless Chromium from a local server with no network, lists every page,
finds ``TextClassifier`` in its search and shows ``TextClassifier.load``'s signature.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ortpipe.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
IDS = [str(page.relative_to(ROOT)) for page in PAGES]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _slug(heading: str) -> str:
    """The anchor GitHub and mkdocs' toc give a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", _text(page), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def _command_lines(text: str) -> list[str]:
    """Every ``ortpipe …`` line of a page's bash blocks (comments cut, continuations joined), and every inline
    `ortpipe …` of its tables and prose."""
    lines = [line for line in re.findall(r"`ortpipe ([^`]+)`", text) if "[" not in line and "…" not in line]
    for block in _code_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            for prefix in (".venv/bin/ortpipe ", "ortpipe "):
                if line.startswith(prefix):
                    lines.append(line[len(prefix):])
    return lines


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_every_relative_link_picture_and_anchor_exists(page):
    text = re.sub(r"```.*?```", "", _text(page), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in _headings(linked), f"{page.name}: {target}: no heading with that anchor"


COMMANDS = [(page, line) for page in PAGES for line in _command_lines(_text(page))]


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 30 and any(line.startswith("serve") for _, line in COMMANDS)


@pytest.mark.parametrize("page, command", COMMANDS, ids=[f"{p.name}: {c}"[:80] for p, c in COMMANDS])
def test_every_documented_command_line_parses(page, command):
    args = build_parser().parse_args(shlex.split(command))
    assert callable(args.run)


# what the build machine's paths look like: the checkout, the scratch folders of these sessions, home folders
MACHINE_PATHS = re.compile(r"/work/|/root/|/home/\w|/Users/\w|/tmp/(?!gpu\b|site\b)|" + re.escape(str(ROOT)))


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_no_page_names_a_path_of_the_build_machine(page):
    found = [line for line in _text(page).splitlines() if MACHINE_PATHS.search(line)]
    assert found == [], f"{page.name} names paths of the machine it was written on"


def _statements(block: str):
    """Each top-level statement of a Python block, with the value its comment documents (or None).

    A comment documents a value when it starts (after an optional ``N: ``) with ``[``, ``{`` or ``(``;
    ``...`` in it stands for anything, as in ``0.99...``; a note after two spaces, as in ``[...]  (calibrated)``,
    is not part of the value.
    """
    lines = block.splitlines()
    for node in ast.parse(block).body:
        comment = lines[node.end_lineno - 1].partition("  #")[2].strip()
        comment = re.split(r" {2,}", re.sub(r"^\d+: ", "", comment))[0]
        yield node, (comment if comment[:1] in ("[", "{", "(") else None)


PYTHON_BLOCKS = [(page, block) for page in PAGES for block in _code_blocks(_text(page), "python")]


def test_the_pages_document_results_in_their_python_blocks():
    documented = [expected for _, block in PYTHON_BLOCKS for _, expected in _statements(block) if expected]
    assert len(PYTHON_BLOCKS) >= 4 and len(documented) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)),
                         ids=[f"{p.name}-{i}" for i, (p, _) in enumerate(PYTHON_BLOCKS)])
def test_every_python_block_runs_and_gives_its_documented_results(index, default_bundle, tmp_path, monkeypatch,
                                                                    request):
    """Each block runs on its own, with the default bundle where it says ``load()`` and as ``bundles/my-model``,
    and a tiny NLI bundle as ``bundles/nli``."""
    page, block = PYTHON_BLOCKS[index]
    _, bundle = default_bundle
    (tmp_path / "home" / "bundles").mkdir(parents=True)
    (tmp_path / "home" / "bundles" / "sst2-minilm").symlink_to(bundle)
    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles" / "my-model").symlink_to(bundle)
    if "bundles/nli" in block:
        (tmp_path / "bundles" / "nli").symlink_to(request.getfixturevalue("nli_models")["bert"][1])
    monkeypatch.setenv("ORTPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for node, expected in _statements(block):
        if isinstance(node, ast.Expr):
            value = eval(compile(ast.Expression(node.value), page.name, "eval"), namespace)
        else:
            exec(compile(ast.Module([node], type_ignores=[]), page.name, "exec"), namespace)
            value = namespace.get(node.targets[0].id) if isinstance(node, ast.Assign) else None
        if expected:
            pattern = re.escape(expected).replace(re.escape("..."), ".*?")
            assert re.fullmatch(pattern, repr(value)), (page.name, ast.unparse(node), expected, repr(value))


# -- the site -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """``mkdocs build --strict`` into a temporary folder: a broken link, a missing page or a docstring that
    does not match its signature fails it."""
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_the_site_builds_strict_and_loads_nothing_from_outside(site):
    nav = re.findall(r"^  - ([^:]+): (\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), flags=re.M)
    assert {path for _, path in nav} == {page.name for page in (ROOT / "docs").glob("*.md")}  # every page in nav
    for html in site.rglob("*.html"):
        resources = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', html.read_text())
        assert resources == [], f"{html.relative_to(site)} loads {resources}"
    assert (site / "search" / "search_index.json").is_file()  # search from the built files


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def served_site(site):
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _chromium(url: str, tmp_path: Path, *extra: str) -> str:
    done = subprocess.run([CHROMIUM, *HEADLESS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=20000", *extra, url], capture_output=True, text=True, timeout=180)
    return done.stdout


SEARCH = """(async () => {
  for (let i = 0; i < 100 && document.readyState !== 'complete'; i++) await new Promise(r => setTimeout(r, 100));
  const input = document.querySelector('[data-md-component="search-query"]');
  input.focus(); input.value = QUERY;
  input.dispatchEvent(new Event('input', {bubbles: true}));
  input.dispatchEvent(new KeyboardEvent('keyup', {bubbles: true, key: 'r'}));
  for (let i = 0; i < 100; i++) {
    const items = document.querySelectorAll('.md-search-result__item');
    if (items.length) return Array.from(items).map(item => item.textContent.trim()).join(' | ');
    await new Promise(r => setTimeout(r, 100));
  }
  return '';
})()"""


async def _search(url: str, query: str, tmp_path: Path) -> str:
    """Type ``query`` into the site's search box in headless Chromium (DevTools protocol); the results' text."""
    import itertools
    import json

    websockets = pytest.importorskip("websockets")
    browser = subprocess.Popen([CHROMIUM, *HEADLESS, f"--user-data-dir={tmp_path / 'cdp-profile'}",
                                "--remote-debugging-port=0", "about:blank"], stderr=subprocess.PIPE, text=True)
    try:
        endpoint = next(m.group(1) for line in browser.stderr
                        if (m := re.search(r"DevTools listening on (ws://\S+)", line)))
        ids = itertools.count(1)
        async with websockets.connect(endpoint, max_size=None) as socket:
            async def call(method: str, session: str | None = None, **params):
                number = next(ids)
                await socket.send(json.dumps({"id": number, "method": method, "params": params,
                                              **({"sessionId": session} if session else {})}))
                while (reply := json.loads(await socket.recv())).get("id") != number:
                    pass
                return reply["result"]

            target = (await call("Target.createTarget", url=url))["targetId"]
            session = (await call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
            for _ in range(200):  # until the page itself (not the about:blank before it) has loaded
                state = await call("Runtime.evaluate", session, returnByValue=True,
                                   expression="location.href + ' ' + document.readyState")
                if state["result"].get("value") == f"{url} complete":
                    break
                await asyncio.sleep(0.05)
            found = await call("Runtime.evaluate", session, expression=SEARCH.replace("QUERY", json.dumps(query)),
                               awaitPromise=True, returnByValue=True)
            return found["result"].get("value", "")
    finally:
        browser.terminate()
        browser.wait(timeout=30)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_headless_chromium_shows_the_nav_the_search_and_the_reference(served_site, tmp_path):
    home = _chromium(f"{served_site}/", tmp_path, "--dump-dom")
    for title, _ in re.findall(r"^  - ([^:]+): (\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), flags=re.M):
        assert title in home, f"the nav does not list {title!r}"
    found = asyncio.run(asyncio.wait_for(_search(f"{served_site}/", "TextClassifier", tmp_path), timeout=120))
    assert "TextClassifier" in found and "API reference" in found, f"search found: {found[:300]!r}"
    reference = _chromium(f"{served_site}/reference/", tmp_path, "--dump-dom")
    assert re.search(r"load\(.*?path.*?variant.*?provider", re.sub(r"<[^>]+>", "", reference), flags=re.S)
    for name, url in (("home", f"{served_site}/"), ("serving", f"{served_site}/serving/"),
                      ("reference", f"{served_site}/reference/")):
        shot = tmp_path / f"{name}.png"
        _chromium(url, tmp_path, "--window-size=1280,1000", f"--screenshot={shot}")
        assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot of the {name} page"
        if os.environ.get("ORTPIPE_DOCS_SHOTS"):  # to look at them: ORTPIPE_DOCS_SHOTS=folder
            shutil.copy(shot, Path(os.environ["ORTPIPE_DOCS_SHOTS"]) / shot.name)
