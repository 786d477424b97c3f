"""Independent samples merged into a prefix tree of steps: PRM training data shaped like test time.

Best-of-N, weighted best-of-N and DVTS ask a PRM to rank *independent samples*
of one problem against each other, but search trees (MCTS, segments) hold
another distribution: partial paths the search chose to grow. `sample_trie`
turns N complete samples of a problem into a `Tree` whose nodes are steps
(text split after each ``delimiter``) and whose identical prefixes are merged,
so every node's judged counts (`treesearch.pairs.judged_stats`: c correct of m
samples through it) are the Math-Shepherd Monte Carlo estimate of the step's
value under the policy, and the samples that part ways at a node are siblings:
exactly what `train_prm`'s pairwise (rStar-Math) term compares. Each sample's
last step is a terminal judged by the task's verifier; a sample cut at the
token limit is a terminal judged wrong unread (``finish_reason`` "max_tokens").

Nodes carry text only (no token ids): the PRM reads text with its own tokenizer.
"""
from __future__ import annotations

from typing import Sequence

from treesearch.rewards.prm import split_after
from treesearch.tree import CORRECT, WRONG, Tree


def sample_trie(problem_id: str, prompt: str, samples: Sequence[tuple[str, bool, bool]], *, delimiter: str = "\n",
                answer: str = "") -> Tree:
    """A prefix tree of `samples`, each (text, finished, correct): one terminal per sample's last step
    (verdict CORRECT / WRONG; an unfinished sample ends in a ``max_tokens`` terminal). Two samples with the
    same text share every node; the repeats are recorded as judged rollouts of that terminal, so
    `judged_stats` counts every sample as drawn."""
    from treesearch.search.values import record_rollouts

    tree = Tree(problem_id=problem_id, prompt=prompt, prompt_ids=[0], answer=answer)
    weight: dict[int, int] = {}
    for text, done, ok in samples:
        steps = split_after(text, delimiter) or [""]
        node = 0
        for i, step in enumerate(steps):
            last = i == len(steps) - 1
            child = next((c for c in tree.children[node] if tree.text[c] == step and bool(tree.terminal[c]) == last), None)
            if child is None:
                reason = ("eos" if done else "max_tokens") if last else ""
                child = tree.add_child(node, text=step, token_ids=(), logprobs=(), finish_reason=reason, terminal=last)
            node = child
        tree.verdict[node] = CORRECT if (done and ok) else WRONG
        weight[node] = weight.get(node, 0) + 1
    for leaf, count in weight.items():
        tree.visits[leaf] = count
        if count > 1:
            record_rollouts(tree, leaf, (count - 1) * int(tree.verdict[leaf] == CORRECT), count - 1)
    return tree


__all__ = ["sample_trie"]
