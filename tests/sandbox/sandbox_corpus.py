"""The hostile corpus: programs that try to hurt the trainer, the machine or each other.

Each case is (id, program, accepted outcomes). Placeholders in programs: @TOKEN@ (marks
processes meant to outlive the program, via prctl), @OPEN@ / @CLOSED@ (canary directories),
@PORT@ / @UDP@ / @UNIX@ (the test's listening sockets), @TRAINER@ (the test process), @VAR@ (the
name of a secret in the trainer's environment). An accepted outcome is an exact error
(``timeout``), a kind (``exception:`` = any exception), ``value`` (any answer), or a number.
"""

from __future__ import annotations

from dataclasses import dataclass

from reft.sandbox import ProgramResult

MARK = '''
def _mark():
    import ctypes
    ctypes.CDLL(None).prctl(15, b"rftx@TOKEN@", 0, 0, 0)
'''
ANY_FAILURE = ("timeout", "memory", "killed:", "exit:", "exception:", "bad-result")


@dataclass(frozen=True)
class Case:
    id: str
    program: str
    accept: tuple = ("exception:",)

    def accepts(self, result: ProgramResult) -> bool:
        for spec in self.accept:
            if spec == "value" and result.ok:
                return True
            if isinstance(spec, float) and result.value == spec:
                return True
            if isinstance(spec, str) and result.error is not None and (
                    result.error == spec or (spec.endswith(":") and result.kind == spec[:-1])):
                return True
        return False


def fn(body: str, header: str = "") -> str:
    """A program: ``header`` at top level, ``body`` indented inside ``solution()``."""
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"{header.strip()}\n\ndef solution():\n{lines}\n"


