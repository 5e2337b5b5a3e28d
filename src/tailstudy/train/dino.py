"""DINO with prototype subsampling, as the study ran it (METHODS §4.7, §8 items 13–16).

The pieces a DINO training objective calls, each a small function or module:

* :class:`DinoSpec` — every hyper-parameter, read from the recipe's ``dino`` mapping.
* :func:`build_student` / :func:`build_teacher` — CLIP's ModifiedResNet vision tower whose
  attention pool accepts crops smaller than the model's image size (positional embedding
  resampled bicubically with timm's ``resample_abs_pos_embed``), then lightly's DINO projection
  MLP and, instead of DINO's weight-normalised last layer, **free L2-normalised prototypes**
  ``P ∈ R^{K×d}``. The teacher is built fresh and loads the student's state dict (a model
  holding lightly's weight-normalised head cannot be deep-copied); it never gets gradients.
* :func:`prototype_subset` — the per-iteration subset S of prototype indices
  (``randperm(K)[:sample_num]``; all K for vanilla DINO), drawn from a generator seeded by
  (run seed, step) alone, so it is the same for teacher and student, on every rank, and after
  a resume, without any communication. Logits are computed over S only.
* :class:`DinoLoss` — teacher targets by Sinkhorn–Knopp (lightly's distributed ``sinkhorn``, 3
  iterations at the teacher temperature; the default, as in the authors' fork) or DINO's
  centering (``teacher_norm: centering``; the center is kept for all K prototypes and the
  columns of S are used and updated), then the cross-entropy over the 2 × (n_crops − 1)
  teacher/student view pairs.
* :func:`dino_loss` — one batch of crops → the loss, given student and teacher.
* Schedules per step (lightly's ``cosine_schedule`` / ``cosine_warmup_schedule``): learning
  rate (linear warm-up, cosine to ``min_lr``), weight decay, teacher momentum (cosine 0.996 →
  1), teacher temperature (linear warm-up over epochs, then constant); :func:`update_teacher`
  (lightly's ``update_momentum``), :func:`make_optimizer` (SGD; no decay on biases and 1-D
  parameters), :func:`clip_gradients` (DINO clips each parameter's gradient norm on its own)
  and :func:`cancel_prototype_gradients` (``freeze_last_layer``).
* :class:`MultiCrop` — 2 global + n local crops with lightly's ``DINOTransform`` (DINO's
  colour-jitter / blur / solarise pipeline, ImageNet mean/std) on a batch of uint8 images,
  its random draws seeded from the run's generator so that a resumed run replays them.

The backbone kept for transfer is the teacher's vision tower (:func:`teacher_backbone_state`),
saved under open_clip's ``visual.*`` keys so the evaluation code loads it like any other run.

One training step, as an objective runs it (``student`` may be wrapped in DDP; the teacher stays
in train mode, as in DINO, and ``loss_fn`` lives on the device)::

    hp = apply_schedules(opt, spec, step, total, steps_per_epoch, global_batch)
    crops = [c.to(dev) for c in multicrop(images, generator)]  # 2 global, then local
    subset = prototype_subset(spec, seed, step, dev)
    loss = dino_loss(student, teacher, crops, loss_fn, epoch, subset)
    opt.zero_grad(); loss.backward()          # with a GradScaler: unscale_ before clipping
    clip_gradients(model, spec.clip_grad)
    cancel_prototype_gradients(model, epoch, spec.freeze_last_layer)
    opt.step()
    update_teacher(model, teacher, hp["momentum"])   # model: the unwrapped student

A checkpoint holds the student, the teacher, the optimiser, ``loss_fn`` (its center) and the
generator's state.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tailstudy.io import UserError

TEACHER_NORMS = ("sinkhorn", "centering")
SUBSET_STREAM = 0x5EED  # keeps the subset draws apart from other streams seeded by the run seed


@dataclass(frozen=True)
class DinoSpec:
    """DINO hyper-parameters; defaults are the paper's (METHODS §4.7)."""

    n_prototypes: int = 65536
    sample_num: int | None = None  # prototypes per iteration; None: all (vanilla DINO)
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    teacher_norm: str = "sinkhorn"
    sinkhorn_iterations: int = 3
    center_momentum: float = 0.9
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    momentum_teacher: float = 0.996
    base_lr: float = 0.03  # per 256 images: the peak is base_lr * batch / 256
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 1e-4
    weight_decay_end: float = 1e-4
    clip_grad: float = 3.0  # 0: no clipping
    freeze_last_layer: int = 0  # epochs during which the prototypes get no update
    global_crop_size: int = 224
    local_crop_size: int = 96
    n_local_crops: int = 8
    global_crop_scale: tuple[float, float] = (0.14, 1.0)
    local_crop_scale: tuple[float, float] = (0.05, 0.14)

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "dino") -> DinoSpec:
        """A spec from a config mapping; unknown keys and impossible values stop with one line."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"{where}: unknown keys {unknown} (known: {', '.join(sorted(known))})")
        for k in ("global_crop_scale", "local_crop_scale"):
            if k in d:
                d[k] = tuple(float(x) for x in d[k])
        spec = cls(**d)
        spec.check(where)
        return spec

    def check(self, where: str = "dino") -> None:
        if self.teacher_norm not in TEACHER_NORMS:
            raise UserError(
                f"{where}.teacher_norm {self.teacher_norm!r}: use one of {', '.join(TEACHER_NORMS)}"
            )
        if self.n_prototypes < 1:
            raise UserError(f"{where}.n_prototypes must be positive, not {self.n_prototypes}")
        if self.sample_num is not None and not 1 <= self.sample_num <= self.n_prototypes:
            raise UserError(
                f"{where}.sample_num {self.sample_num} must lie in [1, n_prototypes = "
                f"{self.n_prototypes}] (or be null for all prototypes)"
            )
        if self.local_crop_size > self.global_crop_size:
            raise UserError(
                f"{where}: local crops ({self.local_crop_size} px) larger than global crops "
                f"({self.global_crop_size} px)"
            )
        for k in ("global_crop_scale", "local_crop_scale"):
            lo, hi = getattr(self, k)
            if not 0 < lo <= hi <= 1:
                raise UserError(f"{where}.{k} {[lo, hi]} must satisfy 0 < min <= max <= 1")

    @property
    def n_crops(self) -> int:
        return 2 + self.n_local_crops

    @property
    def subset_size(self) -> int:
        return self.n_prototypes if self.sample_num is None else self.sample_num

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("global_crop_scale", "local_crop_scale"):
            d[k] = list(d[k])
        return d


# ---- backbone: CLIP's ModifiedResNet, local crops allowed -------------------------------------


def _attention_pool_class():
    from open_clip.modified_resnet import AttentionPool2d

    class ResizableAttentionPool2d(AttentionPool2d):
        """open_clip's attention pool whose positional embedding is resampled (bicubic, as in
        the authors' DINO copy) to the feature map it gets, e.g. 3×3 for a 96-px local crop of a
        224-px model. Same parameters and state-dict keys as the original."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            from timm.layers import resample_abs_pos_embed

            n, c, h, w = x.shape
            pos = self.positional_embedding
            side = math.isqrt(pos.shape[0] - 1)
            if (h, w) != (side, side):
                pos = resample_abs_pos_embed(pos[None], [h, w], [side, side], antialias=False)[0]
            x = x.reshape(n, c, h * w).permute(2, 0, 1)  # NCHW -> (HW)NC
            x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
            x = x + pos[:, None, :].to(x.dtype)
            x, _ = F.multi_head_attention_forward(
                query=x[:1],  # only the pooled token is used: no need to attend from the rest
                key=x,
                value=x,
                embed_dim_to_check=c,
                num_heads=self.num_heads,
                q_proj_weight=self.q_proj.weight,
                k_proj_weight=self.k_proj.weight,
                v_proj_weight=self.v_proj.weight,
                in_proj_weight=None,
                in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
                bias_k=None,
                bias_v=None,
                add_zero_attn=False,
                dropout_p=0.0,
                out_proj_weight=self.c_proj.weight,
                out_proj_bias=self.c_proj.bias,
                use_separate_proj_weight=True,
                training=self.training,
                need_weights=False,
            )
            return x[0]

    return ResizableAttentionPool2d


