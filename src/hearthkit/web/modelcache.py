"""Models loaded once per worker and reused: an LRU keyed by model name and the sha256 of its weights."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

WEIGHTS = "model.safetensors"


class ModelCache:
    """Up to SIZE loaded models; a model whose weight file changed is a new key (never a stale model)."""

    def __init__(self, size: int = 4):
        self.size = size
        self._models: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self.loads = 0  # how many times a model was actually read from disk (tests and the benchmark read it)

    def weight_hash(self, folder: Path) -> str:
        """sha256 of FOLDER's weight file, computed once per (path, size, mtime)."""
        f = Path(folder) / WEIGHTS
        st = f.stat()
        sig = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        if sig not in self._hashes:
            h = hashlib.sha256()
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            self._hashes[sig] = h.hexdigest()
        return self._hashes[sig]

    def get(self, name: str, folder: Path, load: Callable[[Path], object]) -> object:
        """The model NAME in FOLDER, loaded by LOAD the first time (one load even under concurrent first calls)."""
        key = (name, self.weight_hash(folder))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            model = load(Path(folder))
            with self._lock:
                self.loads += 1
                self._models[key] = model
                self._models.move_to_end(key)
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
                self._loading.pop(key, None)
            return model
