"""What an uploadable ONNX model must be: the text the README and the API docs share.

The upload endpoint's OpenAPI description is built from :data:`MODEL_CONTRACT`, and the
README's "Model contract" section is the same text, word for word
(``tests/api/test_model_contract.py`` keeps them equal, checks the facts against
:mod:`api.control.model_spec` and runs the scikit-learn export below).
"""

from __future__ import annotations

from typing import Final

__all__ = ["MODEL_CONTRACT"]

MODEL_CONTRACT: Final = """\
A variant is an ONNX file uploaded to `POST /v1/experiments/{name}/variants`. It is
checked when it arrives and again when it loads; a model that breaks a rule below is
refused with 422 and a message naming the rule.

- **One float input `[N, d]`.** Exactly one graph input, a `float32` or `float64`
  tensor of rank 2 with a dynamic batch dimension `N` (a name or `None` at export, never
  a fixed size) and a fixed number of features `d`. Several inputs, an integer or string
  input, or another shape are refused (`invalid_model_input`). A float32 model refuses
  feature values beyond ±3.4e38 (`feature_out_of_range`).
- **`features` names the `d` columns, in order.** The upload's `features` form field is
  a JSON list of `d` names in input-column order, e.g. `["age", "tenure", "spend"]`;
  without it the columns are called `f0` … `f{d-1}`. Predict requests send `features`
  as a list in that order or as an object by name.
- **One output is used:** the first graph output, or the one named by the `output` form
  field. It must be a numeric tensor with one row per input row.
- **How the output is read.** `[N]` or `[N, 1]`: the value is the `prediction` (a
  regression value, a probability or a class label). `[N, k]`: the row is returned as
  `scores` and the `prediction` is the index of the largest score (for a classifier, the
  position of the class in its `classes_`).
- **Classifiers: choose the probability tensor** with `output=probabilities` (the name
  skl2onnx and onnxmltools give it); their first output, `label`, carries the class
  only. By default skl2onnx wraps the probabilities in a ZipMap (`output_probability`, a
  list of dictionaries rather than a tensor), and choosing that output is refused at
  upload (`invalid_model_output`): export with `zipmap=False`.

**scikit-learn** (skl2onnx): a sample row fixes the input type and `d`; `N` stays
dynamic.

```python
import numpy as np
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(0)
X = rng.normal(size=(500, 3)).astype(np.float32)  # columns: age, tenure, spend
y = (X[:, 0] - X[:, 1] + 0.5 * X[:, 2] > 0).astype(np.int64)
model = LogisticRegression().fit(X, y)

onx = to_onnx(model, X[:1], options={id(model): {"zipmap": False}})
with open("churn-logreg.onnx", "wb") as f:
    f.write(onx.SerializeToString())
```

Upload it with `-F name=logreg -F model=@churn-logreg.onnx
-F 'features=["age","tenure","spend"]' -F output=probabilities`.

**XGBoost and LightGBM** (onnxmltools): declare the input as `FloatTensorType([None,
d])`; classifiers get the outputs `label` and `probabilities`.

```python
from onnxmltools import convert_lightgbm, convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType

initial_types = [("x", FloatTensorType([None, 3]))]  # None: the dynamic N
onx = convert_xgboost(xgb_model, initial_types=initial_types)
onx = convert_lightgbm(lgbm_model, initial_types=initial_types, zipmap=False)
```

**PyTorch**: export with a dynamic first axis. A classifier's logits `[N, k]` work as
scores; end the network in a softmax if the scores should be probabilities.

```python
import torch

net.eval()
torch.onnx.export(
    net,
    (torch.zeros(1, 3),),
    "churn-mlp.onnx",
    input_names=["x"],
    output_names=["y"],
    dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
)
```
"""
