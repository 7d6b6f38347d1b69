"""Ray Tune's OptunaSearch, told a trial's objective only when the trial ends.

raysym's objective (the messages' R²) exists only after training, while trials report every epoch;
the stock searcher reads the objective from every result as an intermediate value and fails on the
per-epoch ones. Kept in its own module (not inside a function) so Tune can pickle it for --resume.
"""

from ray.tune.search.optuna import OptunaSearch


class EndOfTrialOptunaSearch(OptunaSearch):
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric in result:
            super().on_trial_result(trial_id, result)
