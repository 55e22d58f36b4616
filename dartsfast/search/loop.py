"""The DARTS search loop: bilevel steps over a supernet, history, checkpoints, resume, DDP.

Per step (Liu et al. 2019, Alg. 1): one architecture step on a validation batch (first
or second order, :mod:`dartsfast.search.bilevel`), then one SGD step of the weights on a
training batch with the alphas held fixed. Both halves of the training split live on
the device (:class:`dartsfast.data.DeviceBatches`), batches are drawn and augmented there,
and losses/accuracies accumulate in device tensors read once per epoch, so the step
itself never waits for the host (the one exception is stock fp16 ``GradScaler.step``,
which reads its inf flag; bf16 needs no scaler). The progress bar's loss is read every
``_POSTFIX_EVERY`` steps, not every step.

After every epoch: ``history.json`` (per epoch: losses, accuracies, softmaxed alphas,
genotype, epoch time, images/s), ``genotype.json`` and ``checkpoint.pt``, each written
atomically; ``resume=True`` continues from the checkpoint and, on the CPU, ends with the
same bits as a run that was never interrupted.
"""
from __future__ import annotations

import collections
import contextlib
import math
import time
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsfast import backend, runtime, viz
from dartsfast.data import ImageDataset
from dartsfast.rundir import run_directory
from dartsfast.runtime import autocast, evaluate_batch_sums, optimizer_options, resolve_device, synchronize
from dartsfast.search import distributed
from dartsfast.search.alpha_stats import epoch_alpha_record
from dartsfast.search.bilevel import architecture_step
from dartsfast.search.checkpoint import CheckpointError, checkpoint_path
from dartsfast.search.config import SearchConfig
from dartsfast.search.data_setup import build_search_data
from dartsfast.search.graph_step import GraphedStep, graph_unavailable_reason
from dartsfast.search.latency_setup import latency_term_for
from dartsfast.search.memory import check_search_fits
from dartsfast.search.outputs import SearchResult, resume_state, write_epoch_files
from dartsfast.search.regularizers import beta_decay_loss, beta_decay_weight, sum_penalties
from dartsfast.search.supernet import ArchParams, SearchModel, Supernet

_POSTFIX_EVERY = 25  # steps between progress-bar loss reads (each read is a host sync)

EpochCallback = Callable[[int, dict], None]


