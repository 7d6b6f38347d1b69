"""raysym: symbolic distillation of Graph Networks, swept on Ray.

Stages (one module each, imports flow downward):
``cli`` -> ``sweep`` / ``report`` -> ``train`` / ``distill`` / ``shards`` -> ``model`` / ``messages`` /
``simulate`` -> ``physics``.
"""

__version__ = "0.1.0"
