"""Run untrusted Python programs against trusted tests, in a sandbox.

    >>> check("def add(a, b):\\n    return a + b\\n", ["assert add(1, 2) == 3"]).passed
    True

How a job runs. A small pool of long-lived *launchers* (`_sandbox_server.py`,
inside bwrap when available) is started on first use. Each launcher is the
trusted *tester* and owns a *fork server* started before it ever saw a test.
Per job the fork server forks a fresh *candidate* process that executes the
program and then only answers "call function `name` with these arguments"
requests; the tester executes the test code, with every function the program
defined replaced by a stub that makes that call. Arguments and return values
cross the pipe as tagged JSON of exact builtin types (int, float, complex,
str, bytes, list, tuple, set, frozenset, dict, None, bool), the standard
containers MBPP's solutions return (Counter, OrderedDict, defaultdict with a
builtin factory, deque, namedtuples) and builtin types themselves (``int``),
and are rebuilt on the other side by type and content: the program's own
methods never cross. Sets keep their iteration order (a rebuilt set that
would iterate differently iterates, and prints, in the program's order).
Any other object (a class instance, a generator, a closure) stays in the
candidate and crosses as a *handle*: the tests may read and set its
attributes, call it, iterate it, index it, take ``len``/``str``/``repr`` (each a
round trip the candidate answers, like a call), and pass it back into the
program's functions; but a handle is never compared by the program's
``__eq__`` nor tested for truth by its ``__bool__`` (two handles compare by
identity; comparing one with a plain value or ``bool()`` of it raises
TypeError, so the test fails). Objects the tests build from their own classes
cannot be passed into the program (TypeError). Setup code (``setup``, MBPP's
``test_setup_code``) runs in both processes, after the program in the
candidate and before the tests in the tester, so ``root = Node(1)`` in setup
gives the tests a handle to the program's own ``Node``; the program's imported
modules are visible to the tests when the tester has them loaded already. The verdict never comes from the candidate's exit status or
output: the tester writes it, with a per-job nonce, on the launcher channel,
which the candidate never holds, and the parent counts a pass only if that
record arrives with the job's nonce and says every test ran and passed.

What the sandbox covers (each has an adversarial test in tests/test_verifiers_code.py):

- Fake passes: exiting early (``sys.exit(0)``, ``os._exit(0)``), results with
  a rigged ``__eq__`` (non-builtin types are refused, builtin subclasses too),
  patching ``builtins``, ``AssertionError`` or ``sys.excepthook`` (they are the
  candidate's own process), defining ``abs``/``sorted``/... to rig the tests'
  helpers (builtin names are never taken from the program), printing a fake
  verdict or nonce (stdout is only a log), writing to every file descriptor,
  all fail. Candidates fork from a process that never held test code, so the
  expected outputs cannot be read out of inherited memory either.
- Wall clock: the launcher kills the job at ``timeout``; the parent kills the
  whole launcher (its pid namespace with bwrap) if no answer arrives by
  ``timeout + PARENT_GRACE``. CPU: RLIMIT_CPU. Memory: RLIMIT_AS. Files:
  RLIMIT_FSIZE (16 MB), RLIMIT_NOFILE (64), no core dumps. Processes: the
  fork server is a child subreaper and kills every descendant after each job,
  so daemonised or ``setsid()`` children die too.
- When the parent runs as root (and may switch uids), the candidate runs under
  a random uid of its own with no capabilities and ``no_new_privs``: it cannot signal or ptrace the
  tester or launcher, RLIMIT_NPROC (32) bounds fork bombs, and it can write only
  its own temporary working directory (removed after the job).
- Environment: launchers start with ``PATH`` and ``LANG`` only and ``python -I``.
- With ``bwrap`` (isolation="bwrap"): no network (``--unshare-net``), own pid
  namespace (the parent's pid is invisible, ``kill(-1)`` cannot leave it), IPC
  and UTS namespaces, ``--die-with-parent``, a read-only view of /usr and the
  Python installation and virtualenv only (not the repository, /root, /home or
  /etc), a 64 MB tmpfs /tmp.
- Fails closed: isolation="auto" without a working bwrap raises
  `SandboxUnavailable` (exit 2 from the CLI). Only with ``--allow-weak-sandbox``
  (`allow_weak_sandbox`, environment variable ``TREESEARCH_ALLOW_WEAK_SANDBOX=1``)
  does it fall back, once per process with a warning: ``unshare -n`` (no
  network, host filesystem and pid space) and then plain processes
  (isolation="none"). Passing isolation="unshare"/"none" explicitly is the
  caller's own choice.

What it does NOT cover: kernel exploits and side channels; in mode "none" the
network and the host filesystem (read access wherever the candidate's uid may
read, write access wherever it may write, which is much of the machine when
the parent is not root); when the parent is not root, candidate and launcher
share a uid, so the candidate can kill its launcher (the job then fails and
the launcher is replaced) and RLIMIT_NPROC is not set. Test code and the
trusted prefix are trusted: they run in the launcher without rlimits (bounded
by the job deadline). Outside bwrap, a candidate under its own uid can import
only modules it may read: with Python installed under a private home directory
(``/root/.pyenv``) that is just what the launcher preloaded
(``_sandbox_server.py``: typing, math, re, collections, ...). Each call into
the candidate is a pipe round trip (tens of microseconds), so tests that call
it millions of times need a longer timeout. Tests that compare a program's
class instance with a value through the class's own ``__eq__`` (``assert
Pair(1, 2) == Pair(1, 2)``) fail by design, where a plain ``exec`` would trust
that ``__eq__``. Without ``trusted_prefix``, helper
functions the tests call (HumanEval's ``poly``) come from the candidate.
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import logging
import os
import queue
import secrets
import select
import shutil
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from verifiers._cache import VerdictCache
from verifiers._pool import WorkerPool

__all__ = ["CodeResult", "check", "check_batch", "isolation_available", "shutdown", "STATUSES", "ISOLATIONS",
           "SandboxUnavailable", "allow_weak_sandbox", "weak_sandbox_allowed", "cache_info", "cache_clear"]

log = logging.getLogger(__name__)

STATUSES = ("passed", "failed", "timeout", "crashed", "memory", "invalid")
ISOLATIONS = ("bwrap", "unshare", "none")
PARENT_GRACE = 3.0  # seconds past `timeout` before the parent kills a silent launcher
STARTUP_TIMEOUT = 30.0
MAX_SOURCE_CHARS = 4_000_000
OUTPUT_CHARS = 4096
CACHE_SIZE = 4096  # verdicts kept (`check`'s use_cache); each holds at most OUTPUT_CHARS of output
_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_server.py")
_SERVER_IN_SANDBOX = "/opt/sandbox/server.py"
_WIRE = os.path.join(os.path.dirname(_SERVER), "_sandbox_wire.py")  # loaded by the server from its own folder


@dataclasses.dataclass(frozen=True)
class CodeResult:
    """Outcome of one sandboxed run.

    passed: every test ran and passed (status == "passed").
    status: one of STATUSES. failed: an assertion or exception in the tests;
        timeout: wall clock or CPU limit; crashed: the program raised while
        loading, exited or was killed before the tests finished; memory: a
        MemoryError; invalid: the job itself is malformed (wrong types, syntax
        error in the test code).
    failing_assertion: source line of the failing test statement, if known.
    output: the program's stdout+stderr, at most OUTPUT_CHARS (head and tail).
    seconds: wall time of the job, as seen by the parent.
    detail: one line on why it did not pass ("" when it did).
    isolation: the sandbox used: "bwrap", "unshare" or "none".
    cached: the verdict came from the cache (`check`'s `use_cache`); `seconds` is then the lookup's.
    """

    passed: bool
    status: str
    failing_assertion: str | None
    output: str
    seconds: float
    detail: str = ""
    isolation: str = "none"
    cached: bool = False


# ---------------------------------------------------------------- launch commands


def _python_roots() -> list[str]:
    """Directories the sandboxed interpreter needs: its prefix, the base prefix, the venv."""
    roots = []
    exe_dir = os.path.dirname(os.path.realpath(sys.executable))
    for path in (sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(exe_dir)):
        path = os.path.realpath(path)
        if path != "/" and os.path.isdir(path) and path not in roots and not path.startswith("/usr/"):
            roots.append(path)
    for path in sys.path:  # site dirs outside the prefixes (a --user install, a system dist-packages)
        if path.endswith(("site-packages", "dist-packages")) and os.path.isdir(path):
            real = os.path.realpath(path)
            if not any(real.startswith(r + "/") for r in roots) and not real.startswith("/usr/"):
                roots.append(real)
    return roots


def _bwrap_command() -> list[str] | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    cmd = [bwrap, "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    # the tmpfs first: Python or a venv living under /tmp (a CI checkout there) is bound on top of it
    cmd += ["--size", str(64 << 20), "--tmpfs", "/tmp"]
    roots = _python_roots()
    # bwrap creates missing parents of a mount point with mode 0700, which a
    # candidate under its own uid could not traverse; create them 0755 first.
    parents = {os.path.dirname(p) for p in [*roots, _SERVER_IN_SANDBOX]}
    ancestors = set()
    for parent in parents:
        while parent not in ("/", "") and parent not in ("/usr", "/bin", "/lib", "/lib64", "/sbin"):
            ancestors.add(parent)
            parent = os.path.dirname(parent)
    for path in sorted(ancestors, key=lambda p: p.count("/")):
        cmd += ["--dir", path]
    for root in roots:
        cmd += ["--ro-bind", root, root]
    cmd += [
        "--ro-bind", _SERVER, _SERVER_IN_SANDBOX,
        "--ro-bind", _WIRE, os.path.join(os.path.dirname(_SERVER_IN_SANDBOX), "_sandbox_wire.py"),
        "--proc", "/proc",
        "--dev", "/dev",
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--die-with-parent", "--new-session",
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
        "--chdir", "/tmp",
        sys.executable, "-I", _SERVER_IN_SANDBOX, "bwrap",
    ]  # fmt: skip
    return cmd


def _command(isolation: str, uid: int | None) -> list[str] | None:
    """argv of a launcher; `uid` is the private uid its candidates should run under."""
    uid_arg = str(uid) if uid is not None else "-"
    if isolation == "bwrap":
        cmd = _bwrap_command()
        return None if cmd is None else [*cmd, uid_arg]
    plain = [sys.executable, "-I", _SERVER, isolation, uid_arg]
    if isolation == "unshare":
        unshare = shutil.which("unshare")
        if unshare is None:
            return None
        # As root a new net namespace needs nothing more; otherwise map ourselves to root in a user namespace.
        return [unshare, "-n", *plain] if os.geteuid() == 0 else [unshare, "-r", "-n", *plain]
    return plain


# ---------------------------------------------------------------- launchers


def _frame(obj) -> bytes:
    data = json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


class _Spawner:
    """Starts processes from one long-lived thread.

    bwrap's --die-with-parent uses PR_SET_PDEATHSIG, which fires when the
    *thread* that forked bwrap exits; launchers started from a short-lived
    ThreadPoolExecutor thread would die with it.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _loop(self) -> None:
        while True:
            args, kwargs, box, done = self._jobs.get()
            try:
                box.append(subprocess.Popen(*args, **kwargs))
            except BaseException as exc:  # handed back to the caller
                box.append(exc)
            done.set()

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="sandbox-spawner", daemon=True)
                self._thread.start()
        box: list = []
        done = threading.Event()
        self._jobs.put((args, kwargs, box, done))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]


