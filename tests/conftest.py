"""Shared fixtures: the real embedded policy through real transformers, one thread per worker."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


@pytest.fixture(autouse=True)
def _xdist_group_applied(request):
    """Under ``--dist loadgroup`` an ``xdist_group`` test must carry its group in its node id, or the
    scheduler silently drops the group and each worker starts its own vLLM engine (pytest 9.2 with
    pytest-xdist 3.8: pyproject pins pytest below 9.2)."""
    item = request.node
    if (os.environ.get("PYTEST_XDIST_WORKER") and request.config.getvalue("loadgroup")
            and item.get_closest_marker("xdist_group") and "@" not in item.nodeid):
        pytest.fail(f"pytest-xdist loadgroup is not applied by pytest {pytest.__version__}: {item.nodeid} has no "
                    f"@group suffix; install pytest<9.2 (`make install`)", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def policy():
    from treesearch.policy import load_policy

    return load_policy("embedded", device="cpu")


@pytest.fixture()
def hf_backend(policy):
    from treesearch.backends.hf import HFBackend

    model, tokenizer = policy
    return HFBackend.from_model(model, tokenizer)


@pytest.fixture(scope="session")
def arithmetic():
    from tasks import get_task

    return get_task("arithmetic")


@pytest.fixture(scope="session")
def vllm_backend():
    """One real vLLM engine (the CPU build here) on the embedded default for the whole test session.

    Tests using it carry ``pytest.mark.xdist_group("vllm")`` so that `make test`'s
    ``--dist loadgroup`` runs them all in one worker, next to this one engine."""
    from treesearch.backends.config import VLLMConfig, make_backend

    backend = make_backend("vllm", "embedded", vllm=VLLMConfig(enforce_eager=True, kv_cache_gib=0.5), seed=0)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def real_tokenizers():
    """name -> the real tokenizer (Qwen3, Llama-3, SentencePiece "llama2"), offline from the cache
    `make install` fills; a missing cache is an error naming the command to run, never a skip."""
    from treesearch.testing_models import TOKENIZERS, load_tokenizer

    return {name: load_tokenizer(name) for name in TOKENIZERS}


@pytest.fixture(scope="session")
def trained_prm(policy, tmp_path_factory):
    """A real PRM checkpoint (`train_prm`, one epoch) trained on MCTS trees the embedded policy searched on
    32 training problems; returns its ``model/`` directory (what `treesearch eval --prm` takes)."""
    from tasks import get_task
    from treesearch.backends.hf import HFBackend
    from treesearch.rewards.prm_train import PRMTrainConfig, train_prm
    from treesearch.search import MCTSConfig
    from treesearch.search.runner import run_search

    task = get_task("arithmetic")
    problems = task.problems("train", 32, seed=11)
    search = MCTSConfig(simulations=6, width=2, max_tokens=96, revisit_terminals=False, end_cut_steps=True,
                        value_prior=2.0, rollouts=1)
    trees = run_search("mcts", HFBackend.from_model(*policy), task, problems, search, value="counts", batch_size=32).trees
    out = tmp_path_factory.mktemp("prm")
    train_prm(trees, PRMTrainConfig(epochs=1, holdout=0.0), out)
    return out / "model"
