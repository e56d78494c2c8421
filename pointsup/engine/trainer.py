"""The training loop: iterations, AMP, gradient clipping, checkpoints, metrics, evaluation.

``train(config, output_dir, resume=...)`` is what ``pointsup train`` runs in every process.
Checkpoints hold the model, optimiser, scheduler, AMP scaler, RNG states, the resolved config,
the seed and the iteration; the data order and augmentations are a function of (seed, position in
the sample stream), so ``resume=True`` continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import logging
import math
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pointsup.data.loader import build_train_loader
from pointsup.engine import checkpoint as checkpoints
from pointsup.engine.builders import (
    build_train_dataset,
    build_val_dataset,
    check_same_categories,
    model_for_checkpoint,
    model_from_config,
    num_classes_for,
    test_transforms,
    train_transforms,
)
from pointsup.engine.config import Config, ConfigError, SolverConfig, dump_config
from pointsup.engine.distributed import DistributedContext, all_gather_object, init_distributed, reduce_dict
from pointsup.engine.inference import evaluate
from pointsup.engine.metrics import MetricsWriter, SmoothedValues
from pointsup.engine.run_folder import CONFIG_FILE, EVAL_FOLDER, FINAL_METRICS_FILE
from pointsup.engine.solver import WarmupMultiStepLR, build_optimizer, clip_gradients
from pointsup.errors import PointsupError
from pointsup.modeling.detector import total_loss
from pointsup.utils.atomic import write_json_atomic
from pointsup.utils.heap import keep_freed_memory_in_heap
from pointsup.utils.progress import progress_enabled

log = logging.getLogger(__name__)


class TrainingDiverged(PointsupError, RuntimeError):
    """A loss or gradient became NaN/Inf; the message names the iteration and the last good checkpoint."""


@dataclass
class TrainingResult:
    """What a finished run leaves behind (on the main process)."""

    output_dir: Path
    final_checkpoint: Path
    iterations: int
    metrics: dict


def evaluation_dir(output_dir: Path, iteration: int) -> Path:
    """Where a run's evaluation after ``iteration`` writes its results and metrics."""
    return output_dir / EVAL_FOLDER / f"iter_{iteration:07d}"


def resolve_seed(config_seed: int) -> int:
    """The configured seed, or (for -1) one drawn on rank 0 and shared with every process."""
    seed = config_seed if config_seed >= 0 else random.SystemRandom().randrange(2**31)
    return int(all_gather_object(seed)[0])


def seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def mixed_precision_dtype(solver: SolverConfig, device: torch.device) -> torch.dtype | None:
    """The autocast type of training on ``device``: float16 on CUDA with ``solver.amp`` (the
    caller scales the loss), bfloat16 on the CPU with ``solver.amp_cpu``; None: float32 throughout."""
    if device.type == "cuda" and solver.amp:
        return torch.float16
    if device.type == "cpu" and solver.amp_cpu:
        return torch.bfloat16
    return None


#: torch.cpu's (private) queries for native bfloat16 on x86, under the names of several releases
BFLOAT16_QUERIES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported", "_is_cpu_support_amx_tile")


