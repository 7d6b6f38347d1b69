"""raysym.optim.Adam: torch's Adam to the bit, without importing torch._dynamo."""

import copy
import subprocess
import sys

import pytest
import torch

from raysym.optim import Adam


def _train(make_optimizer, steps=120, resume_from=None):
    """A small MLP trained as raysym trains (Adam with weight decay under OneCycleLR); its state saved and loaded
    again half-way, or, with ``resume_from``, the optimiser's state taken from another run's save at that point."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    optimizer = make_optimizer(model.parameters())
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    batches = torch.Generator().manual_seed(1)
    saved = None
    for step in range(steps):
        x = torch.randn(32, 5, generator=batches)
        loss = ((model(x) - x[:, :2].sin()) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step == steps // 2:
            saved = copy.deepcopy(optimizer.state_dict())  # its tensors are the live state's otherwise
            # a copy: the optimiser takes the loaded tensors as its state, and would change ``saved`` in place
            optimizer.load_state_dict(copy.deepcopy(resume_from if resume_from is not None else saved))
    return [p.detach().clone() for p in model.parameters()], optimizer.state_dict(), saved


@pytest.mark.parametrize("foreach", [True, False])
def test_the_same_numbers_and_state_as_torchs_adam(foreach):
    def ours(params):
        return Adam(params, lr=3e-3, weight_decay=1e-4, foreach=foreach)

    def torchs(params):
        return torch.optim.Adam(params, lr=3e-3, weight_decay=1e-4, foreach=foreach)

    mine, my_state, my_half = _train(ours)
    theirs, their_state, their_half = _train(torchs)
    assert all(torch.equal(a, b) for a, b in zip(mine, theirs))  # bit for bit
    for saved, reference in ((my_state, their_state), (my_half, their_half)):
        assert saved["param_groups"] == reference["param_groups"]
        assert saved["state"].keys() == reference["state"].keys()
        for key, moments in reference["state"].items():
            assert all(torch.equal(saved["state"][key][name], value) for name, value in moments.items())
    # a checkpoint written with torch's Adam (raysym before raysym.optim) resumes into ours, to the same numbers
    resumed, _, _ = _train(ours, resume_from=their_half)
    assert all(torch.equal(a, b) for a, b in zip(resumed, theirs))


def test_training_with_it_leaves_torch_dynamo_unimported():
    """The point of raysym.optim: torch's own Adam imports torch._dynamo (1.1-1.2 CPU seconds in every process
    that trains). In a fresh process, since this one may have imported it already. Should a torch release
    change how it wraps the optimiser's methods, this fails: the import is back (the numbers stay right)."""
    code = (
        "import sys, torch\n"
        "from raysym.optim import Adam\n"
        "model = torch.nn.Linear(3, 2)\n"
        "opt = Adam(model.parameters(), lr=1e-3, weight_decay=1e-4, foreach=True)\n"
        "sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=4)\n"
        "for _ in range(3):\n"
        "    opt.zero_grad(); model(torch.ones(4, 3)).sum().backward(); opt.step(); sched.step()\n"
        "opt.load_state_dict(opt.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
