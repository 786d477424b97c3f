"""Sandbox launcher for `verifiers.code` (stdlib only; run as a script, never imported by the engine).

Processes inside one launcher (bwrap's pid namespace, when available):

    parent (verifiers.code) --frames on stdin/stdout--> launcher  (this file's main(): the trusted *tester*)
        launcher forks once, at start-up:                fork server (pristine: never sees test code)
            fork server forks, per job:                  candidate  (untrusted program)

Per job the launcher reads {program, tests, limits, nonce}, sends only the
program and limits to the fork server, receives the call-pipe ends of the new
candidate (SCM_RIGHTS), runs the test code itself with each program-defined
function replaced by a stub that calls into the candidate, has the fork server
kill every leftover process and wipe the job directory, and answers the parent
with a record carrying the nonce.

Why this shape. Candidates fork from a process whose memory never held test
code, so they cannot dig expected outputs out of inherited memory. The
candidate holds only its call pipe, a log file (stdout/stderr) and /dev/null:
no launcher channel, so printing or writing anything cannot forge a verdict.
Values crossing the pipe are tagged JSON of exact builtin types, rebuilt on
the other side: no rigged ``__eq__``, no patched builtins reach the tests. The
fork server is a child subreaper, so daemonised grandchildren re-parent to it
and die in the per-job sweep. Frames are a 4-byte big-endian length followed
by UTF-8 JSON; candidate frames are size-capped.
"""
from __future__ import annotations

import builtins
import gc
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback

# Modules that typical programs import; importing them before the fork server
# starts means each candidate finds them in sys.modules instead of on disk.
import bisect, collections, copy, decimal, fractions, functools, hashlib, heapq, itertools  # noqa: E401,F401
import math, operator, random, re, statistics, string, typing  # noqa: E401,F401

OUTPUT_HEAD = OUTPUT_TAIL = 2048
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 36, 38


# ---------------------------------------------------------------- wire format