def allow_small_crops(visual: nn.Module) -> nn.Module:
    """Make a ModifiedResNet vision tower accept crops smaller than its image size (in place).

    The smallest crop is 32 px (the tower downsamples by 32). The weights are kept.
    """
    from open_clip.modified_resnet import ModifiedResNet

    if not isinstance(visual, ModifiedResNet):
        raise UserError(
            f"DINO needs CLIP's ModifiedResNet vision tower (an RN preset), not {type(visual).__name__}"
        )
    old = visual.attnpool
    cls = _attention_pool_class()
    if isinstance(old, cls):
        return visual
    side = math.isqrt(old.positional_embedding.shape[0] - 1)
    new = cls(side, old.positional_embedding.shape[1], old.num_heads, old.c_proj.out_features)
    new.load_state_dict(old.state_dict())
    visual.attnpool = new.to(old.positional_embedding.device)
    return visual


# ---- head: lightly's DINO MLP, then free L2-normalised prototypes ------------------------------


class PrototypeHead(nn.Module):
    """Projection MLP in→hidden→hidden→bottleneck (GELU, no BN, trunc-normal init std 0.02:
    lightly's ``DINOProjectionHead`` layers), L2-normalised, then cosine similarity against
    L2-normalised free prototypes ``P`` (K × bottleneck, N(0, K^-1/2) init) instead of DINO's
    weight-normalised linear layer."""

    def __init__(self, input_dim: int, hidden_dim: int, bottleneck_dim: int, n_prototypes: int):
        super().__init__()
        from lightly.models.modules import DINOProjectionHead

        # output_dim 1: lightly's weight-normalised last layer is built tiny and dropped
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.nn.utils.weight_norm` is deprecated")
            lightly_head = DINOProjectionHead(
                input_dim, hidden_dim, bottleneck_dim, output_dim=1, batch_norm=False
            )
        self.mlp = lightly_head.layers
        self.prototypes = nn.Parameter(
            torch.randn(n_prototypes, bottleneck_dim) * n_prototypes**-0.5
        )

    def forward(self, x: torch.Tensor, subset: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine logits (N, |S|) against the prototypes of ``subset`` (all when None); the
        other prototypes are not read."""
        z = F.normalize(self.mlp(x), dim=-1)
        p = self.prototypes if subset is None else self.prototypes.index_select(0, subset)
        return z @ F.normalize(p, dim=-1).T


class DinoModel(nn.Module):
    """Vision tower + prototype head, run DINO's multi-crop way: consecutive crops of one
    resolution go through the backbone as one batch (BatchNorm sees each resolution's batch),
    then the head once over all of them."""

    def __init__(self, visual: nn.Module, head: PrototypeHead):
        super().__init__()
        self.visual = allow_small_crops(visual)
        self.head = head

    def forward(
        self, crops: torch.Tensor | Sequence[torch.Tensor], subset: torch.Tensor | None = None
    ) -> torch.Tensor:
        if isinstance(crops, torch.Tensor):
            crops = [crops]
        feats, i = [], 0
        while i < len(crops):
            j = i
            while j < len(crops) and crops[j].shape[-2:] == crops[i].shape[-2:]:
                j += 1
            feats.append(self.visual(torch.cat(list(crops[i:j]))))
            i = j
        return self.head(torch.cat(feats), subset)


def build_student(arch: str, spec: DinoSpec) -> DinoModel:
    """A randomly initialised DINO model on the vision tower of the open_clip preset ``arch``."""
    from tailstudy.models import factory

    visual = factory.create_clip(arch).visual
    dim = visual.output_dim
    return DinoModel(
        visual, PrototypeHead(dim, spec.hidden_dim, spec.bottleneck_dim, spec.n_prototypes)
    )


def build_teacher(student: DinoModel, arch: str, spec: DinoSpec) -> DinoModel:
    """The teacher: built fresh with the student's architecture and loaded with its weights
    (not deep-copied), gradients off. It changes only through :func:`update_teacher`."""
    teacher = build_student(arch, spec)
    teacher.load_state_dict(student.state_dict())
    teacher.to(next(student.parameters()).device)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def update_teacher(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """``teacher ← m·teacher + (1−m)·student`` over the parameters (lightly's
    ``update_momentum``); the teacher's BatchNorm buffers are its own running statistics."""
    from lightly.models.utils import update_momentum

    update_momentum(student, teacher, m=momentum)


def teacher_backbone_state(teacher: DinoModel) -> dict[str, torch.Tensor]:
    """The teacher's vision tower as open_clip ``visual.*`` keys (the checkpoint for transfer)."""
    return {f"visual.{k}": v.detach().cpu() for k, v in teacher.visual.state_dict().items()}


# ---- prototype subset ---------------------------------------------------------------------------


def prototype_subset(
    spec: DinoSpec, seed: int, step: int, device: torch.device | str | None = None
) -> torch.Tensor | None:
    """The prototype indices of iteration ``step`` (``randperm(K)[:sample_num]``), or None for
    vanilla DINO (all prototypes).

    Drawn on the CPU from a generator seeded by (seed, step) only: teacher and student use the
    same subset, every rank draws the same one without a broadcast (METHODS §8 item 14), and a
    resumed run draws what the uninterrupted run drew — whatever other generators each rank
    consumes for its crops.
    """
    if spec.sample_num is None:
        return None
    key = np.random.SeedSequence([int(seed), int(step), SUBSET_STREAM]).generate_state(2)
    gen = torch.Generator().manual_seed(int(key[0]) << 32 | int(key[1]))
    idx = torch.randperm(spec.n_prototypes, generator=gen)[: spec.sample_num]
    return idx.to(device) if device is not None else idx


# ---- teacher targets and the loss --------------------------------------------------------------


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sinkhorn_targets(logits: torch.Tensor, temp: float, iterations: int) -> torch.Tensor:
    """Sinkhorn–Knopp soft assignments (rows: samples, summing to 1) of teacher cosine logits
    at temperature ``temp``: lightly's ``sinkhorn``, its sums all-reduced over the ranks."""
    from lightly.loss.swav_loss import sinkhorn

    return sinkhorn(
        logits.detach().float(),
        iterations=iterations,
        epsilon=temp,
        gather_distributed=_world() > 1,
    )


def teacher_temperature(spec: DinoSpec, epoch: int) -> float:
    """Linear warm-up from ``warmup_teacher_temp`` over ``warmup_teacher_temp_epochs`` epochs
    (``np.linspace`` over the epochs, as DINO), then ``teacher_temp``."""
    n = spec.warmup_teacher_temp_epochs
    if epoch >= n:
        return spec.teacher_temp
    return float(np.linspace(spec.warmup_teacher_temp, spec.teacher_temp, n)[epoch])


class DinoLoss(nn.Module):
    """Cross-entropy of the student's views against the teacher's targets.

    ``forward(student_logits, teacher_logits, epoch, subset)``: ``student_logits`` holds all
    crops' cosine logits stacked in crop order (n_crops × B rows), ``teacher_logits`` the two
    global crops' (2 × B rows), both over the same subset. Targets: Sinkhorn–Knopp at the
    teacher temperature, or ``softmax((t − center[S]) / temp)`` with DINO's centering, whose
    center (one entry per prototype, a buffer saved with the state dict) then moves towards the
    batch mean (all-reduced) of the columns in S.
    """

    def __init__(self, spec: DinoSpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("center", torch.zeros(spec.n_prototypes))

    def targets(
        self, teacher_logits: torch.Tensor, epoch: int, subset: torch.Tensor | None
    ) -> torch.Tensor:
        temp = teacher_temperature(self.spec, epoch)
        t = teacher_logits.detach().float()
        if self.spec.teacher_norm == "sinkhorn":
            return sinkhorn_targets(t, temp, self.spec.sinkhorn_iterations)
        center = self.center if subset is None else self.center[subset]
        q = F.softmax((t - center) / temp, dim=-1)
        self.update_center(t, subset)
        return q

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor, subset: torch.Tensor | None) -> None:
        import torch.distributed as dist

        batch = teacher_logits.sum(dim=0)
        n = torch.tensor(float(len(teacher_logits)), device=batch.device)
        if _world() > 1:
            dist.all_reduce(batch)
            dist.all_reduce(n)
        batch = batch / n
        m = self.spec.center_momentum
        if subset is None:
            self.center.mul_(m).add_(batch, alpha=1 - m)
        else:
            self.center[subset] = self.center[subset] * m + batch * (1 - m)

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        epoch: int,
        subset: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n_crops = self.spec.n_crops
        if len(student_logits) % n_crops or len(teacher_logits) * n_crops != 2 * len(
            student_logits
        ):
            raise ValueError(
                f"{len(student_logits)} student rows and {len(teacher_logits)} teacher rows do "
                f"not make {n_crops} student crops and 2 teacher crops of one batch"
            )
        q = self.targets(teacher_logits, epoch, subset).chunk(2)
        s = F.log_softmax(student_logits.float() / self.spec.student_temp, dim=-1).chunk(n_crops)
        total, terms = 0.0, 0
        for iq, qi in enumerate(q):
            for v, sv in enumerate(s):
                if v == iq:  # the student's view of the same crop is skipped
                    continue
                total = total + torch.sum(-qi * sv, dim=-1).mean()
                terms += 1
        return total / terms


def dino_loss(
    student: nn.Module,
    teacher: DinoModel,
    crops: Sequence[torch.Tensor],
    loss_fn: DinoLoss,
    epoch: int,
    subset: torch.Tensor | None,
) -> torch.Tensor:
    """The DINO loss of one batch: ``crops`` are the 2 global then the local crop batches (on
    the device); the teacher sees the global crops (no gradient), the student all of them, both
    over the same prototype ``subset``. ``student`` may be the DDP-wrapped student."""
    if len(crops) != loss_fn.spec.n_crops:
        raise ValueError(f"{len(crops)} crop batches; the spec makes {loss_fn.spec.n_crops}")
    with torch.no_grad():
        teacher_logits = teacher(crops[:2], subset)
    student_logits = student(crops, subset)
    return loss_fn(student_logits, teacher_logits, epoch, subset)


# ---- optimiser, gradients and schedules --------------------------------------------------------


def make_optimizer(model: nn.Module, spec: DinoSpec) -> torch.optim.SGD:
    """SGD (momentum 0.9) over two groups: weights decayed, biases and 1-D parameters (BN)
    not (DINO's ``get_params_groups``). lr and decay are set every step by the schedules."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (rest if name.endswith(".bias") or p.ndim == 1 else decay).append(p)
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": spec.weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ],
        lr=0.0,
        momentum=0.9,
    )


def peak_lr(spec: DinoSpec, batch_size: int) -> float:
    """``base_lr × global batch / 256`` (0.12 at the paper's 1024)."""
    return spec.base_lr * batch_size / 256


def lr_at(spec: DinoSpec, step: int, total: int, steps_per_epoch: int, batch_size: int) -> float:
    """Linear warm-up to the peak over ``warmup_epochs``, then cosine to ``min_lr``."""
    from lightly.utils.scheduler import cosine_warmup_schedule

    warmup = min(spec.warmup_epochs * steps_per_epoch, total)
    return cosine_warmup_schedule(
        step,
        total,
        start_value=peak_lr(spec, batch_size),
        end_value=spec.min_lr,
        warmup_steps=warmup,
        warmup_start_value=0.0,
    )


def weight_decay_at(spec: DinoSpec, step: int, total: int) -> float:
    """Cosine from ``weight_decay`` to ``weight_decay_end`` (equal by default: fixed)."""
    from lightly.utils.scheduler import cosine_schedule

    return cosine_schedule(step, total, spec.weight_decay, spec.weight_decay_end)


def momentum_at(spec: DinoSpec, step: int, total: int) -> float:
    """Teacher momentum: cosine from ``momentum_teacher`` (0.996) to 1."""
    from lightly.utils.scheduler import cosine_schedule

    return cosine_schedule(step, total, spec.momentum_teacher, 1.0)


def apply_schedules(
    opt: torch.optim.Optimizer,
    spec: DinoSpec,
    step: int,
    total: int,
    steps_per_epoch: int,
    batch_size: int,
) -> dict[str, float]:
    """Set this step's lr (both groups) and weight decay (the decayed group); returns them with
    the teacher momentum to use after the step."""
    lr = lr_at(spec, step, total, steps_per_epoch, batch_size)
    wd = weight_decay_at(spec, step, total)
    for i, g in enumerate(opt.param_groups):
        g["lr"] = lr
        if i == 0:
            g["weight_decay"] = wd
    return {"lr": lr, "weight_decay": wd, "momentum": momentum_at(spec, step, total)}


def clip_gradients(model: nn.Module, max_norm: float) -> None:
    """DINO's clipping: each parameter's gradient norm on its own (not the global norm)."""
    if max_norm <= 0:
        return
    for p in model.parameters():
        if p.grad is not None:
            torch.nn.utils.clip_grad_norm_(p, max_norm)


def cancel_prototype_gradients(model: nn.Module, epoch: int, freeze_epochs: int) -> None:
    """No prototype update during the first ``freeze_epochs`` epochs (``freeze_last_layer``)."""
    if epoch < freeze_epochs:
        head = model.module.head if hasattr(model, "module") else model.head
        head.prototypes.grad = None


# ---- multi-crop ----------------------------------------------------------------------------------


class MultiCrop:
    """The 2 global + ``n_local_crops`` local views of a batch: lightly's ``DINOTransform``
    (random resized crop, flip, colour jitter, grayscale, blur, solarise; ImageNet mean/std)
    with the spec's sizes and scales.

    ``__call__(images, generator)`` takes uint8 NHWC images and returns one float NCHW batch per
    view, globals first. lightly's transforms draw from torch's and NumPy's global generators:
    they are seeded from ``generator`` for the call and restored after it, so the crops depend
    on the run's generator only (a resumed run replays them).
    """

    def __init__(self, spec: DinoSpec):
        from lightly.transforms import DINOTransform

        self.spec = spec
        self.transform = DINOTransform(
            global_crop_size=spec.global_crop_size,
            global_crop_scale=spec.global_crop_scale,
            local_crop_size=spec.local_crop_size,
            local_crop_scale=spec.local_crop_scale,
            n_local_views=spec.n_local_crops,
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        from PIL import Image

        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        np_state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                np.random.seed(seed % 2**32)
                views = [self.transform(Image.fromarray(img)) for img in images.cpu().numpy()]
        finally:
            np.random.set_state(np_state)
        return [torch.stack([v[i] for v in views]) for i in range(self.spec.n_crops)]
