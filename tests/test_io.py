"""JSONL and atomic writes: the contract between stages."""
import gzip
import os

import pytest

from treesearch.io import append_jsonl, atomic_write_text, read_jsonl, read_jsonl_numbered, require, write_jsonl


def test_atomic_write_replaces_whole_file_with_usual_permissions(tmp_path):
    p = tmp_path / "a" / "x.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~umask
    assert [f.name for f in p.parent.iterdir()] == ["x.json"]  # no temporary left behind


def test_jsonl_round_trip_plain_and_gz(tmp_path):
    rows = [{"a": 1}, {"b": [1, 2]}]
    for name in ("r.jsonl", "r.jsonl.gz"):
        write_jsonl(tmp_path / name, rows)
        assert list(read_jsonl(tmp_path / name)) == rows
    with gzip.open(tmp_path / "r.jsonl.gz", "rt") as f:
        assert f.readline().strip() == '{"a": 1}'


def test_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: expected a JSON object, got list"):
        list(read_jsonl(p))
    p.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: bad JSON"):
        list(read_jsonl(p))
    with pytest.raises(FileNotFoundError, match="no such file"):
        list(read_jsonl(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match=r"f\.jsonl:7: missing field 'answer'"):
        require({}, "answer", str, "f.jsonl:7")
    with pytest.raises(ValueError, match=r"field 'n' must be int, got bool"):
        require({"n": True}, "n", int, "f.jsonl:1")


def test_torn_tail_is_skipped_only_when_allowed(tmp_path):
    p = tmp_path / "t.jsonl"
    append_jsonl(p, [{"i": 0}, {"i": 1}])
    with open(p, "a") as f:
        f.write('{"i": 2')  # a writer killed mid-line
    assert [d["i"] for d in read_jsonl(p, allow_torn_tail=True)] == [0, 1]
    assert [n for n, _ in read_jsonl_numbered(p, allow_torn_tail=True)] == [1, 2]
    with pytest.raises(ValueError, match=":3: bad JSON"):
        list(read_jsonl(p))


def test_a_failed_save_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path):
    """Figures, tree views and saved trees replace the file whole or not at all."""
    from matplotlib.figure import Figure

    from treesearch.io import save_figure
    from treesearch.tree import Tree
    from treesearch.viz import save_tree

    tree = Tree(prompt="Q", prompt_ids=[1, 2], problem_id="p")
    tree.add_child(0, text="a\n", token_ids=[3], logprobs=[-0.5], finish_reason="stop", terminal=True)
    tree.save(tmp_path / "tree.json")
    saved = (tmp_path / "tree.json").read_bytes()
    assert Tree.load(tmp_path / "tree.json").to_json() == tree.to_json()
    tree.meta["bad"] = object()
    with pytest.raises(TypeError):
        tree.save(tmp_path / "tree.json")
    assert (tmp_path / "tree.json").read_bytes() == saved
    del tree.meta["bad"]

    save_tree(tree, tmp_path / "view.png")
    png = (tmp_path / "view.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    with pytest.raises(ValueError):  # matplotlib cannot write this format: nothing replaced
        save_figure(fig, tmp_path / "view.nosuchformat")
    save_figure(fig, tmp_path / "keep.pdf")
    pdf = (tmp_path / "keep.pdf").read_bytes()
    from matplotlib.artist import Artist

    class Broken(Artist):  # the layout pass draws it once; it fails when the file is written
        draws = 0

        def draw(self, renderer):
            Broken.draws += 1
            if Broken.draws > 1:
                raise RuntimeError("cannot draw")

    fig.add_artist(Broken())
    with pytest.raises(RuntimeError, match="cannot draw"):  # a PDF is opened before it is drawn
        save_figure(fig, tmp_path / "keep.pdf")
    assert (tmp_path / "keep.pdf").read_bytes() == pdf
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.pdf", "tree.json", "view.png"]
