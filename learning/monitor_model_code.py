"""The registered monitor model, logged the way MLflow recommends: models from code.

MLflow stores this file beside the model and runs it when the model is loaded, instead of
unpickling an object (which could run anything). It predicts, for each service named, the
monitor policy the training chose for it as JSON (``null`` for a service it does not know).
selfheal's own monitors read the policy artifact directly (``model_registry.champion``);
this is for anyone who loads the model the MLflow way (``mlflow.pyfunc.load_model``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class MonitorPolicyModel(PythonModel):  # type: ignore[misc]
    def load_context(self, context: Any) -> None:
        self.policies = json.loads(Path(context.artifacts["policy"]).read_text())["policies"]

    # the type hints are the model's signature (MLflow reads them): a list of service
    # names in, a list of JSON policies out
    def predict(self, context: Any, model_input: list[str],
                params: dict[str, Any] | None = None) -> list[str]:
        return [json.dumps(self.policies.get(s)) for s in model_input]


mlflow.models.set_model(MonitorPolicyModel())
