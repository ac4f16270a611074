"""The malloc tuning for chunked Monte Carlo loops: applied once, or left alone on request."""

from __future__ import annotations

import subprocess
import sys

CODE = (
    "import stochgrad._memory as m; a = m.reuse_freed_memory(); "
    "print(a, m.reuse_freed_memory() is a)"
)


def run(env_value: str | None) -> str:
    import os

    env = dict(os.environ)
    env.pop("STOCHGRAD_MALLOC_TUNING", None)
    if env_value is not None:
        env["STOCHGRAD_MALLOC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_applied_once_on_glibc_and_not_when_switched_off() -> None:
    applied, same = run(None).split()
    assert same == "True"  # the second call answers from the first
    if sys.platform.startswith("linux"):
        import platform

        if platform.libc_ver()[0] == "glibc":
            assert applied == "True"
    assert run("0") == "False True"