def _load_wire():
    """`_sandbox_wire.py` from this file's folder, by path (the folder must not go on sys.path)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_wire.py")
    spec = importlib.util.spec_from_file_location("_sandbox_wire", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_wire = _load_wire()
write_frame, read_frame, encode, decode = _wire.write_frame, _wire.read_frame, _wire.encode, _wire.decode
Unserializable, MAX_FRAME = _wire.Unserializable, _wire.MAX_FRAME


# ---------------------------------------------------------------- helpers


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _set_limit(which: int, soft: int, hard: int | None = None) -> None:
    """Lower a resource limit (never above the inherited hard limit)."""
    hard = soft if hard is None else hard
    _, old_hard = resource.getrlimit(which)
    if old_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, old_hard), min(hard, old_hard)
    try:
        resource.setrlimit(which, (soft, hard))
    except (ValueError, OSError):
        pass


def _arrange_fds(stdio: tuple[int, int, int], keep: list[int]) -> list[int]:
    """Make fds 0-2 copies of `stdio`, `keep` become 3, 4, ...; close every other fd."""
    import fcntl

    # Park everything above the target range first so no dup2 clobbers a source.
    high_keep = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 200 + i) for i, fd in enumerate(keep)]
    high_stdio = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 220 + i) for i, fd in enumerate(stdio)]
    for i, fd in enumerate(high_stdio):
        os.dup2(fd, i)
    for i, fd in enumerate(high_keep):
        os.dup2(fd, 3 + i, inheritable=False)
    os.closerange(3 + len(keep), 65536)
    return list(range(3, 3 + len(keep)))


def _wipe(path: str) -> None:
    def onerror(func, p, exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)



def _children(of: int) -> list[int]:
    """Pids whose parent is `of` (the fork server is a subreaper, so orphans count)."""
    try:  # fast path: the kernel's list for a single-threaded process
        with open(f"/proc/{of}/task/{of}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    kids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # ppid: 2nd field after the command name
        if len(fields) > 1 and int(fields[1]) == of:
            kids.append(int(name))
    return kids


def _reap() -> dict[int, int]:
    """Collect every exited child: {pid: wait status}."""
    done = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done[pid] = status


def kill_descendants() -> tuple[bool, dict[int, int]]:
    """SIGKILL every process below this one; (nothing left, wait statuses reaped on the way).

    Called in the fork server, a child subreaper: a daemonised or setsid()
    grandchild re-parents to it, so walking its children finds everything.
    """
    me, reaped = os.getpid(), {}
    for _ in range(200):
        victims = _children(me)
        reaped.update(_reap())
        victims = [p for p in victims if p not in reaped]
        if not victims:
            return True, reaped
        for pid in victims:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.0005)
    return False, reaped


def _read_output(path: str) -> str:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if size <= OUTPUT_HEAD + OUTPUT_TAIL:
                data = f.read()
            else:
                head = f.read(OUTPUT_HEAD)
                f.seek(size - OUTPUT_TAIL)
                data = head + f"\n... [{size - OUTPUT_HEAD - OUTPUT_TAIL} bytes cut] ...\n".encode() + f.read()
        return data.decode("utf-8", "replace")
    except OSError:
        return ""


# ---------------------------------------------------------------- candidate


def run_candidate(spec: dict, req_fd: int, rep_fd: int, out_fd: int, workdir: str) -> None:
    """In the forked candidate: isolate, run the program, then answer calls. Never returns."""
    code = 70
    try:
        os.setpgid(0, 0)
        # Only fds 0-2 (/dev/null, the log) and 3-4 (the call pipe) survive.
        devnull = os.open(os.devnull, os.O_RDONLY)
        req_fd, rep_fd = _arrange_fds((devnull, out_fd, out_fd), [req_fd, rep_fd])
        os.chdir(workdir)
        cpu = int(spec["timeout"]) + 1
        _set_limit(resource.RLIMIT_AS, int(spec["memory_mb"]) << 20)
        _set_limit(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU first, SIGKILL a second later
        _set_limit(resource.RLIMIT_FSIZE, 16 << 20)
        _set_limit(resource.RLIMIT_NOFILE, 64)
        _set_limit(resource.RLIMIT_CORE, 0)
        uid = spec.get("uid")
        if uid is not None:
            # A uid of its own: no signals or ptrace to the launcher or fork
            # server, and RLIMIT_NPROC counts only its own processes.
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            _set_limit(resource.RLIMIT_NPROC, 32)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        sys.stdin = open(0, "r", closefd=False)
        program, setup, spec = spec["program"], spec.get("setup") or "", None
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        try:
            exec(compile(program, "<program>", "exec"), namespace)
            exec(compile(setup, "<setup>", "exec"), namespace)  # as in MBPP: program, then setup, one namespace
        except BaseException as exc:  # SystemExit / KeyboardInterrupt included: loading must finish
            sys.stdout.flush()
            write_frame(rep_fd, {"load_error": f"{type(exc).__name__}: {exc}"[:500], "memory": isinstance(exc, MemoryError)})
            code = 0
            return
        names = [k for k, v in list(namespace.items()) if callable(v) and not k.startswith("__")]
        modules = {k: v.__name__ for k, v in list(namespace.items())
                   if type(v) is type(sys) and type(getattr(v, "__name__", None)) is str and not k.startswith("__")}
        write_frame(rep_fd, {"ready": names, "modules": modules})
        serve_calls(namespace, req_fd, rep_fd)
    except BaseException:
        pass
    finally:
        os._exit(code)


def serve_calls(namespace: dict, req_fd: int, rep_fd: int) -> None:
    """In the candidate: answer the tester's requests forever (see `Link`). Objects that are not
    plain values stay here and travel as handles (["h", id]) into a table of this process."""
    objects: list = []
    ids: dict[int, int] = {}

    def handle(obj) -> int:
        if id(obj) not in ids:
            ids[id(obj)] = len(objects)
            objects.append(obj)  # kept alive, so ids stay unique
        return ids[id(obj)]

    def lookup(i: int):
        return objects[i]

    while True:
        req = read_frame(req_fd)
        try:
            op = req.get("op", "call")
            if op == "call":
                target = namespace[req["call"]] if "call" in req else lookup(int(req["h"]))
                args, kwargs = decode(req["args"], lookup), decode(req["kwargs"], lookup)
                value = target(*args, **kwargs)
            elif op == "getattr":
                value = getattr(lookup(int(req["h"])), str(req["name"]))
            elif op == "setattr":
                setattr(lookup(int(req["h"])), str(req["name"]), decode(req["value"], lookup))
                value = None
            elif op == "next":
                value = next(lookup(int(req["h"])))
            elif op in ("iter", "len", "str", "repr"):
                value = {"iter": iter, "len": len, "str": str, "repr": repr}[op](lookup(int(req["h"])))
            elif op == "getitem":
                value = lookup(int(req["h"]))[decode(req["key"], lookup)]
            else:
                raise ValueError(f"unknown op {op!r}")
            if op in ("len", "str", "repr") and type(value) not in (int, str):
                raise TypeError(f"{op}() returned a non-{'int' if op == 'len' else 'str'}")
            reply = {"value": encode(value, handle=handle)}
        except BaseException as exc:
            name = type(exc).__name__
            reply = {"raised": name if name.isidentifier() else "Exception", "message": str(exc)[:500],
                     "memory": isinstance(exc, MemoryError)}
        sys.stdout.flush()
        write_frame(rep_fd, reply)


# ---------------------------------------------------------------- fork server


def _describe(status: int | None) -> dict | None:
    if status is None:
        return None
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status)}


def _fork_candidate(msg: dict, sock: socket.socket, scratch: str) -> tuple:
    """Fork one candidate in a fresh work directory, its output logged beside it, and hand the launcher
    its call-pipe ends; returns the job (pid, workdir, log path). The child never returns."""
    workdir = tempfile.mkdtemp(prefix="job-", dir=scratch)
    out_path = workdir + ".log"
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    uid = msg.get("uid")
    if uid is not None:
        os.chown(workdir, uid, uid)
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        run_candidate(msg, req_r, rep_w, out_fd, workdir)
    for x in (req_r, rep_w, out_fd):
        os.close(x)
    socket.send_fds(sock, [b"F"], [req_w, rep_r])
    os.close(req_w)
    os.close(rep_r)
    return pid, workdir, out_path


def _sweep(job: tuple, grace: float) -> dict:
    """Reap the job's candidate (waiting up to `grace` seconds for its real status), kill whatever it left
    behind, and remove its files; the reply for the launcher."""
    pid, workdir, out_path = job
    status, deadline = None, time.monotonic() + grace
    while True:  # a candidate that closed its pipe is usually exiting: get its real status
        try:
            done, st = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            break
        if done:
            status = st
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.002)
    clean, _ = kill_descendants()
    output = _read_output(out_path)
    try:
        os.unlink(out_path)
    except OSError:
        pass
    _wipe(workdir)
    return {"status": _describe(status), "clean": clean, "output": output}


def run_fork_server(fd: int, scratch: str) -> None:
    """Fork candidates on request and sweep up after them. Never returns.

    Requests (frames on `fd`): {"program", "timeout", "memory_mb", "uid"} ->
    one byte with the candidate's call-pipe ends attached, then {"pid"};
    {"cleanup": grace_seconds} -> {"status": wait status of the candidate or
    None, "clean": bool, "output": log text}.
    """
    sock = socket.socket(fileno=fd)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_DUMPABLE, 0)
    # No PDEATHSIG: when the launcher dies the socket reads EOF and we still sweep.
    gc.collect()
    gc.freeze()  # candidates then never touch these objects' GC headers: fewer copy-on-write faults
    job = None
    try:
        while True:
            msg = read_frame(fd, limit=256 << 20)
            if "program" in msg:
                job = _fork_candidate(msg, sock, scratch)
                msg = None  # the program text is not kept while the candidate runs
                write_frame(fd, {"pid": job[0]})
            elif "cleanup" in msg and job is not None:
                reply = _sweep(job, float(msg["cleanup"]))
                job = None
                write_frame(fd, reply)
    except BaseException:
        pass
    finally:
        kill_descendants()
        os._exit(0)


# ---------------------------------------------------------------- tester


class CandidateGone(Exception):
    """The candidate process died or broke the call protocol."""


class Deadline(BaseException):
    """The job's wall-clock budget ran out (raised from SIGALRM)."""


