"""Read the user's project (`sources/`, `models/`, `expectations/`, `[tool.ssot]`) into typed objects.

This is the only module that walks the project folder. Everything downstream (Dagster asset
factories, the CLI, tests) works from a :class:`Project`, so errors in the user's files surface
once, at load time, naming the file and the key to fix.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from pipelines.config import (
    BigQueryTarget,
    DuckDBTarget,
    ModelPropertiesSpec,
    ProjectSettings,
    SeedSpec,
    SourceSpec,
    SourceTableSpec,
    describe_validation_error,
    parse_models_file,
    parse_seeds_file,
)
from pipelines.errors import ConfigError

PROJECT_DIR_ENV = "SSOT_PROJECT_DIR"
TARGET_ENV = "SSOT_TARGET"

#: Model folders in build order; a model's folder is its layer and its warehouse schema.
LAYERS = ("staging", "conformed", "marts")
SEEDS_SCHEMA = "seeds"
#: where dbt-style generic tests (`{% test name(model, column_name) %}`) may live, besides macros/
GENERIC_TESTS_DIR = "data_tests/generic"
RAW_SCHEMA = "raw"
META_SCHEMA = "ssot_meta"


@dataclass(frozen=True)
class ModelFile:
    """One `models/<layer>/<name>.sql` file with its yml properties (if any)."""

    name: str
    layer: str
    path: Path
    sql: str
    properties: ModelPropertiesSpec
    properties_path: Path | None
    #: config inherited from its folders (`[tool.ssot.models]` of ``settings_path``)
    folder_config: dict[str, Any] = field(default_factory=dict)
    settings_path: Path | None = None

    @property
    def relative_path(self) -> str:
        return self.path.as_posix()


@dataclass(frozen=True)
class SeedFile:
    """One `seeds/<name>.csv`: a small reference table loaded as `seeds.<name>`, ref()-able."""

    name: str
    path: Path
    properties: SeedSpec
    properties_path: Path | None


@dataclass(frozen=True)
class Project:
    """The user's project, validated. Paths inside are absolute."""

    root: Path
    settings: ProjectSettings
    sources: dict[str, SourceSpec]
    source_files: dict[str, Path]
    models: dict[str, ModelFile]
    expectation_files: dict[str, Path] = field(default_factory=dict)
    #: macros/*.sql: path -> Jinja text defining `{% macro %}`s every model can call
    macro_files: dict[Path, str] = field(default_factory=dict)
    seeds: dict[str, SeedFile] = field(default_factory=dict)
    #: data_tests/*.sql: dbt's singular data tests (a SELECT of the rows that break a rule)
    data_tests: dict[str, ModelFile] = field(default_factory=dict)

    # -- targets ----------------------------------------------------------------------------
    @property
    def target_name(self) -> str:
        return os.environ.get(TARGET_ENV) or self.settings.default_target

    @cached_property
    def target(self) -> DuckDBTarget | BigQueryTarget:
        name = self.target_name
        try:
            return self.settings.targets[name]
        except KeyError:
            raise ConfigError(
                f"{self.root / 'pyproject.toml'}: target {name!r} (from ${TARGET_ENV} or "
                f"default_target) is not defined under [tool.ssot.targets]; defined: "
                f"{', '.join(sorted(self.settings.targets))}"
            ) from None

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def demo_dir(self) -> Path:
        return self.resolve_path(self.settings.demo_dir)

    def now(self) -> datetime:
        """The current time for freshness checks: the machine's, or with ``clock = "demo"``
        the demo world's (the start of its current simulated day)."""
        if self.settings.clock == "wall":
            return datetime.now(UTC)
        from pipelines.demo.clock import day_start
        from pipelines.demo.state import DemoError, load_state

        try:
            state = load_state(self.demo_dir)
        except DemoError as exc:
            raise ConfigError(
                f'{self.root / "pyproject.toml"}: clock = "demo" reads the demo world\'s clock, '
                f'but {exc}; run `ssot demo init` or set clock = "wall"'
            ) from None
        return datetime.fromtimestamp(day_start(state.day), UTC)

    # -- sources ----------------------------------------------------------------------------
    def source_url(self, source: SourceSpec) -> str:
        """The connection URL: the env var when set, else the default with relative paths resolved."""
        url = os.environ.get(source.connection.url_env) or source.connection.default
        for scheme in ("sqlite:///", "file://"):
            rest = url.removeprefix(scheme)
            if rest != url and not rest.startswith("/"):
                return scheme + str(self.resolve_path(rest))
        return url

    def source_tables(self) -> list[tuple[SourceSpec, SourceTableSpec]]:
        return [(s, t) for s in self.sources.values() for t in s.tables]