class SearchRun:
    """Everything one search holds: data iterators, model, optimisers, scalers, history."""

    def __init__(self, config: SearchConfig, device: torch.device, ctx: distributed.DistContext,
                 dataset: Optional[ImageDataset]) -> None:
        self.config, self.device, self.ctx = config, device, ctx
        self.channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
        self.edge_batching = device.type == "cuda" if config.edge_batching is None else config.edge_batching
        torch.manual_seed(config.seed)  # model init (the same on every rank; DDP also broadcasts)
        # Resident or streamed (an image folder too large for the device), the same batches.
        self.data = build_search_data(config, device, ctx, dataset)
        run_data = self.data.data
        self.num_classes, self.in_channels, self.image_size = (run_data.num_classes, run_data.in_channels,
                                                               run_data.image_size)
        self.train_batches, self.val_batches = self.data.train_batches, self.data.val_batches
        self.val_iter = self.val_batches.forever()  # DARTS's persistent validation iterator

        net = Supernet(config.channels, self.num_classes, config.layers, config.ops, self.in_channels,
                       partial_channels=config.partial_channels, edge_batching=self.edge_batching,
                       memory=config.memory)
        arch = ArchParams(len(config.ops), edge_normalization=config.use_edge_normalization,
                          generator=torch.Generator().manual_seed(config.seed))
        self.model = SearchModel(net, arch).to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if config.compile:
            # In place: the state_dict keys stay those of the eager network, so checkpoints
            # move between compiled and eager runs. The fused ops are opaque to the compiler
            # (torch.library ops with fake kernels) and still pick their backend per call.
            self.model.net.compile(backend=config.compile)
        self.train_net: nn.Module = self.model.net
        if ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.train_net = nn.parallel.DistributedDataParallel(self.model.net, device_ids=ids)

        reason = graph_unavailable_reason(device, config.amp, ctx.enabled, bool(config.compile))
        if reason and config.cuda_graph and ctx.is_main:
            print(f"search: the step runs without a CUDA graph: {reason}")
        use_graph = not reason and config.cuda_graph is not False
        self.w_opt = torch.optim.SGD(self.model.weights(), lr=self._w_lr(config.w_lr, use_graph),
                                     momentum=config.w_momentum, weight_decay=config.w_weight_decay,
                                     **optimizer_options(device, config.amp))
        self.w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, config.epochs,
                                                                  eta_min=config.w_lr_min)
        self.a_opt = torch.optim.Adam(self.model.alphas(), lr=config.alpha_lr, betas=config.alpha_betas,
                                      weight_decay=config.alpha_weight_decay, **self._a_options(use_graph))
        self.graph = GraphedStep(self._compute) if use_graph else None
        # β-DARTS's λ_t: a device tensor set each epoch, so a captured step reads the new value.
        self.beta_weight = torch.zeros((), device=device)
        # The latency table's term (issue 18; None without one): additive forms join the
        # penalty, fbnet multiplies the validation loss. λ = 0 only reports, changing no bit.
        self.latency = latency_term_for(config, device, self.channels_last, self.image_size, ctx,
                                        self.in_channels, self.num_classes)
        active = self.latency is not None and self.latency.active
        self.penalty = sum_penalties(self._beta_decay if config.beta_decay > 0 else None,
                                     self.latency.penalty if active and config.latency_form != "fbnet" else None)
        self.val_loss = self.latency.wrap_loss(self._alpha_loss) if active and config.latency_form == "fbnet" else None
        fp16 = config.amp == "fp16"
        self.w_scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.a_scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.history: list = []
        self.epoch = 0

    def _w_lr(self, lr: float, use_graph: bool):
        # Captured, a float learning rate would be baked into the graph; a device tensor is
        # read by the fused kernel at each replay and written in place by the scheduler.
        return torch.tensor(float(lr), device=self.device) if use_graph else float(lr)

    def _a_options(self, use_graph: bool) -> dict:
        options = optimizer_options(self.device, self.config.amp)
        return {**options, "capturable": True} if use_graph else options

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict:
        def cpu(sd):
            out = collections.OrderedDict((k, v.detach().cpu()) for k, v in sd.items())
            # The module versions: without them BatchNorm would assume a pre-2018 state dict
            # and ask for the batch counters the search's BNs do not have.
            out._metadata = getattr(sd, "_metadata", None)
            return out

        state = {
            "config": self.config.to_dict(), "edge_batching": self.edge_batching,
            "epoch": self.epoch, "history": self.history,
            "model": cpu(self.model.state_dict()),
            "w_opt": self.w_opt.state_dict(), "w_sched": self.w_sched.state_dict(),
            "a_opt": self.a_opt.state_dict(),
            "w_scaler": self.w_scaler.state_dict(), "a_scaler": self.a_scaler.state_dict(),
            "train_batches": self.train_batches.state_dict(), "val_batches": self.val_batches.state_dict(),
            "rng_cpu": torch.get_rng_state(),
        }
        if self.latency is not None:
            state["latency_multiplier"] = self.latency.multiplier.detach().cpu()
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("edge_batching")
        if saved != self.edge_batching:  # edge_batching=None resolves per device: CPU and CUDA differ
            layout = {True: "batched", False: "per-edge"}
            raise CheckpointError(
                f"the checkpoint holds a {layout.get(saved, 'unknown')} supernet, this run builds a "
                f"{layout[self.edge_batching]} one; resume it with edge_batching={saved} "
                f"(--{'' if saved else 'no-'}edge-batching)")
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.w_sched.load_state_dict(state["w_sched"])
        self.a_opt.load_state_dict(state["a_opt"])
        # load_state_dict takes the saved groups' options too: a checkpoint written before
        # the optimisers were fused would otherwise resume on the per-tensor loop.
        use_graph = self.graph is not None
        for group in self.w_opt.param_groups:
            group.update(optimizer_options(self.device, self.config.amp), lr=self._w_lr(group["lr"], use_graph))
        for group in self.a_opt.param_groups:
            group.update(self._a_options(use_graph))
        # The scheduler's last rate must be what the optimiser holds (a float or the tensor).
        self.w_sched._last_lr = [group["lr"] for group in self.w_opt.param_groups]
        self.w_scaler.load_state_dict(state["w_scaler"])
        self.a_scaler.load_state_dict(state["a_scaler"])
        self.train_batches.load_state_dict(state["train_batches"])
        self.val_batches.load_state_dict(state["val_batches"])
        torch.set_rng_state(state["rng_cpu"])
        if self.device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        if self.latency is not None and "latency_multiplier" in state:  # older checkpoints: μ = 0
            self.latency.multiplier.copy_(state["latency_multiplier"])
        self.history, self.epoch = list(state["history"]), int(state["epoch"])

    # ------------------------------------------------------------------ one step
    def _alpha_loss(self, model: SearchModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.config.amp):
            logits = model(x)
        return F.cross_entropy(logits.float(), y)

    def _beta_decay(self, model: SearchModel) -> torch.Tensor:
        return self.beta_weight * beta_decay_loss([model.arch.alphas_normal, model.arch.alphas_reduce])

    def start_epoch(self, epoch: int) -> None:
        if self.config.beta_decay > 0:
            self.beta_weight.fill_(beta_decay_weight(self.config.beta_decay, epoch, self.config.epochs))

    def _reduce_alpha_grads(self, grads: list) -> None:
        distributed.all_reduce_mean_(grads, self.ctx)

    def step(self, loss_sum: torch.Tensor, correct: torch.Tensor, skipped: torch.Tensor) -> torch.Tensor:
        """One search step on the next batches; adds to the epoch's device sums, returns the loss."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x_t, y_t = self.train_batches.next_batch()
        x_v, y_v = next(self.val_iter)
        x_t, x_v = x_t.contiguous(memory_format=fmt), x_v.contiguous(memory_format=fmt)
        if self.epoch < self.config.warmup_epochs:  # weights only (the val batch is drawn all the same)
            loss, n_correct = self._compute(x_t, y_t, x_v, y_v, skipped, arch_step=False)
        elif self.graph is not None:
            loss, n_correct = self.graph(x_t, y_t, x_v, y_v)
        else:
            loss, n_correct = self._compute(x_t, y_t, x_v, y_v, skipped)
        loss_sum += loss * y_t.shape[0]
        correct += n_correct
        return loss

    def _compute(self, x_t: torch.Tensor, y_t: torch.Tensor, x_v: torch.Tensor, y_v: torch.Tensor,
                 skipped: torch.Tensor | None = None, arch_step: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The architecture step (unless ``arch_step`` is False: warm-up) and the weight step:
        ``(training loss, correct count)``. Host-sync free, so it can be captured (``skipped``
        counts fp16 steps, never captured)."""
        c = self.config
        if arch_step:
            architecture_step(self.model, self.a_opt, self._alpha_loss, x_v, y_v, order=c.order,
                              x_train=x_t, y_train=y_t, lr=self.w_opt.param_groups[0]["lr"],
                              momentum=c.w_momentum, weight_decay=c.w_weight_decay, weight_optimizer=self.w_opt,
                              scaler=self.a_scaler,  # used only when enabled (fp16)
                              reduce_grads=self._reduce_alpha_grads if self.ctx.enabled else None,
                              penalty=self.penalty, val_loss_fn=self.val_loss)
        with torch.no_grad():
            arch_weights = self.model.arch()  # the alphas are constants in the weight step
        with autocast(self.device, c.amp):
            logits = self.train_net(x_t, *arch_weights)
        loss = F.cross_entropy(logits.float(), y_t)
        self.w_opt.zero_grad(set_to_none=True)
        self.w_scaler.scale(loss).backward()
        if c.grad_clip:
            self.w_scaler.unscale_(self.w_opt)
            # foreach: one norm op for all ~3,300 gradients, not one each
            nn.utils.clip_grad_norm_(self.model.weights(), c.grad_clip, foreach=True)
        if self.w_scaler.is_enabled():
            # update() lowers the scale exactly when the step was skipped for inf/NaN grads;
            # compare the device tensors (GradScaler has no public non-syncing getter).
            before = self.w_scaler._scale.clone()
            self.w_scaler.step(self.w_opt)
            self.w_scaler.update()
            skipped += (self.w_scaler._scale < before).to(skipped.dtype)
        else:
            self.w_opt.step()
        return loss.detach(), (logits.detach().argmax(1) == y_t).sum()


