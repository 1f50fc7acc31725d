"""The α-predictor models: P(correct | α) for every grid α from student features (multi-label)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import skops.io
import torch
from safetensors.torch import load_file, save_file
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.errors import UserError


class SklearnPerAlpha:
    """One scaled (+PCA) logistic regression per α; an α whose labels never vary predicts that constant."""

    kind = "sklearn_logreg"
    trusted: tuple[str, ...] = ()  # types beyond skops' defaults that load() accepts, each checked by validate()

    def __init__(self, pca_components: int = 32, C: float = 1.0, seed: int = 0):
        self.pca_components, self.C, self.seed = pca_components, C, seed
        self.columns: list = []

    def params(self) -> dict:
        return {"pca_components": self.pca_components, "C": self.C, "seed": self.seed}

    def classifier(self):
        return LogisticRegression(C=self.C, max_iter=2000)

    def fit(self, X: np.ndarray, Y: np.ndarray, init=None) -> "SklearnPerAlpha":
        n_comp = min(self.pca_components, X.shape[0] - 1, X.shape[1])
        self.columns = []
        for j in range(Y.shape[1]):
            y = Y[:, j].astype(int)
            if y.min() == y.max():
                self.columns.append(float(y[0]))
                continue
            model = make_pipeline(StandardScaler(), PCA(n_components=max(1, n_comp), random_state=self.seed),
                                  self.classifier())
            self.columns.append(model.fit(X, y))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out = np.empty((X.shape[0], len(self.columns)), dtype=np.float64)
        for j, col in enumerate(self.columns):
            out[:, j] = col if isinstance(col, float) else col.predict_proba(X)[:, 1]
        return out

    def save(self, directory: Path) -> str:
        skops.io.dump(self.columns, directory / "model.skops")
        return "model.skops"

    def validate(self) -> None:
        """Raise ValueError where a loaded model could misbehave on predict."""

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "SklearnPerAlpha":
        """skops refuses any type outside its trusted scikit-learn/numpy set instead of running it."""
        model = cls(**meta["model_params"])
        try:
            model.columns = skops.io.load(directory / meta["model_file"], trusted=list(cls.trusted) or None)
            if not isinstance(model.columns, list):
                raise TypeError("not a list of per-α models")
            model.validate()
        except Exception as exc:  # noqa: BLE001 - untrusted types, a corrupt file: one line either way
            raise UserError(f"{directory}: cannot load {meta['model_file']} safely: {type(exc).__name__}: {str(exc)[:200]}") from None
        return model


class HGBPerAlpha(SklearnPerAlpha):
    """scikit-learn's histogram gradient boosting per α, on scaled PCA components: picks up
    interactions (a statistic mattering only in one regime) that a logistic model cannot."""

    kind = "sklearn_hgb"
    trusted = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)

    def __init__(self, pca_components: int = 32, max_iter: int = 60, max_depth: int = 3, learning_rate: float = 0.1,
                 l2_regularization: float = 1.0, seed: int = 0):
        super().__init__(pca_components=pca_components, seed=seed)
        self.max_iter, self.max_depth, self.learning_rate, self.l2_regularization = max_iter, max_depth, learning_rate, l2_regularization

    def params(self) -> dict:
        return {"pca_components": self.pca_components, "max_iter": self.max_iter, "max_depth": self.max_depth,
                "learning_rate": self.learning_rate, "l2_regularization": self.l2_regularization, "seed": self.seed}

    def classifier(self):
        return HistGradientBoostingClassifier(max_iter=self.max_iter, max_depth=self.max_depth, learning_rate=self.learning_rate,
                                              l2_regularization=self.l2_regularization, early_stopping=False, random_state=self.seed)

    def validate(self) -> None:
        """skops flags TreePredictor because scikit-learn follows its node indices without
        bounds checks: a crafted file could read out of bounds. Every node must point to
        later nodes of its own tree and to a feature the model has, with no categorical split."""
        for col in self.columns:
            if isinstance(col, float):
                continue
            booster = col[-1]
            if not isinstance(booster, HistGradientBoostingClassifier):
                raise TypeError(f"expected a HistGradientBoostingClassifier, found {type(booster).__name__}")
            for trees in booster._predictors:
                for tree in trees:
                    _check_tree(tree.nodes, booster.n_features_in_)


def _check_tree(nodes: np.ndarray, n_features: int) -> None:
    inner = np.flatnonzero(~nodes["is_leaf"].astype(bool))
    index = np.arange(len(nodes))
    for side in ("left", "right"):
        child = nodes[side][inner].astype(np.int64)
        if ((child <= index[inner]) | (child >= len(nodes))).any():
            raise ValueError("a tree node points outside its tree")
    feature = nodes["feature_idx"][inner].astype(np.int64)
    if ((feature < 0) | (feature >= n_features)).any() or nodes["is_categorical"].any():
        raise ValueError("a tree node splits on a feature the model does not have")


class MLPPerAlpha:
    """A small torch MLP with one sigmoid output per α, trained full-batch with BCE."""

    kind = "torch_mlp"

    def __init__(self, hidden: int = 64, epochs: int = 300, lr: float = 3e-3, weight_decay: float = 1e-3, seed: int = 0):
        self.hidden, self.epochs, self.lr, self.weight_decay, self.seed = hidden, epochs, lr, weight_decay, seed
        self.net: torch.nn.Sequential | None = None
        self.mean = self.std = None

    def params(self) -> dict:
        return {"hidden": self.hidden, "epochs": self.epochs, "lr": self.lr, "weight_decay": self.weight_decay, "seed": self.seed}

    def _build(self, d_in: int, d_out: int) -> torch.nn.Sequential:
        return torch.nn.Sequential(torch.nn.Linear(d_in, self.hidden), torch.nn.GELU(), torch.nn.Linear(self.hidden, d_out))

    def fit(self, X: np.ndarray, Y: np.ndarray, init: "MLPPerAlpha | None" = None) -> "MLPPerAlpha":
        torch.manual_seed(self.seed)
        self.mean, self.std = X.mean(axis=0), X.std(axis=0) + 1e-6
        self.net = self._build(X.shape[1], Y.shape[1])
        if init is not None and init.net is not None:  # warm start from a previous artifact
            self.net.load_state_dict(init.net.state_dict())
        x = torch.from_numpy((X - self.mean) / self.std).float()
        y = torch.from_numpy(Y.astype(np.float32))
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        for _ in range(self.epochs):
            opt.zero_grad()
            loss_fn(self.net(x), y).backward()
            opt.step()
        return self

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        x = torch.from_numpy((X - self.mean) / self.std).float()
        return torch.sigmoid(self.net(x)).numpy().astype(np.float64)

    def save(self, directory: Path) -> str:
        tensors = {f"net.{k}": v.contiguous() for k, v in self.net.state_dict().items()}
        tensors["mean"], tensors["std"] = torch.from_numpy(self.mean).float(), torch.from_numpy(self.std).float()
        save_file(tensors, str(directory / "model.safetensors"))
        return "model.safetensors"

    @staticmethod
    def load(directory: Path, meta: dict) -> "MLPPerAlpha":
        params = meta["model_params"]
        model = MLPPerAlpha(**params)
        tensors = load_file(str(directory / meta["model_file"]))
        model.mean, model.std = tensors.pop("mean").numpy(), tensors.pop("std").numpy()
        d_in, d_out = tensors["net.0.weight"].shape[1], tensors["net.2.weight"].shape[0]
        model.net = model._build(d_in, d_out)
        model.net.load_state_dict({k[len("net."):]: v for k, v in tensors.items()})
        return model


MODELS = {m.kind: m for m in (SklearnPerAlpha, HGBPerAlpha, MLPPerAlpha)}
