"""Running a model's line of Python against tests, in a separate, confined interpreter.

The code a model writes is never run in hybrid's own process.  Each answer runs in a fresh
``python -I -S`` (no environment variables, no user or site packages, no current directory on
the path) that, before it reads the answer, confines itself:

- a new user and network namespace where the kernel allows one (no network interface but a
  loopback that is down), and an audit hook that refuses sockets anyway;
- resource limits: CPU seconds, address space, no files written (size 0), no new processes,
  few open files;
- the audit hook also refuses subprocesses, ``os.system``/``exec``/``fork``, ``ctypes``,
  writing, removing or renaming files, and changing limits.

A wall-clock limit on top kills an answer that sleeps.  The interpreter prints a token it was
given on stdin only after every test passed, so an answer that prints or exits early fails.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys

from hybrid.routing.calibration.item import Code

CPU_SECONDS = 2
"""CPU time an answer may use for all its tests."""
WALL_SECONDS = 10.0
"""Wall-clock time for the whole run, interpreter start included (a sleeping answer)."""
MEMORY_BYTES = 512 * 2**20
"""Address space of the interpreter that runs the answer."""

# Run as ``python -I -S -c HARNESS``; reads its job as JSON on stdin.
HARNESS = r"""
import ast, io, json, math, os, resource, sys

job = json.loads(sys.stdin.read())
sys.stdin.close()

def confine(cpu, memory):
    try:  # a network namespace of its own: no interface to reach anything through
        import ctypes
        ctypes.CDLL(None, use_errno=True).unshare(0x10000000 | 0x40000000)
    except Exception:
        pass
    limits = (
        (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, 0),
        (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_NOFILE, 16), (resource.RLIMIT_CORE, 0),
    )
    for kind, value in limits:
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass
    blocked = (
        "socket.", "subprocess.", "os.system", "os.exec", "os.fork", "os.forkpty",
        "os.posix_spawn", "os.spawn", "os.kill", "os.killpg", "os.remove", "os.rename",
        "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink", "os.truncate",
        "os.putenv", "os.unsetenv", "shutil.", "ctypes.", "pty.", "resource.setrlimit",
        "resource.prlimit", "sys.settrace", "sys.setprofile", "webbrowser.", "urllib.",
        "ftplib.", "smtplib.", "http.", "imaplib.", "poplib.", "telnetlib.", "nntplib.",
    )
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hook(event, args):
        if event == "open":
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & writing
            ):
                raise PermissionError("calibration code may not write files")
        elif event.startswith(blocked):
            raise PermissionError(f"calibration code may not use {event}")

    sys.addaudithook(hook)

def same(result, expected):
    if isinstance(expected, bool) or isinstance(result, bool):
        return type(result) is type(expected) and result == expected
    if isinstance(expected, float) or isinstance(result, float):
        numbers = isinstance(result, int | float) and isinstance(expected, int | float)
        return numbers and math.isclose(result, expected, rel_tol=1e-9, abs_tol=1e-9)
    return type(result) is type(expected) and result == expected

def build(source, form, name, params):
    if form == "expression":
        return eval(compile(f"lambda {', '.join(params)}: ({source}\n)", "<answer>", "eval"), {})
    space = {}
    try:
        value = eval(compile(source, "<answer>", "eval"), space)
    except SyntaxError:
        exec(compile(source, "<answer>", "exec"), space)
        value = space.get(name)
    return value if callable(value) else None

def main(token):
    cases = [(ast.literal_eval(a), ast.literal_eval(e)) for a, e in job["tests"]]
    confine(job["cpu_s"], job["memory"])
    out, sys.stdout = sys.stdout, io.StringIO()  # what the answer prints is not the verdict
    try:
        function = build(job["source"], job["form"], job["name"], job["params"])
        ok = function is not None and all(same(function(*a), e) for a, e in cases)
    except BaseException:
        ok = False
    if ok:
        out.write(token)
        out.flush()

main(job.pop("token"))
"""

_FENCE = re.compile(r"^`{1,3}(?:python3?|py)?\s*|\s*`{1,3}$", re.IGNORECASE)
_ASSIGNED = re.compile(r"^[A-Za-z_]\w*\s*=(?!=)\s*(?P<value>.+)$")
_SHOWN = re.compile(r"^(?P<expression>[^=]*[^=<>!])=(?!=)[^=]*$")


def candidate_source(line: str, answer: Code) -> str:
    """The Python to run from an answer's first line.

    Code fences and backticks around it go; for a function, whatever precedes its ``def``,
    ``<name> =`` or ``lambda`` ("Here it is: def f(x): ..."); for an expression, a leading
    ``return`` or ``<variable> =``, or the value shown after it (``12 + 30 = 42``); a final
    full stop.  Nothing is repaired beyond that.

    Args:
        line: The answer's first line.
        answer: What was asked.

    Returns:
        The source; empty when the line holds none.
    """
    source = re.sub(r"(?<!\d)[.;]+$", "", line.strip())  # a full stop, not "3."
    source = _FENCE.sub("", source).strip().rstrip(";").strip()
    if answer.form == "function":
        name = re.escape(answer.name)
        patterns = (rf"\bdef\s+{name}\b", rf"\b{name}\s*=(?!=)", r"\blambda\b")
        found = [re.search(pattern, source) for pattern in patterns]
        starts = [match.start() for match in found if match is not None]
        return source[min(starts) :] if starts else source
    if source.startswith("return "):
        source = source[len("return ") :].strip()
    assigned = _ASSIGNED.match(source)
    if assigned is not None:
        return assigned.group("value")
    shown = _SHOWN.match(source)  # "12 + 30 = 42": the expression, then its value
    if shown is not None and not _parses(source, answer):
        return shown.group("expression").strip()
    return source


def _parses(source: str, answer: Code) -> bool:
    """Whether the source is Python at all: compiling runs nothing, and spares a prose answer
    an interpreter start."""
    if answer.form == "expression":
        source = f"lambda {', '.join(answer.params)}: ({source}\n)"
    try:
        compile(source, "<answer>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def passes(answer: Code, line: str, *, wall_s: float = WALL_SECONDS) -> bool:
    """Whether a line of Python passes an item's tests, run in a confined interpreter.

    Args:
        answer: The tests and the form of code asked for.
        line: The model's first answer line.
        wall_s: Wall-clock limit for the run.

    Returns:
        True when the interpreter reported every test passed in time; False for any failure:
        no code, a syntax error, a wrong value, an exception, a blocked operation, a limit hit.
    """
    source = candidate_source(line, answer)
    if not source or not _parses(source, answer):
        return False
    token = secrets.token_hex(16)
    job = {
        "source": source,
        "form": answer.form,
        "name": answer.name,
        "params": list(answer.params),
        "tests": [list(test) for test in answer.tests],
        "cpu_s": CPU_SECONDS,
        "memory": MEMORY_BYTES,
        "token": token,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-X", "utf8", "-c", HARNESS],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=wall_s,
            env={},
            cwd="/",
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return done.returncode == 0 and done.stdout == token