# ---------------------------------------------------------------------------------------------


#: what defines a project, beside its data, warehouse and Dagster history
PROJECT_FILES = (
    "pyproject.toml",
    "workspace.yaml",
    "sources",
    "models",
    "macros",
    "seeds",
    "data_tests",
    "expectations",
)


def copy_project_files(source: Path, target: Path) -> Path:
    """Copy the files that define the project in ``source`` (not its data, warehouse or Dagster
    history) into ``target``, which is created; returns ``target``."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name)
        elif path.exists():
            shutil.copy2(path, target / name)
    return target


def find_project_root(start: Path | None = None) -> Path:
    """The project folder: $SSOT_PROJECT_DIR, else the nearest parent with `[tool.ssot]`."""
    env = os.environ.get(PROJECT_DIR_ENV)
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / "pyproject.toml").is_file():
            raise ConfigError(f"${PROJECT_DIR_ENV}={env}: no pyproject.toml there")
        return root
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and "[tool.ssot" in pyproject.read_text(encoding="utf-8"):
            return candidate
    raise ConfigError(
        f"no ssot project found at or above {here}: run from the project folder (the one whose "
        f"pyproject.toml has a [tool.ssot] table) or set ${PROJECT_DIR_ENV}"
    )


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def _load_settings(root: Path) -> ProjectSettings:
    pyproject = root / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pyproject}: not valid TOML: {exc}") from exc
    raw = data.get("tool", {}).get("ssot", {})
    try:
        return ProjectSettings.model_validate(raw)
    except ValidationError as exc:
        raise describe_validation_error(pyproject, exc, prefix="tool.ssot") from exc


def _load_sources(root: Path) -> tuple[dict[str, SourceSpec], dict[str, Path]]:
    sources: dict[str, SourceSpec] = {}
    files: dict[str, Path] = {}
    for path in sorted((root / "sources").glob("*.yml")) + sorted(
        (root / "sources").glob("*.yaml")
    ):
        raw = _read_yaml(path)
        try:
            spec = SourceSpec.model_validate(raw)
        except ValidationError as exc:
            raise describe_validation_error(path, exc) from exc
        if spec.name in sources:
            raise ConfigError(
                f"{path}: source {spec.name!r} is already defined in {files[spec.name]}; "
                "source names must be unique"
            )
        sources[spec.name] = spec
        files[spec.name] = path
    return sources, files


Spec = TypeVar("Spec", ModelPropertiesSpec, SeedSpec)


def _described(
    folder: Path, kind: str, parse: Callable[[Path, Any], list[Spec]]
) -> dict[str, tuple[Spec, Path]]:
    """name -> (its yml entry, the yml file) over every yml under ``folder``; a name described
    twice is an error naming both files."""
    found: dict[str, tuple[Spec, Path]] = {}
    for path in sorted(folder.rglob("*.yml")) + sorted(folder.rglob("*.yaml")):
        for spec in parse(path, _read_yaml(path)):
            if spec.name in found:
                raise ConfigError(
                    f"{path}: {kind} {spec.name!r} is already described in {found[spec.name][1]}"
                )
            found[spec.name] = (spec, path)
    return found


def _folder_config(folders: dict[str, dict[str, Any]], relative: Path) -> dict[str, Any]:
    """The `[tool.ssot.models]` defaults of every folder above a model file, deepest last."""
    merged: dict[str, Any] = {}
    parents = relative.parts[:-1]
    for depth in range(1, len(parents) + 1):
        merged.update(folders.get("/".join(parents[:depth]), {}))
    return merged


def _load_models(root: Path, folders: dict[str, dict[str, Any]]) -> dict[str, ModelFile]:
    models_dir = root / "models"
    unknown = [f for f in folders if not (models_dir / f).is_dir() or f.split("/")[0] not in LAYERS]
    if unknown:
        raise ConfigError(
            f"{root / 'pyproject.toml'}: [tool.ssot.models] names {', '.join(map(repr, unknown))}, "
            f"which is no folder under models/<layer> (layers: {', '.join(LAYERS)})"
        )
    properties = _described(
        models_dir, "model", lambda path, raw: parse_models_file(path, raw).models
    )

    models: dict[str, ModelFile] = {}
    for path in sorted(models_dir.rglob("*.sql")):
        rel = path.relative_to(models_dir)
        layer = rel.parts[0] if len(rel.parts) > 1 else ""
        if layer not in LAYERS:
            raise ConfigError(
                f"{path}: models live in one of the layer folders {', '.join(LAYERS)} "
                f"(models/<layer>/<name>.sql); move the file into one of them"
            )
        name = path.stem
        if name in models:
            raise ConfigError(f"{path}: model name {name!r} is also used by {models[name].path}")
        spec, spec_path = properties.pop(name, (ModelPropertiesSpec(name=name), None))
        models[name] = ModelFile(
            name=name,
            layer=layer,
            path=path,
            sql=path.read_text(encoding="utf-8"),
            properties=spec,
            properties_path=spec_path,
            folder_config=_folder_config(folders, rel),
            settings_path=root / "pyproject.toml",
        )
    for orphan, (_, spec_path) in properties.items():
        raise ConfigError(
            f"{spec_path}: describes model {orphan!r} but there is no models/<layer>/{orphan}.sql; "
            "fix the name or remove the entry"
        )
    return models


def _load_seeds(root: Path, models: dict[str, ModelFile]) -> dict[str, SeedFile]:
    seeds_dir = root / "seeds"
    properties = _described(seeds_dir, "seed", lambda path, raw: parse_seeds_file(path, raw).seeds)
    seeds: dict[str, SeedFile] = {}
    for path in sorted(seeds_dir.rglob("*.csv")):
        name = path.stem
        if name in seeds or name in models:
            other = seeds[name].path if name in seeds else models[name].path
            raise ConfigError(f"{path}: seed name {name!r} is also used by {other}")
        spec, spec_path = properties.pop(name, (SeedSpec(name=name), None))
        seeds[name] = SeedFile(name=name, path=path, properties=spec, properties_path=spec_path)
    for orphan, (_, spec_path) in properties.items():
        raise ConfigError(
            f"{spec_path}: describes seed {orphan!r} but there is no seeds/{orphan}.csv; "
            "fix the name or remove the entry"
        )
    return seeds


def _load_data_tests(root: Path) -> dict[str, ModelFile]:
    tests: dict[str, ModelFile] = {}
    for path in sorted((root / "data_tests").rglob("*.sql")):
        if path.is_relative_to(root / GENERIC_TESTS_DIR):
            continue  # generic tests are macros
        if path.stem in tests:
            raise ConfigError(
                f"{path}: data test name {path.stem!r} is also used by {tests[path.stem].path}"
            )
        tests[path.stem] = ModelFile(
            name=path.stem,
            layer="",
            path=path,
            sql=path.read_text(encoding="utf-8"),
            properties=ModelPropertiesSpec(name=path.stem),
            properties_path=None,
        )
    return tests


#: the project whose run this process is executing (``project_active``)
_ACTIVE: Project | None = None


@contextmanager
def project_active(project: Project) -> Iterator[None]:
    """While the block runs, build Dagster definitions and resources from ``project``: `ssot
    run` has just loaded and validated it (`runner.run_job` makes it active), and loading and
    parsing it again cost 0.45 s a run."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, project
    try:
        yield
    finally:
        _ACTIVE = previous


def active_project(root: Path | None = None) -> Project:
    """The project active in this process if it lives in ``root`` (default: the project folder
    found as `load_project` finds it), else that project loaded afresh."""
    root = (root or find_project_root()).resolve()
    if _ACTIVE is not None and _ACTIVE.root == root:
        return _ACTIVE
    return load_project(root)


def load_project(root: Path | None = None) -> Project:
    """Load and validate the whole project; raises ConfigError naming the file at fault."""
    root = (root or find_project_root()).resolve()
    sources, source_files = _load_sources(root)
    expectation_files = {p.stem: p for p in sorted((root / "expectations").glob("*.json"))}
    settings = _load_settings(root)
    models = _load_models(root, settings.models)
    return Project(
        root=root,
        settings=settings,
        sources=sources,
        source_files=source_files,
        models=models,
        seeds=_load_seeds(root, models),
        data_tests=_load_data_tests(root),
        macro_files={
            path: path.read_text(encoding="utf-8")
            for folder in (root / "macros", root / GENERIC_TESTS_DIR)
            for path in sorted(folder.rglob("*.sql"))
        },
        expectation_files=expectation_files,
    )
