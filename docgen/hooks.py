"""mkdocs hook: the reference pages are written from the code at every build, never committed.

A setting, route or command without its description fails the build, as a broken link does under `--strict`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

from docgen import reference


def on_files(files: Files, config: Any) -> Files:
    undocumented = reference.missing()
    if undocumented:
        raise PluginError("undocumented: " + "; ".join(undocumented))
    for path, render in reference.PAGES.items():
        files.append(File.generated(config, path, content=render()))
    return files
