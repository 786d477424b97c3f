"""The search tree: a struct of arrays indexed by integer node id (after mctx's `Tree`).

Node ids are assigned in expansion order, the root is ``ROOT = 0``, and a node's
parent always has a smaller id, so a seeded search builds the same ids every
time. Per-node numbers live in growable numpy columns (capacity doubles);
per-node sequences (step text, token ids, per-token log-probabilities, finish
reason) and the children lists live in parallel Python lists::

    tree = Tree(problem_id="arith-test-3-000000", prompt="Q: 1+2*3=?",
                prompt_ids=[1, 271, ...], answer="7")
    a = tree.add_child(ROOT, text="1+6\\n", token_ids=[19, 13, 24, 201],
                       logprobs=[-0.1, -0.2, -0.1, -0.05], finish_reason="stop")
    tree.context_ids(a)   # prompt_ids + [19, 13, 24, 201]: exactly what the model saw
    tree.text_of(a)       # "1+6\\n"

A node's text is the backend's decode of its token ids (whole tokens, end token not
shown; `treesearch.backends.base`), so `text_of` is the decode of the path's ids.

Values follow mctx's convention (γ = 1): ``reward[n]`` is the immediate reward
earned on entering n; ``value_sum[n] / visits[n]`` is the mean return *after*
n (rewards strictly below n plus leaf evaluations); ``q(n) = reward[n] +
value_sum[n] / visits[n]`` is the paper's ``Q = r + V``. Every evaluation of a
node adds one visit to it and to each ancestor, so

    visits[n] == evals[n] + sum(visits[c] for c in children[n])

Serialization is the arrays (`to_json` / `from_json`, `save` / `load`; exact
round trip, floats included); `to_networkx` is a view for analysis and
drawing, not the storage.
"""
from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

from treesearch.io import atomic_write_text

ROOT = 0
NO_PARENT = -1
UNKNOWN, WRONG, CORRECT = -1, 0, 1  # verdict values
FORMAT = "treesearch.tree/1"

# name -> (dtype, fill for a new node, meaning). Order is the JSON order.
_COLUMNS: dict[str, tuple[Any, Any, str]] = {
    "parent": (np.int32, NO_PARENT, "parent id; -1 at the root"),
    "depth": (np.int32, 0, "number of steps from the root"),
    "visits": (np.int32, 0, "N: evaluations in the node's subtree, its own included"),
    "value_sum": (np.float64, 0.0, "sum of returns after the node over its visits"),
    "prior": (np.float64, 0.0, "sum of the step's token log-probabilities under the policy"),
    "reward": (np.float64, 0.0, "immediate reward on entering the node (outcome at terminals)"),
    "terminal": (np.bool_, False, "the solution ends here (EOS, final answer, depth or token limit)"),
    "verdict": (np.int8, UNKNOWN, "-1 unknown, 0 wrong, 1 correct (outcome of the path's final answer)"),
    "evals": (np.int32, 0, "times the node itself was evaluated (value function or terminal outcome)"),
    "value": (np.float64, 0.0, "the node's own evaluation V (value function; 0 at terminals)"),
    "expanded": (np.int32, 0, "times children were sampled for the node (more than 1 under progressive widening)"),
}
_SEQUENCES = ("text", "token_ids", "logprobs", "finish_reason")


def _column(name: str, doc: str) -> property:
    return property(lambda self: self._cols[name][: self.num_nodes], doc=f"[num_nodes] {doc}")


