"""The training loop: `IMLTrainer` trains with Accelerate, evaluates, keeps the best model, checkpoints, resumes
exactly, and writes the run's outputs (model folder, card, results, log) and Hub pushes."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..evaluation.baselines import fit_content_free_on_dataset
from ..evaluation.evaluator import Evaluator, MetricSettings, flatten_results
from .arguments import TrainingArguments
from .checkpoints import (
    TrainingProgress,
    check_run_shape,
    load_training_state,
    resolve_checkpoint,
    run_shape,
    save_checkpoint,
    write_history,
    write_json_atomic,
)
from .data import TrainingData, batch_seed, training_loader
from .distributed import distributed_type_name, use_channels_last_parameters
from .hub_sync import HubSync
from .model_folders import BEST_MODEL_DIR, load_best_model, save_best_model, save_model_folder
from .optimization import create_lr_scheduler, create_optimizer
from .run_card import card_run_info, run_settings

logger = logging.getLogger(__name__)


def is_better(value: float | None, best: float | None, greater_is_better: bool) -> bool:
    """Whether `value` improves on `best` (NaN never does; anything beats no best yet)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None or (isinstance(best, float) and math.isnan(best)):
        return True
    return value > best if greater_is_better else value < best


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)


class IMLTrainer:
    """Trains `model` on `train_data` as `args` say, on every process of `accelerator`.

    Builds the training loader (`training_loader`), AdamW and the schedule (`optimization`), prepares them with
    the accelerator and evaluates on `eval_sets` (`{name: datasets.Dataset}`) with an `Evaluator`. `train()`
    resumes from `args.resume_from_checkpoint`, runs the loop (a log record every `logging_steps`, evaluations
    every `eval_steps` and every `eval_every_epochs`, the best model by `metric_for_best_model` kept in
    `best_model/`, checkpoints every `checkpointing_steps`), then evaluates once more, runs the robustness sweep,
    saves the model folder, the card, `all_results.json` and `log.jsonl`, and pushes to `hub` when given. It
    returns the exit status: 1 when the final push failed, else 0. A data set too small for one batch raises
    `ValueError` here, before anything is prepared.
    """

    def __init__(
        self,
        model: nn.Module,
        processor,
        args: TrainingArguments,
        train_data: TrainingData,
        eval_sets: Mapping[str, Any],
        accelerator,
        hub: HubSync | None = None,
    ):
        self.args, self.processor, self.accelerator, self.hub = args, processor, accelerator, hub
        self.output_dir = Path(args.output_dir)
        self.num_parameters = sum(p.numel() for p in model.parameters())
        loader = training_loader(
            train_data, processor, image_size=args.image_size, batch_size=args.per_device_train_batch_size,
            seed=args.seed, augment=args.augment, samples_per_dataset=args.samples_per_dataset,
            num_workers=args.dataloader_num_workers,
        )
        self.sampler = loader.sampler
        if distributed_type_name(accelerator).startswith("MULTI_"):  # DDP: gradients in their buckets' layout
            use_channels_last_parameters(model)
        optimizer = create_optimizer(
            model, args.learning_rate, args.weight_decay, (args.adam_beta1, args.adam_beta2), args.adam_epsilon
        )
        self.model, self.optimizer, self.train_loader = accelerator.prepare(model, optimizer, loader)
        # The baseline every evaluation is judged against, from the training masks only (every process fits the same
        # one: it is deterministic and cheaper than a broadcast).
        self.content_free = fit_content_free_on_dataset(train_data.dataset) if eval_sets else None
        if self.content_free is not None:
            logger.info("Content-free baseline: %s (pixel F1 %.4f on %d training masks)", self.content_free.name,
                        self.content_free.train_f1, self.content_free.num_train_masks)
        elif eval_sets:
            logger.warning("The training data has no tampered mask: no content-free baseline to report")
        self.evaluator = Evaluator(
            eval_sets, processor, MetricSettings(args.threshold, args.include_authentic),
            perturbations=args.perturbations, batch_size=args.per_device_eval_batch_size,
            num_workers=args.dataloader_num_workers, seed=args.seed, accelerator=accelerator,
            content_free=self.content_free,
        )

        self.steps_per_epoch = math.ceil(len(self.train_loader) / args.gradient_accumulation_steps)
        self.total_steps = args.max_train_steps or args.num_train_epochs * self.steps_per_epoch
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        warmup = args.warmup_steps
        if warmup is None:
            warmup = round(args.warmup_epochs * self.steps_per_epoch)
        self.warmup_steps = max(0, min(warmup, self.total_steps - 1))
        self.lr_scheduler = create_lr_scheduler(self.optimizer, args.min_lr, self.warmup_steps, self.total_steps)
        accelerator.register_for_checkpointing(self.lr_scheduler)

        config = accelerator.unwrap_model(self.model).config
        self.settings = run_settings(
            args, accelerator, steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
            warmup_steps=self.warmup_steps,
        )
        self.settings.update(
            num_parts=len(train_data.sizes), num_train_samples=len(train_data.dataset),
            samples_per_epoch=len(self.sampler),
            config={key: getattr(config, key) for key in ("hidden_sizes", "depths", "sparsity_rates")},
        )
        self.run_shape = run_shape(args, accelerator.num_processes, config)
        self.progress = TrainingProgress()
        self.history_path = self.output_dir / "log.jsonl"
        self.best_dir = self.output_dir / BEST_MODEL_DIR
        self.last_eval_step: int | None = None
        self.last_results: dict[str, dict[str, Any]] = {}
        self.example_image: str | None = None

    # ---------------------------------------------------------------------------------------------------------------
    def _record(self, entry: dict[str, Any]) -> None:
        self.progress.history.append(entry)
        if self.accelerator.is_main_process:
            write_history(self.history_path, self.progress.history)

    def _card(self, results: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
        from ..hub import write_model_card

        info = card_run_info(self.args, self.settings, results, self.num_parameters, summary, self.example_image)
        write_model_card(self.output_dir, info)

    def _evaluate_and_track(self, epoch: int, push: bool = True) -> None:
        """Evaluate the main sets, log, keep the best model, and push the current model (all processes)."""
        args, accelerator, progress = self.args, self.accelerator, self.progress
        results = self.evaluator(self.model)
        step = progress.completed_steps
        self.last_eval_step, self.last_results = step, results
        entry = {"epoch": epoch + 1, "step": step, "eval": results}
        summary = ", ".join(
            f"{name} pixel_f1 {r['pixel_f1']:.4f} content_gap {r['content_gap']:+.4f} loss {r['loss']:.4f}"
            for name, r in results.items()
        )
        accelerator.print(f"epoch {epoch + 1} step {step}: {summary}")
        if args.metric_for_best_model is not None:
            set_name, _, metric = args.metric_for_best_model.rpartition("/")
            value = results[set_name][metric]
            if is_better(value, progress.best_metric, args.greater_is_better):
                progress.best_metric, progress.best_step = float(value), step
                evaluated = {"step": step, "epoch": epoch + 1, "results": results}
                save_best_model(accelerator, self.model, self.processor, self.best_dir, evaluated)
            entry["best_metric"], entry["best_step"] = progress.best_metric, progress.best_step
        self._record(entry)
        if args.with_tracking:
            flat = flatten_results(results)
            numbers = {k: v for k, v in flat.items() if isinstance(v, (int, float)) and "/num_" not in k}
            accelerator.log({f"eval/{k}": v for k, v in numbers.items()}, step=step)
        if args.push_to_hub and push:  # saving is collective; the main process holds the `HubSync`
            save_model_folder(accelerator, self.model, self.processor, self.output_dir)
            if accelerator.is_main_process and self.hub is not None:
                self._card(results, {"train_steps": step, "best_metric": progress.best_metric,
                                     "best_step": progress.best_step})
                self.hub.push(self.output_dir, f"Training in progress: step {step}, epoch {epoch + 1}")

    def _checkpoint(self, epoch: int, batches_in_epoch: int) -> None:
        self.progress.epoch, self.progress.batches_in_epoch = epoch, batches_in_epoch
        self.progress.run_shape = self.run_shape
        path = save_checkpoint(self.accelerator, self.output_dir, self.progress, self.args.save_total_limit)
        logger.info("Saved checkpoint %s", path)

    def _resume(self) -> None:
        args, accelerator = self.args, self.accelerator
        if args.resume_from_checkpoint is None:
            return
        checkpoint = resolve_checkpoint(args.resume_from_checkpoint, self.output_dir)
        if checkpoint is None:
            logger.info("--resume_from_checkpoint latest: no complete checkpoint in %s yet, starting afresh",
                        self.output_dir)
            return
        from ..inference.loading import check_weight_files

        # Checked before anything is loaded: another shape or model fails here with what differs, not in torch.
        progress = load_training_state(checkpoint)
        differences = check_run_shape(progress.run_shape, self.run_shape, checkpoint, args.allow_resume_mismatch)
        if differences:
            logger.warning("Resuming despite a different run shape (--allow_resume_mismatch): %s",
                           "; ".join(differences))
        check_weight_files(checkpoint)
        accelerator.print(f"Resuming from {checkpoint}")
        accelerator.load_state(str(checkpoint))
        self.progress = progress

    @staticmethod
    def _log_against_baselines(name: str, results: Mapping[str, Any], baselines: Mapping[str, Any]) -> None:
        """The final figures of one set next to every baseline, and per manipulation kind (what `make demo` shows)."""
        nan = float("nan")
        logger.info(
            "%s: pixel_f1 %.4f | content-free %.4f | shuffled pairing %.4f | content_gap %+.4f | all-manipulated "
            "%.4f | all-authentic %.4f", name, results.get("pixel_f1", nan), results.get("content_free_f1", nan),
            results.get("shuffled_f1", nan), results.get("content_gap", nan),
            baselines["all_manipulated"]["pixel_f1"], baselines["all_authentic"]["pixel_f1"],
        )
        for kind, row in results.get("per_kind", {}).items():
            logger.info(
                "%s / %s (%d tampered): pixel_f1 %.4f | content-free %.4f | shuffled %.4f | content_gap %+.4f",
                name, kind, row["num_tampered"], row["pixel_f1"], row["content_free_f1"], row["shuffled_f1"],
                row["content_gap"],
            )
        if results.get("baseline_note"):
            logger.info("%s: %s", name, results["baseline_note"])

    # ---------------------------------------------------------------------------------------------------------------
    def train(self) -> int:
        """Train, evaluate, save and push; returns the exit status (1 when the final push failed)."""
        from ..hub import write_widget_example

        args, accelerator = self.args, self.accelerator
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.example_image = write_widget_example(self.output_dir, args.image_size)
        accelerator.wait_for_everyone()
        if args.with_tracking:
            config = {key: _scalar(value) for key, value in self.settings.items() if key != "config"}
            accelerator.init_trackers(args.project_name, config=config)
        self._resume()
        if accelerator.is_main_process:
            write_history(self.history_path, self.progress.history)
        logger.info("***** Training *****")
        logger.info(
            "  samples per epoch = %d, epochs = %d, steps per epoch = %d, total steps = %d, warm-up steps = %d",
            len(self.sampler), self.num_epochs, self.steps_per_epoch, self.total_steps, self.warmup_steps,
        )
        logger.info(
            "  batch per device = %d, processes = %d, accumulation = %d, total batch = %d",
            args.per_device_train_batch_size, accelerator.num_processes, args.gradient_accumulation_steps,
            self.settings["total_train_batch_size"],
        )
        start_time = time.time()
        epoch = self._train_epochs()
        return self._finish(epoch, time.time() - start_time)

    def _train_epochs(self) -> int:
        """The loop over epochs and batches; returns the last epoch run."""
        from tqdm.auto import tqdm

        args, accelerator, progress, model = self.args, self.accelerator, self.progress, self.model
        main_sets = self.evaluator.main_sets
        start_epoch, skip_batches = progress.epoch, progress.batches_in_epoch
        bar = tqdm(total=self.total_steps, initial=progress.completed_steps, desc="train",
                   disable=not accelerator.is_local_main_process)
        loss_sum = torch.zeros((), device=accelerator.device)
        loss_count = 0
        epoch = start_epoch
        for epoch in range(start_epoch, self.num_epochs):
            if progress.completed_steps >= self.total_steps:
                break
            model.train()
            self.sampler.set_epoch(epoch)
            self.train_loader.set_epoch(epoch)
            consumed = skip_batches if epoch == start_epoch else 0
            loader = self.train_loader
            if consumed >= len(self.train_loader):  # resumed from a checkpoint taken after the epoch's last batch
                loader = []
            elif consumed:
                from accelerate import skip_first_batches

                loader = skip_first_batches(self.train_loader, consumed)
                loader.set_epoch(epoch)
            for batch in loader:
                torch.manual_seed(batch_seed(args.seed, epoch, consumed, accelerator.process_index))
                consumed += 1
                with accelerator.accumulate(model):
                    loss = model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and args.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach().float()
                loss_count += 1
                if not accelerator.sync_gradients:
                    continue
                self.lr_scheduler.step()
                progress.completed_steps += 1
                bar.update(1)
                step = progress.completed_steps
                if step % args.logging_steps == 0 or step == self.total_steps:
                    mean_loss = accelerator.reduce(loss_sum / max(1, loss_count), reduction="mean").item()
                    lr = self.optimizer.param_groups[0]["lr"]
                    bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
                    self._record({"epoch": epoch + 1, "step": step, "train_loss": mean_loss, "learning_rate": lr})
                    if args.with_tracking:
                        accelerator.log(
                            {"train/loss": mean_loss, "train/learning_rate": lr, "train/epoch": epoch + 1}, step=step
                        )
                    loss_sum.zero_()
                    loss_count = 0
                if args.eval_steps and step % args.eval_steps == 0 and main_sets:
                    self._evaluate_and_track(epoch)
                    model.train()
                if isinstance(args.checkpointing_steps, int) and step % args.checkpointing_steps == 0:
                    self._checkpoint(epoch, consumed)
                if step >= self.total_steps:
                    break
            if consumed < len(self.train_loader):  # stopped inside the epoch (max_train_steps)
                break
            if main_sets and args.eval_every_epochs and (epoch + 1) % args.eval_every_epochs == 0:
                if self.last_eval_step != progress.completed_steps:
                    self._evaluate_and_track(epoch)
            if args.checkpointing_steps == "epoch":
                self._checkpoint(epoch + 1, 0)
        bar.close()
        return epoch

    def _finish(self, epoch: int, train_runtime: float) -> int:
        """Final evaluation, best weights, robustness sweep, model folder, results, card and the final push."""
        args, accelerator, progress = self.args, self.accelerator, self.progress
        if self.evaluator.main_sets and self.last_eval_step != progress.completed_steps:
            self._evaluate_and_track(min(epoch, self.num_epochs - 1), push=False)  # the final push follows
        final_results = dict(self.last_results)
        use_best = args.load_best_model_at_end and progress.best_step is not None
        if use_best and progress.best_step != progress.completed_steps:
            logger.info("Loading the best model (step %d, %s = %.4f)", progress.best_step,
                        args.metric_for_best_model, progress.best_metric)
            final_results = load_best_model(accelerator, self.model, self.best_dir)["results"]
        robust_sets = self.evaluator.robustness_sets
        if robust_sets:
            final_results.update(self.evaluator(self.model, robust_sets))
            self._record({"step": progress.completed_steps, "robustness": {k: final_results[k] for k in robust_sets}})

        save_model_folder(accelerator, self.model, self.processor, self.output_dir)
        exit_code = 0
        if accelerator.is_main_process:
            if self.content_free is not None:
                self.content_free.save(self.output_dir)  # for `sparsevit-evaluate` on this model later
            baselines = self.evaluator.baselines()
            for name in baselines:
                self._log_against_baselines(name, final_results.get(name, {}), baselines[name])
            all_results = {
                "train_runtime": train_runtime,
                "train_steps": progress.completed_steps,
                "epochs": self.num_epochs,
                "num_processes": accelerator.num_processes,
                "best_metric": progress.best_metric,
                "best_step": progress.best_step,
                "metric_for_best_model": args.metric_for_best_model,
                "weights": "best" if use_best else "final",
                **flatten_results(final_results),
                "baselines": {
                    name: {kind: {k: v for k, v in m.items() if not k.startswith("num_")} for kind, m in b.items()}
                    for name, b in baselines.items()
                },
                "content_free_predictor": None if self.content_free is None else {
                    "name": self.content_free.name, "train_f1": self.content_free.train_f1,
                    "num_train_masks": self.content_free.num_train_masks,
                },
            }
            train_losses = [e["train_loss"] for e in progress.history if "train_loss" in e]
            if train_losses:
                all_results["train_loss"] = train_losses[-1]
            write_json_atomic(self.output_dir / "all_results.json", all_results)
            self._card(final_results, all_results)
            if self.hub is not None:
                error = self.hub.finish(self.output_dir, "End of training")
                if error is not None:
                    logger.error(
                        "The final push to the Hub (%s) failed: %s. The model is saved in %s; upload it with "
                        "`hf upload %s %s`.", self.hub.repo_id, error, self.output_dir, self.hub.repo_id,
                        self.output_dir,
                    )
                    exit_code = 1
        accelerator.wait_for_everyone()
        return exit_code
