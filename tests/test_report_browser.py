"""The HTML report and tree pages in a real headless browser (Debian's ``chromium``).

The browser is driven over the Chrome DevTools Protocol with a small client on
``websocket-client``: console errors and uncaught exceptions are collected from
the Runtime and Log domains, every network request is recorded (the pages must
load nothing but themselves), the rendered plots are inspected through
JavaScript, and screenshots are decoded and checked for content.

The run directory is a real one: `treesearch.loop.Run` on configs/tiny.yaml
(with a 16-simulation search so the round has pairs) with the embedded policy.
"""
import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-allow-origins=*",
    "--window-size=1400,1000",
]


class Browser:
    """One headless chromium page over the DevTools protocol."""

    def __init__(self, profile: Path):
        import websocket

        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        assert exe, "chromium is not installed: `apt-get install -y chromium` (make system-deps)"
        self.proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        port_file = profile / "DevToolsActivePort"  # chromium writes the port it picked here
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            assert self.proc.poll() is None, f"chromium exited with status {self.proc.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its debugging port within 60 s"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable")

    def _recv(self) -> dict:
        msg = json.loads(self.ws.recv())
        if "method" in msg:
            self.events.append(msg)
        return msg

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = self._recv()
            if msg.get("id") == mid:
                assert "error" not in msg, f"{method}: {msg['error']}"
                return msg.get("result", {})

    def open(self, path: Path) -> None:
        """Navigate to a local file and wait until every plotly plot has drawn."""
        self.events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            self._recv()
        drawn = self.js(
            """new Promise(resolve => { const t0 = Date.now(); (function poll() {
                 const gds = [...document.querySelectorAll('.plotly-graph-div')];
                 if (gds.length && gds.every(g => g._fullLayout && g.querySelector('.main-svg'))) resolve(gds.length);
                 else if (Date.now() - t0 > 30000) resolve(-1); else setTimeout(poll, 50); })(); })""",
            await_promise=True,
        )
        assert drawn > 0, f"{path.name}: plots not drawn within 30 s"

    def js(self, expression: str, *, await_promise: bool = False):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        assert "exceptionDetails" not in r, f"JavaScript error: {r['exceptionDetails']}"
        return r["result"].get("value")

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(d.get("exception", {}).get("description") or d.get("text", ""))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def screenshot(self, rect: list[float] | None = None) -> np.ndarray:
        """RGB pixels [H, W, 3] of the page, or of the document rectangle [x, y, w, h]."""
        from PIL import Image

        kw = {"captureBeyondViewport": True}
        if rect:
            kw["clip"] = dict(x=rect[0], y=rect[1], width=rect[2], height=rect[3], scale=1)
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png", **kw)["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            os.killpg(self.proc.pid, signal.SIGTERM)  # chromium's own process group (start_new_session)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# per tree plot: what the page says it drew, the "nodes" trace's data, and the SVG points in the DOM
TREE_PLOTS = """[...document.querySelectorAll('.tree-view')].map(box => {
  const gd = document.getElementById(box.dataset.plotId);
  const i = gd._fullData.findIndex(t => t.name === 'nodes');
  const g = [...gd.querySelectorAll('g.trace.scatter')].find(g => g.__data__ && g.__data__[0] && g.__data__[0].trace.name === 'nodes');
  const r = box.getBoundingClientRect();
  return {problem: box.dataset.problemId, round: +box.dataset.round, drawn: +box.dataset.nodesDrawn, total: +box.dataset.treeNodes,
          data: gd._fullData[i].x.length, ids: Array.from(gd._fullData[i].customdata), dom: g ? g.querySelectorAll('path.point').length : -1,
          links: gd._fullData.filter(t => t.name === 'pair link').length, curve: i, plot: box.dataset.plotId,
          rect: [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]};
})"""


