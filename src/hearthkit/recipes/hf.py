"""Hugging Face models inside recipes: a registered base loaded offline, LoRA, adapter-only state, export.

A recipe that fine-tunes a pretrained checkpoint (`model.base: NAME`) builds its model from the base's config
(kept in the run's prep folder, so a published model never needs the base to be rebuilt), copies the base's
weights in before training, and wraps it in `HFModule`, which the engine treats like any recipe module:
`fsdp_blocks()` names the transformer blocks FSDP2 shards one by one, `lr_layer()` numbers parameters for
layer-wise learning-rate decay. With LoRA the module's state (checkpoints, final weights, published folder) is
the trainable tensors only; the frozen base is read from its registered, hash-checked folder.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from hearthkit.errors import HearthError

if TYPE_CHECKING:
    from hearthkit.lineage.base import BaseRef

BASE_FILE = "base.json"  # in a run's prep folder: the base's name, hash, path, architecture
BASE_CONFIG = "base_config"  # in a run's prep folder: the base's config.json (and processor files), copied
BLOCK_LISTS = {"layers", "layer", "block", "blocks"}  # ModuleList names that hold transformer blocks in HF models


class LoraSettings(BaseModel):
    """`model.lora`: low-rank adapters (peft) on the base's attention projections; the base stays frozen."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(8, gt=0, description="Rank of each adapter.")
    alpha: float = Field(16.0, gt=0, description="Scale numerator: the update is (alpha / r) * B A.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], description="Names of the "
                                      "linear layers that get adapters (peft's target_modules).")


