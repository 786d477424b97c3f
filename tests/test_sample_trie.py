"""Independent samples merged into a step trie: shared prefixes, terminals judged, repeats counted."""
from treesearch.pairs import judged_stats
from treesearch.rewards.prm_train import PRMTrainConfig, step_rows
from treesearch.rewards.prm import split_after
from treesearch.rewards.sample_trie import sample_trie
from treesearch.tree import CORRECT, WRONG


def test_split_after_keeps_each_delimiter_with_its_step():
    assert split_after("a\nb\nAnswer: 3\n", "\n") == ["a\n", "b\n", "Answer: 3\n"]
    assert split_after("a\nb", "\n") == ["a\n", "b"]
    assert split_after("", "\n") == []
    assert "".join(split_after("x\n\ny\n", "\n")) == "x\n\ny\n"


def test_sample_trie_merges_prefixes_and_counts_every_draw():
    samples = [("1+2\n3\nAnswer: 3\n", True, True),
               ("1+2\n4\nAnswer: 4\n", True, False),
               ("1+2\n3\nAnswer: 3\n", True, True),  # drawn twice
               ("1+2\n3\n3\n3", False, False)]  # cut at the token limit
    t = sample_trie("q", "Q: 1+2=?", samples)
    first = t.children[0]
    assert [t.text[c] for c in first] == ["1+2\n"]  # one shared first step
    assert sorted(t.text[c] for c in t.children[first[0]]) == ["3\n", "4\n"]
    leaves = [n for n in range(t.num_nodes) if t.terminal[n]]
    assert len(leaves) == 3
    cut = next(n for n in leaves if t.finish_reason[n] == "max_tokens")
    assert t.verdict[cut] == WRONG and t.text_of(cut) == "1+2\n3\n3\n3"
    correct, judged = judged_stats(t)
    assert (int(correct[0]), int(judged[0])) == (2, 4)  # every draw counts, the repeat included
    three = next(c for c in t.children[first[0]] if t.text[c] == "3\n")
    assert (int(correct[three]), int(judged[three])) == (2, 3)
    assert sum(t.verdict[n] == CORRECT for n in leaves) == 1


def test_sample_trie_gives_the_prm_sibling_rows():
    t = sample_trie("q", "Q", [("a\nx\n", True, True), ("a\ny\n", True, False)])
    rows = step_rows([t], PRMTrainConfig(label="soft"))
    labels = {tuple(r.steps): r.labels for r in rows}
    assert labels[("a\n", "x\n")] == [0.5, 1.0]
    assert labels[("a\n", "y\n")] == [None, 0.0]  # the shared step is labelled once
