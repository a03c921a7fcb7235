"""The regressors the surrogates choose from, each storable as plain arrays (no pickle).

* ``LinearModel``: ridge (squared loss), least-absolute-deviation or Huber (both IRLS) on
  standardized features, optionally weighted per sample. Closed form, milliseconds, robust on
  tiny tables.
* ``MLPEnsemble``: a few small ReLU MLPs trained with torch (one thread, Adam + one-cycle
  schedule), averaged. Prediction runs in numpy, so loading a model file needs no torch.

Every model maps features → a standardized scalar target; callers work on log scales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecnas.errors import InputError, NotFittedError

State = tuple[dict[str, Any], dict[str, np.ndarray]]


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x.mean(0)
    sd = x.std(0)
    sd[sd < 1e-12] = 1.0  # constant columns: leave them at zero after centring
    return mu, sd


@dataclass
class LinearModel:
    """y ≈ b + w·z with z the standardized features; ``loss`` 'l2' (ridge), 'l1' (median) or
    'huber' (squared near the fit, absolute beyond 1.345 robust σ of the residuals)."""

    alpha: float = 1e-2
    loss: str = "l2"
    mu: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sd: np.ndarray = field(default_factory=lambda: np.ones(0))
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> LinearModel:
        """Fit on features ``x`` (n, d) and targets ``y`` (n), optionally weighted per sample:
        closed form for ``l2``, iteratively reweighted least squares for ``l1`` and ``huber``.
        The ridge penalty ``alpha`` is scaled by n and spares the intercept. Returns the
        model."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise InputError(f"linear fit needs (n, d) features and n targets, got {x.shape}, {y.shape}")
        if self.loss not in ("l1", "l2", "huber"):
            raise InputError(f"linear loss must be l1, l2 or huber, got {self.loss!r}")
        base = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        base = base * (len(x) / base.sum())
        self.mu, self.sd = _standardize(x)
        z = np.c_[np.ones(len(x)), (x - self.mu) / self.sd]
        # ridge penalty on the slopes only, scaled by n so alpha means the same at any size
        pen = self.alpha * len(x) * np.eye(z.shape[1])
        pen[0, 0] = 0.0
        weights = base
        coef = np.zeros(z.shape[1])
        for _ in range(1 if self.loss == "l2" else 60):
            zw = z * weights[:, None]
            last, coef = coef, np.linalg.solve(z.T @ zw + pen, zw.T @ y)
            if np.max(np.abs(coef - last)) <= 1e-10 * (1.0 + np.max(np.abs(coef))):
                break  # IRLS converged
            r = np.abs(y - z @ coef)
            if self.loss == "l1":  # IRLS for least absolute deviations
                weights = base / np.maximum(r, 1e-6)
            elif self.loss == "huber":  # IRLS: full weight near the fit, 1/|r| in the tails
                scale = max(1.4826 * float(np.median(r)), 1e-12)
                weights = base * np.minimum(1.0, 1.345 * scale / np.maximum(r, 1e-12))
            weights = weights * (len(x) / weights.sum())
        self.coef = coef
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The fitted values for features ``x`` (n, d)."""
        z = (np.asarray(x, dtype=np.float64) - self.mu) / self.sd
        return self.coef[0] + z @ self.coef[1:]

    def state(self) -> State:
        """The model as (settings, arrays ``mu``, ``sd``, ``coef``) for a model file."""
        return ({"kind": "linear", "alpha": self.alpha, "loss": self.loss},
                {"mu": self.mu, "sd": self.sd, "coef": self.coef})

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> LinearModel:
        """A model from :meth:`state`'s output; non-finite arrays are refused."""
        _finite("linear", arrays, ("mu", "sd", "coef"))
        return cls(alpha=float(meta["alpha"]), loss=str(meta["loss"]), mu=arrays["mu"],
                   sd=arrays["sd"], coef=arrays["coef"])


