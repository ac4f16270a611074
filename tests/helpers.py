"""Shared assertions of the statistical tests."""

import torch


def autograd_of(expectation, *params):
    """Gradient of a closed-form expectation (a torch function of the params) by autograd."""
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    grads = torch.autograd.grad(expectation(*leaves), leaves)
    return grads if len(grads) > 1 else grads[0]


def assert_unbiased(est, exact, k=5.0):
    """|grad - exact| < k * stderr elementwise (tuples allowed), with a readable message."""
    grads = est.grad if isinstance(est.grad, tuple) else (est.grad,)
    errs = est.stderr if isinstance(est.stderr, tuple) else (est.stderr,)
    exacts = exact if isinstance(exact, tuple) else (exact,)
    for gr, se, ex in zip(grads, errs, exacts, strict=True):
        ex = torch.as_tensor(ex, dtype=gr.dtype)
        assert gr.shape == ex.shape
        assert bool((se > 0).all()), f"degenerate stderr {se}"
        z = (gr - ex) / se
        assert bool((z.abs() < k).all()), f"estimate {gr}, exact {ex}, stderr {se}, z {z}"


def widest_line(text: str) -> int:
    """Characters in the widest line of a command's output, paths left out (a path is printed
    whole, however long; tables and messages must fit 100 columns)."""
    import re

    path = re.compile(r"(^\s*/\S+$)|(resumed from /)|(--restart: removed /)|(kept in /)")
    return max((len(line.rstrip()) for line in text.splitlines() if not path.search(line)),
               default=0)  # fmt: skip


def one_error_line(capsys) -> str:
    """The command's stderr as one line ``error: ...`` (asserted: one line, no traceback)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def unwrapped(text: str) -> str:
    """Console text without whitespace: rich wraps long lines at 100 columns (compare it with
    ``unwrapped`` of what is expected)."""
    import re

    return re.sub(r"\s+", "", text)
