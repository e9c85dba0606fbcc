"""Find, create and describe a hearthkit workspace (catalog + store + config)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from hearthkit.errors import HearthError

CONFIG_NAME = "hearth.yaml"


class SlurmDefaults(BaseModel):
    """Per-community SLURM settings: jobs are charged to the community whose data trains (the cluster's fair-share)."""

    accounts: dict[str, str] = Field(default_factory=dict, description="SLURM --account per community name.")
    qos: dict[str, str] = Field(default_factory=dict, description="SLURM --qos per community name.")
    partition: str | None = Field(None, description="Default SLURM --partition.")


class KubernetesDefaults(BaseModel):
    """Per-community Kubernetes settings for generated PyTorchJob/TrainJob manifests."""

    namespace: str = Field("default", description="Namespace the jobs go to.")
    queues: dict[str, str] = Field(default_factory=dict, description="Kueue LocalQueue per community name.")
    workspace_pvc: str | None = Field(None, description="PersistentVolumeClaim that holds this workspace.")
    image: str | None = Field(None, description="Container image with hearthkit installed.")


class WorkspaceConfig(BaseModel):
    """The workspace's own settings, stored in hearth.yaml."""

    name: str = Field("hearth", description="A name for this workspace.")
    owner: str | None = Field(
        None, description="Operating-system account that owns this workspace (set by `hearth init`); only it may "
                          "create a community's first steward. Unset: the account that owns hearth.yaml.",
    )
    db_url: str | None = Field(
        None, description="SQLAlchemy URL of the catalog; default is catalog.sqlite in the workspace."
    )
    store: str = Field("store", description="Folder of the content-addressed store, relative to the workspace.")
    keys: str | None = Field(
        None, description="Folder of the community key files (0600), outside the workspace; relative paths are "
                          "relative to the workspace. Default: <workspace>/../<workspace name>.keys. $HEARTH_KEYS "
                          "overrides it.",
    )
    slurm: SlurmDefaults = Field(default_factory=SlurmDefaults, description="SLURM accounts/QoS per community.")
    kubernetes: KubernetesDefaults = Field(default_factory=KubernetesDefaults,
                                           description="Kubernetes namespace, queues, volume and image.")


@dataclass(frozen=True)
class Workspace:
    """A workspace folder: hearth.yaml, the catalog database, the store, runs."""

    root: Path
    config: WorkspaceConfig

    @property
    def db_url(self) -> str:
        """Catalog URL: $HEARTH_DB, then the config, then SQLite in the workspace."""
        return os.environ.get("HEARTH_DB") or self.config.db_url or f"sqlite:///{self.root / 'catalog.sqlite'}"

    @property
    def store_dir(self) -> Path:
        return self.root / self.config.store

    @property
    def keys_dir(self) -> Path:
        """Community key folder: $HEARTH_KEYS, then `keys:` in hearth.yaml, then a sibling <name>.keys folder."""
        raw = os.environ.get("HEARTH_KEYS") or self.config.keys
        path = (self.root / raw).resolve() if raw else self.root.parent / f"{self.root.name}.keys"
        # Keys kept beside the data they unlock would protect nothing when the workspace is copied or shared.
        if path == self.root or self.root in path.parents:
            raise HearthError(f"key folder {path} is inside the workspace {self.root}; keep community keys "
                              "outside it (set $HEARTH_KEYS or `keys:` in hearth.yaml to another folder)")
        return path

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / name

    @property
    def owner(self) -> str:
        """The workspace owner's OS account: `owner:` in hearth.yaml, else the account that owns hearth.yaml."""
        if self.config.owner:
            return self.config.owner
        import pwd

        uid = (self.root / CONFIG_NAME).stat().st_uid
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return f"uid {uid}"

    def require_owner(self, action: str) -> str:
        """Return the owner's name when the OS user running this is the workspace owner; else refuse ACTION."""
        me = current_os_user()
        if me != self.owner:
            raise HearthError(f"only the workspace owner ({self.owner}) may {action}; you are {me}")
        return me


def current_os_user() -> str:
    """The operating-system account running this process (the terminal's identity)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def init_workspace(root: Path, name: str | None = None) -> Workspace:
    """Create a workspace in ROOT (idempotent: an existing one is opened, not overwritten)."""
    from hearthkit.catalog.db import Catalog

    root = root.resolve()
    cfg_path = root / CONFIG_NAME
    if cfg_path.exists():
        ws = open_workspace(root)
    else:
        root.mkdir(parents=True, exist_ok=True)
        config = WorkspaceConfig(name=name or root.name, owner=current_os_user())
        cfg_path.write_text(yaml.safe_dump(config.model_dump(exclude_none=True), sort_keys=False))
        ws = Workspace(root, config)
    for d in (ws.store_dir, ws.runs_dir, ws.models_dir):
        d.mkdir(parents=True, exist_ok=True)
    Catalog.open(ws.db_url, create=True).close()
    return ws


def open_workspace(root: Path) -> Workspace:
    """Open the workspace in ROOT, or fail with a one-line reason."""
    cfg_path = root / CONFIG_NAME
    if not cfg_path.is_file():
        raise HearthError(f"{root}: not a hearthkit workspace (no {CONFIG_NAME}); run `hearth init {root}` first")
    try:
        data = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        config = WorkspaceConfig.model_validate(data)
    except Exception as exc:  # yaml or validation error: name the file
        raise HearthError(f"{cfg_path}: invalid workspace config: {str(exc).splitlines()[0]}") from exc
    return Workspace(root.resolve(), config)


def find_workspace(explicit: Path | None = None) -> Workspace:
    """Workspace from --workspace, then $HEARTH_WORKSPACE, then the current folder or its parents."""
    if explicit is not None:
        return open_workspace(explicit)
    env = os.environ.get("HEARTH_WORKSPACE")
    if env:
        return open_workspace(Path(env))
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / CONFIG_NAME).is_file():
            return open_workspace(d)
    raise HearthError(
        "no hearthkit workspace here: pass --workspace DIR, set HEARTH_WORKSPACE, or run `hearth init DIR`"
    )