@dataclass
class MLPEnsemble:
    """``members`` MLPs (2 hidden ReLU layers of ``width``) averaged; trained on MSE."""

    width: int = 128
    epochs: int = 60
    members: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-5
    seed: int = 0
    mu: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sd: np.ndarray = field(default_factory=lambda: np.ones(0))
    y_mu: float = 0.0
    y_sd: float = 1.0
    weights: list[list[np.ndarray]] = field(default_factory=list)

    def fit(self, x: np.ndarray, y: np.ndarray) -> MLPEnsemble:
        """Train ``members`` MLPs on standardized ``x`` (n ≥ 2, d) and ``y`` with torch on one
        thread (small matrices run faster so), each with its own seed. Returns the ensemble."""
        import torch

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
            raise InputError(f"MLP fit needs (n≥2, d) features and n targets, got {x.shape}")
        self.mu, self.sd = _standardize(x)
        self.y_mu, self.y_sd = float(y.mean()), float(y.std() or 1.0)
        zx = torch.tensor((x - self.mu) / self.sd, dtype=torch.float32)
        zy = torch.tensor((y - self.y_mu) / self.y_sd, dtype=torch.float32)
        threads = torch.get_num_threads()
        # small matrices: one thread is several times faster than contended multi-threading
        torch.set_num_threads(1)
        try:
            self.weights = [self._fit_one(torch, zx, zy, self.seed + k) for k in range(self.members)]
        finally:
            torch.set_num_threads(threads)
        return self

    def _fit_one(self, torch: Any, zx: Any, zy: Any, seed: int) -> list[np.ndarray]:
        torch.manual_seed(seed)
        nn = torch.nn
        d = zx.shape[1]
        net = nn.Sequential(nn.Linear(d, self.width), nn.ReLU(), nn.Linear(self.width, self.width),
                            nn.ReLU(), nn.Linear(self.width, 1))
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        n = zx.shape[0]
        bs = min(self.batch_size, n)
        steps_per_epoch = (n + bs - 1) // bs
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, self.lr,
                                                    total_steps=self.epochs * steps_per_epoch)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(self.epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, bs):
                idx = perm[i : i + bs]
                opt.zero_grad()
                loss = ((net(zx[idx]).squeeze(1) - zy[idx]) ** 2).mean()
                loss.backward()
                opt.step()
                sched.step()
        return [p.detach().numpy().astype(np.float32).copy() for p in net.parameters()]

    def predict(self, x: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """The members' mean prediction for ``x``, in numpy (no torch needed), ``chunk`` rows at
        a time."""
        if not self.weights:
            raise NotFittedError("MLP ensemble is not fitted")
        z = ((np.asarray(x, dtype=np.float64) - self.mu) / self.sd).astype(np.float32)
        out = np.empty(len(z), dtype=np.float64)
        for start in range(0, len(z), chunk):
            part = z[start : start + chunk]
            acc = np.zeros(len(part), dtype=np.float64)
            for w1, b1, w2, b2, w3, b3 in self.weights:
                h = np.maximum(part @ w1.T + b1, 0.0)
                h = np.maximum(h @ w2.T + b2, 0.0)
                acc += (h @ w3.T + b3)[:, 0]
            out[start : start + chunk] = acc / len(self.weights)
        return out * self.y_sd + self.y_mu

    def state(self) -> State:
        """The ensemble as (settings, arrays: input scaling and each member's six weight arrays)
        for a model file."""
        meta = {"kind": "mlp", "width": self.width, "epochs": self.epochs, "members": len(self.weights),
                "batch_size": self.batch_size, "lr": self.lr, "weight_decay": self.weight_decay,
                "seed": self.seed, "y_mu": self.y_mu, "y_sd": self.y_sd}
        arrays = {"mu": self.mu, "sd": self.sd}
        for k, ws in enumerate(self.weights):
            for j, w in enumerate(ws):
                arrays[f"m{k}_p{j}"] = w
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> MLPEnsemble:
        """An ensemble from :meth:`state`'s output; non-finite arrays or target scaling are
        refused."""
        members = int(meta["members"])
        _finite("mlp", arrays, ("mu", "sd", *(f"m{k}_p{j}" for k in range(members)
                                              for j in range(6))))
        if not (math.isfinite(float(meta["y_mu"])) and math.isfinite(float(meta["y_sd"]))):
            raise ValueError("mlp learner: y_mu/y_sd not finite")
        weights = [[arrays[f"m{k}_p{j}"].astype(np.float32) for j in range(6)] for k in range(members)]
        return cls(width=int(meta["width"]), epochs=int(meta["epochs"]), members=members,
                   batch_size=int(meta["batch_size"]), lr=float(meta["lr"]),
                   weight_decay=float(meta["weight_decay"]), seed=int(meta["seed"]),
                   mu=arrays["mu"], sd=arrays["sd"], y_mu=float(meta["y_mu"]),
                   y_sd=float(meta["y_sd"]), weights=weights)


def _finite(kind: str, arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> None:
    """A learner's coefficients are finite numbers: NaN or inf in a model file would make every
    prediction NaN (or inf) without a word. Raises ValueError (the loader's one-line error)."""
    for name in names:
        a = np.asarray(arrays[name])
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise ValueError(f"{kind} learner: {name} holds NaN or infinite coefficients")


def learner_from_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> LinearModel | MLPEnsemble:
    """The learner a model file's entry describes (``kind`` linear or mlp), checked by one probe
    prediction; an unknown kind or arrays that do not fit together are an
    :class:`~ecnas.errors.InputError`."""
    kind = meta.get("kind")
    if kind == "linear":
        learner: LinearModel | MLPEnsemble = LinearModel.from_state(meta, arrays)
    elif kind == "mlp":
        learner = MLPEnsemble.from_state(meta, arrays)
    else:
        raise InputError(f"model file: unknown learner kind {kind!r}")
    check_learner(learner)
    return learner


def check_learner(learner: LinearModel | MLPEnsemble) -> int:
    """The learner's input width, after one probe prediction: arrays of a wrong shape or
    dtype in a model file are refused on load (``InputError``), not met at predict time."""
    mu, sd = np.asarray(learner.mu), np.asarray(learner.sd)
    if mu.ndim != 1 or sd.shape != mu.shape or mu.dtype.kind != "f" or sd.dtype.kind != "f":
        raise InputError(f"model file: learner input scaling has shape {mu.shape}/{sd.shape}, "
                         "expected two equal vectors of floats")
    try:
        out = np.asarray(learner.predict(np.zeros((1, mu.shape[0]))))
    except (ValueError, IndexError, TypeError) as exc:
        raise InputError(f"model file: learner arrays do not fit together ({exc})") from None
    if out.shape != (1,):
        raise InputError(f"model file: learner predicts shape {out.shape}, expected one value")
    return int(mu.shape[0])


def pack_models(models: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Sub-models' JSON metadata by name, and their arrays flattened as ``name.key``."""
    meta: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, model in models.items():
        m_meta, m_arrays = model.state()
        meta[name] = m_meta
        arrays.update({f"{name}.{k}": v for k, v in m_arrays.items()})
    return meta, arrays


def model_arrays(arrays: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """The arrays :func:`pack_models` stored for sub-model ``name``, keys unprefixed."""
    return {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{name}.")}

