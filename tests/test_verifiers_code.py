"""verifiers.code: verdicts, and one adversarial test per sandbox property.

Every test runs real sandboxed processes (bwrap where available, as in CI via
`make system-deps`); each attack asserts the job does not pass and that the
parent and host are untouched.
"""
from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import warnings
from pathlib import Path

import pytest

from verifiers import code as vc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADD = "def add(a, b):\n    return a + b\n"
WRONG_ADD = "def add(a, b):\n    return a - b\n"


def run(program: str, tests, **kw) -> vc.CodeResult:
    kw.setdefault("timeout", 5.0)
    return vc.check(textwrap.dedent(program), tests, **kw)


def add_passes(**kw) -> bool:
    """A sandbox run of a passing job, never a cached verdict: the pool still works."""
    return vc.check(ADD, ["assert add(1, 2) == 3"], use_cache=False, **kw).passed


@pytest.fixture(scope="module")
def isolation() -> str:
    return vc.isolation_available()


@pytest.fixture
def open_dir():
    """A host directory anyone may reach and write (so a dropped-uid candidate could, if not stopped)."""
    d = tempfile.mkdtemp(prefix="verifiers-open-", dir="/tmp")
    os.chmod(d, 0o777)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- verdicts


def test_passing_program(isolation):
    r = vc.check(ADD, ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"])
    assert (r.passed, r.status, r.failing_assertion, r.detail) == (True, "passed", None, "")
    assert r.isolation == isolation
    assert isolation == "bwrap"  # `make system-deps` installs bubblewrap; fallbacks are tested below


def test_failing_assert_is_named():
    r = vc.check(WRONG_ADD, ["assert add(0, 0) == 0", "assert add(1, 2) == 3", "assert add(2, 2) == 4"])
    assert (r.passed, r.status) == (False, "failed")
    assert r.failing_assertion == "assert add(1, 2) == 3"


def test_humaneval_style_check_function_names_the_assert():
    tests = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 7, 'odd'\n"
    r = vc.check("def double(x):\n    return 2 * x\n", tests, entry_point="double")
    assert r.status == "failed" and r.failing_assertion == "assert candidate(3) == 7, 'odd'"
    assert vc.check("def double(x):\n    return 2 * x\n", tests, entry_point="triple").detail == "program does not define 'triple'"


def test_exception_in_candidate_fails_with_detail():
    r = vc.check("def f(x):\n    return 1 // x\n", ["assert f(0) == 0"])
    assert r.status == "failed" and "ZeroDivisionError" in r.detail


def test_exception_types_reach_the_tests():
    prog = "def f(x):\n    raise ValueError('bad')\n"
    tests = ["try:\n    f(1)\n    raise AssertionError('no raise')\nexcept ValueError:\n    pass"]
    assert vc.check(prog, tests).passed


def test_values_round_trip_exactly():
    prog = """
    def f():
        return [1, 2.5, 'x', None, True, (1, 2), {3}, frozenset({4}), {'k': [b'\\x00']}, 2**100, 1+2j, float('inf')]
    """
    tests = [
        "v = f()",
        "assert v == [1, 2.5, 'x', None, True, (1, 2), {3}, frozenset({4}), {'k': [b'\\x00']}, 2**100, 1+2j, float('inf')]",
        "assert [type(x) for x in v] == [int, float, str, type(None), bool, tuple, set, frozenset, dict, int, complex, float]",
    ]
    assert run(prog, tests).passed


def test_program_syntax_error_crashes_and_bad_jobs_are_invalid():
    r = vc.check("def f(:\n", ["assert f() == 1"])
    assert r.status == "crashed" and "SyntaxError" in r.detail
    assert vc.check(ADD, ["assert add(1,"]).status == "invalid"
    for bad in [dict(program=None, tests=[]), dict(program=ADD, tests=[1]), dict(program=ADD, tests="", entry_point="a b"),
                dict(program=ADD, tests="", timeout=-1), dict(program=ADD, tests="", memory_mb="x")]:
        assert vc.check(**bad).status == "invalid"  # never raises


def test_output_is_captured_and_capped():
    r = run("print('hello'); print('x' * 100000)\ndef f():\n    return 1\n", ["assert f() == 1"])
    assert r.passed and r.output.startswith("hello") and len(r.output) <= vc.OUTPUT_CHARS + 64


def test_trusted_prefix_beats_candidate_helpers():
    # HumanEval/32 style: the tests call a helper from the prompt; a candidate
    # redefining it must not rig the check.
    prompt = "def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\n\ndef find_zero(xs):\n    pass\n"
    evil = "def poly(xs, x):\n    return 0\n\ndef find_zero(xs):\n    return 12345.0\n"
    tests = "def check(candidate):\n    assert abs(poly([1, 2], candidate([1, 2]))) < 1e-6\n"
    assert not vc.check(evil, tests, entry_point="find_zero", trusted_prefix=prompt).passed
    assert vc.check(evil, tests, entry_point="find_zero").passed  # why the prefix matters (documented limitation)


def test_check_batch_order_and_parallelism():
    jobs = [(ADD, [f"assert add({i}, 1) == {i + 1}"]) for i in range(10)] + [{"program": WRONG_ADD, "tests": ["assert add(1, 1) == 2"]}]
    got = vc.check_batch(jobs, workers=2)
    assert [r.passed for r in got] == [True] * 10 + [False]




def test_passes_and_failures_are_cached_by_the_whole_job_and_nothing_else_is():
    vc.cache_clear()
    tests = ["assert add(2, 2) == 4"]
    first, second = vc.check(ADD, tests), vc.check(ADD, tests)
    assert first.passed and second.passed and (first.cached, second.cached) == (False, True)
    assert second.isolation == first.isolation and second.seconds < first.seconds
    wrong = [vc.check(ADD, ["assert add(2, 2) == 5"]) for _ in range(2)]
    assert [(r.status, r.cached) for r in wrong] == [("failed", False), ("failed", True)]
    assert wrong[1].failing_assertion == "assert add(2, 2) == 5"
    assert not vc.check(ADD, tests, setup="x = 1").cached  # any other field of the job is another key
    assert not vc.check(ADD, tests, use_cache=False).cached
    assert vc.cache_info() == {"hits": 2, "misses": 3, "size": 3}
    # a crash or a timeout may come from the machine, not the job: run again every time
    slow = "def add(a, b):\n    while True:\n        pass\n"
    assert [(r.status, r.cached) for r in (vc.check(slow, tests, timeout=0.5) for _ in range(2))] == [("timeout", False)] * 2
    assert [(r.status, r.cached) for r in (vc.check("def add(:", tests) for _ in range(2))] == [("crashed", False)] * 2
    assert vc.cache_info()["size"] == 3
    vc.cache_clear()
    assert vc.cache_info() == {"hits": 0, "misses": 0, "size": 0}
# ---------------------------------------------------------------- fake passes


def test_sys_exit_before_tests_fails():
    r = run("import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b\n", ["assert add(1, 2) == 3"])
    assert not r.passed and r.status == "crashed"


def test_os_exit_zero_fails_at_load_and_inside_a_call():
    assert run("import os\nos._exit(0)\n", ["assert add(1, 2) == 3"]).status == "crashed"
    r = run("import os\ndef add(a, b):\n    os._exit(0)\n", ["assert add(1, 2) == 3"])
    assert not r.passed and r.status == "crashed" and "exited with status 0" in r.detail


def test_rigged_eq_results_fail():
    prog = """
    class Anything:
        def __eq__(self, other):
            return True
    class Int(int):
        def __eq__(self, other):
            return True
        __hash__ = int.__hash__
    def f(x):
        return Anything()
    def g(x):
        return Int(0)
    """
    assert run(prog, ["assert f(1) == 2"]).status == "failed"
    r = run(prog, ["assert g(1) == 2"])
    assert r.status == "failed" and "its own __eq__ is not trusted" in r.detail
    # Neither != nor truth is delegated either, and a rigged Counter / namedtuple subclass loses its methods.
    assert run(prog, ["assert f(1) != 2"]).status == "failed"
    assert run(prog, ["assert f(1)"]).status == "failed"
    rigged = """
    import collections
    class C(collections.Counter):
        def __eq__(self, other):
            return True
    P = collections.namedtuple("P", "x y")
    class Q(P):
        def __eq__(self, other):
            return True
    def c():
        return C(a=1)
    def q():
        return Q(1, 2)
    """
    assert run(rigged, ["assert c() == {'b': 5}"]).status == "failed"
    assert run(rigged, ["assert q() == (5, 6)"]).status == "failed"
    assert run(rigged, ["assert q() == (1, 2) and q().x == 1 and type(q()).__name__ == 'Q'"]).passed


def test_mbpp_values_cross_with_their_type_and_order():
    prog = """
    import collections, sys
    def counts(xs):
        return collections.Counter(xs)
    def groups(pairs):
        d = collections.defaultdict(list)
        for k, v in pairs:
            d[k].append(v)
        return d
    def ordered():
        return collections.OrderedDict([("b", 1), ("a", 2)])
    def point():
        return collections.namedtuple("Point", "x y")(1, 2)
    def keep(xs, t):
        return [x for x in xs if isinstance(x, t)]
    def as_set():
        return {16, 12, 13, 14, 15}
    def sum(a, b):
        return a - b
    """
    tests = [
        "assert counts('abca') == {'a': 2, 'b': 1, 'c': 1} and type(counts('a')).__name__ == 'Counter'",
        "assert counts('abca').most_common(1) == [('a', 2)]",
        "g = groups([('x', 1), ('y', 2), ('x', 3)])",
        "assert g == {'x': [1, 3], 'y': [2]} and g['z'] == []",  # the list factory came along
        "assert list(ordered()) == ['b', 'a'] and type(ordered()).__name__ == 'OrderedDict'",
        "assert point().y == 2 and point() == (1, 2)",
        "assert keep([1, 'a', 2.5], float) == [2.5]",
        "assert list(as_set()) == list({16, 12, 13, 14, 15})",  # the program's iteration order, not a rebuilt one
        "assert str(as_set()) == str({16, 12, 13, 14, 15})",
        "assert sys.maxsize > 0",  # the program's import is visible to the tests
    ]
    assert run(prog, tests).passed
    assert run(prog, ["assert sum(5, 3) == 2"], subjects=["sum"]).passed  # MBPP 126: named like a builtin
    assert not run(prog, ["assert sum(5, 3) == 2"]).passed  # otherwise builtins are never shadowed


def test_program_objects_travel_as_handles_and_setup_is_shared():
    prog = """
    class Node:
        def __init__(self, v):
            self.v, self.left = v, None
    def depth(n):
        return 0 if n is None else 1 + depth(n.left)
    def gen(k):
        yield from range(k)
    """
    setup = "root = Node(1)\nroot.left = Node(2)\nroot.left.left = Node(3)"
    assert run(prog, ["assert depth(root) == 3", "assert root.left.v == 2", "assert list(gen(3)) == [0, 1, 2]"],
               setup=setup).passed
    assert not run(prog, ["assert depth(root) == 4"], setup=setup).passed
    # a handle is not the program's value: comparing it with a plain value never passes
    assert not run(prog, ["assert Node(1) == 1"]).passed
    # tester-side objects cannot be smuggled into the program
    assert not run(prog, ["class X: pass", "assert depth(X()) == 0"]).passed


def test_patching_builtins_assert_and_excepthook_fails():
    prog = """
    import builtins, sys
    class Fake(BaseException):
        pass
    builtins.AssertionError = Fake
    sys.excepthook = lambda *a: None
    import atexit, os
    atexit.register(lambda: os._exit(0))
    def add(a, b):
        return a - b
    """
    r = run(prog, ["assert add(1, 2) == 3"])
    assert r.status == "failed" and r.failing_assertion == "assert add(1, 2) == 3"
    # Breaking the candidate's own call server (json relies on isinstance) only breaks the candidate.
    r = run(prog + "\nbuiltins.isinstance = lambda *a: True\n", ["assert add(1, 2) == 3"])
    assert not r.passed


def test_shadowing_builtins_used_by_tests_fails():
    prog = "def abs(x):\n    return 0\ndef sorted(x):\n    return [1, 2, 3]\ndef f(x):\n    return 99.0\ndef g():\n    return [3]\n"
    assert not run(prog, ["assert abs(f(1) - 2.5) < 1e-9"]).passed
    assert not run(prog, ["assert sorted(g()) == [1, 2, 3]"]).passed


def test_forged_output_and_fd_writes_fail():
    prog = """
    import json, os, struct, sys
    verdict = json.dumps({"status": "passed", "nonce": "0" * 32, "failing_assertion": None, "detail": ""}).encode()
    frame = struct.pack(">I", len(verdict)) + verdict
    print("passed"); print(verdict.decode()); sys.stdout.flush()
    for fd in range(256):
        try:
            os.write(fd, frame)
        except OSError:
            pass
    def add(a, b):
        for fd in range(256):
            try:
                os.write(fd, frame)
            except OSError:
                pass
        return a - b
    """
    r = run(prog, ["assert add(1, 2) == 3"])
    # Frames written into its own call pipe only garble its own answers.
    assert not r.passed and r.status in ("failed", "crashed")
    assert "passed" in r.output  # the forged lines reached the log, and only the log
    r = run(prog.replace("for fd in range(256)", "for fd in (0, 1, 2, *range(5, 256))"), ["assert add(1, 2) == 3"])
    assert r.status == "failed" and r.failing_assertion == "assert add(1, 2) == 3"


def test_tests_cannot_be_read_from_memory():
    # The expected value exists only in the test code. The candidate scans its
    # whole address space (and every Python object and frame) for it; it may
    # only find it if the process it was forked from had held the tests.
    prog = r"""
    import ctypes, gc, sys
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: make /proc/self/mem readable again
    HEAD, TAIL = b"ZQX-", b"7781-expected"
    def found_in(data):
        i = data.find(HEAD)
        while i != -1:
            if data[i + 4:i + 4 + len(TAIL)] == TAIL:
                return True
            i = data.find(HEAD, i + 1)
        return False
    def leak():
        hits = 0
        for obj in gc.get_objects():
            if isinstance(obj, dict):
                hits += any(isinstance(v, str) and found_in(v.encode("utf-8", "replace")) for v in obj.values())
        frame = sys._getframe()
        while frame is not None:
            hits += any(isinstance(v, (str, dict)) and found_in(repr(v).encode()) for v in frame.f_locals.values())
            frame = frame.f_back
        with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
            for line in maps:
                addr, perms = line.split()[:2]
                if not perms.startswith("r"):
                    continue
                lo, hi = (int(x, 16) for x in addr.split("-"))
                if hi - lo > 1 << 28:
                    continue
                try:
                    mem.seek(lo)
                    hits += found_in(mem.read(hi - lo))
                except (OSError, ValueError, OverflowError):
                    pass
        return hits
    """
    tests = ["assert leak() == 0, 'ZQX-7781-expected'"]
    for _ in range(3):  # later runs reuse a launcher that has already held these tests
        r = run(prog, tests, timeout=20.0, memory_mb=2048)
        assert r.passed, (r.status, r.detail)


# ---------------------------------------------------------------- parent, host, network


def test_killing_the_parent_fails_and_parent_survives(isolation):
    victim = subprocess.Popen(["sleep", "30"])
    # kill(-1) and our own pid are only aimed when the sandbox can stop them
    # (pid namespace or private uid); otherwise this test would take pytest down.
    protected = isolation == "bwrap" or os.geteuid() == 0
    targets = f"os.getppid(), {victim.pid}, 1" + (f", {os.getpid()}, -1" if protected else "")
    try:
        prog = f"""
        import os, signal
        def attack():
            for pid in ({targets}):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        attack()
        def add(a, b):
            attack()
            return a + b
        """
        r = run(prog, ["assert add(1, 2) == 3"])
        time.sleep(0.2)
        assert victim.poll() is None  # a process outside the sandbox is untouched; we are alive too
        assert r.status in ("passed", "crashed")  # "crashed" if it could kill its own fork server
        assert add_passes()  # and the pool recovers
    finally:
        victim.kill()
        victim.wait()


def test_network_is_unreachable(isolation):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    prog = f"""
    import socket
    def probe():
        out = []
        for host in ("127.0.0.1", "1.1.1.1", "8.8.8.8"):
            try:
                socket.create_connection((host, {port} if host == "127.0.0.1" else 53), timeout=1).close()
                out.append("open")
            except OSError:
                out.append("blocked")
        return out
    """
    try:
        r = run(prog, ["assert probe() == ['blocked', 'blocked', 'blocked']"])
        assert r.passed, r.detail
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


def test_host_filesystem_is_hidden_and_read_only(open_dir):
    target = open_dir / f"pwned-{uuid.uuid4().hex}"
    prog = f"""
    import os
    def probe():
        seen = [os.path.exists(p) for p in ({os.path.join(REPO, "verifiers")!r}, "/etc/passwd", "/home", {str(open_dir)!r})]
        wrote = []
        for p in ({str(target)!r}, {os.path.join(REPO, 'pwned')!r}, "/usr/pwned", "/pwned"):
            try:
                open(p, "w").write("x")
                wrote.append(p)
            except OSError:
                pass
        return seen, wrote
    """
    r = run(prog, ["assert probe() == ([False, False, False, False], []), probe()"])
    assert r.passed, r.detail
    assert not target.exists() and not os.path.exists(os.path.join(REPO, "pwned"))


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("TREESEARCH_SECRET_TOKEN", "hunter2")
    vc.shutdown()  # launchers started from now on see the variable in our environment
    prog = "import os\ndef env():\n    return sorted(os.environ)\n"
    r = run(prog, ["assert set(env()) <= {'PATH', 'LANG', 'PWD'}, env()"])
    assert r.passed, r.detail


# ---------------------------------------------------------------- limits


def test_wall_clock_timeout():
    t0 = time.monotonic()
    r = run("def add(a, b):\n    while True:\n        pass\n", ["assert add(1, 2) == 3"], timeout=1.0)
    assert r.status == "timeout" and time.monotonic() - t0 < 1.0 + 1.0
    r = run("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass\n", ["pass"], timeout=1.0)
    assert r.status == "timeout"


def test_stuck_launcher_is_killed_by_the_parent():
    # Trusted test code stuck in one C call (no bytecode boundary, so the
    # launcher's own alarm cannot interrupt it): the parent's deadline kills it.
    t0 = time.monotonic()
    r = run(ADD, ["x = 7 ** (10 ** 9)"], timeout=0.5)
    assert r.status == "timeout" and time.monotonic() - t0 < 0.5 + vc.PARENT_GRACE + 1.5
    assert add_passes()


def test_memory_limit():
    r = run("def f():\n    x = bytearray(1 << 30)\n    return len(x)\n", ["assert f() == 1 << 30"], memory_mb=256)
    assert r.status == "memory"
    r = run("x = bytearray(1 << 30)\ndef f():\n    return 1\n", ["assert f() == 1"], memory_mb=256)
    assert r.status == "memory"


def test_file_size_limit():
    prog = """
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    def big():
        try:
            with open("big.bin", "wb") as f:
                for _ in range(40):
                    f.write(b"x" * (1 << 20))
        except OSError:
            return "limited"
        return "wrote 40 MB"
    """
    assert run(prog, ["assert big() == 'limited'"]).passed


def test_open_file_limit():
    prog = """
    import os
    def many():
        fds = []
        try:
            for _ in range(1000):
                fds.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        return len(fds)
    """
    assert run(prog, ["assert many() < 64"]).passed


def test_process_limit_when_root():
    prog = """
    import os
    def bomb():
        n = 0
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                import time
                time.sleep(30)
                os._exit(0)
            n += 1
        return n
    """
    r = run(prog, ["n = bomb()", "assert n < 40, n"], timeout=10.0)
    assert r.passed == (os.geteuid() == 0), r.detail  # RLIMIT_NPROC needs the private uid
    assert add_passes()


def test_daemons_are_killed_after_the_job(open_dir):
    # Plain-process mode, so a surviving daemon could reach the host directory.
    marker = open_dir / f"alive-{uuid.uuid4().hex}"
    control = open_dir / f"control-{uuid.uuid4().hex}"
    prog = f"""
    import os, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(0.7)
            open({str(marker)!r}, "w").write("still here")
        os._exit(0)
    def f():
        open({str(control)!r}, "w").write("the directory is reachable")
        return 1
    """
    r = run(prog, ["assert f() == 1"], isolation="none")
    assert r.passed and r.isolation == "none", r.detail
    assert control.exists()  # so the marker below could have been written
    time.sleep(1.5)
    assert not marker.exists()


def test_work_dir_is_private_and_removed():
    prog = "import os\nprint(os.getcwd())\nopen('scratch.txt', 'w').write('x')\ndef listing():\n    return os.listdir('.')\n"
    r = run(prog, ["assert listing() == ['scratch.txt']"], isolation="none")
    assert r.passed, r.detail
    workdir = r.output.strip()
    assert workdir.startswith(tempfile.gettempdir()) and not os.path.exists(workdir)
    assert stat.S_IMODE(os.stat(os.path.dirname(workdir)).st_mode) == 0o711  # job dirs cannot be listed
    r = run(prog, ["assert listing() == ['scratch.txt']"])
    assert r.passed  # a fresh directory per job: nothing left from the run above


# ---------------------------------------------------------------- fallbacks


def test_plain_process_fallback_still_refuses_fake_passes():
    assert add_passes(isolation="none")
    r = vc.check("import os\nos._exit(0)\n", ["assert add(1, 2) == 3"], isolation="none")
    assert r.status == "crashed" and r.isolation == "none"
    r = vc.check("class A:\n    __eq__ = lambda s, o: True\ndef add(a, b):\n    return A()\n", ["assert add(1, 2) == 3"], isolation="none")
    assert r.status == "failed"


def test_auto_fails_closed_without_bwrap(monkeypatch, tmp_path):
    monkeypatch.setattr(vc, "_bwrap_command", lambda: None)  # as on a machine without bubblewrap
    monkeypatch.setattr(vc, "_AUTO", [])
    monkeypatch.delenv(vc.ALLOW_WEAK_ENV, raising=False)
    marker = tmp_path / "ran"
    with pytest.raises(vc.SandboxUnavailable, match="--allow-weak-sandbox"):
        vc.check(f"open({str(marker)!r}, 'w').write('x')\ndef add(a, b):\n    return a + b\n", ["assert add(1, 2) == 3"])
    assert not marker.exists()  # nothing ran
    assert vc._AUTO == []


def test_cli_refuses_a_code_task_without_bwrap_unless_allowed(tmp_path):
    # a fresh process whose PATH has no bwrap: the command stops before loading anything
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != vc.ALLOW_WEAK_ENV}
    env["PATH"] = str(tmp_path)  # no bwrap, no unshare
    cmd = [sys.executable, "-m", "treesearch.cli", "search", "--task", "codegen", "--n-problems", "1", "--out", "o"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-500:]
    assert "refusing to run model code without the bubblewrap sandbox" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # the named flag opts out: the same preflight then falls back (here to plain processes)
    probe = ("import argparse, warnings; warnings.simplefilter('ignore'); from treesearch.cli import _sandbox_preflight;"
             "_sandbox_preflight(argparse.Namespace(allow_weak_sandbox=True, task='codegen'));"
             "from verifiers.code import isolation_available; print(isolation_available())")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "none", r.stderr[-500:]