def _on_alarm(signum, frame):
    raise Deadline()


class CandidateFunction:
    """Stands for a function defined by the program; each call is a round trip to the candidate."""

    def __init__(self, link: "Link", name: str) -> None:
        self._link, self.__name__ = link, name

    def __call__(self, *args, **kwargs):
        return self._link.request({"call": self.__name__}, self.__name__, args=args, kwargs=kwargs)

    def __repr__(self) -> str:
        return f"<candidate function {self.__name__}>"


class CandidateObject:
    """Stands for an object that lives in the candidate (a class instance, a generator, a function).

    Attribute reads and writes, calls, ``len``, ``iter``/``next``, indexing, ``str`` and ``repr``
    are round trips answered by the candidate, like calls of its functions. Comparisons and truth
    are NOT delegated (the program's ``__eq__``/``__bool__`` would then write the verdict): two
    handles compare by identity, comparing one with anything else and ``bool()`` raise TypeError,
    so ``assert make() == 3`` fails. Passed back into a call, the candidate gets its own object.
    """

    __slots__ = ("_link", "_id")

    def __init__(self, link: "Link", ident: int) -> None:
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_id", ident)

    def _ask(self, op: str, **fields):
        return self._link.request({"op": op, "h": self._id, **fields}, f"<candidate object>.{op}")

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._ask("getattr", name=name)

    def __setattr__(self, name: str, value) -> None:
        self._link.request({"op": "setattr", "h": self._id, "name": name}, "setattr", value=value)

    def __call__(self, *args, **kwargs):
        return self._link.request({"op": "call", "h": self._id}, "<candidate object>", args=args, kwargs=kwargs)

    def __len__(self) -> int:
        return self._ask("len")

    def __iter__(self):
        return self._ask("iter")

    def __next__(self):
        try:
            return self._ask("next")
        except _CandidateStop:
            raise StopIteration from None

    def __getitem__(self, key):
        return self._link.request({"op": "getitem", "h": self._id}, "getitem", key=key)

    def __str__(self) -> str:
        return self._ask("str")

    def __repr__(self) -> str:
        return self._ask("repr")

    def __eq__(self, other):
        if type(other) is CandidateObject:
            return self._id == other._id
        raise TypeError("a program object is compared only with itself (its own __eq__ is not trusted)")

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("candidate-object", self._id))

    def __bool__(self) -> bool:
        raise TypeError("the truth of a program object is not taken (its own __bool__ is not trusted)")


