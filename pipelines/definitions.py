"""The Dagster code location: assembles Definitions from the project, nothing else lives here."""

from __future__ import annotations

from pipelines.assets import build_definitions
from pipelines.project import active_project

defs = build_definitions(active_project())
