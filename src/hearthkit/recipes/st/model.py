"""Speech translation models: the st config, and the end-to-end model (Conformer encoder -> Transformer decoder).

Shapes: B batch, T frames after subsampling, D encoder width, L target length, C decoder width, V target pieces.
The cascade's text model is the mt recipe's Seq2Seq, unchanged.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from hearthkit.engine.dropout import Dropout
from hearthkit.recipes.asr.model import ASRConfig, ConformerCTC, build
from hearthkit.recipes.mt.model import DecoderLayer, MTConfig, Seq2Seq, sinusoids


class STConfig(BaseModel):
    """Mode, parent speech model, text/decoder shape and decoding of the st recipe."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["cascade", "e2e"] = Field(
        "e2e", description="cascade: an mt model trained here on the items' transcripts -> translations, fed at "
        "evaluation by the asr model init_from names; e2e: one model from speech to translation (a speech encoder, "
        "initialised from init_from when given, and a Transformer decoder over target pieces).")
    target: str = Field("fr", description="Language tag of the translation to learn: a key of the items' "
                        "translations (archive.yaml layout.translations).")
    init_from: str | None = Field(None, description="A models/NAME folder of an asr model: the cascade's "
                                  "transcriber (required there), the e2e encoder's starting weights. The new "
                                  "model inherits its restrictions.")
    decoder_from: str | None = Field(None, description="e2e: a models/NAME folder of an mt model (recipe mt "
                                     "from scratch, or an st cascade's text side) that starts the decoder: its "
                                     "vocabulary becomes the target vocabulary (text.vocab_size is then ignored), "
                                     "its embedding (the tied output projection), decoder layers and final norm are "
                                     "copied where shapes match (text.d_model must be its width). The new model "
                                     "inherits its restrictions, like init_from's.")
    encoder: ASRConfig = Field(ASRConfig(), description="e2e: the speech encoder (a conformer); with init_from, "
                               "its shape fields must be the parent's.")
    text: MTConfig = Field(MTConfig(pairs=["src-fr"], d_model=256, dropout=0.3), description="cascade: the whole "
                           "text translation model (pairs: [TRANSCRIPT_LANG-TARGET]); e2e: the decoder's width, "
                           "heads, dec_layers, d_ff, dropout, target vocabulary, beam, length penalty and MBR.")
    ctc_weight: float = Field(0.3, ge=0, lt=1, description="e2e: weight of the auxiliary CTC loss on the "
                              "transcription (items without one add none): (1-w) * translation + w * CTC.")
    nbest: int = Field(1, ge=1, description="cascade: transcripts handed from the asr beam to the mt model per "
                       "utterance; above 1 each is translated and the translation with the highest expected chrF "
                       "under the asr posterior is kept (MBR).")
    asr_beam: int = Field(8, ge=1, description="cascade: CTC beam width of the transcriber (with its n-gram, if "
                          "it has one).")
    cascade_input: Literal["asr", "transcript"] = Field(
        "asr", description="cascade evaluation: translate the asr model's transcripts of the audio (the system), or "
        "the held-out items' own transcripts (the text model's ceiling: what a perfect transcriber would give), "
        "e.g. `hearth eval NAME --set cascade_input=transcript`.")
    group_by: list[str] = Field(["speaker", "source", "dialect", "gender"],
                                description="Item metadata columns the evaluation is broken down by.")

    @field_validator("encoder")
    @classmethod
    def _conformer(cls, v: ASRConfig) -> ASRConfig:
        """The decoder attends to the conformer's states; the walking skeleton's BiGRU is not supported here."""
        if v.arch != "conformer":
            raise ValueError("the e2e encoder is a conformer (encoder.arch: conformer)")
        if getattr(v, "base", None):
            raise ValueError("a pretrained base is not supported by st yet; leave encoder.base unset")
        return v

    @field_validator("text")
    @classmethod
    def _own_text_model(cls, v: MTConfig) -> MTConfig:
        """The text side is hearthkit's own Transformer (its pieces are fitted on the run's transcripts)."""
        if getattr(v, "base", None):
            raise ValueError("a pretrained base is not supported by st yet; leave text.base unset")
        if len(v.pairs) != 1:
            raise ValueError("one direction: [TRANSCRIPT_LANG-TARGET], e.g. [mb-fr]")
        return v

    @model_validator(mode="after")
    def _decoder_from_e2e(self) -> STConfig:
        """A cascade trains its own text model; only the e2e decoder starts from an mt model."""
        if self.decoder_from and self.mode != "e2e":
            raise ValueError("decoder_from starts the e2e decoder; a cascade's text model is trained here (mode: e2e)")
        return self

    @property
    def source_lang(self) -> str:
        return self.text.pairs[0].split("-")[0]


