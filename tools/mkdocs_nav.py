"""A mkdocs hook (mkdocs.yml): every guide in docs/ is in the navigation.

The nav in mkdocs.yml orders the guides it names; a page added to docs/ later and not named there
is appended to "Guides" under its own title instead of failing the strict build as an omitted file.
"""

from __future__ import annotations

from pathlib import Path


def _listed(nav) -> set[str]:
    found = set()
    for item in nav or []:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            found |= _listed(value)
        elif isinstance(value, str):
            found.add(value)
    return found


def on_config(config, **kwargs):
    listed = _listed(config.nav)
    guides = next(item["Guides"] for item in config.nav if isinstance(item, dict) and "Guides" in item)
    guides.extend(p.name for p in sorted(Path(config.docs_dir).glob("*.md")) if p.name not in listed)
    return config
