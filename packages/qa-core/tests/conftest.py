from __future__ import annotations

import pytest

from qa_core.corpus import CorpusIndex, cached_index
from qa_core.settings import CoreSettings


@pytest.fixture(scope="session")
def settings() -> CoreSettings:
    return CoreSettings(_env_file=None)


@pytest.fixture(scope="session")
def index(settings: CoreSettings) -> CorpusIndex:
    return cached_index(settings.corpus_dir, settings.chunk_words)
