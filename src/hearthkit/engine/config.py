"""The run config: pydantic models loaded from YAML, with --set key=value overrides."""

from __future__ import annotations

import difflib
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hearthkit.errors import HearthError


class RequestConfig(BaseModel):
    """Who asks for data, for what purpose, from which collections."""

    model_config = ConfigDict(extra="forbid")
    purpose: str = Field(description="What the model is for, e.g. language_revitalization.")
    requester: str = Field(description="The person or team asking to train.")
    collections: list[str] = Field(min_length=1, description="Collections to draw items from.")
    as_of: date | None = Field(None, description="Date at which consent, embargo and seasons are evaluated.")
    id: int | None = Field(None, description="Stored request (`hearth request`) whose approval this run uses; "
                                             "training is refused unless it is approved and its manifest unchanged.")


class SplitConfig(BaseModel):
    """How the manifest's items split into training and held-out evaluation items."""

    model_config = ConfigDict(extra="forbid")
    by: str = Field("text", description="Field no value of which is on both sides (text = by sentence).")
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0, description="Share of values held out.")
    test_values: list[str] | None = Field(None, description="Hold out exactly these values instead.")
    valid_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of the training values (of "
                                  "`valid_by`) held out for validation: their loss is reported at every checkpoint, "
                                  "so settings can be compared without looking at the test items. 0 = none.")
    valid_by: str | None = Field(None, description="Field no value of which is on both sides of the validation "
                                 "split; default: `by`, or `text` when `test_values` name the test side (every "
                                 "training item then shares few values of `by`, e.g. split: train).")
    seed: int = Field(0, description="Seed of the split.")

    def validation_field(self) -> str:
        """The field that groups the validation split."""
        if self.valid_by:
            return self.valid_by
        return "text" if self.test_values is not None else self.by