def set_offline() -> None:
    """No download, ever: HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE set before transformers loads anything.

    transformers' load reports and progress bars are silenced: hearthkit says what it copied in its own words.
    """
    import os

    try:
        from hearthkit.lineage.base import set_offline_env
    except ImportError:  # the base registry not there (older tree): set the same variables here
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            os.environ[var] = "1"
    else:
        set_offline_env()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def seed_numpy() -> None:
    """Seed numpy's global RNG per rank from torch's seed (transformers' SpecAugment masks draw from it).

    The checkpoint keeps numpy's state, so a resumed run continues the same draws: resume stays exact.
    """
    import numpy as np
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    np.random.seed((torch.initial_seed() * 1000 + rank + 1) % 2**32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def load_pretrained(ref: BaseRef, auto_cls: Any, **kw: Any) -> nn.Module:
    """AUTO_CLS.from_pretrained of base REF's folder, offline; a folder that cannot load is one line."""
    set_offline()
    try:
        return auto_cls.from_pretrained(str(ref.path), local_files_only=True, **kw)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise HearthError(f"base model {ref.name}: {ref.path} cannot be loaded offline as "
                          f"{getattr(auto_cls, '__name__', auto_cls)} ({_first_line(exc)}); check the folder or "
                          "register a complete one with `hearth base add`") from None


def run_base(name: str, prep_out: Path) -> BaseRef:
    """The registered base NAME for a run being prepared in PREP_OUT (runs/RUN/prep of a workspace), hash-checked.

    `Recipe.prepare` is given only its output folder, so the workspace is the one that holds it.
    """
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.lineage.base import resolve_base
    from hearthkit.workspace import find_workspace, open_workspace

    try:
        ws = open_workspace(Path(prep_out).resolve().parents[2])
    except (HearthError, IndexError):
        ws = find_workspace(None)
    catalog = open_workspace_catalog(ws)
    try:
        return resolve_base(catalog, name)
    finally:
        catalog.close()


def save_base(ref: BaseRef, prep: Path) -> dict:
    """Record base REF in a run's PREP folder: its identity, and its config/processor files (small, no weights)."""
    prep.mkdir(parents=True, exist_ok=True)
    info = {"name": ref.name, "content_hash": ref.content_hash, "path": str(ref.path),
            "architecture": ref.architecture, "licence": ref.licence}
    (prep / BASE_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
    dest = prep / BASE_CONFIG
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    for f in Path(ref.path).iterdir():
        if f.is_file() and f.suffix in (".json", ".txt", ".model") and not f.name.endswith(".index.json"):
            shutil.copy2(f, dest / f.name)
    return info


def load_base_info(prep: Path) -> dict | None:
    """What `save_base` recorded in PREP, or None for a model trained from scratch."""
    path = prep / BASE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def base_config(prep: Path) -> Any:
    """The base's transformers config, from the copy in PREP (no base folder needed)."""
    return base_config_of(prep / BASE_CONFIG)


def base_config_of(folder: Path) -> Any:
    """The transformers config of the HF model folder FOLDER (offline)."""
    from transformers import AutoConfig

    set_offline()
    return AutoConfig.from_pretrained(str(folder), local_files_only=True)


def check_base_unchanged(info: dict) -> Path:
    """The base folder INFO names, refused (one line) when it is missing or its content hash changed."""
    from hearthkit.lineage.base import hash_base_folder

    path = Path(info["path"])
    if not (path / "config.json").is_file():
        raise HearthError(f"base model {info['name']}: {path} is missing; restore the registered folder (sha256 "
                          f"{info['content_hash'][:12]}…) to use models fine-tuned from it")
    if hash_base_folder(path) != info["content_hash"]:
        raise HearthError(f"base model {info['name']}: {path} changed since it was registered (sha256 "
                          f"{info['content_hash'][:12]}…); restore it, or register the new folder under a new name")
    return path


def copy_base_weights(model: nn.Module, base_path: Path, auto_cls: Any, name: str = "base") -> dict[str, int]:
    """Copy the tensors the base at BASE_PATH holds into MODEL (same names and shapes); others keep their values.

    Loading goes through transformers (it knows each architecture's renamed legacy keys); a tensor the base
    lacks or holds in another shape (a new output layer over the run's own vocabulary) is left as initialised.
    """
    set_offline()
    try:
        base, info = auto_cls.from_pretrained(str(base_path), config=model.config, local_files_only=True,
                                              ignore_mismatched_sizes=True, output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise HearthError(f"base model {name}: {base_path} cannot be loaded offline ({_first_line(exc)})") from None
    fresh = set(info.get("missing_keys") or []) | {m[0] if isinstance(m, tuple) else m
                                                   for m in info.get("mismatched_keys") or []}
    theirs = base.state_dict()
    own = model.state_dict()
    take = {k: v for k, v in theirs.items() if k in own and k not in fresh and own[k].shape == v.shape}
    model.load_state_dict(take, strict=False)
    return {"copied": len(take), "new": len(own) - len(take)}


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of an HF model (encoder/decoder `layers`, T5's `block`), in order: FSDP2's units."""
    found: list[nn.Module] = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and name.rsplit(".", 1)[-1] in BLOCK_LISTS and len(mod) > 0:
            found.extend(mod)
    return found


_LAYER = re.compile(r"\.(?:layers|layer|block|blocks)\.(\d+)\.")


def layer_of(name: str, n_layers: int, head: Iterable[str] = ()) -> int:
    """Depth of parameter NAME for layer-wise LR decay: 0 embeddings/feature encoder, i+1 block i, n+1 the head.

    Encoder and decoder blocks of a seq2seq model share numbers (both are as deep as their index).
    """
    if any(name.startswith(h) for h in head):
        return n_layers + 1
    m = _LAYER.search(name)
    if m:
        return min(int(m.group(1)) + 1, n_layers)
    return 0 if re.search(r"embed|feature|conv|mask|pos", name) else n_layers + 1


def apply_lora(model: nn.Module, cfg: LoraSettings, keep_trainable: Iterable[str] = ()) -> nn.Module:
    """Inject LoRA adapters into MODEL in place (peft); freeze all else but KEEP_TRAINABLE name prefixes."""
    from peft import LoraConfig, inject_adapter_in_model

    lcfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.target_modules))
    try:
        model = inject_adapter_in_model(lcfg, model)
    except ValueError as exc:  # no module of those names
        raise HearthError(f"model.lora.target_modules {cfg.target_modules}: {_first_line(exc)}") from None
    keep = tuple(keep_trainable)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name or (bool(keep) and name.startswith(keep)))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """MODEL with every LoRA adapter merged into its base layer and the adapter modules removed (in place)."""
    from peft.tuners.lora import LoraLayer

    for name, mod in list(model.named_modules()):
        if isinstance(mod, LoraLayer):
            mod.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, mod.get_base_layer())
    return model


class HFModule(nn.Module):
    """A transformers model as a recipe module; with `adapter_only`, its state is the trainable tensors only."""

    def __init__(self, hf: nn.Module, head: tuple[str, ...] = ()):
        super().__init__()
        self.hf = hf
        self.head = head  # name prefixes (inside hf) of the new output layers: deepest for layer decay
        self.adapter_only = False

    def fsdp_blocks(self) -> list[nn.Module]:
        """Transformer blocks, each sharded as one FSDP2 unit (engine/parallel.py)."""
        return transformer_blocks(self.hf)

    def lr_layer(self, name: str) -> tuple[int, int]:
        """(depth of parameter NAME, deepest depth) for layer-wise learning-rate decay (engine/optim.py)."""
        n = max(1, self._depth())
        inner = name.removeprefix("hf.")
        return layer_of(inner, n, self.head), n + 1

    def _depth(self) -> int:
        counts: dict[str, int] = {}
        for name, mod in self.hf.named_modules():
            if isinstance(mod, nn.ModuleList) and name.rsplit(".", 1)[-1] in BLOCK_LISTS:
                counts[name] = len(mod)
        return max(counts.values(), default=0)

    def gradient_checkpointing(self) -> None:
        """Recompute each block's activations in the backward pass (memory for compute)."""
        self.hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def use_lora(self, cfg: LoraSettings) -> None:
        """Add LoRA adapters; from now on the module's state is the adapters and the new head only."""
        apply_lora(self.hf, cfg, keep_trainable=self.head)
        self.adapter_only = True

    def _trainable(self) -> set[str]:
        return {n for n, p in self.named_parameters() if p.requires_grad}

    def state_dict(self, *args: Any, **kwargs: Any) -> dict:  # type: ignore[override]
        """All tensors, or with adapter_only the trainable ones (checkpoints and final weights hold only those)."""
        sd = super().state_dict(*args, **kwargs)
        if not self.adapter_only:
            return sd
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        keep = {prefix + n for n in self._trainable()}
        for k in [k for k in sd if k not in keep]:
            del sd[k]
        return sd

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """Load STATE_DICT; with adapter_only, strictness is over the trainable tensors (the base is loaded)."""
        if not self.adapter_only:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        want = self._trainable()
        missing, unexpected = sorted(want - set(state_dict)), sorted(set(state_dict) - want)
        if strict and (missing or unexpected):
            raise RuntimeError(f"adapter weights do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The trainable tensors (LoRA adapters and new head) by name."""
        train = self._trainable()
        return {k: v for k, v in super().state_dict().items() if k in train}


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """MODEL's trainable tensors (an HFModule's adapters and head, or any module's requires_grad parameters)."""
    if isinstance(model, HFModule):
        return model.adapter_state()
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def export_hf(model: nn.Module, out: Path, extra_files: Iterable[Path] = ()) -> Path:
    """Write MODEL (an HFModule or a transformers model) as a folder `from_pretrained` loads; LoRA merged in.

    EXTRA_FILES (a tokenizer's or processor's) are copied beside it. Returns OUT.
    """
    import copy

    set_offline()
    hf = model.hf if isinstance(model, HFModule) else model
    lora = isinstance(model, HFModule) and model.adapter_only
    if lora:
        hf = merge_lora(copy.deepcopy(hf))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out), safe_serialization=True)
    for f in extra_files:
        if Path(f).is_file():
            shutil.copy2(f, out / Path(f).name)
    return out