def search(config: Optional[SearchConfig] = None, *, dataset: Optional[ImageDataset] = None,
           on_epoch_end: Optional[EpochCallback] = None) -> SearchResult:
    """Run a DARTS search as ``config`` says; return the genotype and the per-epoch history.

    History records hold ``epoch``, ``lr``, ``train_loss``/``train_acc`` (the weight-step
    batches, training mode), ``val_loss``/``val_acc`` (the whole validation half, eval
    mode), ``alphas_normal``/``alphas_reduce`` (softmaxed, [edges][ops] in ``ops`` order;
    plus ``edges_*`` with edge normalisation), ``entropy_normal``/``entropy_reduce``,
    ``derived_weight``, ``parameter_free_ops``, ``genotype_changes``
    (:mod:`dartsfast.search.alpha_stats`), ``genotype``, ``epoch_time_s``,
    ``train_time_s``, ``images_per_s`` (weight-step images over all ranks per second of
    stepping), ``skipped_steps`` (fp16 weight steps skipped for inf/NaN gradients),
    ``peak_memory_bytes`` (the epoch's peak: CUDA max_memory_allocated, or the CPU
    process's peak resident set), ``data_wait_s`` (host seconds the steps waited for
    batches: decoding on the streamed path, the gather on the resident one),
    ``skipped_images`` (an image folder's unreadable or undecodable images so far); with
    ``latency_lut`` also ``expected_latency_ms``, ``genotype_latency_ms``, ``latency_lut_mode``
    (and the constraint form's ``latency_multiplier``).

    ``dataset``: a preloaded :class:`~dartsfast.data.ImageDataset` instead of loading
    ``config.dataset``. ``on_epoch_end(epoch, record)`` runs after each epoch's files
    are written (it may raise to stop the search; the checkpoint is already on disk).
    Under ``torchrun`` (WORLD_SIZE > 1) each process runs this with the same config;
    rank 0 writes the files. Raises ``FloatingPointError`` if the loss becomes
    non-finite (the last good checkpoint is kept), :class:`CheckpointError` for an
    unusable checkpoint.
    """
    config = SearchConfig() if config is None else config
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config must be a SearchConfig, got {type(config).__name__}")
    if dataset is not None and not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be a dartsfast.data.ImageDataset or None, got {type(dataset).__name__}")
    device = resolve_device(config.device, "SearchConfig.device")
    ctx = distributed.setup(device.type)
    try:
        if ctx.enabled and device.type == "cuda":
            device = torch.device("cuda", ctx.local_rank)
            torch.cuda.set_device(device)
        use = backend.use_backend(config.backend) if config.backend else contextlib.nullcontext()
        with use:
            return _search(config, device, ctx, dataset, on_epoch_end)
    finally:
        distributed.teardown(ctx)