def test_auto_falls_back_with_a_warning_when_bwrap_fails_and_weak_is_allowed(monkeypatch):
    monkeypatch.setattr(vc, "_bwrap_command", lambda: [sys.executable, "-c", "raise SystemExit(1)"])
    monkeypatch.setattr(vc, "_AUTO", [])
    monkeypatch.setenv(vc.ALLOW_WEAK_ENV, "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen = vc.isolation_available()
    assert chosen in ("unshare", "none")
    assert any("falling back" in str(w.message) for w in caught)
    r = vc.check(ADD, ["assert add(1, 2) == 3"])
    assert r.passed and r.isolation == chosen
    with pytest.raises(ValueError):
        vc.check(ADD, [], isolation="chroot")


def test_unknown_isolation_is_a_clear_error():
    with pytest.raises(ValueError, match="isolation must be"):
        vc.check(ADD, [], isolation="docker")


def _check_in_child(queue):
    queue.put(add_passes())


def test_usable_from_a_forked_child():
    import multiprocessing

    assert add_passes()  # the parent's pool exists before the fork
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_check_in_child, args=(queue,))
    child.start()
    assert queue.get(timeout=60) is True
    child.join(timeout=30)
    assert child.exitcode == 0
    assert add_passes()  # and the parent's launchers were left alone
