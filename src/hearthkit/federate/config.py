"""The coordinator's and a site's config: pydantic models read from YAML, errors naming the file and field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hearthkit.engine.config import SplitConfig, field_error
from hearthkit.errors import HearthError

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


class StrategyConfig(BaseModel):
    """How the coordinator combines the sites' updates (Flower's strategies)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["fedavg", "fedprox", "fedadam"] = Field(
        "fedavg", description="fedavg (weighted by samples drawn), fedprox (fedavg whose sites add "
        "proximal_mu/2·‖w − w_global‖² to their local loss) or fedadam (server-side Adam on the averaged update).")
    proximal_mu: float | None = Field(None, ge=0, description="fedprox: weight μ of the proximal term (needed "
                                      "with fedprox, refused with the others).")
    eta: float = Field(0.01, gt=0, description="fedadam: server learning rate.")
    beta_1: float = Field(0.9, gt=0, lt=1, description="fedadam: first-moment decay.")
    beta_2: float = Field(0.99, gt=0, lt=1, description="fedadam: second-moment decay.")
    tau: float = Field(1e-3, gt=0, description="fedadam: adaptivity (numerical floor of the denominator).")

    @model_validator(mode="after")
    def _mu(self) -> StrategyConfig:
        if self.kind == "fedprox" and self.proximal_mu is None:
            raise ValueError("fedprox needs proximal_mu (the weight of the proximal term, e.g. 0.01)")
        if self.kind != "fedprox" and self.proximal_mu is not None:
            raise ValueError(f"proximal_mu is FedProx's; set kind: fedprox or remove it (kind is {self.kind})")
        return self


class PrivacyConfig(BaseModel):
    """Differential privacy at site level: each site's update clipped, Gaussian noise added to the aggregate."""

    model_config = ConfigDict(extra="forbid")
    clip: float | None = Field(None, gt=0, description="L2 bound of one site's update; none = no clipping and no "
                               "noise (no differential privacy).")
    noise_multiplier: float = Field(1.0, ge=0, description="Noise standard deviation as a multiple of clip.")
    delta: float = Field(1e-5, gt=0, lt=1, description="The δ of the (ε, δ) guarantee written on the card.")


class TlsConfig(BaseModel):
    """Where the coordinator's TLS certificate authority and server certificate are (made when missing)."""

    model_config = ConfigDict(extra="forbid")
    folder: str | None = Field(None, description="Folder of ca.pem, server.pem and server.key (`hearth federate "
                               "init-tls`); default: tls/ in the coordinator's folder, made at set-up when missing. "
                               "Sites need its ca.pem.")
    hosts: list[str] = Field(default_factory=list, description="Names or IP addresses the sites dial, written into a "
                             "new server certificate (besides the address's host, localhost and 127.0.0.1).")


class SiteRef(BaseModel):
    """A participating site: its name (what `hearth federate join` says) and the community it speaks for."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Site name, letters, digits, '.', '_' or '-'.")
    community: str = Field(description="The community whose stewards govern the site's data.")
    public_key: str | None = Field(None, description="The site's update-signing key, 'ed25519:BASE64' (the site's "
                                   "`hearth federate site-key -w ITS-WORKSPACE` prints it); needed unless insecure.")


# --- secure aggregation (helper G): Flower's SecAgg+ on the deployment engine (federate/secagg.py) ---
class SecureAggregationConfig(BaseModel):
    """SecAgg+: the coordinator learns only the sum of the sites' quantised, masked weights."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="Run the rounds on Flower's SuperLink/SuperNodes with SecAgg+ "
                          "(`secure_aggregation: true` is short for enabled).")
    num_shares: int | None = Field(None, gt=2, description="Shares each site's mask seeds are split into (its "
                                   "neighbours, itself included); default: every listed site.")
    threshold: int | None = Field(None, ge=2, description="Shares needed to rebuild a dropped site's masks; below "
                                  "num_shares; default: a majority (num_shares // 2 + 1).")
    clipping_range: float = Field(8.0, gt=0, description="Every weight is clipped to ±this before quantisation.")
    quantization_range: int = Field(2**22, ge=2**8, le=2**28, description="Integer levels over the clipping range "
                                    "(a power of two; the aggregate is within about 2·clipping_range/levels of "
                                    "the exact mean per value).")

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data):
        return {"enabled": data} if isinstance(data, bool) else data
# --- end secure aggregation ---


