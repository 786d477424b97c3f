"""The `treesearch` command line.

Each command lives in its own module that exposes ``register(subparsers)``;
the module adds its parser and sets ``func``, a callable taking the parsed
args and returning an exit code. Only commands that work are listed here.
Errors a user can fix (bad input, missing files) are raised as `UserError`,
`ValueError` or `FileNotFoundError` and printed as one line, exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMAND_MODULES = [
    "treesearch.commands.bootstrap",
    "treesearch.commands.evaluate",
    "treesearch.commands.demo",
    "treesearch.commands.search",
    "treesearch.commands.sweep",
    "treesearch.commands.iterate",
    "treesearch.commands.tasks",
    "treesearch.commands.train",
    "treesearch.commands.train_prm",
    "treesearch.commands.train_verifier",
    "treesearch.commands.viz",
]


class UserError(Exception):
    """An error in what the user asked for; printed as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="treesearch",
        description="Search over reasoning steps, verify, and learn from the trees (MCTS, tree-segment rollouts, Step-DPO).",
    )
    parser.add_argument(
        "--allow-weak-sandbox", action="store_true",
        help="run model code even without the bubblewrap sandbox (weaker isolation; README: Verifiers)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _cpu_threads() -> None:
    """One torch thread per process on CPU unless TREESEARCH_THREADS says otherwise.

    The tiny models here are latency-bound, and on a busy 2-core machine a second
    OpenMP thread that spins waiting for a core made a search 50x slower (measured).
    """
    n = os.environ.get("TREESEARCH_THREADS", "1")
    if not n.isdigit() or int(n) < 1:
        raise SystemExit(f"treesearch: error: TREESEARCH_THREADS must be a positive integer, got {n!r}")
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        torch.set_num_threads(int(n))


def _sandbox_preflight(args) -> None:
    """Refuse up front (not after loading a model) to run a code task without the strong sandbox."""
    from verifiers.code import allow_weak_sandbox, isolation_available

    if args.allow_weak_sandbox:
        allow_weak_sandbox()
    task = getattr(args, "task", None)
    if task is None and args.command == "iterate" and getattr(args, "config", None):
        try:
            from treesearch.loop import load_loop_config

            task = load_loop_config(args.config).task
        except (ValueError, OSError):  # a bad config is the command's own error to report
            task = None
    if isinstance(task, str):
        from tasks import get_suite

        try:
            verifier = get_suite(task).verifier
        except (ValueError, FileNotFoundError):
            return  # the command reports a bad task itself
        if verifier == "code":
            isolation_available()  # SandboxUnavailable (a PermissionError): one line, exit 2


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    _cpu_threads()
    try:
        _sandbox_preflight(args)
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError, PermissionError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"treesearch {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"treesearch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
