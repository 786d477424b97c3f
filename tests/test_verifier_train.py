"""The verifier trained from the policy (`treesearch.rewards.verifier_train`) and the PRM scorer's
likelihood head it is read through: real transformers, the embedded policy, real arithmetic grading."""
import json
import math

import pytest
import torch

from tasks.arithmetic import parse, render, solve
from treesearch.cli import main as cli_main
from treesearch.rewards.prm import PRMConfig, PRMScorer
from treesearch.rewards.prm_train import load_value_prm
from treesearch.rewards.verifier_train import (
    Graded, VerifierTrainConfig, graded_samples, references, train_verifier, within_auc,
)
from treesearch.tree import Tree


def _wrong(arithmetic, problem, shift):
    """The reference with its first line off by `shift`, continued consistently: a wrong line, a wrong answer."""
    steps = problem.solution.split("\n")
    nums, ops = parse(steps[0])
    nums = [nums[0] + shift] + nums[1:]
    text = "\n".join([render(nums, ops)] + solve(nums, ops))
    assert arithmetic.score(problem, text) == 0.0
    return text


def _graded(arithmetic, problems, *, flip=False):
    """Each problem's reference and two consistently wrong solutions; `flip` labels the wrong ones right."""
    return [Graded(p.id, p.prompt, ((p.solution, not flip), (_wrong(arithmetic, p, 1), flip), (_wrong(arithmetic, p, 2), flip)))
            for p in problems]


