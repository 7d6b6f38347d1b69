"""torch's Adam, without the import of torch's compiler front end (torch._dynamo) that it costs.

torch.optim wraps the optimiser's methods (``add_param_group``, ``zero_grad``, ``state_dict``,
``load_state_dict``, ``step``) so that ``torch.compile`` does not trace into them; outside a compiled function
the wrappers only call the method, but each first imports ``torch._dynamo``: 1.1-1.2 CPU seconds on the
2-core machine, in every process that trains (each Ray Tune trial worker, each `raysym train`), more than a
short trial's own training (issue 29). raysym never compiles its optimiser step, so :class:`Adam` calls the
same methods without the wrappers. Its numbers and its ``state_dict`` are torch's Adam's, bit for bit
(tests/unit/test_optim.py), so checkpoints move freely between the two.

Should a torch release drop the attribute the wrappers keep the method in (``__wrapped__``), each method
falls back to torch's wrapped one: the same numbers, and the import back (a unit test then fails, to say so).
"""

from __future__ import annotations

import torch


def _unwrapped(method):
    """The method torch's ``_disable_dynamo`` / ``_use_grad_for_differentiable`` decorator wraps (functools
    keeps it in ``__wrapped__``), or the decorated method where there is none."""
    return getattr(method, "__wrapped__", method)


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` (same arguments, numbers and state), whose methods skip torch's dynamo guard."""

    add_param_group = _unwrapped(torch.optim.Optimizer.add_param_group)
    zero_grad = _unwrapped(torch.optim.Optimizer.zero_grad)
    state_dict = _unwrapped(torch.optim.Optimizer.state_dict)
    load_state_dict = _unwrapped(torch.optim.Optimizer.load_state_dict)

    def step(self, closure=None):
        # what torch's step wrapper does outside torch.compile: gradients off unless the optimiser is
        # differentiable (its graph breaks only matter to the compiler)
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return _unwrapped(torch.optim.Adam.step)(self, closure)