def cpu_has_native_bfloat16() -> bool | None:
    """Whether this x86 CPU computes in bfloat16 natively (AVX-512 BF16 or AMX), where
    ``solver.amp_cpu`` pays (speed-ups: docs/results_speed.md). None where this torch cannot
    tell, or on other CPUs."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    queries = [query for name in BFLOAT16_QUERIES if (query := getattr(torch.cpu, name, None)) is not None]
    return any(bool(query()) for query in queries) if queries else None


def _batch_size_per_process(config: Config, context: DistributedContext) -> int:
    total = config.solver.ims_per_batch
    if total % context.world_size:
        raise ConfigError(f"solver.ims_per_batch={total} is not divisible by the {context.world_size} processes")
    return total // context.world_size


def _wrap_distributed(model: nn.Module, config: Config, context: DistributedContext) -> nn.Module:
    if context.world_size == 1:
        return model
    if config.model.backbone.norm == "syncbn":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def _check_finite(
    loss: torch.Tensor, outputs: dict[str, torch.Tensor], iteration: int, checkpoint_dir: Path, context: DistributedContext
) -> None:
    """Stop every process together when any of them saw a non-finite loss."""
    bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=loss.device)
    if context.world_size > 1:
        torch.distributed.all_reduce(bad)
    if bad.item() == 0:
        return
    last = checkpoints.latest(checkpoint_dir)
    values = ", ".join(f"{k}={v.item():.4g}" for k, v in outputs.items() if k.startswith("loss"))
    raise TrainingDiverged(
        f"non-finite loss at iteration {iteration + 1} ({values}); training stopped. "
        + (f"The last good checkpoint is {last}." if last else "No checkpoint was written yet.")
        + " Lower solver.base_lr, lengthen solver.warmup_iters or set solver.clip_gradients=true."
    )


class Trainer:
    """One process's share of a training run (see :func:`train`)."""

    def __init__(self, config: Config, output_dir: Path, context: DistributedContext, resume: bool):
        self.config = config
        self.output_dir = output_dir
        self.context = context
        self.device = context.device
        self.train_set = build_train_dataset(config)
        self.val_set = build_val_dataset(config)
        check_same_categories(self.train_set, self.val_set)
        self.num_classes = num_classes_for(config, self.train_set)
        self.checkpoint_dir = output_dir
        self.checkpointer = checkpoints.Checkpointer(output_dir, keep=config.solver.keep_checkpoints)

        resume_from = checkpoints.latest(output_dir) if resume else None
        if resume and resume_from is None:
            log.warning("--resume: no checkpoint in %s, starting from scratch", output_dir)
        if resume_from is None:  # seed before the weights are initialised, so a run is reproducible
            self.seed = resolve_seed(config.seed)
            seed_everything(self.seed, context.rank)
        if resume_from is None:
            model = model_from_config(config, self.num_classes, self.train_set.label_to_category_id)
        else:  # every weight comes from the checkpoint: no pretrained file is read
            model = model_for_checkpoint(config, self.num_classes)
        self.model = model.to(self.device)
        if self.device.type == "cpu":
            keep_freed_memory_in_heap()  # when POINTSUP_GLIBC_HEAP_DEFAULTS=0: fewer page faults per iteration
            # Channels-last backbone weights make its convolutions (and the FPN's) run channels-last,
            # faster to train on a CPU (the R50-FPN's figures: docs/results_speed.md). Evaluation during
            # training runs channels-last too, so its AP may differ from `pointsup eval`'s in float
            # rounding; models loaded to predict or export keep the default layout. CUDA: untouched.
            self.model.backbone.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(
            self.model, config.solver.base_lr, config.solver.momentum, config.solver.weight_decay, config.solver.weight_decay_norm
        )
        self.scheduler = WarmupMultiStepLR.from_config(self.optimizer, config.solver)
        self.amp_dtype = mixed_precision_dtype(config.solver, self.device)
        if self.amp_dtype == torch.bfloat16 and cpu_has_native_bfloat16() is False:
            log.warning(
                "solver.amp_cpu: this CPU has no native bfloat16 arithmetic (AVX-512 BF16 or AMX); it will be emulated, slower than float32"
            )
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.start_iter = 0
        if resume_from is not None:
            # a checkpoint holds rank 0's RNG states: exact for one process; with several, each
            # rank is reseeded from (seed, iteration, rank) instead
            single = context.world_size == 1
            extra = checkpoints.load(resume_from, self.model, self.optimizer, self.scheduler, self.scaler, restore_rng=single)
            self.start_iter = int(extra["iteration"])
            self.seed = int(extra["seed"])
            if not single:
                seed_everything(self.seed + 1_000_003 * self.start_iter, context.rank)
            log.info("resumed from %s at iteration %d", resume_from, self.start_iter)
        self.ddp_model = _wrap_distributed(self.model, config, context)
        self.metrics = MetricsWriter(output_dir, enabled=context.is_main_process)
        if resume_from is not None:
            self.metrics.truncate_after(self.start_iter)

    def checkpoint_extra(self, iteration: int, metrics: dict | None = None) -> dict[str, Any]:
        """What a checkpoint needs besides the weights, to resume or to predict later."""
        return {
            "iteration": iteration,
            "seed": self.seed,
            "config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "category_names": self.train_set.category_names,
            "label_to_category_id": self.train_set.label_to_category_id,
            "metrics": metrics or {},
        }

    def save(self, iteration: int, name: int | str | None = None, metrics: dict | None = None) -> Path | None:
        if not self.context.is_main_process:
            return None
        return self.checkpointer.save(
            iteration if name is None else name,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            self.checkpoint_extra(iteration, metrics),
        )

    def evaluate(self, iteration: int) -> dict:
        if self.val_set is None:
            return {}
        results = evaluate(
            self.ddp_model,
            self.val_set,
            test_transforms(self.config),
            self.context,
            evaluation_dir(self.output_dir, iteration),
            self.config.test.max_eval_images,
            num_workers=min(self.config.data.num_workers, 2),
        )
        if self.context.is_main_process and results:
            flat = {
                f"{task}/{name}": value
                for task, values in results.items()
                for name, value in values.items()
                if name != "per_category" and isinstance(value, float) and not math.isnan(value)
            }
            self.metrics.write(iteration, flat)
        return results

    def step(self, batch: list) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimisation step; returns the total loss and the outputs (losses and metrics)."""
        with torch.autocast(
            device_type=self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            outputs = self.ddp_model(batch)
            loss = total_loss(outputs)
        return loss, outputs

    def backward_and_step(self, loss: torch.Tensor) -> None:
        """Backward pass (scaled under AMP), optional gradient clipping, optimiser and LR step."""
        solver = self.config.solver
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if solver.clip_gradients:
            clip_gradients([p for p in self.model.parameters() if p.grad is not None], solver.clip_max_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()

    def run(self) -> TrainingResult:
        config, solver = self.config, self.config.solver
        if self.context.is_main_process:
            dump_config(self.config, self.output_dir / CONFIG_FILE)
        loader = build_train_loader(
            self.train_set,
            train_transforms(config),
            _batch_size_per_process(config, self.context),
            config.data.num_workers,
            self.seed,
            self.context.rank,
            self.context.world_size,
            start_iter=self.start_iter,
        )
        smoothed = SmoothedValues(window=config.log_period)
        bar = tqdm(
            total=solver.max_iter,
            initial=self.start_iter,
            desc="train",
            unit="it",
            dynamic_ncols=True,
            disable=not (self.context.is_main_process and progress_enabled()),
        )
        self.ddp_model.train()
        results: dict = {}
        started = time.perf_counter()
        for iteration in range(self.start_iter, solver.max_iter):
            batch = next(loader)
            loss, outputs = self.step(batch)
            _check_finite(loss, outputs, iteration, self.checkpoint_dir, self.context)
            self.backward_and_step(loss)
            done = iteration + 1

            logged = reduce_dict({k: v.detach().float() for k, v in outputs.items()})
            logged["total_loss"] = cast(torch.Tensor, sum(v for k, v in logged.items() if k.startswith("loss")))
            smoothed.update({k: float(v) for k, v in logged.items()})
            mask_key = next((k for k in ("loss_mask", "loss_mask_point") if k in logged), None)
            bar.update(1)
            bar.set_postfix(
                loss=f"{smoothed.median('total_loss'):.3f}",
                mask=f"{smoothed.median(mask_key):.3f}" if mask_key else None,
                acc=f"{smoothed.median('point_accuracy'):.2f}" if "point_accuracy" in logged else None,
                lr=f"{self.optimizer.param_groups[0]['lr']:.2g}",
                refresh=False,
            )
            if done % config.log_period == 0 or done == solver.max_iter:
                scalars = {k: smoothed.median(k) for k in logged}
                scalars.update(
                    lr=self.optimizer.param_groups[0]["lr"],
                    seconds_per_iter=(time.perf_counter() - started) / (done - self.start_iter),
                )
                self.metrics.write(done, scalars)
            if done % solver.checkpoint_period == 0 and done < solver.max_iter:
                self.save(done)
            if config.test.eval_period and done % config.test.eval_period == 0 and done < solver.max_iter:
                results = self.evaluate(done)
        bar.close()
        final = self.save(solver.max_iter, name="model_final")  # before evaluation, so a failing evaluation loses nothing
        results = self.evaluate(solver.max_iter)
        if self.context.is_main_process:
            write_json_atomic(self.output_dir / FINAL_METRICS_FILE, results, indent=2)
        self.metrics.close()
        return TrainingResult(self.output_dir, final or self.output_dir / "model_final.pth", solver.max_iter, results)


def train(config: Config, output_dir: str | Path | None = None, resume: bool = False) -> TrainingResult:
    """Train in this process (one of ``WORLD_SIZE`` when launched by torchrun)."""
    context = init_distributed(config.device)
    output = Path(output_dir or config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    return Trainer(config, output, context, resume).run()


def train_main(config: Config, output_dir: str | Path, resume: bool) -> None:
    """``pointsup train`` in one process: train, then print the final AP table (main process)."""
    from pointsup.evaluation.coco_evaluator import format_ap_table

    result = train(config, output_dir, resume)
    if (
        result.metrics
        and torch.distributed.is_available()
        and (not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0)
    ):
        print(format_ap_table(result.metrics, title=f"{result.output_dir} after {result.iterations} iterations"))
        print(f"final weights: {result.final_checkpoint}")