_SPAWNER = _Spawner()


class _Launcher:
    """One sandbox launcher process, used by one thread at a time."""

    def __init__(self, isolation: str) -> None:
        # A uid of its own per launcher, so its candidates can be told apart from everything else.
        uid = 1_000_000 + secrets.randbelow(1_000_000_000) if os.geteuid() == 0 else None
        cmd = _command(isolation, uid)
        if cmd is None:
            raise RuntimeError(f"isolation {isolation!r} is not available on this machine")
        self.isolation = isolation
        self.proc = _SPAWNER.popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            start_new_session=True,
            cwd="/",
        )
        self._buf = b""
        self.scratch: str | None = None
        self.uid: int | None = None
        try:
            hello = self._read_frame(time.monotonic() + STARTUP_TIMEOUT)
        except BaseException:
            self.kill()
            raise
        if not isinstance(hello, dict) or not hello.get("ready"):
            self.kill()
            raise RuntimeError(f"sandbox launcher ({isolation}) did not start")
        if isolation == "bwrap" and not hello.get("pidns"):
            self.kill()
            raise RuntimeError("bwrap started without a private pid namespace")
        # Outside bwrap the launcher's scratch dir is on the host: remove it ourselves if we must kill it.
        self.scratch = hello.get("scratch") if isolation != "bwrap" else None
        self.uid = hello.get("uid") if hello.get("uid") == uid else None  # None: candidates share our uid

    def _read_frame(self, deadline: float):
        fd = self.proc.stdout.fileno()
        while True:
            if len(self._buf) >= 4:
                (n,) = struct.unpack(">I", self._buf[:4])
                if len(self._buf) >= 4 + n:
                    data, self._buf = self._buf[4 : 4 + n], self._buf[4 + n :]
                    return json.loads(data)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise EOFError("sandbox launcher exited")
                self._buf += chunk

    def run(self, job: dict) -> dict | None:
        """The launcher's result record, or None if it did not answer in time (then it is dead)."""
        job = {**job, "nonce": secrets.token_hex(16)}
        self.proc.stdin.write(_frame(job))
        self.proc.stdin.flush()
        reply = self._read_frame(time.monotonic() + job["timeout"] + PARENT_GRACE)
        if reply is None:
            self.kill()
            return None
        if not isinstance(reply, dict) or reply.get("nonce") != job["nonce"]:
            self.kill()
            raise EOFError("sandbox launcher sent a record without the job's nonce")
        return reply

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, grace: float = 0.0) -> None:
        """Stop the launcher: EOF first (it sweeps and removes its scratch dir), SIGKILL after `grace` s."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace) if grace > 0 else None
        except subprocess.TimeoutExpired:
            pass
        try:  # bwrap: killing it tears down the pid namespace and everything in it
            os.killpg(self.proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        if self.scratch and os.path.basename(self.scratch).startswith("sandbox-"):
            shutil.rmtree(self.scratch, ignore_errors=True)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self.uid is not None and self.isolation != "bwrap":
            _kill_uid(self.uid)  # candidates that escaped the dead launcher's process tree


def _kill_uid(uid: int) -> None:
    """SIGKILL every process whose real uid is `uid` (a launcher's private uid)."""
    for _ in range(20):
        found = False
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    os.kill(int(name), 9)
                    found = True
            except OSError:
                continue
        if not found:
            return
        time.sleep(0.005)


class _Pool(WorkerPool["_Launcher"]):
    """Launchers of one isolation mode; a launcher that died is dropped and started afresh on demand."""

    def __init__(self, isolation: str, size: int) -> None:
        super().__init__(lambda: _Launcher(isolation), size)
        self.isolation = isolation

    def release(self, launcher: "_Launcher") -> None:
        healthy = launcher.alive()
        if not healthy:
            launcher.kill()
        self.give_back(launcher, healthy)

    def close(self) -> None:
        idle = self.drain()
        for launcher in idle:
            try:
                launcher.proc.stdin.close()  # all of them start their sweep at once
            except OSError:
                pass
        for launcher in idle:
            launcher.kill(grace=1.0)


_POOLS: dict[str, _Pool] = {}
_POOLS_LOCK = threading.Lock()
_AUTO: list[str] = []  # the isolation "auto" resolved to, once per process
_RESOLVE_LOCK = threading.Lock()  # one probe (and one warning) even when threads race
_CACHE: VerdictCache[CodeResult] = VerdictCache(CACHE_SIZE)  # check's verdicts by job and isolation


def _pool(isolation: str) -> _Pool:
    with _POOLS_LOCK:
        if isolation not in _POOLS:
            _POOLS[isolation] = _Pool(isolation, max(2, os.cpu_count() or 2))
        return _POOLS[isolation]


def _resolve(isolation: str) -> str:
    if isolation != "auto":
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be 'auto' or one of {ISOLATIONS}, got {isolation!r}")
        return isolation
    with _RESOLVE_LOCK:
        if not _AUTO:
            _AUTO.append(_probe())
        return _AUTO[0]


class SandboxUnavailable(PermissionError):
    """isolation="auto" found no bubblewrap sandbox and weaker isolation was not allowed."""


ALLOW_WEAK_ENV = "TREESEARCH_ALLOW_WEAK_SANDBOX"  # "1": isolation="auto" may fall back (inherited by workers)


def allow_weak_sandbox(allowed: bool = True) -> None:
    """Let isolation="auto" fall back to unshare / plain processes when bwrap cannot start.

    The CLI's ``--allow-weak-sandbox`` calls this; it is an environment variable so that
    search workers and training processes started from here inherit the choice.
    """
    if allowed:
        os.environ[ALLOW_WEAK_ENV] = "1"
    else:
        os.environ.pop(ALLOW_WEAK_ENV, None)


def weak_sandbox_allowed() -> bool:
    return os.environ.get(ALLOW_WEAK_ENV, "") == "1"


def _probe() -> str:
    """The strongest isolation that starts here. Fails closed: without bwrap, SandboxUnavailable
    unless weaker isolation was allowed (`allow_weak_sandbox`), then a warning and the fallback."""
    chosen, failures = "none", []
    for candidate in ("bwrap", "unshare"):
        if candidate != "bwrap" and not weak_sandbox_allowed():
            break
        try:  # start one launcher to prove the mode works, and keep it
            launcher = _Launcher(candidate)
        except (RuntimeError, OSError, EOFError, ValueError) as exc:
            failures.append(f"{candidate}: {exc}")
            continue
        _pool(candidate).adopt(launcher)
        chosen = candidate
        break
    if chosen != "bwrap":
        why = "; ".join(failures) or "bwrap: not found"
        if not weak_sandbox_allowed():
            raise SandboxUnavailable(
                f"refusing to run model code without the bubblewrap sandbox ({why}); install bubblewrap "
                "(apt-get install bubblewrap) or pass --allow-weak-sandbox (README: Verifiers, isolation levels)"
            )
        msg = (
            f"verifiers.code: bubblewrap sandbox unavailable ({why}); "
            f"falling back to isolation={chosen!r}, which is weaker (see the module docstring)"
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
        log.warning(msg)
    return chosen


def isolation_available() -> str:
    """The isolation that isolation="auto" uses on this machine ("bwrap", "unshare" or "none")."""
    return _resolve("auto")


def shutdown() -> None:
    """Stop idle launchers (they restart on the next check)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
    for pool in pools:
        pool.close()


atexit.register(shutdown)


def _forget_after_fork() -> None:
    # A forked child (e.g. a multiprocessing worker) must not share launchers,
    # whose pipes belong to the parent, nor wait on the parent's spawner thread.
    global _POOLS, _POOLS_LOCK, _RESOLVE_LOCK, _SPAWNER
    _POOLS, _POOLS_LOCK, _RESOLVE_LOCK, _SPAWNER = {}, threading.Lock(), threading.Lock(), _Spawner()


os.register_at_fork(after_in_child=_forget_after_fork)


# ---------------------------------------------------------------- public API


def _cap(text: str) -> str:
    if len(text) <= OUTPUT_CHARS:
        return text
    half = OUTPUT_CHARS // 2
    return text[:half] + "\n...\n" + text[-half:]


def _invalid(why: str, isolation: str = "none") -> CodeResult:
    return CodeResult(False, "invalid", None, "", 0.0, why, isolation)


def check(
    program: str,
    tests: str | Sequence[str],
    *,
    timeout: float = 5.0,
    memory_mb: int = 512,
    entry_point: str | None = None,
    trusted_prefix: str = "",
    setup: str = "",
    subjects: Sequence[str] = (),
    isolation: str = "auto",
    use_cache: bool = True,
) -> CodeResult:
    """Run `program`, then `tests` against it, in the sandbox.

    program: untrusted Python source (e.g. HumanEval ``prompt + completion``).
    tests: trusted test code, either one source string (HumanEval's ``test``
        field; with `entry_point`, ``check(<entry_point>)`` is called after it)
        or a list of statements run one by one (MBPP's ``test_list``), which
        names the first failing one in `failing_assertion`.
    timeout: wall-clock seconds for loading the program plus all tests.
    memory_mb: address-space limit of the candidate process.
    entry_point: name of the function handed to the tests' ``check``.
    trusted_prefix: trusted code run in the tester before the tests (the
        HumanEval prompt), so helpers the tests use (``poly``) are not taken
        from the candidate; the program's own functions still replace any
        stub named `entry_point`.
    setup: trusted setup code (MBPP's ``test_setup_code``), run after the
        program in the candidate (the program may use its imports) and before
        the tests in the tester (the tests see what it defines), as a plain
        ``exec`` of program + setup + tests would.
    subjects: names of the program's functions under test that may carry a
        builtin's name (MBPP's ``sum``); other builtins are never shadowed.
    isolation: "auto" (bwrap; without it SandboxUnavailable, unless weaker
        isolation was allowed: then unshare, else none, with a warning), or
        one of ISOLATIONS to force it (RuntimeError if unavailable).
    use_cache: look up / store the verdict in the LRU cache, keyed by the whole job and the
        isolation used. Only a pass or a failed test is stored, never a timeout, a memory error or
        a crash (which may come from the machine's load or a killed process); a program whose
        result is random keeps its first stored verdict.
    Never raises on a bad program; thread-safe.
    """
    job = _job(program, tests, timeout, memory_mb, entry_point, trusted_prefix, setup, subjects)
    if isinstance(job, CodeResult):
        return job
    mode = _resolve(isolation)
    if not use_cache:
        return _run_job(job, mode)
    t0 = time.perf_counter()
    key = hashlib.sha256(json.dumps([job, mode], sort_keys=True).encode()).digest()
    if (hit := _CACHE.get(key)) is not None:
        return dataclasses.replace(hit, seconds=time.perf_counter() - t0, cached=True)
    result = _run_job(job, mode)
    if result.status in ("passed", "failed"):
        _CACHE.put(key, result)
    return result


def cache_info() -> dict[str, int]:
    """{"hits", "misses", "size"} of the verdict cache."""
    return _CACHE.info()


def cache_clear() -> None:
    _CACHE.clear()


def _job(program, tests, timeout, memory_mb, entry_point, trusted_prefix, setup, subjects) -> dict | CodeResult:
    """The sandbox's job for `check`'s arguments, or the "invalid" result that names the bad one."""
    if not isinstance(program, str):
        return _invalid(f"program must be a string, got {type(program).__name__}")
    if isinstance(tests, str):
        test_value: str | list[str] = tests
    elif isinstance(tests, Sequence) and all(isinstance(t, str) for t in tests):
        test_value = list(tests)
    else:
        return _invalid("tests must be a string or a list of strings")
    test_chars = sum(map(len, test_value)) if isinstance(test_value, list) else len(test_value)
    if len(program) + len(trusted_prefix) + test_chars > MAX_SOURCE_CHARS:
        return _invalid("program or tests too large")
    if not isinstance(setup, str):
        return _invalid(f"setup must be a string, got {type(setup).__name__}")
    if isinstance(subjects, str) or not all(isinstance(n, str) and n.isidentifier() for n in subjects):
        return _invalid("subjects must be a list of identifiers")
    if entry_point is not None and not (isinstance(entry_point, str) and entry_point.isidentifier()):
        return _invalid(f"entry_point must be an identifier, got {entry_point!r}")
    if not (isinstance(timeout, (int, float)) and 0 < timeout <= 3600):
        return _invalid(f"timeout must be in (0, 3600] seconds, got {timeout!r}")
    if not (isinstance(memory_mb, int) and 32 <= memory_mb <= 1 << 20):
        return _invalid(f"memory_mb must be an integer >= 32, got {memory_mb!r}")
    return {
        "program": program,
        "tests": test_value,
        "entry_point": entry_point,
        "prefix": trusted_prefix,
        "setup": setup,
        "subjects": list(subjects),
        "timeout": float(timeout),
        "memory_mb": memory_mb,
    }


def _run_job(job: dict, mode: str) -> CodeResult:
    """`job` run by one of `mode`'s pooled launchers, its reply read as a CodeResult."""
    pool = _pool(mode)
    launcher = pool.acquire()
    t0 = time.perf_counter()
    try:
        reply = launcher.run(job)
    except (EOFError, OSError, ValueError) as exc:
        launcher.kill()
        return CodeResult(False, "crashed", None, "", time.perf_counter() - t0, f"sandbox launcher failed: {exc}", mode)
    else:
        if reply is not None and not reply.get("clean", True):
            launcher.kill()  # something outlived the sweep; the launcher is exiting anyway
    finally:
        pool.release(launcher)
    seconds = time.perf_counter() - t0
    if reply is None:
        return CodeResult(False, "timeout", None, "", seconds, f"no answer within {job['timeout']:g} s (+{PARENT_GRACE} s grace)",
                          mode)
    status = reply.get("status")
    if status not in STATUSES:
        status, reply["detail"] = "crashed", f"unknown status {status!r}"
    failing = reply.get("failing_assertion")
    return CodeResult(
        passed=status == "passed",
        status=status,
        failing_assertion=failing if isinstance(failing, str) else None,
        output=_cap(str(reply.get("output") or "")),
        seconds=seconds,
        detail=str(reply.get("detail") or "")[:1000],
        isolation=mode,
    )


def check_batch(
    jobs: Iterable[Mapping | tuple],
    *,
    workers: int | None = None,
    timeout: float = 5.0,
    memory_mb: int = 512,
    isolation: str = "auto",
    use_cache: bool = True,
) -> list[CodeResult]:
    """`check` over many jobs, `workers` launchers in parallel; results in input order.

    Each job is a mapping of `check` keyword arguments (``program``, ``tests``,
    optionally ``entry_point``, ``trusted_prefix``, ``timeout``, ``memory_mb``)
    or a ``(program, tests)`` tuple; the keyword defaults here apply where a
    job does not set them.
    """
    defaults = {"timeout": timeout, "memory_mb": memory_mb, "isolation": isolation, "use_cache": use_cache}
    calls = []
    for job in jobs:
        if isinstance(job, Mapping):
            calls.append({**defaults, **job})
        else:
            program, tests = job
            calls.append({**defaults, "program": program, "tests": tests})
    workers = max(1, workers or os.cpu_count() or 2)
    mode = _resolve(isolation)
    _pool(mode).grow(workers)
    if workers == 1 or len(calls) <= 1:
        return [check(**c) for c in calls]
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(lambda c: check(**c), calls))
