"""Collections, items, search and audio, filtered by the browsing access policy (governance/access.py)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
