"""raysym: symbolic distillation of Graph Networks, swept on Ray.

From Python (a notebook, a script), the same pipeline as the ``raysym`` command:

    import raysym
    results = raysym.run_sweep("tune_configs/quickstart.yaml")  # a pandas DataFrame, one row per trial
    runs = raysym.load_results("quickstart")                     # every final metric of every trial, from MLflow
    report = raysym.make_report("quickstart")                    # reports/quickstart/report.md and .html

The names are imported on first use (raysym.api), so ``import raysym`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["run_sweep", "load_results", "make_report", "sweep_config", "__version__"]


def __getattr__(name: str):
    if name in ("run_sweep", "load_results", "make_report", "sweep_config"):
        from raysym import api

        return getattr(api, name)
    raise AttributeError(f"module 'raysym' has no attribute {name!r}")