class Tree:
    """One search tree over the steps of one problem. See the module docstring."""

    parent: np.ndarray
    depth: np.ndarray
    visits: np.ndarray
    value_sum: np.ndarray
    prior: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    verdict: np.ndarray
    evals: np.ndarray
    value: np.ndarray
    expanded: np.ndarray

    def __init__(
        self,
        *,
        problem_id: str,
        prompt: str,
        prompt_ids: Sequence[int],
        answer: str = "",
        meta: dict[str, Any] | None = None,
        capacity: int = 64,
    ):
        if not prompt_ids:
            raise ValueError(f"tree {problem_id!r}: prompt_ids is empty")
        self.problem_id = str(problem_id)
        self.prompt = prompt
        self.prompt_ids = [int(t) for t in prompt_ids]
        self.answer = answer
        self.meta: dict[str, Any] = dict(meta or {})
        self.num_nodes = 0
        self._cols = {name: np.full(max(capacity, 1), fill, dtype) for name, (dtype, fill, _) in _COLUMNS.items()}
        self.children: list[list[int]] = []
        self.text: list[str] = []
        self.token_ids: list[list[int]] = []
        self.logprobs: list[list[float]] = []
        self.finish_reason: list[str] = []
        self._new_node(NO_PARENT, text="", token_ids=(), logprobs=(), finish_reason="")

    # -- growth -------------------------------------------------------------------------------
    def _new_node(self, parent: int, *, text: str, token_ids, logprobs, finish_reason: str) -> int:
        node = self.num_nodes
        capacity = len(self._cols["parent"])
        if node == capacity:  # double every column; amortised O(1) per node
            for name, (dtype, fill, _) in _COLUMNS.items():
                grown = np.full(2 * capacity, fill, dtype)
                grown[:capacity] = self._cols[name]
                self._cols[name] = grown
        self.num_nodes += 1
        self._cols["parent"][node] = parent
        self.children.append([])
        self.text.append(text)
        self.token_ids.append([int(t) for t in token_ids])
        self.logprobs.append([float(x) for x in logprobs])
        self.finish_reason.append(finish_reason)
        return node

    def add_child(
        self,
        parent: int,
        *,
        text: str,
        token_ids: Sequence[int],
        logprobs: Sequence[float],
        finish_reason: str,
        terminal: bool = False,
    ) -> int:
        """Append a child of `parent` holding one step; returns its id (= number of nodes before).

        `prior` is set to the step's summed log-probability; visits and values start at 0.
        """
        if not 0 <= parent < self.num_nodes:
            raise IndexError(f"tree {self.problem_id!r}: parent {parent} out of range 0..{self.num_nodes - 1}")
        if self.terminal[parent]:
            raise ValueError(f"tree {self.problem_id!r}: node {parent} is terminal and cannot get children")
        if len(logprobs) not in (0, len(token_ids)):
            raise ValueError(f"{len(logprobs)} logprobs for {len(token_ids)} tokens")
        node = self._new_node(parent, text=text, token_ids=token_ids, logprobs=logprobs, finish_reason=finish_reason)
        self._cols["depth"][node] = self._cols["depth"][parent] + 1
        self._cols["prior"][node] = math.fsum(self.logprobs[node])
        self._cols["terminal"][node] = terminal
        self.children[parent].append(node)
        return node

    # -- reading ------------------------------------------------------------------------------
    def path(self, node: int) -> list[int]:
        """Node ids from ROOT to `node`, both included."""
        out = []
        while node != NO_PARENT:
            out.append(node)
            node = int(self._cols["parent"][node])
        return out[::-1]

    def context_ids(self, node: int) -> list[int]:
        """prompt_ids + the token ids of every step on the path: exactly the model's context at `node`."""
        ids = list(self.prompt_ids)
        for n in self.path(node)[1:]:
            ids.extend(self.token_ids[n])
        return ids

    def text_of(self, node: int) -> str:
        """The solution text so far: the steps on the path to `node`, concatenated."""
        return "".join(self.text[n] for n in self.path(node)[1:])

    def num_tokens(self, node: int) -> int:
        """Generated tokens on the path to `node` (prompt excluded)."""
        return sum(len(self.token_ids[n]) for n in self.path(node)[1:])

    def q(self, node: int) -> float:
        """Q = r + V with V the mean return after the node; r alone while unvisited."""
        n = int(self._cols["visits"][node])
        v = self._cols["value_sum"][node] / n if n else 0.0
        return float(self._cols["reward"][node] + v)

    def leaves(self) -> list[int]:
        return [n for n in range(self.num_nodes) if not self.children[n]]

    def best_child(self, node: int) -> int:
        """The child with the most visits, ties broken by Q, then by lower id; -1 if none."""
        kids = self.children[node]
        if not kids:
            return -1
        return max(kids, key=lambda c: (int(self._cols["visits"][c]), self.q(c), -c))

    def best_path(self, node: int = ROOT) -> list[int]:
        """Follow `best_child` from `node` to a leaf (mctx's action choice by visit count)."""
        out = [node]
        while self.children[out[-1]]:
            out.append(self.best_child(out[-1]))
        return out

    def summary(self) -> dict[str, Any]:
        """Per root child: visits, Q and the text of its step; plus the best path and its answer."""
        path = self.best_path()
        return {
            "problem_id": self.problem_id,
            "nodes": self.num_nodes,
            "root_children": [
                {"node": c, "visits": int(self.visits[c]), "q": self.q(c), "text": self.text[c]}
                for c in self.children[ROOT]
            ],
            "best_path": path,
            "best_text": self.text_of(path[-1]),
            "best_verdict": int(self.verdict[path[-1]]),
        }

    # -- serialization ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict; floats are exact (Python's repr round-trips float64)."""
        n = self.num_nodes
        return {
            "format": FORMAT,
            "problem_id": self.problem_id,
            "prompt": self.prompt,
            "prompt_ids": list(self.prompt_ids),
            "answer": self.answer,
            "meta": self.meta,
            "num_nodes": n,
            **{name: self._cols[name][:n].tolist() for name in _COLUMNS},
            "children": [list(c) for c in self.children],
            "text": list(self.text),
            "token_ids": [list(t) for t in self.token_ids],
            "logprobs": [list(x) for x in self.logprobs],
            "finish_reason": list(self.finish_reason),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], *, where: str = "tree") -> "Tree":
        """Inverse of `to_json`; ValueError naming `where` and the field on malformed input."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise ValueError(f"{where}: field 'format' must be {FORMAT!r}, got {d.get('format')!r}")
        required = ["problem_id", "prompt", "prompt_ids", "num_nodes", *_COLUMNS, "children", *_SEQUENCES]
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
        n = d["num_nodes"]
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{where}: field 'num_nodes' must be a positive integer, got {n!r}")
        for k in [*_COLUMNS, "children", *_SEQUENCES]:
            if not isinstance(d[k], list) or len(d[k]) != n:
                raise ValueError(f"{where}: field {k!r} must be a list of {n} entries")
        tree = cls(
            problem_id=d["problem_id"],
            prompt=d["prompt"],
            prompt_ids=d["prompt_ids"],
            answer=d.get("answer", ""),
            meta=d.get("meta") or {},
            capacity=n,
        )
        tree.num_nodes = n
        try:
            for name, (dtype, _, _) in _COLUMNS.items():
                tree._cols[name] = np.asarray(d[name], dtype=dtype).copy()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: field {name!r}: {e}") from None
        tree.children = [[int(c) for c in kids] for kids in d["children"]]
        tree.text = [str(t) for t in d["text"]]
        tree.token_ids = [[int(t) for t in ids] for ids in d["token_ids"]]
        tree.logprobs = [[float(x) for x in lps] for lps in d["logprobs"]]
        tree.finish_reason = [str(f) for f in d["finish_reason"]]
        tree.check(where=where)
        return tree

    def save(self, path) -> None:
        """Write `to_json` to `path` as one JSON document (atomically: a tree saved before stays whole on failure)."""
        atomic_write_text(path, json.dumps(self.to_json(), separators=(",", ":")))

    @classmethod
    def load(cls, path) -> "Tree":
        """Read a tree written by `save`; errors name the file."""
        try:
            with open(path) as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON: {e.msg} (line {e.lineno})") from None
        return cls.from_json(d, where=str(path))

    def check(self, *, where: str = "tree") -> None:
        """Assert the structural invariants (parents precede children, children lists match parents)."""
        par = self.parent
        if par[ROOT] != NO_PARENT:
            raise ValueError(f"{where}: node 0 must be the root (parent -1)")
        for node in range(1, self.num_nodes):
            p = int(par[node])
            if not 0 <= p < node:
                raise ValueError(f"{where}: node {node} has parent {p}; parents must precede children")
            if node not in self.children[p]:
                raise ValueError(f"{where}: node {node} missing from children of its parent {p}")
            if self.depth[node] != self.depth[p] + 1:
                raise ValueError(f"{where}: node {node} depth {self.depth[node]} != parent depth + 1")
        if sum(len(c) for c in self.children) != self.num_nodes - 1:
            raise ValueError(f"{where}: children lists do not match parents")

    def check_values(self, *, atol: float = 1e-9) -> None:
        """Assert the backup invariants (γ = 1), for every node n with children C:

            visits[n]    == evals[n] + Σ_C visits[c]
            value_sum[n] == evals[n]·value[n] + Σ_C (value_sum[c] + visits[c]·reward[c])
        """
        for n in range(self.num_nodes):
            kids = self.children[n]
            want_n = int(self.evals[n]) + int(sum(self.visits[c] for c in kids))
            if self.visits[n] != want_n:
                raise AssertionError(f"node {n}: visits {self.visits[n]} != evals + children visits {want_n}")
            want_v = self.evals[n] * self.value[n] + sum(self.value_sum[c] + self.visits[c] * self.reward[c] for c in kids)
            if abs(self.value_sum[n] - want_v) > atol * max(1.0, abs(want_v)):
                raise AssertionError(f"node {n}: value_sum {self.value_sum[n]} != {want_v}")

    def to_networkx(self):
        """A `networkx.DiGraph` view: nodes carry every column and sequence, plus `q`; edges point parent -> child."""
        import networkx as nx

        g = nx.DiGraph()
        g.graph.update(
            problem_id=self.problem_id,
            prompt=self.prompt,
            prompt_ids=list(self.prompt_ids),
            answer=self.answer,
            meta=dict(self.meta),
        )
        cols = {name: self._cols[name][: self.num_nodes].tolist() for name in _COLUMNS}
        for node in range(self.num_nodes):
            attrs = {name: cols[name][node] for name in _COLUMNS}
            attrs.update(
                text=self.text[node],
                token_ids=list(self.token_ids[node]),
                logprobs=list(self.logprobs[node]),
                finish_reason=self.finish_reason[node],
                q=self.q(node),
            )
            g.add_node(node, **attrs)
            if node != ROOT:
                g.add_edge(int(attrs["parent"]), node)
        return g

    @classmethod
    def from_networkx(cls, g) -> "Tree":
        """Inverse of `to_networkx` (children keep id order, which is expansion order)."""
        n = g.number_of_nodes()
        d = {"format": FORMAT, **{k: g.graph[k] for k in ("problem_id", "prompt", "prompt_ids", "answer", "meta")}}
        d["num_nodes"] = n
        for k in [*_COLUMNS, *_SEQUENCES]:
            d[k] = [g.nodes[i][k] for i in range(n)]
        d["children"] = [sorted(g.successors(i)) for i in range(n)]
        return cls.from_json(d, where="networkx graph")

    def __repr__(self) -> str:
        return f"Tree(problem_id={self.problem_id!r}, nodes={self.num_nodes}, root_visits={int(self.visits[ROOT])})"


for _name, (_, _, _doc) in _COLUMNS.items():
    setattr(Tree, _name, _column(_name, _doc))
del _name, _doc


def backup(tree: Tree, node: int, value: float) -> None:
    """Record one evaluation `value` (V, the return after `node`) at `node` and propagate it to the root.

    γ = 1: each ancestor a receives the return after a, i.e. the rewards of the nodes
    strictly between a and the leaf (leaf included) plus `value`. ``tree.value[node]`` is
    set to `value` (a node is always evaluated to the same value, so this is its evaluation).
    """
    visits, value_sum, reward, parent = tree._cols["visits"], tree._cols["value_sum"], tree._cols["reward"], tree._cols["parent"]
    tree._cols["evals"][node] += 1
    tree._cols["value"][node] = value
    g = float(value)
    while node != NO_PARENT:
        visits[node] += 1
        value_sum[node] += g
        g += reward[node]
        node = int(parent[node])