def text_config(cfg: STConfig) -> MTConfig:
    """The mt config of the text side, its direction set to TRANSCRIPT_LANG-TARGET."""
    return cfg.text.model_copy(update={"pairs": [f"{cfg.source_lang}-{cfg.target}"]})


class SpeechTranslator(nn.Module):
    """Log-mel (B, T0, n_mels) -> conformer states -> CTC head (transcription) and a Transformer decoder (target).

    Attribute names of the decoder side (embed, decoder, dec_ln) are Seq2Seq's, so beam search drives both alike.
    """

    def __init__(self, cfg: STConfig, n_units: int, n_pieces: int, pad_id: int = 0):
        super().__init__()
        self.cfg, self.pad_id = cfg, pad_id
        tcfg = text_config(cfg)
        self.encoder: ConformerCTC = build(cfg.encoder, n_units)  # its `out` layer is the CTC head
        self.bridge = nn.Linear(cfg.encoder.d_model, tcfg.d_model)
        self.embed = nn.Embedding(n_pieces, tcfg.d_model, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=tcfg.d_model ** -0.5)
        self.register_buffer("pos", sinusoids(tcfg.max_tokens + 2, tcfg.d_model), persistent=False)
        self.drop = Dropout(tcfg.dropout)
        self.decoder = nn.ModuleList(DecoderLayer(tcfg) for _ in range(tcfg.dec_layers))
        self.dec_ln = nn.LayerNorm(tcfg.d_model)

    def states(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (B, T, D) before the CTC head, and frames per example (B,)."""
        enc = self.encoder
        x = enc.subsample(feats[:, None])  # (B, C, T, F')
        B, C, T, Fr = x.shape
        x = enc.inp(x.permute(0, 2, 1, 3).reshape(B, T, C * Fr))
        x = enc.drop(x * math.sqrt(enc.cfg.d_model) + sinusoids(T, enc.cfg.d_model).to(x))
        out_len = enc.out_lengths(lengths).clamp(min=1)
        pad = torch.arange(T, device=x.device)[None] >= out_len[:, None]  # (B, T) True on padding
        for block in enc.blocks:
            x = block(x, pad)
        return x, out_len

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor):
        """(CTC log-probs (B, T, U+1), frames (B,), decoder memory (B, T, C), memory mask (B, 1, 1, T))."""
        h, out_len = self.states(feats, lengths)
        mask = (torch.arange(h.size(1), device=h.device)[None] < out_len[:, None])[:, None, None, :]
        return self.encoder.out(h).log_softmax(-1), out_len, self.bridge(h), mask

    def _embed(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        x = self.embed(ids) * math.sqrt(self.embed.embedding_dim)
        return self.drop(x + self.pos[offset:offset + ids.size(1)])

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        return self.dec_ln(y) @ self.embed.weight.T  # tied output projection (B, L, V)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor):
        """(CTC log-probs, frames, teacher-forced target logits (B, L, V))."""
        ctc, out_len, mem, mask = self.encode(feats, lengths)
        y = self._embed(tgt_in)
        for layer in self.decoder:
            y = layer(y, layer.cross.keys_values(mem), mask)
        return ctc, out_len, self.logits(y)

    def start(self, feats: torch.Tensor, lengths: torch.Tensor) -> dict:
        """Decoding state: cross-attention keys/values computed once, empty self-attention caches."""
        _, _, mem, mask = self.encode(feats, lengths)
        return {"mem_kv": [layer.cross.keys_values(mem) for layer in self.decoder], "mask": mask,
                "caches": [{} for _ in self.decoder], "t": 0}

    def step(self, state: dict, last: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, V) of the piece after LAST (N,), advancing STATE by one position."""
        y = self._embed(last[:, None], offset=state["t"])
        for layer, kv, cache in zip(self.decoder, state["mem_kv"], state["caches"], strict=True):
            y = layer(y, kv, state["mask"], cache)
        state["t"] += 1
        return F.log_softmax(self.logits(y)[:, -1].float(), dim=-1)

    reorder = staticmethod(Seq2Seq.reorder)