class TrainConfig(BaseModel):
    """The optimisation loop."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(1000, gt=0, description="Optimizer steps in total.")
    batch_size: int = Field(16, gt=0, description="Examples per micro-batch per worker.")
    bucket: int = Field(0, ge=0, description="Length-bucketed batches: sort each window of this many global "
                        "batches by item length (audio duration, text length) before cutting it; 0 = off.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step (gradient accumulation).")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (matrices only, not biases or norms).")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    fused: bool | None = Field(None, description="Fused AdamW kernel; default: where the device supports it.")
    schedule: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="Learning-rate shape after warm-up: cosine or linear decay to min_lr_ratio, or constant.")
    warmup: int = Field(50, ge=0, description="Linear warm-up steps before the schedule.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate as a share of the peak.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm to this (0: no clipping).")
    layer_decay: float = Field(1.0, gt=0, le=1, description="Layer-wise learning-rate decay for pretrained bases: "
                               "block i of n learns at lr * layer_decay^(n+1-i), the new head at lr, embeddings "
                               "and feature encoder lowest; 1 = one rate for all (models without blocks ignore it).")
    parallel: Literal["ddp", "fsdp2"] = Field(
        "ddp", description="Data parallelism: ddp (replicated weights) or fsdp2 (sharded weights, for large models).")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="Autocast precision: auto = bf16 on GPU, fp32 on CPU.")
    compile: bool = Field(False, description="torch.compile the model before training.")
    checkpoint_every: int = Field(100, gt=0, description="Write a checkpoint every N steps.")
    keep_last: int = Field(2, gt=0, description="Checkpoints to keep.")
    average_last: int = Field(1, gt=0, description="Average the weights of the last N checkpoints into the final "
                              "model (needs keep_last >= N); 1 = the last weights as they are.")
    log_every: int = Field(20, gt=0, description="Print metrics every N steps.")
    seed: int = Field(0, description="Seed of model init, data order and augmentation.")
    peak_tflops: float | None = Field(
        None, gt=0, description="Peak TFLOP/s of one device for MFU; default: known GPUs, none on CPU.")
    mlflow: bool = Field(True, description="Track params and metrics with MLflow (local store in the workspace).")
    deterministic: bool = Field(False, description="Deterministic kernels only (torch.use_deterministic_algorithms, "
                                "cuDNN without autotuning, CUBLAS_WORKSPACE_CONFIG): on GPU a resumed run then "
                                "ends bitwise equal to an uninterrupted one; an op without a deterministic kernel "
                                "(e.g. CTC loss backward on CUDA) is refused. Slower; CPU runs are exact anyway.")
    proximal_mu: float = Field(0.0, ge=0, description="FedProx: add mu/2 * ||w - w0||^2 to the loss, w0 the "
                               "trainable weights the run starts from (its parent model, e.g. a federation's "
                               "global model); 0 = off. ddp only.")
    allow_change: list[Literal["seed", "batch_size", "grad_accum", "bucket"]] = Field(
        default_factory=list, description="Fields that may differ from the checkpoint's on resume (the data order "
        "then changes and the weights differ from an uninterrupted run); the decision is recorded in the run. "
        "Empty: a resume with a changed seed, batch_size, grad_accum or bucket is refused.")

    @model_validator(mode="after")
    def _proximal_on_replicated_weights(self) -> TrainConfig:
        """The proximal term compares each full parameter with its frozen copy, which FSDP2's shards are not."""
        if self.proximal_mu and self.parallel == "fsdp2":
            raise ValueError("train.proximal_mu needs train.parallel: ddp (the term compares whole parameters)")
        return self

    def averaged_steps(self) -> list[int]:
        """Steps of the checkpoints train.average_last averages at the end of an uninterrupted run, oldest first."""
        earlier = [k * self.checkpoint_every for k in range(self.steps // self.checkpoint_every, 0, -1)
                   if k * self.checkpoint_every < self.steps]
        return sorted([self.steps, *earlier[:self.average_last - 1]])

    def average_warning(self) -> str | None:
        """A line when train.average_last (a count of checkpoints) reaches back beyond the last fifth of the
        schedule, e.g. after train.steps was shortened: weights from early in training would be averaged in."""
        steps = self.averaged_steps()
        if len(steps) < 2 or steps[0] >= 0.8 * self.steps:
            return None
        every = max(1, int(0.2 * self.steps) // (self.average_last - 1))
        return (f"warning: train.average_last {self.average_last} averages the checkpoints of steps "
                f"{', '.join(map(str, steps))}, reaching back {100 * (self.steps - steps[0]) / self.steps:.0f}% of "
                f"the {self.steps}-step schedule (more than its last fifth); set train.checkpoint_every: {every} or "
                "a smaller train.average_last")

    @model_validator(mode="after")
    def _enough_checkpoints_to_average(self) -> TrainConfig:
        """Averaging N checkpoints needs N kept; fewer would be averaged without a word."""
        if self.average_last > self.keep_last:
            raise ValueError(f"average_last {self.average_last} needs keep_last >= {self.average_last} "
                             f"(now {self.keep_last}): set train.keep_last")
        return self


class LaunchConfig(BaseModel):
    """How torchrun starts the workers."""

    model_config = ConfigDict(extra="forbid")
    nproc: int = Field(2, gt=0, description="Worker processes on this machine.")
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="torch.distributed backend: auto = nccl on GPU, gloo on CPU.")
    timeout_s: int = Field(60, gt=0, description="Collective timeout of the training steps: a dead or stuck peer "
                           "becomes an error after this.")
    warmup_timeout_s: int = Field(1800, gt=0, description="Timeout while the group starts and runs its first steps "
                                  "(NCCL communicators, torch.compile, cuDNN autotuning); then timeout_s applies.")
    checkpoint_timeout_s: int = Field(1800, gt=0, description="Timeout of checkpoint writes and their barriers, and "
                                      "of validation at a checkpoint (large shards on a shared filesystem).")
    final_timeout_s: int = Field(1800, gt=0, description="Timeout of the end of training: averaging checkpoints, "
                                 "gathering and writing the final weights, the last barrier.")
    threads_per_worker: int = Field(1, gt=0, description="Torch intra-op threads per worker.")


class DataConfig(BaseModel):
    """How training batches reach the model: a DataLoader over the governed reader (engine/dataloading.py)."""

    model_config = ConfigDict(extra="forbid")
    workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="Data-loader processes per training worker, reading, decrypting and featurising ahead "
        "of the step; 0 = in the training process. auto = up to 4 per GPU from the cores a rank may use, 0 on CPU. "
        "Batches are the same for any value (each batch's random draws are seeded from seed, step and rank).")
    prefetch: int = Field(2, gt=0, description="Micro-batches each data-loader process prepares ahead.")
    pin_memory: bool | Literal["auto"] = Field(
        "auto", description="Page-locked batches for asynchronous copies to the GPU; auto = on a GPU.")
    compile_dynamic: bool = Field(True, description="With train.compile, mark the length dimension of each batch "
                                  "tensor dynamic from the first step: one compiled graph for every length.")


