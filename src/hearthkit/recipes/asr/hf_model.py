"""Pretrained speech encoders for the asr recipe: wav2vec2-family CTC (XLS-R, MMS, HuBERT, WavLM) and Whisper.

CTC models get a NEW output layer over the run's own character vocabulary (blank = 0, as in the recipe's own
models) and return per-frame log-probabilities, so evaluation, n-gram fusion and long-recording transcription are
the recipe's. Whisper keeps its byte-level tokenizer and gains the run's language as a new token; it is trained
with teacher forcing and decodes greedily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hearthkit.errors import HearthError
from hearthkit.recipes import hf

WHISPER_TOKENIZER = "whisper_tokenizer"  # in a run's prep folder: the base's tokenizer plus the new language token
WHISPER_PROMPT = ("<|startoftranscript|>", None, "<|transcribe|>", "<|notimestamps|>")  # None: the language token
IGNORE = -100


# CTC encoders that take the raw waveform (`input_values`); others (wav2vec2-bert, parakeet) take features
WAVEFORM_CTC = {"wav2vec2", "hubert", "wavlm", "wav2vec2-conformer", "data2vec-audio", "sew", "sew-d", "unispeech",
                "unispeech-sat"}


def speech_arch(architecture: str, name: str) -> str:
    """`whisper` or `hf_ctc` for a base of ARCHITECTURE (config model_type); a base of another kind is refused."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CTC_MAPPING_NAMES

    if architecture == "whisper":
        return "whisper"
    if architecture in WAVEFORM_CTC and architecture in MODEL_FOR_CTC_MAPPING_NAMES:
        return "hf_ctc"
    raise HearthError(f"model.base {name}: a {architecture or 'unknown'} model is not a speech encoder the asr recipe "
                      "can fine-tune; register a wav2vec2, HuBERT, WavLM (CTC) or Whisper checkpoint")


# ---------------------------------------------------------------------------------------------------------- features

def normalise_wave(wav: np.ndarray, do_normalize: bool = True) -> torch.Tensor:
    """A waveform as wav2vec2's feature extractor gives it: zero mean, unit variance per utterance (T,)."""
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    if not do_normalize:
        return x
    return (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)


class WhisperFeatures:
    """Whisper's log-mel (frames, n_mels), padded or cut to the encoder's fixed window (transformers' extractor,
    numpy only: it downloads nothing)."""

    def __init__(self, prep: Path, config: Any):
        from transformers import WhisperFeatureExtractor

        hf.set_offline()
        folder = prep / hf.BASE_CONFIG
        if (folder / "preprocessor_config.json").is_file():
            self.fe = WhisperFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
        else:  # no processor file: Whisper's defaults for this many mel bins and the encoder's window
            frames = 2 * config.max_source_positions
            self.fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins, chunk_length=frames // 100)
        if self.fe.nb_max_frames != 2 * config.max_source_positions:
            raise HearthError(f"base model: preprocessor_config.json gives {self.fe.nb_max_frames} frames but the "
                              f"encoder takes {2 * config.max_source_positions}; the base folder is inconsistent")

    def __call__(self, wav: np.ndarray) -> torch.Tensor:
        out = self.fe(np.asarray(wav, dtype=np.float32), sampling_rate=16000, return_tensors="pt")
        return out.input_features[0].T.contiguous()  # (frames, n_mels)


def featurizer(cfg: Any, prep: dict):
    """The function from a 16 kHz waveform to the model's input for a base model run."""
    if prep["arch"] == "whisper":
        return WhisperFeatures(prep["folder"], prep["config"])
    do_norm = bool(prep.get("processor", {}).get("do_normalize", True))
    return lambda wav: normalise_wave(wav, do_norm)


# ------------------------------------------------------------------------------------------------------------ models

class HFCTC(hf.HFModule):
    """Waveform (B, S) -> per-frame unit log-probabilities (B, T, V+1) and frame counts, like the recipe's models."""

    def __init__(self, model: nn.Module):
        super().__init__(model, head=("lm_head",))
        # Large checkpoints (layer-normalised feature encoder) are fine-tuned with an attention mask; base ones
        # (group norm) without, padding with zeros, as transformers documents.
        self.use_mask = getattr(model.config, "feat_extract_norm", "layer") == "layer"

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = (torch.arange(wave.shape[1], device=wave.device)[None] < lengths[:, None]).long()
        logits = self.hf(input_values=wave, attention_mask=mask if self.use_mask else None).logits
        out_len = self.hf._get_feat_extract_output_lengths(lengths).clamp(min=1, max=logits.shape[1])
        return logits.float().log_softmax(-1), out_len


