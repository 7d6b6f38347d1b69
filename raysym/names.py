"""The names a config may use, in one torch-free module: validating a config (and so `--dry-run`, the
sweep planner and the report) never imports torch, Ray or a symbolic-regression engine.

The modules that implement each name import its list from here, and tests/unit/test_architecture.py checks
that each implementation covers exactly these names.
"""

# Graph Networks (raysym.model; hgn: raysym.hgn; newtonian: raysym.newtonian).
MODELS = ("standard", "bottleneck", "l1", "kl", "wide", "inverse", "hgn", "newtonian")
# The models whose messages carry the L1 penalty (hgn: on its energy terms).
L1_MODELS = ("l1", "wide", "inverse", "hgn")
# The message forms of the Newtonian GN: dim components and no penalty, or msg_dim components with the
# L1 or the KL penalty.
NEWTONIAN_MESSAGES = ("bottleneck", "l1", "kl")
# KL priors on the messages (raysym.regularizers).
PRIORS = ("gaussian", "laplace")
# Named L1 coefficient schedules (raysym.schedules.NAMED); "shape" takes a ScheduleShape.
SCHEDULES = ("constant", "linear", "triangle")
LOSSES = ("mae", "mse", "huber")
DEVICES = ("auto", "cpu", "cuda")  # and cuda:N

# Symbolic regression (raysym.distill): the backends and the operators a formula may use.
BACKENDS = ("auto", "operon", "pysr")
OPERATORS = ("+", "-", "*", "/", "sqrt", "exp", "log", "square")
# What the coefficients of the message penalties mean (raysym.regularizers): "paper", the publications'
# meaning; "per_edge", the scale of trials before it existed.
PENALTY_UNITS = ("paper", "per_edge")
