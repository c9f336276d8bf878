"""Training many probes at once.

Every probe of a round is one slice of one stacked model: each layer's grid points (learning
rate x weight decay) or seeds, all trained together in large batches with Adam and early-stopped
on a validation score (the dataset's selection metric). Members that run out of patience leave
the model (their parameters and Adam moments are dropped), so the work follows the members
still learning. No Python loop runs per sample or per grid point; forwards that need no weight
gradient of a wide first layer (a linear probe's, and every validation or test forward) issue
one matmul per input layer, which is cheaper than copying each layer's clips once per member.

Per-member learning rates use Adam's invariance to gradient scale: member e's weights are stored
as W_e / s_e with s_e = lr_e / lr_ref, so one (fused) Adam step of size lr_ref moves W_e by
lr_e times Adam's direction. Weight decay is decoupled (as in AdamW): W_e is multiplied by
1 - lr_e * wd_e before each step.

A probe is an MLP (no hidden layer: a linear probe) with optional dropout and batch norm, fed
either one layer's features or, for the weighted probe, a learned softmax-weighted sum of all
layers (as in SUPERB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.adam import adam

from audioprobe.probes.metrics import scores_from_counts

DROPOUT_STREAM = 2**32  # offset from the initialisation seed: dropout draws its own stream

@dataclass(frozen=True)
class Member:
    """One probe of the stack: its learning rate, weight decay and seed."""

    lr: float
    weight_decay: float
    seed: int


@dataclass(frozen=True)
class Architecture:
    """The shape of a probe: hidden sizes, dropout, batch norm, and whether it weighs layers."""

    hidden: list[int] = field(default_factory=list)
    dropout: float = 0.0
    batch_norm: bool = False
    weighted: bool = False


class StackedProbe(torch.nn.Module):
    """E probes as one batched model. ``members[l]`` are the probes of input layer l; a weighted
    probe has one group of members that each see all layers. ``member`` names the member each
    row holds, since rows of finished members can be dropped (``keep``)."""

    def __init__(self, members: list[list[Member]], arch: Architecture, n_layers: int,
                 dim: int, n_classes: int) -> None:
        super().__init__()
        flat = [m for group in members for m in group]
        self.arch = arch
        self.seeds = [m.seed for m in flat]
        self._dropout: list[torch.Generator] | None = None
        self.register_buffer("member", torch.arange(len(flat)))
        self.register_buffer("layer", torch.tensor(
            [l for l, group in enumerate(members) for _ in group], dtype=torch.long))
        lr = torch.tensor([m.lr for m in flat])
        self.lr_ref = float(lr.max())
        self.register_buffer("scale", lr / self.lr_ref)
        self.register_buffer("decay", 1 - lr * torch.tensor([m.weight_decay for m in flat]))
        dims = [dim, *arch.hidden, n_classes]
        init: dict[str, list[torch.Tensor]] = {}
        for m in flat:
            gen = torch.Generator().manual_seed(m.seed)
            if arch.weighted:
                init.setdefault("mix", []).append(torch.zeros(n_layers))
            for k, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
                bound = 1 / math.sqrt(fan_in)  # torch.nn.Linear's default initialisation
                init.setdefault(f"w{k}", []).append(
                    (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound)
                init.setdefault(f"b{k}", []).append(
                    (torch.rand(fan_out, generator=gen) * 2 - 1) * bound)
                if arch.batch_norm and k < len(arch.hidden):
                    init.setdefault(f"g{k}", []).append(torch.ones(fan_out))
                    init.setdefault(f"h{k}", []).append(torch.zeros(fan_out))
        self.params = torch.nn.ParameterDict({
            name: torch.nn.Parameter(self._stored(torch.stack(values)))
            for name, values in init.items()})
        for k, width in enumerate(arch.hidden if arch.batch_norm else []):
            self.register_buffer(f"mean{k}", torch.zeros(len(flat), width))
            self.register_buffer(f"var{k}", torch.ones(len(flat), width))
        self._find_runs()

    def _find_runs(self) -> None:
        """The input layers of the rows, as runs of equal layer: (layers, lengths)."""
        layers, counts = torch.unique_consecutive(self.layer, return_counts=True)
        self.runs = (layers.tolist(), counts.tolist())
        self.rows = self.member.tolist()

    def _per_member(self, like: torch.Tensor) -> torch.Tensor:
        return self.scale.view(-1, *[1] * (like.dim() - 1))

    def _stored(self, effective: torch.Tensor) -> torch.Tensor:
        return effective / self._per_member(effective)

    def effective(self, name: str) -> torch.Tensor:
        p = self.params[name]
        return p * self._per_member(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (L, N, D) -> logits (E, N, C). A layer's output is scaled instead of its weights
        (the same product, on the smaller tensor)."""
        scale = self.scale.view(-1, 1, 1)
        if self.arch.weighted:
            weights = torch.softmax(self.effective("mix"), -1)  # (E, L)
            h = torch.einsum("el,lnd,edh->enh", weights, x, self.params["w0"])
        elif self.arch.hidden and torch.is_grad_enabled():
            h = torch.bmm(x[self.layer], self.params["w0"])
        else:  # one matmul per input layer saves copying its clips for every member, except
            # where that copy is what a wide layer's weight gradient is computed from
            layers, counts = self.runs
            h = torch.cat([torch.matmul(x[l], w)
                           for l, w in zip(layers, self.params["w0"].split(counts))])
        h = (h + self.params["b0"][:, None]) * scale
        for k in range(1, len(self.arch.hidden) + 1):
            h = self._activate(h, k - 1)
            h = torch.baddbmm(self.params[f"b{k}"][:, None], h, self.params[f"w{k}"]) * scale
        return h

    def _activate(self, h: torch.Tensor, k: int) -> torch.Tensor:
        if self.arch.batch_norm:
            e, n, width = h.shape
            flat = F.batch_norm(h.permute(1, 0, 2).reshape(n, e * width),
                                getattr(self, f"mean{k}").view(-1),
                                getattr(self, f"var{k}").view(-1),
                                self.effective(f"g{k}").flatten(),
                                self.effective(f"h{k}").flatten(),
                                training=self.training, momentum=0.1)
            h = flat.reshape(n, e, width).permute(1, 0, 2)
        h = torch.relu(h)
        return self._drop(h) if self.arch.dropout and self.training else h

    def _drop(self, h: torch.Tensor) -> torch.Tensor:
        """Dropout with one generator per member (seeded by its seed), so a member's masks never
        depend on which other members share the stack."""
        if self._dropout is None:
            self._dropout = [torch.Generator(h.device).manual_seed(DROPOUT_STREAM + seed)
                             for seed in self.seeds]
        keep = 1 - self.arch.dropout
        masks = [torch.empty(h.shape[1:], device=h.device).bernoulli_(
            keep, generator=self._dropout[m]) for m in self.rows]
        return h * torch.stack(masks) / keep

    @torch.no_grad()
    def apply_decay(self) -> None:
        if bool((self.decay != 1).any()):
            for p in self.params.values():
                p.mul_(self.decay.view(-1, *[1] * (p.dim() - 1)))

    @torch.no_grad()
    def keep(self, rows: torch.Tensor) -> None:
        """Hold only these rows (members) from now on."""
        for name, p in list(self.params.items()):
            self.params[name] = torch.nn.Parameter(p[rows])
        for name, buffer in list(self.named_buffers()):
            setattr(self, name, buffer[rows])
        self._find_runs()

    @torch.no_grad()
    def state(self, rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The effective parameters and batch-norm statistics of these rows (default: all),
        row first."""
        rows = slice(None) if rows is None else rows
        scale = self.scale[rows]
        state = {name: p[rows] * scale.view(-1, *[1] * (p.dim() - 1))
                 for name, p in self.params.items()}
        for k in range(len(self.arch.hidden) if self.arch.batch_norm else 0):
            for stat in ("mean", "var"):
                state[f"{stat}{k}"] = getattr(self, f"{stat}{k}")[rows].clone()
        return state

    @torch.no_grad()
    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            if name in self.params:
                self.params[name].copy_(self._stored(value))
            else:
                getattr(self, name).copy_(value.view_as(getattr(self, name)))


class Adam:
    """torch's fused Adam (its functional form, ``torch.optim.adam.adam``) over a stacked
    model's parameters, with moments whose rows can be dropped with the model's (``keep``).

    It makes the same step as ``torch.optim.Adam(fused=True)``; constructing any ``torch.optim``
    optimizer imports ``torch._dynamo`` (about 2 s of every probe job's start-up on two cores),
    calling the function does not."""

    def __init__(self, model: StackedProbe) -> None:
        self.lr = model.lr_ref
        self.params = list(model.parameters())
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), device=p.device) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        adam(
            self.params, [p.grad for p in self.params], self.exp_avgs, self.exp_avg_sqs, [],
            self.steps, fused=True, amsgrad=False, beta1=0.9, beta2=0.999, lr=self.lr,
            weight_decay=0.0, eps=1e-8, maximize=False)

    def keep(self, model: StackedProbe, rows: torch.Tensor) -> None:
        """Keep only these rows of the model and of the moments, so finished members cost no
        more work."""
        model.keep(rows)
        self.params = list(model.parameters())
        self.exp_avgs = [m[rows] for m in self.exp_avgs]
        self.exp_avg_sqs = [m[rows] for m in self.exp_avg_sqs]


def member_state(state: dict[str, torch.Tensor], e: int) -> dict[str, torch.Tensor]:
    """One member's slice of a stacked state (kept with a leading axis of 1)."""
    return {name: value[e:e + 1].clone() for name, value in state.items()}


@dataclass
class Fit:
    """Per member at its checkpoint: the validation score it was selected on, validation accuracy
    and loss, the epoch, the parameters, and its test-class probabilities (E, N_test, C); and
    its training curves (``History.CURVES``: (epochs run, E), NaN after the member stopped)."""

    val_score: np.ndarray
    val_accuracy: np.ndarray
    val_loss: np.ndarray
    epochs: np.ndarray
    state: dict[str, torch.Tensor]
    test_proba: np.ndarray
    history: dict[str, np.ndarray] = field(default_factory=dict)


class Checkpoints:
    """Each member's best epoch so far on validation: score, accuracy, loss, epoch, parameters.

    The checkpoint follows the validation score, ties going to the lower loss; patience counts
    from the last gain in score.
    """

    def __init__(self, model: StackedProbe, device: torch.device) -> None:
        n = len(model.member)
        self.score = torch.full((n,), -1.0, device=device)
        self.accuracy = torch.full((n,), -1.0, device=device)
        self.loss = torch.full((n,), math.inf, device=device)
        self.epoch = torch.zeros(n, dtype=torch.long, device=device)
        self.last_gain = torch.zeros(n, dtype=torch.long, device=device)
        self.state = model.state()

    @torch.no_grad()
    def update(self, model: StackedProbe, score: torch.Tensor, loss: torch.Tensor,
               acc: torch.Tensor, epoch: int) -> None:
        """Take this epoch's scores of the members still in the model."""
        ids = model.member
        gained = score > self.score[ids]
        better = gained | ((score == self.score[ids]) & (loss < self.loss[ids]))
        improved = better.nonzero().squeeze(1)
        self.score[ids[improved]], self.loss[ids[improved]] = score[improved], loss[improved]
        self.accuracy[ids[improved]] = acc[improved]
        self.epoch[ids[improved]] = epoch
        self.last_gain[ids[gained]] = epoch
        if len(improved):
            for name, value in model.state(improved).items():
                self.state[name][ids[improved]] = value

    def going(self, model: StackedProbe, epoch: int, patience: int) -> torch.Tensor:
        """Which of the model's members still have patience left."""
        return (epoch - self.last_gain[model.member]) < patience


class History:
    """Each member's training and validation loss and accuracy, epoch by epoch."""

    CURVES = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy")

    def __init__(self, n_members: int) -> None:
        self.n_members = n_members
        self.epochs: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, model: StackedProbe, *curves: torch.Tensor) -> None:
        """This epoch's values (``CURVES`` order) of the members still in the model."""
        self.epochs.append((model.member.cpu().numpy(),
                            torch.stack(curves).float().cpu().numpy()))

    def arrays(self) -> dict[str, np.ndarray]:
        table = np.full((len(self.CURVES), len(self.epochs), self.n_members), np.nan)
        for epoch, (ids, values) in enumerate(self.epochs):
            table[:, epoch, ids] = values
        return dict(zip(self.CURVES, table))


def _train_epoch(model: StackedProbe, optimizer: Adam, x: torch.Tensor,
                 y: torch.Tensor, order: torch.Tensor, batch_size: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the training clips in ``order``, every member on the same batches.
    Returns each member's mean training loss and accuracy over the pass (in training mode,
    as the batches were seen)."""
    model.train()
    loss_sum = torch.zeros(len(model.member), device=x.device)
    right = torch.zeros(len(model.member), device=x.device)
    seen = 0
    for idx in order.split(batch_size):
        if len(idx) < 2 and model.arch.batch_norm:
            continue
        logits = model(x[:, idx])
        per_member = F.cross_entropy(logits.transpose(1, 2), y[idx].expand(len(logits), -1),
                                     reduction="none").mean(1)
        optimizer.zero_grad()
        per_member.sum().backward()
        model.apply_decay()
        optimizer.step()
        with torch.no_grad():
            loss_sum += per_member.detach() * len(idx)
            right += (logits.argmax(-1) == y[idx]).sum(1)
        seen += len(idx)
    return loss_sum / max(seen, 1), right / max(seen, 1)


@torch.no_grad()
def _validate(model: StackedProbe, x: torch.Tensor, y: torch.Tensor, metric: str,
              classes: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validation score (``metric``), loss and accuracy of each member in the model."""
    model.eval()
    logits = model(x)
    pred = logits.argmax(-1)
    right = (pred == y).float()
    acc = right.mean(1)
    loss = F.cross_entropy(logits.transpose(1, 2), y.expand(len(logits), -1),
                           reduction="none").mean(1)
    if metric == "accuracy":
        return acc, loss, acc
    onehot = F.one_hot(y, len(classes)).float()
    true = onehot.sum(0).expand(len(pred), -1)
    predicted = F.one_hot(pred, len(classes)).float().sum(1)
    counts = [c.cpu().numpy() for c in (true, predicted, right @ onehot)]
    score = scores_from_counts(*counts, None, classes)[metric]
    return torch.as_tensor(np.nan_to_num(score, nan=0.0), dtype=acc.dtype,
                           device=acc.device), loss, acc


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray,
                y_valid: np.ndarray, x_test: np.ndarray, n_classes: int, arch: Architecture,
                members: list[list[Member]], max_epochs: int, patience: int, batch_size: int,
                device: torch.device, metric: str = "accuracy",
                classes: list[str] | None = None) -> Fit:
    """Train all members on (L, N, D) features, keep each one's best checkpoint on validation
    (by ``metric``, a score of :func:`audioprobe.probes.metrics.scores` of ``classes``) and
    predict the test clips with it. Members are ordered layer by layer (``members[l]``).

    The test features are used only for the final prediction of each selected checkpoint.
    Batch order follows the first member's seed and dropout each member's own, so a stack of
    one seed trains each member exactly as it would train alone.
    """
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    xt, xv = as_tensor(x_train), as_tensor(x_valid)
    yt = torch.as_tensor(y_train, dtype=torch.long, device=device)
    yv = torch.as_tensor(y_valid, dtype=torch.long, device=device)
    build = lambda: StackedProbe(members, arch, xt.shape[0], xt.shape[-1],  # noqa: E731
                                 n_classes).to(device)
    model = build()
    optimizer = Adam(model)
    best = Checkpoints(model, device)
    history = History(len(model.member))
    gen = torch.Generator().manual_seed(members[0][0].seed)
    for epoch in range(1, max_epochs + 1):
        order = torch.randperm(yt.shape[0], generator=gen).to(device)
        train_loss, train_acc = _train_epoch(model, optimizer, xt, yt, order, batch_size)
        score, loss, acc = _validate(model, xv, yv, metric, classes or [])
        history.add(model, train_loss, train_acc, loss, acc)
        best.update(model, score, loss, acc, epoch)
        # Members out of patience stop and leave the model; each keeps its best checkpoint.
        going = best.going(model, epoch, patience)
        if not going.any():
            break
        if not going.all():
            optimizer.keep(model, going.nonzero().squeeze(1))
    model = build()
    model.load(best.state)
    model.eval()
    with torch.no_grad():
        proba = torch.softmax(model(as_tensor(x_test)), -1).cpu().numpy()
    return Fit(best.score.cpu().numpy(), best.accuracy.cpu().numpy(), best.loss.cpu().numpy(),
               best.epoch.cpu().numpy(),
               {k: v.cpu() for k, v in best.state.items()}, proba, history.arrays())