class _CandidateStop(Exception):
    """StopIteration raised in the candidate (it must not end a loop in the tests by accident elsewhere)."""


class Link:
    """The tester's end of one candidate's call pipe."""

    def __init__(self, req_fd: int, rep_fd: int) -> None:
        self.req_fd, self.rep_fd = req_fd, rep_fd

    def recv(self) -> dict:
        try:
            reply = read_frame(self.rep_fd)
        except (EOFError, OSError, ValueError, RecursionError) as exc:
            raise CandidateGone(f"{type(exc).__name__}: {exc}"[:200]) from None
        if type(reply) is not dict:
            raise CandidateGone("malformed reply")
        return reply

    def _handle(self, obj) -> int:
        if type(obj) is not CandidateObject or obj._link is not self:
            raise Unserializable(f"{type(obj).__module__}.{type(obj).__qualname__}")  # tester objects stay here
        return obj._id

    def request(self, head: dict, name: str, **values):
        """Send `head` plus the encoded `values` (args, kwargs, value, key); the decoded reply value."""
        try:
            frame = {**head, **{k: encode(v, handle=self._handle) for k, v in values.items()}}
        except Unserializable as exc:
            raise TypeError(f"{name}(): cannot pass a {exc} into the program") from None
        try:
            write_frame(self.req_fd, frame)
        except OSError as exc:
            raise CandidateGone(str(exc)) from None
        reply = self.recv()
        if "value" in reply:
            try:
                return decode(reply["value"], lambda i: CandidateObject(self, i))
            except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
                raise CandidateGone(f"malformed value: {exc}") from None
        if reply.get("memory"):
            raise MemoryError(f"{name}() ran out of memory")
        if reply.get("raised") == "StopIteration" and head.get("op") == "next":
            raise _CandidateStop()
        kind = getattr(builtins, str(reply.get("raised")), None)
        if not (isinstance(kind, type) and issubclass(kind, Exception)) or issubclass(kind, AssertionError):
            kind = RuntimeError  # an AssertionError raised inside the candidate is not a test verdict
        raise kind(f"{name}() raised {reply.get('raised')}: {str(reply.get('message'))[:300]}")