class HFWhisper(hf.HFModule):
    """Log-mel (B, frames, n_mels) and decoder tokens -> next-token logits; `generate` decodes greedily."""

    def __init__(self, model: nn.Module, prompt: list[int], eot: int):
        super().__init__(model, head=())
        self.prompt, self.eot = prompt, eot

    def forward(self, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.hf(input_features=feats.transpose(1, 2), decoder_input_ids=tokens).logits

    @torch.no_grad()
    def generate(self, feats: torch.Tensor, max_len: int) -> list[list[int]]:
        """Greedy decoding after the prompt (start, language, transcribe, no timestamps), up to MAX_LEN tokens."""
        max_len = min(max_len, self.hf.config.max_target_positions - len(self.prompt))  # positions it has
        enc = self.hf.get_encoder()(input_features=feats.transpose(1, 2))
        B = feats.shape[0]
        ids = torch.tensor([self.prompt] * B, device=feats.device)
        done = torch.zeros(B, dtype=torch.bool, device=feats.device)
        past = None
        step_in = ids
        out: list[list[int]] = [[] for _ in range(B)]
        for _ in range(max_len):
            res = self.hf(encoder_outputs=enc, decoder_input_ids=step_in, past_key_values=past, use_cache=True)
            past = res.past_key_values
            nxt = res.logits[:, -1].argmax(-1)
            for b in range(B):
                if not done[b]:
                    if int(nxt[b]) == self.eot:
                        done[b] = True
                    else:
                        out[b].append(int(nxt[b]))
            if bool(done.all()):
                break
            step_in = nxt[:, None]
        return out


def _freeze_unused_mask_embed(model: nn.Module) -> None:
    """Without SpecAugment the learned mask vector is never used: freeze it (DDP refuses unused trainable params)."""
    c = model.config
    if not (c.mask_time_prob > 0 or c.mask_feature_prob > 0):
        embed = getattr(model.base_model, "masked_spec_embed", None)
        if embed is not None:
            embed.requires_grad_(False)


def build_ctc(cfg: Any, prep: dict, vocab_size: int) -> HFCTC:
    """A wav2vec2-family encoder of the base's shape with a fresh CTC head of VOCAB_SIZE units + blank."""
    from transformers import AutoModelForCTC

    config = prep["config"]
    config.vocab_size, config.pad_token_id = vocab_size + 1, 0  # index 0 is the CTC blank, as in the recipe
    config.layerdrop = 0.0  # skipped layers leave parameters without gradients, which DDP refuses
    config.ctc_zero_infinity = True
    for field in ("mask_time_prob", "mask_time_length", "mask_feature_prob", "mask_feature_length"):
        if getattr(cfg, field) is not None:
            setattr(config, field, getattr(cfg, field))
    if not cfg.spec_augment:
        config.mask_time_prob = config.mask_feature_prob = 0.0
    if cfg.adapter_attn_dim:
        config.adapter_attn_dim = cfg.adapter_attn_dim
    model = AutoModelForCTC.from_config(config)
    wrapped = HFCTC(model)
    _configure(wrapped, cfg, prep)
    if cfg.adapter_attn_dim and not cfg.lora:  # MMS: only the language adapters and the head learn
        for name, p in model.named_parameters():
            p.requires_grad_(".adapter_layer." in name or name.startswith("lm_head"))
    elif cfg.freeze_feature_encoder:
        model.freeze_feature_encoder()
    _freeze_unused_mask_embed(model)
    return wrapped


def whisper_tokenizer(folder: Path):
    """The Whisper tokenizer saved in FOLDER (offline)."""
    from transformers import AutoTokenizer

    hf.set_offline()
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def prepare_whisper(cfg: Any, prep_dir: Path) -> None:
    """Add the run's language token to the base's tokenizer and save it in PREP_DIR."""
    try:
        tok = whisper_tokenizer(prep_dir / hf.BASE_CONFIG)
    except (OSError, ValueError) as exc:
        raise HearthError(f"model.base: the Whisper base has no usable tokenizer files ({hf._first_line(exc)}); "
                          "register a folder with its tokenizer") from None
    token = f"<|{cfg.language}|>"
    if tok.convert_tokens_to_ids(token) in (None, tok.unk_token_id):
        tok.add_tokens([token], special_tokens=True)
    for t in WHISPER_PROMPT:
        if t is not None and tok.convert_tokens_to_ids(t) in (None, tok.unk_token_id):
            raise HearthError(f"model.base: the Whisper tokenizer lacks {t}; it is not a Whisper tokenizer")
    tok.save_pretrained(str(prep_dir / WHISPER_TOKENIZER))


def prompt_ids(tok: Any, language: str) -> list[int]:
    """Decoder prompt ids: start of transcript, the language, transcribe, no timestamps."""
    return [tok.convert_tokens_to_ids(t if t is not None else f"<|{language}|>") for t in WHISPER_PROMPT]


def build_whisper(cfg: Any, prep: dict) -> HFWhisper:
    """A Whisper model of the base's shape whose vocabulary includes the run's language token."""
    from transformers import WhisperForConditionalGeneration

    tok = prep["hf_tokenizer"]
    config = prep["config"]
    config.vocab_size = max(config.vocab_size, len(tok))
    if not cfg.spec_augment:
        config.mask_time_prob = config.mask_feature_prob = 0.0
    config.apply_spec_augment = cfg.spec_augment and (config.mask_time_prob > 0 or config.mask_feature_prob > 0)
    model = WhisperForConditionalGeneration(config)
    wrapped = HFWhisper(model, prompt_ids(tok, cfg.language), tok.convert_tokens_to_ids("<|endoftext|>"))
    _configure(wrapped, cfg, prep)
    return wrapped


def _configure(model: hf.HFModule, cfg: Any, prep: dict) -> None:
    """Gradient checkpointing and LoRA as CFG asks; LoRA needs the base's weights now (they are not saved)."""
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing()
    if cfg.lora is not None:
        init_from_base(model, cfg, prep)
        model.use_lora(cfg.lora)


def init_from_base(model: hf.HFModule, cfg: Any, prep: dict) -> str:
    """Copy the registered base's weights into MODEL (its folder hash-checked); say what was copied."""
    info = prep["base"]
    path = hf.check_base_unchanged(info)
    if prep["arch"] == "whisper":
        n = _init_whisper(model, path, prep, cfg.language_init)
        return f"initialised from base {info['name']}: {n}"
    from transformers import AutoModelForCTC

    n = hf.copy_base_weights(model.hf, path, AutoModelForCTC, info["name"])
    return f"initialised from base {info['name']}: {n['copied']} tensors copied, {n['new']} new (CTC head)"


def _init_whisper(model: HFWhisper, path: Path, prep: dict, like: str | None) -> str:
    """Base weights into MODEL; the new language token's embedding starts as LIKE's (a related language) or the
    mean of the language tokens."""
    from transformers import WhisperForConditionalGeneration

    hf.set_offline()
    try:
        base = WhisperForConditionalGeneration.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise HearthError(f"base model: {path} cannot be loaded offline ({hf._first_line(exc)})") from None
    old = base.get_input_embeddings().weight.shape[0]
    tok = prep["hf_tokenizer"]
    new = model.hf.get_input_embeddings().weight.shape[0]
    if new > old:
        base.resize_token_embeddings(new)
        emb = base.get_input_embeddings().weight
        with torch.no_grad():
            if like:
                src = tok.convert_tokens_to_ids(f"<|{like}|>")
                if src in (None, tok.unk_token_id) or src >= old:
                    raise HearthError(f"model.language_init {like!r}: the base's tokenizer has no <|{like}|> token")
                emb[old:] = emb[src]
            else:
                emb[old:] = emb[:old].mean(0)
    model.hf.load_state_dict(base.state_dict(), strict=False)
    return f"{len(base.state_dict())} tensors copied, {max(0, new - old)} new token(s)"


def whisper_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Teacher-forced cross-entropy over the transcript and end token (not the prompt)."""
    seq = batch["labels"]  # (B, L): prompt, text, end; IGNORE after the end
    inp = seq[:, :-1].clamp(min=0)
    target = seq[:, 1:].clone()
    target[:, : len(WHISPER_PROMPT) - 1] = IGNORE  # the prompt is given, not learned
    logits = model(batch["feats"], inp)
    return F.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=IGNORE)
