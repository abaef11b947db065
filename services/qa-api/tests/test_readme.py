from __future__ import annotations

import re
from pathlib import Path

from qa_api.settings import Settings
from qa_core.settings import CoreSettings

README = Path(__file__).parents[1] / "README.md"


def test_the_readme_settings_table_lists_every_qa_api_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", README.read_text(), flags=re.MULTILINE))
    own = {name: field for name, field in Settings.model_fields.items() if name not in CoreSettings.model_fields}
    assert set(rows) == {name.upper() for name in own}
    for name, field in own.items():
        assert rows[name.upper()].strip() == str(field.default), name