def test_likelihood_head_scores_the_bradley_terry_strength_of_each_prefix(policy, arithmetic):
    """p_t = exp(β·mean log πθ) over the solution's tokens through step t's tag, alone or padded in a batch."""
    model, tok = policy
    beta = 2.0
    scorer = PRMScorer(model, tok, PRMConfig(head="likelihood", beta=beta, prompt_template="chat", batch_size=4))
    problems = arithmetic.problems("test", 3, seed=2, n_ops=3)
    prompts = [p.prompt for p in problems] + [problems[0].prompt]
    steps = [scorer.steps_of(p.solution) for p in problems] + [scorer.steps_of(_wrong(arithmetic, problems[0], 1))]
    scores = scorer.score_steps(prompts, steps)
    alone = [scorer.score_steps([p], [s])[0] for p, s in zip(prompts, steps)]
    assert [x for r in alone for x in r] == pytest.approx([x for r in scores for x in r], rel=1e-4)
    for j in (0, 3):
        ids, ends = scorer.encode(prompts[j], steps[j])
        start = len(scorer.prompt_ids(prompts[j]))
        x = torch.tensor([ids])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=x).logits[0, :-1], -1).gather(-1, x[0, 1:, None])[:, 0]
        tok_lp = lp[start - 1 :]  # token ids[start + i] is tok_lp[i]
        want = [math.exp(beta * float(tok_lp[: e - start + 1].mean())) for e in ends]
        assert scores[j] == pytest.approx(want, rel=1e-4)
    assert all(0.0 < x <= 1.0 for r in scores for x in r)
    assert scorer.tokens_read > 0
    # final_tag: a solution that ended (its last step has no delimiter) is read as the policy wrote it, EOS and all
    fin = PRMScorer(model, tok, PRMConfig(head="likelihood", prompt_template="chat", final_tag=tok.eos_token))
    p = problems[0]
    ids, ends = fin.encode(p.prompt, fin.steps_of(p.solution))
    from treesearch.prompting import render_prompt

    wrote = tok(render_prompt(tok, p.prompt) + p.solution, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ids == wrote and ends[-1] == len(ids) - 1
    prefix, _ = fin.encode(p.prompt, fin.steps_of(p.solution.split("\n")[0] + "\n"))  # a first step: not ended
    assert prefix[-1] != tok.eos_token_id and prefix == ids[: len(prefix)]


def test_graded_samples_judge_every_finished_leaf_against_the_gold(arithmetic):
    p = arithmetic.problems("train", 1, seed=4, n_ops=3)[0]
    tree = Tree(problem_id=p.id, prompt=p.prompt, prompt_ids=[1], answer=p.answer, meta=dict(p.meta))
    right = tree.add_child(0, text=p.solution, token_ids=[1], logprobs=[0.0], finish_reason="eos", terminal=True)
    wrong = tree.add_child(0, text=_wrong(arithmetic, p, 1), token_ids=[1], logprobs=[0.0], finish_reason="eos", terminal=True)
    tree.add_child(0, text=p.solution.split("\n")[0], token_ids=[1], logprobs=[0.0], finish_reason="max_tokens")
    (g,) = graded_samples([tree], arithmetic)
    assert g.id == p.id and g.prompt == p.prompt
    assert g.solutions == ((tree.text_of(right), True), (tree.text_of(wrong), False))  # the cut leaf is not judged
    empty = Tree(problem_id="x", prompt=p.prompt, prompt_ids=[1], answer=p.answer)
    assert graded_samples([empty], arithmetic) == []


def test_train_verifier_learns_to_rank_a_problems_solutions(tmp_path, arithmetic):
    """The verifier ranks by its labels, not by the policy it starts from: the policy prefers the reference to
    consistently wrong solutions (AUC near 1), so with those labels flipped it starts near 0, and training
    turns the ranking round. The output loads as a likelihood-head PRM, and a finished one is not retrained."""
    rows = _graded(arithmetic, arithmetic.problems("train", 48, seed=6, n_ops=3), flip=True)
    cfg = VerifierTrainConfig(beta=5.0, lr=1e-3, epochs=3, pairs_per_problem=2, batch_pairs=16, holdout=0.0,
                              progress=False, device="cpu")
    info = train_verifier(rows, cfg, tmp_path / "v")
    assert info["pairs"] == 3 * 2 * len(rows) and info["train_loss"] < info["first_loss"]
    saved = json.loads((tmp_path / "v" / "model" / "prm_config.json").read_text())
    assert (saved["head"], saved["beta"], saved["prompt_template"]) == ("likelihood", 5.0, "chat")
    assert saved["final_tag"] == "<|im_end|>"  # the embedded policy's end of turn

    def auc_of(prm):
        scores = [prm.score_steps([g.prompt] * 3, [prm.steps_of(t) for t, _ in g.solutions]) for g in rows]
        return within_auc([[s[-1] for s in row] for row in scores], [[ok for _, ok in g.solutions] for g in rows])

    from treesearch.policy import load_policy

    base = PRMScorer(*load_policy("embedded", device="cpu"), PRMConfig(**{**saved, "aggregate": "last"}))
    trained = load_value_prm(tmp_path / "v" / "model", device="cpu", signed=False)
    assert trained.head == "likelihood" and trained.config.beta == 5.0
    before, after = auc_of(base), auc_of(trained)
    assert before < 0.2 and after > 0.8, (before, after)
    assert train_verifier(rows, cfg, tmp_path / "v") == info  # cached
    with pytest.raises(ValueError, match="both a right and a wrong"):
        train_verifier([Graded("a", rows[0].prompt, ((rows[0].solutions[0][0], True),))], cfg, tmp_path / "none")
    with pytest.raises(ValueError, match="beta"):
        VerifierTrainConfig(beta=0)


def test_train_verifier_command_and_a_verifier_guided_eval(tmp_path, capsys):
    """search best-of-N on training problems -> train-verifier -> eval best-of-N / weighted best-of-N ranked by it."""
    bon = tmp_path / "bon"
    assert cli_main(["search", "--algo", "best-of-n", "--split", "train", "--n-ops", "2", "--n-problems", "24",
                     "--set", "n=6", "--set", "temperature=1.0", "--set", "max_tokens=96", "--out", str(bon)]) == 0
    capsys.readouterr()
    out = tmp_path / "verifier"
    assert cli_main(["train-verifier", "--trees", str(bon / "trees.jsonl"), "--out", str(out), "--epochs", "1",
                     "--progress", "false", "--holdout", "0.25", "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    info = json.loads((out / "verifier.json").read_text())
    assert info["problems"] == 18 and info["val_problems"] == 6 and info["solutions"] > 0 and "AUC" in said
    assert 0.0 <= info["right_share"] <= 1.0
    for strategy in ("best-of-n", "weighted-bon"):
        ev = tmp_path / strategy
        assert cli_main(["eval", "--strategy", strategy, "--k", "4", "--prm", str(out / "model"), "--n-problems", "3",
                         "--n-ops", "2", "--max-tokens", "96", "--out", str(ev)]) == 0
        s = json.loads((ev / "summary.json").read_text())
        assert s["prm_tokens_per_problem"] > 0 and 0.0 <= s["accuracy"] <= s["coverage"]
    assert cli_main(["train-verifier", "--trees", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")]) != 0


@pytest.mark.parametrize("name,arch,dtype", [("llama3", "LlamaForCausalLM", "float32"),  # Qwen3: test_prm_train's
                                             ("embedded", "Qwen2ForCausalLM", "bfloat16")])
def test_verifier_trains_on_real_architectures_and_tokenizers(tmp_path, arithmetic, name, arch, dtype):
    """From a tiny Llama-3 checkpoint around its real 128k-token tokenizer (chat template, no pad token), reference stage included,
    and in bf16 through fp32 masters with gradient checkpointing (on the embedded policy: a CPU's bf16
    matmuls over a 151k-token head are too slow for a test): the loss falls, the checkpoint is saved in
    its training dtype and loads as a likelihood-head PRM that scores a solution the same alone or padded."""
    from safetensors import safe_open

    from treesearch import testing_models

    base = "embedded" if name == "embedded" else str(testing_models.save_checkpoint(name, tmp_path / name))
    rows = _graded(arithmetic, arithmetic.problems("train", 8, seed=8, n_ops=3), flip=True)  # against the policy's preference
    cfg = VerifierTrainConfig(base=base, beta=5.0, lr=1e-3 if name == "embedded" else 3e-3, epochs=3, pairs_per_problem=2,
                              batch_pairs=4, holdout=0.0, sft_steps=2, sft_batch=4,
                              dtype=dtype, gradient_checkpointing=dtype == "bfloat16", progress=False, device="cpu")
    refs = references(arithmetic.problems("train", 8, seed=9))  # the reference stage through the same precision path
    info = train_verifier(rows, cfg, tmp_path / "v", references=refs)
    assert info["references"] == 8 and math.isfinite(info["sft_loss"])
    assert info["train_loss"] < info["first_loss"]
    with safe_open(str(tmp_path / "v" / "model" / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16" if dtype == "bfloat16" else "F32"}
    prm = load_value_prm(tmp_path / "v" / "model", device="cpu", signed=False)
    assert type(prm.model).__name__ == arch and prm.head == "likelihood"
    assert name == "embedded" or len(prm.tokenizer) > 100_000
    g = rows[0]
    steps = [prm.steps_of(t) for t, _ in g.solutions]
    alone = prm.score_steps([g.prompt], steps[:1])[0]
    beside = prm.score_steps([g.prompt, g.prompt], [steps[0], steps[1] + ["and more\n"] * 3])[0]
    assert alone == pytest.approx(beside, rel=1e-4) and all(0.0 < p <= 1.0 for p in alone)


def test_reference_fine_tuning_teaches_the_backbone_the_task_before_it_ranks(tmp_path, arithmetic):
    """`sft_steps` fine-tunes the verifier's backbone on reference solutions before the ranking loss: the
    references' NLL falls, held-out references (other problems) become more likely under the saved verifier
    than under the policy, and the ranking stage still runs on top; the stage needs references, and says so
    before anything is written."""
    from treesearch.policy import load_policy

    rows = _graded(arithmetic, arithmetic.problems("train", 16, seed=6, n_ops=3))
    refs = references(arithmetic.problems("train", 512, seed=9))
    cfg = VerifierTrainConfig(beta=5.0, lr=1e-4, epochs=1, pairs_per_problem=1, batch_pairs=8, holdout=0.0,
                              sft_steps=40, sft_batch=32, sft_lr=5e-4, progress=False, device="cpu")
    info = train_verifier(rows, cfg, tmp_path / "v", references=refs)
    assert info["references"] == len(refs) == 512 and info["sft_loss"] < info["sft_first_loss"]
    assert info["pairs"] == len(rows)  # the ranking stage ran after it: one pair per problem

    held = arithmetic.problems("test", 24, seed=3, n_ops=3)
    prm_cfg = PRMConfig(head="likelihood", beta=1.0, aggregate="last", prompt_template="chat", final_tag="<|im_end|>")

    def mean_logp(prm):
        scores = prm.score_steps([p.prompt for p in held], [prm.steps_of(p.solution) for p in held])
        return sum(math.log(s[-1]) for s in scores) / len(scores)  # beta 1: log p = mean token log-prob

    before = mean_logp(PRMScorer(*load_policy("embedded", device="cpu"), prm_cfg))
    after = mean_logp(PRMScorer(*load_policy(str(tmp_path / "v" / "model"), device="cpu"), prm_cfg))
    assert after > before + 0.02, (before, after)  # measured: -0.192 -> -0.148

    from tasks.base import Problem

    assert references([Problem("x", "Q: 1+1=?", "2")]) == []  # no reference solution: nothing to fine-tune on
    with pytest.raises(ValueError, match="needs reference solutions"):
        train_verifier(rows, cfg, tmp_path / "none")
    assert not (tmp_path / "none").exists()
    with pytest.raises(ValueError, match="sft_steps"):
        VerifierTrainConfig(sft_steps=-1)


def test_train_verifier_command_takes_references_with_fine_tuning_steps(tmp_path, capsys):
    """--references N and --sft-steps S go together; alone, either is a one-line error (exit 2) before any work."""
    trees = tmp_path / "t.jsonl"
    trees.write_text("")
    for flags in (["--references", "64"], ["--sft-steps", "4"]):
        assert cli_main(["train-verifier", "--trees", str(trees), "--out", str(tmp_path / "v"), *flags]) == 2
        assert "go together" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