def _search(config: SearchConfig, device: torch.device, ctx: distributed.DistContext,
            dataset: Optional[ImageDataset], on_epoch_end: Optional[EpochCallback]) -> SearchResult:
    check_search_fits(config, device, dataset)
    with run_directory(config.out, hold=ctx.is_main):
        distributed.barrier(ctx)
        return _search_in(config, device, ctx, dataset, on_epoch_end)


def _search_in(config: SearchConfig, device: torch.device, ctx: distributed.DistContext,
               dataset: Optional[ImageDataset], on_epoch_end: Optional[EpochCallback]) -> SearchResult:
    saved = resume_state(config)
    run = SearchRun(config, device, ctx, dataset)
    try:
        return _run_epochs(config, device, ctx, run, saved, on_epoch_end)
    finally:
        run.data.close()  # a streamed set's DataLoader workers


def _run_epochs(config: SearchConfig, device: torch.device, ctx: distributed.DistContext, run: SearchRun,
                saved: Optional[dict], on_epoch_end: Optional[EpochCallback]) -> SearchResult:
    start_epoch = 0
    if saved is not None:
        run.load_state_dict(saved)
        start_epoch = run.epoch
        if ctx.is_main and run.history:  # the files of the checkpoint's epoch, in case a kill skipped them
            write_epoch_files(config.out, run.history, run.model.genotype())
        if ctx.is_main and config.progress:
            print(f"resuming {checkpoint_path(config.out)} after epoch {start_epoch}/{config.epochs}")

    from tqdm.auto import tqdm  # lazy: a heavy optional dependency, not loaded by `import dartsfast`

    steps = len(run.train_batches)
    show = config.progress and ctx.is_main
    for epoch in range(start_epoch, config.epochs):
        run.model.train()
        run.start_epoch(epoch)
        lr = float(run.w_sched.get_last_lr()[0])  # a device tensor when the step is a CUDA graph
        loss_sum, correct = (torch.zeros((), device=device) for _ in range(2))
        skipped = torch.zeros((), device=device)
        synchronize(device)
        runtime.reset_peak_memory(device)
        run.data.take_wait_s()
        t0 = time.perf_counter()
        bar = tqdm(range(steps), leave=False, disable=not show, unit="step",
                   desc=f"search epoch {epoch + 1}/{config.epochs}")
        for i in bar:
            loss = run.step(loss_sum, correct, skipped)
            if show and (i + 1) % _POSTFIX_EVERY == 0:
                rate = (i + 1) * config.batch_size * ctx.world_size / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{rate:.0f}")
        bar.close()
        synchronize(device)
        train_time, data_wait = time.perf_counter() - t0, run.data.take_wait_s()
        run.w_sched.step()
        val_loss, val_correct = evaluate_batch_sums(run.model, run.data.val_in_order(max(512, config.batch_size)),
                                                    device, config.amp, run.channels_last)
        seen = torch.tensor(float(steps * config.batch_size), device=device)
        n_val = torch.tensor(float(len(run.data.val)), device=device)
        totals = torch.stack([loss_sum, correct, seen, val_loss, val_correct, n_val, skipped])
        distributed.all_reduce_sum_([totals], ctx)
        tr_loss, tr_correct, seen, va_loss, va_correct, n_val, skipped = totals.tolist()  # one host read
        run.epoch = epoch + 1
        genotype = run.model.genotype()
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": tr_loss / seen, "train_acc": tr_correct / seen,
                  "val_loss": va_loss / n_val, "val_acc": va_correct / n_val,
                  **epoch_alpha_record(run.model, config.ops, genotype, run.history, run.latency),
                  "genotype": genotype.to_dict(),
                  "epoch_time_s": time.perf_counter() - t0,
                  "train_time_s": train_time, "images_per_s": seen / train_time if train_time > 0 else 0.0,
                  "skipped_steps": int(skipped), "peak_memory_bytes": runtime.peak_memory_bytes(device),
                  "data_wait_s": data_wait, "skipped_images": run.data.skipped_images()}
        if not math.isfinite(record["train_loss"]) or not math.isfinite(record["val_loss"]):
            raise FloatingPointError(
                f"search diverged in epoch {epoch + 1}: train loss {record['train_loss']}, val loss "
                f"{record['val_loss']} (the last good checkpoint was kept; try a lower lr or --amp off)")
        run.history.append(record)
        if show:
            tqdm.write(f"epoch {epoch + 1}/{config.epochs}: train loss {record['train_loss']:.4f} "
                       f"acc {record['train_acc']:.4f} | val loss {record['val_loss']:.4f} acc "
                       f"{record['val_acc']:.4f} | {record['images_per_s']:.0f} img/s"
                       + (f" | {record['skipped_steps']} fp16 steps skipped" if record["skipped_steps"] else ""))
        if config.out is not None and ctx.is_main:
            write_epoch_files(config.out, run.history, genotype, run.state_dict())
        distributed.barrier(ctx)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)

    genotype = run.model.genotype()
    if config.out is not None and ctx.is_main and config.plots and run.history:
        viz.plot_search(run.history, config.ops, config.out)
    return SearchResult(genotype=genotype, history=run.history, model=run.model, config=config,
                        out=config.out, start_epoch=start_epoch, latency=run.latency,
                        input_shape=(run.in_channels, run.image_size, run.image_size), num_classes=run.num_classes)