def _failing_line(tb, filename: str, source: str) -> str | None:
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == filename:
            line = lineno
    if line is None:
        return None
    lines = source.splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else None


def compile_tests(job: dict):
    """[(filename, source, code)] for the test units, and the compiled prefix; SyntaxError propagates."""
    tests = job["tests"]
    units = [(f"<test {i}>", t) for i, t in enumerate(tests)] if isinstance(tests, list) else [("<tests>", tests)]
    if job.get("setup"):  # trusted setup code (MBPP's test_setup_code): the tests see what it defines
        units.insert(0, ("<setup>", job["setup"]))
    compiled = [(name, src, compile(src, name, "exec")) for name, src in units]
    entry = job.get("entry_point")
    if entry is not None:
        compiled.append(("<entry>", f"check({entry})", compile(f"check({entry})", "<entry>", "exec")))
    return compiled, compile(job.get("prefix") or "", "<prefix>", "exec")


def run_tests(job: dict, units, prefix, link: Link) -> dict:
    """The verdict {"status", "failing_assertion", "detail"} of the tests against the candidate."""
    tests, entry = job["tests"], job.get("entry_point")
    namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(prefix, namespace)
    except Exception as exc:
        return {"status": "invalid", "failing_assertion": None, "detail": f"trusted prefix raised {type(exc).__name__}: {exc}"}
    hello = link.recv()
    if "load_error" in hello:
        status = "memory" if hello.get("memory") else "crashed"
        return {"status": status, "failing_assertion": None, "detail": f"program raised {hello['load_error']}"[:500]}
    names, modules = hello.get("ready"), hello.get("modules") or {}
    if type(names) is not list or not all(type(n) is str for n in names) or type(modules) is not dict:
        raise CandidateGone("malformed hello")
    subjects = set(job.get("subjects") or ())
    for name in names:
        # Never shadow builtins or trusted names: a program defining `abs` or
        # `sorted` must not rig `assert abs(candidate(x) - y) < 1e-6`; only the
        # function under test may carry a builtin's name (MBPP's `sum`).
        if name == entry or name in subjects or (name not in namespace and not hasattr(builtins, name)):
            namespace[name] = CandidateFunction(link, name)
    for name, module in modules.items():
        # The program's imports are visible to the tests, as in one plain namespace; only modules this
        # process already holds are bound, so a name chosen by the program imports nothing here.
        if type(name) is str and name not in namespace and not hasattr(builtins, name) and module in sys.modules:
            namespace[name] = sys.modules[module]
    if entry is not None and entry not in names:
        return {"status": "failed", "failing_assertion": None, "detail": f"program does not define {entry!r}"}

    for name, src, code in units:
        try:
            exec(code, namespace)
        except (CandidateGone, Deadline):
            raise
        except BaseException as exc:
            failing = None
            if name == "<entry>" and isinstance(tests, str):  # the assert inside the tests' check()
                failing = _failing_line(exc.__traceback__, "<tests>", tests)
            if failing is None:
                failing = _failing_line(exc.__traceback__, name, src)
            if failing is None and isinstance(tests, list):
                failing = src.strip()[:500]
            status = "memory" if isinstance(exc, MemoryError) else "failed"
            return {"status": status, "failing_assertion": failing, "detail": f"{type(exc).__name__}: {exc}"[:500]}
    return {"status": "passed", "failing_assertion": None, "detail": ""}


def _death(status: dict | None) -> tuple[str, str]:
    """(status, detail) for a candidate that stopped answering, from its wait status."""
    if status is None:
        return "crashed", "candidate stopped answering"
    if "signal" in status:
        sig = status["signal"]
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return "timeout", f"candidate killed by {name} (CPU limit)"
        if sig == signal.SIGXFSZ:
            return "crashed", "candidate exceeded the file-size limit"
        return "crashed", f"candidate killed by {name}"
    return "crashed", f"candidate exited with status {status['exit']} before the tests finished"