class RunConfig(BaseModel):
    """A training run: request, recipe and model, split, loop, launch."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Run name; re-running the same name resumes it.")
    recipe: str = Field(description="Recipe name, e.g. asr.")
    init_from: str | None = Field(None, description="Registered model to initialise from (transfer); its parent.")
    request: RequestConfig
    split: SplitConfig = SplitConfig()
    model: dict[str, Any] = Field(default_factory=dict, description="Recipe model settings.")
    train: TrainConfig = TrainConfig()
    launch: LaunchConfig = LaunchConfig()
    data: DataConfig = DataConfig()

    @model_validator(mode="after")
    def _validation_on_replicated_weights(self) -> RunConfig:
        """Validation runs each rank's share through its full copy of the model, which FSDP2 does not keep."""
        if self.split.valid_fraction and self.train.parallel == "fsdp2":
            raise ValueError("split.valid_fraction needs train.parallel: ddp (validation uses each rank's full "
                             "copy of the weights); set it to 0 for fsdp2")
        return self


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def apply_override(data: dict, assignment: str) -> None:
    """Apply one `key.sub=value` override to DATA (value parsed as YAML)."""
    if "=" not in assignment:
        raise HearthError(f"--set {assignment!r}: expected key=value, e.g. train.steps=200")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise HearthError(f"--set {key}: {p} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise HearthError(f"--set {key}: the value {raw!r} is not valid YAML") from None
    except ValueError as exc:  # YAML-typed values that do not exist, e.g. the date 2020-13-01
        raise HearthError(f"--set {key}: the value {raw!r} is not valid ({exc})") from None


def field_error(exc: ValidationError, prefix: str = "", schema: type[BaseModel] | None = None) -> str:
    """`field a.b: message` for the first error of EXC (PREFIX names the section it was validated as).

    An unknown key says which known one it is probably a misspelling of (from SCHEMA, the model validated);
    a wrong value says what was given. Nothing of Python's own representation reaches the user.
    """
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    where = f"field {prefix}{'.'.join(loc)}" if loc else (f"section {prefix.rstrip('.')}" if prefix else "config")
    if err["type"] == "extra_forbidden":
        known = sorted(_fields_at(schema, loc[:-1])) if schema is not None else []
        near = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6) if loc else []
        hint = f"; did you mean {near[0]}?" if near else (f"; known fields: {', '.join(known)}" if known else "")
        return f"{where}: unknown field{hint}"
    msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if err["type"] != "missing" and isinstance(err.get("input"), str | int | float | bool):
        msg += f" (got {_short(err['input'])})"
    return f"{where}: {msg}"


def _short(value: object) -> str:
    """A user's scalar value as they would write it in YAML, cut to a readable length."""
    text = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(schema: type[BaseModel], path: list[str]) -> list[str]:
    """The field names of the (nested) model at PATH under SCHEMA; none where PATH leaves the models."""
    model: Any = schema
    for part in path:
        info = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if info is None:
            return []
        model = info.annotation
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def model_schema(recipe: str, path: Path | str = "config") -> type[BaseModel]:
    """The pydantic schema of recipe RECIPE's `model:` section; an unknown recipe names the known ones."""
    from hearthkit.recipes import REGISTRY, get_recipe

    if recipe not in REGISTRY:
        raise HearthError(f"{path}: field recipe: {recipe!r} is not a recipe; choose one of: "
                          f"{', '.join(sorted(REGISTRY))}")
    return get_recipe(recipe).ModelConfig


def validate_model(cfg: RunConfig, path: Path | str = "config") -> BaseModel:
    """CFG's `model:` section checked against its recipe's schema (extra keys refused); errors name PATH and field."""
    schema = model_schema(cfg.recipe, path)
    try:
        return schema.model_validate(cfg.model)
    except ValidationError as exc:
        raise HearthError(f"{path}: {field_error(exc, 'model.', schema)}") from None


def load_config(path: Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a run config from YAML, apply overrides, validate; errors name the file and field."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise HearthError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise HearthError(f"{path}: is a folder; give the run config's YAML file (`hearth new asr > run.yaml` "
                          "writes one)") from None
    except OSError as exc:
        raise HearthError(f"{path}: cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise HearthError(f"{path}: not valid UTF-8 YAML ({str(exc).splitlines()[0]})") from None
    except ValueError as exc:  # YAML-typed values that do not exist, e.g. the date 2020-02-30
        raise HearthError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise HearthError(f"{path}: expected a mapping of settings at the top level")
    for o in overrides or []:
        apply_override(data, o)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise HearthError(f"{path}: {field_error(exc, schema=RunConfig)}") from None
    if not _NAME.match(cfg.name):
        raise HearthError(f"{path}: field name: {cfg.name!r} must be letters, digits, '.', '_' or '-'")
    validate_model(cfg, path)  # at plan time, not in the workers: a bad model section never starts a run
    return cfg