def _not_blank(img: np.ndarray, what: str) -> None:
    assert img.shape[0] > 100 and img.shape[1] > 100, f"{what}: screenshot is {img.shape}"
    colours = len(np.unique(img.reshape(-1, 3), axis=0))
    assert img.std() > 8 and colours > 50, f"{what}: looks blank (std {img.std():.1f}, {colours} colours)"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real `treesearch iterate` run on the embedded policy: one round, its pairs, the final evaluation."""
    import torch

    from treesearch.loop import Run, load_loop_config

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "tiny"
    cfg = load_loop_config(REPO / "configs" / "tiny.yaml", {"search": {"simulations": 16, "width": 3}})
    Run(out, cfg, log=lambda line: None).run()
    return out


@pytest.mark.slow
def test_run_report_renders_every_node_without_errors(run_dir, browser, tmp_path):
    import argparse

    from treesearch.commands import viz as cmd
    from treesearch.io import read_jsonl
    from treesearch.search.runner import read_trees

    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    args = parser.parse_args(["viz", str(run_dir), "--out", str(tmp_path / "report.html")])
    assert args.func(args) == 0
    page = tmp_path / "report.html"
    text = page.read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", text), "no external scripts"
    from plotly.offline import get_plotlyjs

    assert text.count(get_plotlyjs()[-2000:]) == 1, "plotly.js is inlined exactly once"

    pairs = list(read_jsonl(run_dir / "round_0" / "pairs.jsonl"))
    assert pairs, "the tiny run with 16 simulations yields pairs"
    want = pairs[0]["problem_id"]  # the default problem: the first with pairs
    tree = next(t for t in read_trees(run_dir / "round_0" / "trees.jsonl") if t.problem_id == want)

    browser.open(page)
    assert browser.errors() == [], "console errors on load"
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in browser.requests()), browser.requests()
    assert browser.js("document.querySelectorAll('.plotly-graph-div').length") == 4  # accuracy, tokens, pairs, one tree
    (plot,) = browser.js(TREE_PLOTS)
    assert plot["problem"] == want and plot["round"] == 0
    assert plot["dom"] == plot["data"] == plot["drawn"] == plot["total"] == tree.num_nodes
    assert sorted(plot["ids"]) == list(range(tree.num_nodes))
    assert plot["links"] == sum(p["problem_id"] == want for p in pairs)
    # hovering a node shows its numbers and its step text
    node = tree.best_path()[1]
    hover = browser.js(f"""(() => {{ const gd = document.getElementById('{plot["plot"]}');
        Plotly.Fx.hover(gd, [{{curveNumber: {plot["curve"]}, pointNumber: {plot["ids"].index(node)}}}]);
        return gd.querySelector('.hoverlayer').textContent; }})()""")
    assert f"node {node} · depth 1" in hover and f"visits {tree.visits[node]}" in hover
    assert tree.text[node].strip() in hover
    _not_blank(browser.screenshot(plot["rect"]), "tree plot")
    _not_blank(browser.screenshot(), "report page")
    assert browser.errors() == []
    browser.js("console.error('probe')")  # the collector sees console errors (so the empty lists above mean something)
    browser.js("0")
    assert browser.errors() == ["probe"]


@pytest.mark.slow
def test_a_1000_node_tree_page_renders_filtered_and_whole(browser, tmp_path):
    from treesearch.search import MCTSConfig, mcts
    from treesearch.search.testing import ScriptedBackend, bandit_policy, bandit_score
    from treesearch.tree import Tree
    from treesearch.viz import save_tree

    backend = ScriptedBackend(bandit_policy({ch: 1.0 for ch in "abcdefghijkl"}, depth=6))
    tree = Tree(problem_id="big", prompt="pick", prompt_ids=backend.encode_prompt("pick"))
    mcts(backend, [tree], MCTSConfig(simulations=300, width=4, max_depth=6), score=bandit_score("a"))
    assert tree.num_nodes >= 1000
    for max_nodes, want in ((300, 300), (None, tree.num_nodes)):
        page = save_tree(tree, tmp_path / f"big_{max_nodes}.html", max_nodes=max_nodes)
        browser.open(page)
        counts = browser.js("""(() => { const gd = document.querySelector('.plotly-graph-div');
            const g = [...gd.querySelectorAll('g.trace.scatter')].find(g => g.__data__[0].trace.name === 'nodes');
            return [g.querySelectorAll('path.point').length, gd.layout.title.text]; })()""")
        assert counts[0] == want
        assert (f"({tree.num_nodes - 300} hidden)" in counts[1]) == (max_nodes == 300)
        assert browser.errors() == [] and all(u.startswith("file:") for u in browser.requests())
        _not_blank(browser.screenshot(), f"tree page, max_nodes={max_nodes}")