class ForkServer:
    """The launcher's handle on its fork server."""

    def __init__(self, scratch: str) -> None:
        ours, theirs = socket.socketpair()
        self.pid = os.fork()
        if self.pid == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            (fd,) = _arrange_fds((devnull, devnull, devnull), [theirs.fileno()])
            run_fork_server(fd, scratch)
        theirs.close()
        self.sock = ours

    def spawn(self, job: dict, uid: int | None) -> tuple[int, Link]:
        spec = {k: job.get(k) for k in ("program", "setup", "timeout", "memory_mb")}
        write_frame(self.sock.fileno(), {**spec, "uid": uid})
        _, fds, _, _ = socket.recv_fds(self.sock, 1, 2)
        if len(fds) != 2:
            raise EOFError("fork server did not hand over the call pipe")
        pid = read_frame(self.sock.fileno())["pid"]
        return pid, Link(fds[0], fds[1])

    def cleanup(self, grace: float) -> dict:
        write_frame(self.sock.fileno(), {"cleanup": grace})
        return read_frame(self.sock.fileno())


def run_job(job: dict, server: ForkServer, uid: int | None) -> dict:
    t0 = time.monotonic()
    timeout = float(job["timeout"])
    try:
        units, prefix = compile_tests(job)
    except (SyntaxError, ValueError) as exc:
        return {"status": "invalid", "failing_assertion": None, "detail": f"test code: {type(exc).__name__}: {exc}",
                "output": "", "seconds": 0.0, "clean": True}
    _, link = server.spawn(job, uid)
    gone = None
    try:
        signal.setitimer(signal.ITIMER_REAL, max(1e-3, timeout - (time.monotonic() - t0)))
        try:
            verdict = run_tests(job, units, prefix, link)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except Deadline:
        verdict = {"status": "timeout", "failing_assertion": None, "detail": f"no verdict within {timeout} s"}
    except CandidateGone as exc:
        verdict, gone = None, str(exc)
    finally:
        os.close(link.req_fd)  # a live candidate then reads EOF and exits by itself
        os.close(link.rep_fd)
    seconds = time.monotonic() - t0
    swept = server.cleanup(grace=0.2 if gone is not None else 0.0)
    if verdict is None:
        status, detail = _death(swept.get("status"))
        verdict = {"status": status, "failing_assertion": None, "detail": f"{detail} ({gone})"}
    return {**verdict, "output": swept.get("output", ""), "seconds": seconds, "clean": bool(swept.get("clean"))}


def _can_become(uid: int) -> bool:
    """Whether a child can switch to `uid` (needs real root with CAP_SETUID)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def main() -> None:
    """argv: isolation mode ("bwrap", "unshare", "none") and the candidates' uid ("-" for none)."""
    mode = sys.argv[1] if len(sys.argv) > 1 else "none"
    uid = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "-" else None
    if uid is not None and not (os.geteuid() == 0 and _can_become(uid)):
        uid = None  # e.g. `unshare -r` (root only in name) or no CAP_SETUID: candidates keep our uid
    chan_in, chan_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    _prctl(PR_SET_DUMPABLE, 0)  # no ptrace or /proc/<pid>/mem from a same-uid candidate
    sys.dont_write_bytecode = True
    pidns = mode == "bwrap" and os.getpid() == 2 and os.getppid() == 1
    scratch = tempfile.mkdtemp(prefix="sandbox-")
    os.chmod(scratch, 0o711)  # candidates may enter their own job dir, not list the others
    server = ForkServer(scratch)
    signal.signal(signal.SIGALRM, _on_alarm)
    write_frame(chan_out, {"ready": True, "pid": os.getpid(), "pidns": pidns, "uid": uid, "scratch": scratch})
    try:
        while True:
            try:
                job = read_frame(chan_in, limit=256 << 20)
            except EOFError:
                break
            result = run_job(job, server, uid)
            result["nonce"] = job["nonce"]
            write_frame(chan_out, result)
            if not result["clean"]:
                break  # something survived the sweep: let the parent start a fresh launcher
    finally:
        try:
            server.sock.close()  # the fork server sweeps its descendants on EOF
            os.waitpid(server.pid, 0)
        except OSError:
            pass
        _wipe(scratch)


if __name__ == "__main__":
    main()