class FederationConfig(BaseModel):
    """A federation as the coordinator runs it."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Federation (and global model) name.")
    recipe: Literal["asr"] = Field("asr", description="Recipe every site trains (asr for now).")
    model: dict = Field(default_factory=dict, description="The recipe's model section: one shape for all sites.")
    units: str = Field(description="The shared output characters (public: an alphabet, no transcript), e.g. "
                       "\"abcdefghijklmnopqrstuvwxyzāēīōū '-\".")
    rounds: int = Field(3, gt=0, description="Federated rounds.")
    local_steps: int = Field(20, gt=0, description="Optimizer steps each site trains per round.")
    batch_size: int = Field(8, gt=0, description="Examples per step at a site.")
    lr: float = Field(3e-3, gt=0, description="Local learning rate.")
    seed: int = Field(0, description="Seed of the initial global model and of local sampling.")
    strategy: StrategyConfig = StrategyConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    sites: list[SiteRef] = Field(min_length=1, description="Participating sites.")
    min_sites: int = Field(1, gt=0, description="Sites that must answer for a round to be aggregated.")
    address: str = Field("127.0.0.1:9092", description="host:port the coordinator listens on.")
    round_timeout_s: float = Field(600, gt=0, description="A site that has not answered by then is left out of the "
                                   "round (killed, disconnected).")
    tls: TlsConfig = TlsConfig()
    insecure: bool = Field(False, description="Plain gRPC, no TLS and no update signatures: the weights travel in "
                           "clear and anyone who knows a site's name can send updates as it. Only for a closed test "
                           "network; warned at start and written on the card.")
    secure_aggregation: SecureAggregationConfig = Field(  # helper G: SecAgg+
        default_factory=SecureAggregationConfig, description="SecAgg+ (true, or a mapping of its settings).")

    @model_validator(mode="after")
    def _secure_aggregation(self) -> FederationConfig:
        sa = self.secure_aggregation
        if not sa.enabled:
            return self
        shares = sa.num_shares or len(self.sites)
        if len(self.sites) < 3:
            raise ValueError("secure_aggregation needs 3 or more sites (with two, each could subtract its own update "
                             "from the sum)")
        if shares > len(self.sites):
            raise ValueError(f"secure_aggregation.num_shares {shares} exceeds the {len(self.sites)} sites listed")
        if shares < len(self.sites) and shares % 2 == 0:
            raise ValueError(f"secure_aggregation.num_shares {shares}: SecAgg+ needs an odd number below the sites")
        if (sa.threshold or shares // 2 + 1) >= shares:
            raise ValueError(f"secure_aggregation.threshold {sa.threshold} must be below num_shares {shares}")
        if sa.quantization_range & (sa.quantization_range - 1):
            raise ValueError(f"secure_aggregation.quantization_range {sa.quantization_range}: a power of two")
        if self.privacy.clip is not None:
            raise ValueError("privacy.clip clips each site's update at the coordinator, which secure_aggregation "
                             "hides from it; use one or the other")
        return self

    @model_validator(mode="after")
    def _check(self) -> FederationConfig:
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ValueError("sites: each site name once")
        for n in [self.name, *names]:
            if not _NAME.match(n):
                raise ValueError(f"{n!r} must be letters, digits, '.', '_' or '-'")
        if self.min_sites > len(self.sites):
            raise ValueError(f"min_sites {self.min_sites} exceeds the {len(self.sites)} sites listed")
        if len(set(self.units)) != len(self.units):
            raise ValueError("units: each character once")
        if not self.insecure:
            from hearthkit.federate.signing import parse_public_key

            for s in self.sites:
                if s.public_key is None:
                    raise ValueError(f"site {s.name}: public_key missing (its `hearth federate site-key -w "
                                     "WORKSPACE` prints it); every update is signed unless insecure: true")
                parse_public_key(s.public_key, f"site {s.name}: public_key")
            keys = [s.public_key for s in self.sites]
            if len(set(keys)) != len(keys):
                raise ValueError("sites: two sites list the same public_key; each site signs with its own key")
        return self

    def site(self, name: str) -> SiteRef | None:
        """The listed site NAME, or None."""
        return next((s for s in self.sites if s.name == name), None)


class SiteConfig(BaseModel):
    """A site's side: who it is, where the coordinator listens, and the request its stewards approve."""

    model_config = ConfigDict(extra="forbid")
    site: str = Field(description="This site's name, as the coordinator's config lists it.")
    coordinator: str = Field(description="host:port of the coordinator.")
    purpose: str = Field(description="Purpose of the federated model, e.g. language_revitalization.")
    requester: str = Field(description="Who asks for the site's data (as in `hearth request`).")
    collections: list[str] = Field(min_length=1, description="The site's collections to train on.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Items the site holds out for its own "
                               "evaluation.")
    threads: int = Field(1, gt=0, description="CPU threads of local training.")
    ca: str | None = Field(None, description="The coordinator's CA certificate (its tls folder's ca.pem, handed over "
                           "with the config); relative to this file. Needed unless insecure.")
    insecure: bool = Field(False, description="Plain gRPC without TLS and unsigned updates (the coordinator must "
                           "also be insecure); only for a closed test network.")
    secure_aggregation: bool = Field(False, description="Join through a Flower SuperNode: the coordinator runs "
                                     "SecAgg+ (its secure_aggregation), so this site's weights leave it only masked.")

    @model_validator(mode="after")
    def _tls(self) -> SiteConfig:
        if not self.insecure and not self.ca:
            raise ValueError("ca missing: the coordinator's CA certificate (ca.pem) the link is checked against; "
                             "or insecure: true (no TLS, not recommended)")
        return self


def _load(path: Path, cls):
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise HearthError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise HearthError(f"{path}: not readable YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise HearthError(f"{path}: expected a mapping of settings at the top level")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise HearthError(f"{path}: {field_error(exc, schema=cls)}") from None


def load_federation(path: Path) -> FederationConfig:
    """The coordinator config in PATH, its model section checked against the recipe."""
    cfg = _load(path, FederationConfig)
    from hearthkit.recipes import get_recipe

    try:
        get_recipe(cfg.recipe).ModelConfig.model_validate({**cfg.model, "init_from": None})
    except ValidationError as exc:
        raise HearthError(f"{path}: model: {field_error(exc)}") from None
    return cfg


def load_site(path: Path) -> SiteConfig:
    """The site config in PATH, its ca path made absolute (relative to PATH's folder)."""
    cfg = _load(path, SiteConfig)
    if cfg.ca:
        ca = (Path(path).parent / cfg.ca).resolve()
        if not ca.is_file():
            raise HearthError(f"{path}: ca: {ca} is not a file; copy the coordinator's ca.pem there")
        cfg = cfg.model_copy(update={"ca": str(ca)})
    return cfg