CASES = [
    # -- time and memory
    Case("infinite-loop", fn("while True:\n    pass"), ("timeout",)),
    Case("c-level-loop", fn("return sum(range(10**12))"), ("timeout",)),
    Case("power-tower", fn("return 10**10**10"), ("timeout", "memory")),
    Case("huge-allocation", fn("return len(bytearray(10**11))"), ("memory",)),
    Case("creeping-allocation", fn("xs = []\nwhile True:\n    xs.append(bytearray(1 << 20))"),
         ("memory", "timeout", "killed:")),
    Case("sleep-past-timeout", fn("time.sleep(100)", "import time"), ("timeout",)),
    Case("stop-self", fn("os.kill(os.getpid(), signal.SIGSTOP)\nreturn 1", "import os, signal"),
         ("timeout",)),
    Case("ignore-sigterm", fn("for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):\n"
                              "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass",
                              "import signal"), ("timeout",)),
    Case("alarm", fn("signal.setitimer(signal.ITIMER_REAL, 0.1)\ntime.sleep(5)",
                     "import signal, time"), ("killed: SIGALRM",)),
    Case("print-gigabytes", fn("while True:\n    print('x' * 10**6)"), ("timeout",)),
    Case("endless-threads", fn("for _ in range(4):\n    threading.Thread(target=spin).start()\n"
                               "return 7", "import threading\n\ndef spin():\n    while True:\n"
                               "        pass"), (7.0, "timeout")),  # GIL-starved on a busy box
    Case("many-threads", fn("ts = [threading.Thread(target=time.sleep, args=(5,)) "
                            "for _ in range(500)]\nfor t in ts:\n    t.start()\nreturn 1",
                            "import threading, time"), ("exception:", "memory", "timeout")),
    Case("deep-recursion", fn("return solution()"), ("exception: RecursionError",)),
    Case("recursion-limit-raised", fn("sys.setrecursionlimit(10**8)\nreturn f(0)",
                                      "import sys\n\ndef f(n):\n    return f(n + 1)"),
         ("killed:", "memory", "exception:", "timeout")),
    Case("sympy-bomb", fn("return sympy.factorial(10**8)", "import sympy"), ("timeout", "memory")),
    # -- processes
    Case("fork-bomb", fn("while True:\n    try:\n        os.fork()\n    except OSError:\n"
                         "        pass", "import os"), ("timeout",)),
    Case("orphan-sleeper", fn("if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                              "        _mark()\n        time.sleep(1000)\n    os._exit(0)\n"
                              "os.wait()\nreturn 5", "import os, time\n" + MARK), (5.0,)),
    Case("orphan-spinner", fn("if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                              "        _mark()\n        for s in (signal.SIGTERM, signal.SIGHUP):\n"
                              "            signal.signal(s, signal.SIG_IGN)\n"
                              "        while True:\n            pass\n    os._exit(0)\n"
                              "os.wait()\nreturn 6", "import os, signal\n" + MARK), (6.0,)),
    Case("orphan-of-timeout", fn("if os.fork() == 0:\n    os.setpgid(0, 0)\n    _mark()\n"
                                 "    time.sleep(1000)\ntime.sleep(1000)",
                                 "import os, time\n" + MARK), ("timeout",)),
    Case("setsid-self", fn("os.setsid()\nreturn 1", "import os"), ("exception: PermissionError",)),
    Case("os-system", fn("return os.system('touch /tmp/pwned-@TOKEN@ @OPEN@/pwned')",
                         "import os"), ("value", "exception:")),
    Case("subprocess", fn("return subprocess.run(['/bin/sh', '-c', 'touch /tmp/pwned-@TOKEN@'])"
                          ".returncode", "import subprocess"), ("exception:",)),
    Case("execv", fn("os.execv('/bin/sh', ['sh', '-c', 'touch /tmp/pwned-@TOKEN@'])",
                     "import os"), ("exception: PermissionError",)),
    Case("ctypes-system", fn("return ctypes.CDLL(None).system(b'touch /tmp/pwned-@TOKEN@')",
                             "import ctypes"), ("value", "exception:")),
    Case("segfault", fn("return ctypes.string_at(0)", "import ctypes"), ("killed: SIGSEGV",)),
    Case("abort", fn("os.abort()", "import os"), ("killed: SIGABRT",)),
    Case("kill-executor", fn("os.kill(os.getppid(), signal.SIGKILL)\nreturn 1",
                             "import os, signal"), ("exception: PermissionError",)),
    Case("killpg-executor", fn("os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\nreturn 1",
                               "import os, signal"), ("exception: PermissionError",)),
    Case("kill-own-group", fn("os.kill(0, signal.SIGKILL)\nreturn 1", "import os, signal"),
         ("killed: SIGKILL",)),
    Case("kill-everything", fn("os.kill(-1, signal.SIGKILL)\nreturn 9", "import os, signal"),
         (9.0, "killed: SIGKILL")),
    Case("signal-trainer", fn("os.kill(@TRAINER@, signal.SIGUSR1)\nreturn 1", "import os, signal"),
         ("exception: PermissionError",)),
    Case("ptrace-executor", fn("return libc.ptrace(16, os.getppid(), 0, 0)",
                               "import ctypes, os\nlibc = ctypes.CDLL(None)"), (-1.0,)),
    # -- files
    Case("overwrite-open-canary", fn("open('@OPEN@/canary.txt', 'w').write('pwned')")),
    Case("overwrite-closed-canary", fn("open('@CLOSED@/canary.txt', 'w').write('pwned')")),
    Case("new-file-in-open-dir", fn("open('@OPEN@/new.txt', 'w').write('pwned')")),
    Case("delete-canaries", fn("os.remove('@OPEN@/canary.txt')", "import os")),
    Case("chmod-rename-canary", fn("os.chmod('@OPEN@/canary.txt', 0o777)\n"
                                   "os.rename('@OPEN@/canary.txt', '@OPEN@/moved')", "import os")),
    Case("hardlink-canary", fn("os.link('@OPEN@/canary.txt', 'here')\n"
                               "open('here', 'w').write('pwned')", "import os")),
    Case("symlink-out", fn("os.symlink('/tmp/pwned-@TOKEN@', 'link')\n"
                           "open('link', 'w').write('pwned')", "import os")),
    Case("write-tmp", fn("open('/tmp/pwned-@TOKEN@', 'w').write('pwned')")),
    Case("peek-other-slots", fn("return str(os.listdir('..'))", "import os")),
    Case("read-shadow", fn("return open('/etc/shadow').read()[:100]")),
    Case("file-size", fn("open('big', 'wb').write(b'x' * (100 << 20))"),
         ("exception:", "killed: SIGXFSZ", "memory")),
    Case("fd-exhaustion", fn("fs = []\nwhile True:\n    fs.append(open('f%d' % len(fs), 'w'))")),
    # -- secrets and network
    Case("environ-secret", fn("return os.environ.get('@VAR@', 'none')", "import os"), ("value",)),
    Case("proc-environ-scan", fn(
        "for pid in os.listdir('/proc'):\n    try:\n"
        "        data = open(f'/proc/{pid}/environ', 'rb').read()\n    except OSError:\n"
        "        continue\n    if b'@VAR@' in data:\n        return data.decode(errors='replace')"
        "[-100:]\nreturn 'none'", "import os"), ("value", "exception:")),
    Case("parent-environ", fn("return open(f'/proc/{os.getppid()}/environ').read()[:100]",
                              "import os")),
    Case("tcp-connect", fn("s = socket.create_connection(('127.0.0.1', @PORT@), timeout=0.5)\n"
                           "s.sendall(b'pwned')\nreturn 'connected'", "import socket")),
    Case("udp-send", fn("s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                        "s.sendto(b'pwned', ('127.0.0.1', @UDP@))\nreturn 'sent'",
                        "import socket")),
    Case("unix-socket", fn("s = socket.socket(socket.AF_UNIX)\ns.connect('@UNIX@')\n"
                           "s.sendall(b'pwned')\nreturn 'connected'", "import socket")),
    Case("user-namespace", fn("return libc.unshare(0x10000000)",
                              "import ctypes\nlibc = ctypes.CDLL(None)"), (-1.0,)),
    Case("io-uring", fn("return libc.syscall(425, 8, params)", "import ctypes\n"
                        "libc = ctypes.CDLL(None)\nparams = ctypes.create_string_buffer(120)"),
         (-1.0,)),
    # -- ways out of solution()
    Case("exit-builtin", fn("exit()"), ("exception: SystemExit",)),
    Case("system-exit", fn("raise SystemExit(0)"), ("exception: SystemExit",)),
    Case("keyboard-interrupt", fn("raise KeyboardInterrupt"), ("exception: KeyboardInterrupt",)),
    Case("sigint-self", fn("os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(1)",
                           "import os, signal, time"), ("exception: KeyboardInterrupt",)),
    Case("os-exit", fn("os._exit(0)", "import os"), ("exit: 0",)),
    Case("input", fn("return input()"), ("exception: EOFError",)),
    Case("close-stdio", fn("for fd in (0, 1, 2):\n    os.close(fd)\nprint('x')\nreturn 8",
                           "import os"), (8.0, "exception:")),
    Case("close-every-fd", fn("os.closerange(0, 4096)\nreturn 8", "import os"), ANY_FAILURE),
    Case("forged-reply", fn("for fd in range(3, 64):\n    try:\n"
                            "        os.write(fd, b'{\"v\": 1e300, \"e\": null}\\n' * 100)\n"
                            "    except OSError:\n        pass\nreturn 1", "import os"),
         ("bad-result", "exception:")),
    Case("gc-forge-executor", fn(
        "for o in gc.get_objects():\n    if type(o).__name__ == 'Executor':\n"
        "        o._result(1, type('R', (), {'value': 666.0, 'error': None})())\n"
        "        o._flush()\nreturn 1", "import gc"), ("value", "exception:")),
    Case("raise-rlimits", fn("resource.setrlimit(resource.RLIMIT_AS, (-1, -1))", "import resource"),
         ("exception: ValueError",)),
    Case("poison-everything", fn("math.floor = lambda x: -1\nbuiltins.len = lambda x: -1\n"
                                 "json.dumps = None\nsys.modules.clear()\nreturn 1",
                                 "import builtins, json, math, sys"), ANY_FAILURE + ("value",)),
    # -- results that must not reach the trainer as objects
    Case("evil-reduce", fn("return Evil()", "import os\n\nclass Evil:\n"
                           "    def __reduce__(self):\n        return (os.system, ('true',))\n"
                           "    def __float__(self):\n        return 1.0"), ("bad-result",)),
    Case("evil-float-subclass", fn("return F(2.0)", "class F(float):\n"
                                   "    def __float__(self):\n        raise SystemExit"),
         ("bad-result",)),
    Case("evil-str-subclass", fn("return S('x')", "class S(str):\n"
                                 "    def __str__(self):\n        return 'pwned'"), ("bad-result",)),
    Case("huge-int", fn("return 10**5000"), ("bad-result",)),
    Case("nan", fn("return float('nan')"), ("bad-result",)),
    Case("inf", fn("return -float('inf')"), ("bad-result",)),
    Case("list", fn("return [1, 2]"), ("bad-result",)),
    Case("generator", fn("yield 1"), ("bad-result",)),
    Case("none", fn("return None"), ("bad-result",)),
    Case("complex", fn("return 1j"), ("bad-result",)),
    # -- broken programs
    Case("syntax-error", "def solution(:\n    return 1\n", ("syntax",)),
    Case("null-bytes", "def solution():\n    return 1\x00\n", ("syntax",)),
    Case("truncated", fn("x = (1 +"), ("syntax",)),
    Case("empty", "", ("no-solution",)),
    Case("not-callable", "solution = 5\n", ("no-solution",)),
    Case("top-level-raise", "raise ValueError('no')\n", ("exception: ValueError",)),
]
