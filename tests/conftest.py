"""Shared test fixtures: the read-only data in ../shared beside the project root."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = PROJECT_ROOT.parent / "shared"
FIXTURES_DIR = SHARED_DIR / "fixtures"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures (CS336 tokenizer fixtures and numerical snapshots)."""
    if not FIXTURES_DIR.is_dir():
        pytest.fail(f"test data missing: {FIXTURES_DIR} (the shared/ folder must sit beside the project root)")
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def reference_tokenizers_dir() -> Path:
    """../shared/reference-tokenizers (TinyStories 10K and OWT 32K in GPT-2 format)."""
    path = SHARED_DIR / "reference-tokenizers"
    if not path.is_dir():
        pytest.fail(f"test data missing: {path}")
    return path
