"""`ssot`: the command line of the warehouse (run, demo, compile, query, validate).

Every command loads the project from the current folder (or $SSOT_PROJECT_DIR). Errors the
user can act on (`SsotError`) are printed without a traceback and exit with status 2; a run
whose blocking checks fail exits with status 1 and names what failed.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pipelines.errors import SsotError

if TYPE_CHECKING:
    import dagster as dg

    from pipelines.modelling import ModelGraph
    from pipelines.project import Project
    from pipelines.warehouse import Warehouse

# Wide enough for the summary table when output goes to a file or a CI log.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)
HEARTBEAT_SECONDS = 15.0
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# ssot run


@dataclass
class AssetLine:
    """What the summary table shows for one asset."""

    key: str
    status: str = "pending"
    #: False when the model was up to date and kept as it was
    rebuilt: bool = True
    rows: int | None = None
    quarantined: int | None = None
    #: of those, the records the quarantine already held (read again)
    already_quarantined: int = 0
    seconds: float | None = None
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    checks_warned: list[str] = field(default_factory=list)
    error: str = ""


class RunReporter:
    """Turns Dagster events into progress lines while the run goes, and a summary at the end.

    A single-asset step is one line from its start to its end. The project's step loads the
    seeds, lands the source tables and builds the models: each asset's line ends with its
    materialization (or an observation saying it failed or did not run); a refused model has
    failed checks and no materialization.
    """

    def __init__(
        self, asset_keys: Sequence[str], steps: dict[str, list[str]] | None = None
    ) -> None:
        self.total = len(asset_keys)
        self.done = 0
        self.lines: dict[str, AssetLine] = {key: AssetLine(key) for key in asset_keys}
        self._started: dict[str, float] = {}
        # Dagster names a single asset's step after its key path joined by "__".
        self._by_step = {key.replace("/", "__"): key for key in asset_keys}
        #: multi-asset steps -> the assets they build
        self._steps = dict(steps or {})
        self._step_started: dict[str, float] = {}
        #: the messages of failed multi-asset steps (each names its models and why)
        self.step_errors: list[str] = []
        self._held: AssetLine | None = None

    def _line(self, key: str) -> AssetLine:
        return self.lines.setdefault(key, AssetLine(key))

    def heartbeat(self) -> None:
        """Say what is still running, so a long load never looks like a hang."""
        now = time.perf_counter()
        for line in self.lines.values():
            started = self._started.get(line.key)
            if (
                line.status == "running"
                and started is not None
                and now - started >= HEARTBEAT_SECONDS
            ):
                console.print(f"      ... {line.key} still running ({now - started:.0f}s)")
        for step, started in self._step_started.items():
            keys = self._steps[step]
            finished = sum(
                1 for k in keys if self.lines[k].status != "pending" or self.lines[k] is self._held
            )
            if now - started >= HEARTBEAT_SECONDS:
                # the step lands source tables and loads seeds as well as building models
                console.print(
                    f"      ... {step} step: {finished} of {len(keys)} assets finished "
                    f"({now - started:.0f}s)"
                )

    def _key(self, event: dg.DagsterEvent) -> str:
        if event.asset_key is not None:
            return event.asset_key.to_user_string()
        step = event.step_key or "?"
        return self._by_step.get(step, step)

    def __call__(self, event: dg.DagsterEvent) -> None:
        kind = event.event_type_value
        step = event.step_key or ""
        if step in self._steps:
            self._on_step_event(kind, step, event)
            return
        if kind == "STEP_START":
            line = self._line(self._key(event))
            self._started[line.key] = time.perf_counter()
            line.status = "running"
        elif kind == "ASSET_MATERIALIZATION":
            self._on_materialization(event)
        elif kind == "ASSET_CHECK_EVALUATION":
            self._on_check(event)
        elif kind == "STEP_SUCCESS":
            self._finish(self._line(self._key(event)), "ok")
        elif kind == "STEP_FAILURE":
            line = self._finish(self._line(self._key(event)), "failed")
            line.error = _root_cause(getattr(event.event_specific_data, "error", None))
            console.print(f"      [red]error:[/red] {escape(line.error)}")
        elif kind == "STEP_SKIPPED":
            self._skip(self._line(self._key(event)), "an upstream asset failed")

    def _on_step_event(self, kind: str, step: str, event: dg.DagsterEvent) -> None:
        """An event of a multi-asset step (the models')."""
        now = time.perf_counter()
        if kind == "STEP_START":
            self._step_started[step] = now
            self._last = now
        elif kind == "ASSET_MATERIALIZATION":
            self._flush()
            line = self._on_materialization(event)
            if line.seconds is None:
                line.seconds = now - getattr(self, "_last", now)
            self._last = now
            self._held = line  # printed once its check results (which follow) are counted
        elif kind == "ASSET_CHECK_EVALUATION":
            self._on_check(event)
        elif kind == "ASSET_OBSERVATION":
            self._flush()
            line = self._line(self._key(event))
            metadata = event.event_specific_data.asset_observation.metadata  # type: ignore[union-attr]
            self._last = now
            if "error" in metadata:
                line.error = str(metadata["error"].value).splitlines()[0]
                self._finish(line, "failed")
                console.print(f"      [red]error:[/red] {escape(line.error)}")
            elif "not_run" in metadata:
                self._skip(line, str(metadata["not_run"].value))
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            self._flush()
            self._step_started.pop(step, None)
            if kind == "STEP_FAILURE":
                self.step_errors.append(
                    _full_message(getattr(event.event_specific_data, "error", None))
                )
            for key in self._steps[step]:
                line = self.lines[key]
                if line.status == "pending" and line.checks_failed:
                    self._finish(line, "refused")  # its blocking checks failed: not published
                elif line.status == "pending" and kind == "STEP_SKIPPED":
                    self._skip(line, "an upstream asset failed")

    def _flush(self) -> None:
        """Print the model line held for its check results."""
        held, self._held = self._held, None
        if held is not None:
            self._finish(held, "ok")

    def _skip(self, line: AssetLine, why: str) -> None:
        line.status = "skipped"
        self.done += 1
        console.print(f"[{self.done:>3}/{self.total}] [yellow]skipped[/yellow] {line.key} ({why})")

    def _finish(self, line: AssetLine, status: str) -> AssetLine:
        started = self._started.get(line.key)
        if started is not None and line.seconds is None:
            line.seconds = time.perf_counter() - started
        if line.status != "failed":
            line.status = "checks failed" if line.checks_failed else status
            if line.status == "ok" and not line.rebuilt:
                line.status = "up to date"
        self.done += 1
        colour = {"ok": "green", "up to date": "green", "failed": "red"}.get(line.status, "yellow")
        rows = f"{line.rows:,} rows" if line.rows is not None else ""
        quarantined = f", {line.quarantined:,} quarantined{_held(line)}" if line.quarantined else ""
        checks = ""
        if line.checks_passed or line.checks_failed or line.checks_warned:
            checks = f", checks {line.checks_passed} passed"
            if line.checks_failed:
                checks += f" / {len(line.checks_failed)} FAILED"
            if line.checks_warned:
                checks += f" / {len(line.checks_warned)} warned"
        seconds = f"{line.seconds:.2f}s" if line.seconds is not None else ""
        console.print(
            f"[{self.done:>3}/{self.total}] [{colour}]{line.status:<6}[/{colour}] {line.key:<42} "
            f"{rows}{quarantined}{checks}  {seconds}"
        )
        return line

    def _on_materialization(self, event: dg.DagsterEvent) -> AssetLine:
        line = self._line(self._key(event))
        metadata = event.event_specific_data.materialization.metadata  # type: ignore[union-attr]
        if "duration_s" in metadata and event.step_key in self._steps:
            line.seconds = float(str(metadata["duration_s"].value))
        if "dagster/row_count" in metadata:
            line.rows = int(str(metadata["dagster/row_count"].value))
        if "rows_quarantined" in metadata:
            line.quarantined = int(str(metadata["rows_quarantined"].value))
        if "rows_already_quarantined" in metadata:
            line.already_quarantined = int(str(metadata["rows_already_quarantined"].value))
        if "rebuilt" in metadata:
            line.rebuilt = bool(metadata["rebuilt"].value)
        new_columns = str(metadata["new_columns"].value) if "new_columns" in metadata else "none"
        if new_columns != "none":
            console.print(
                f"      [yellow]schema drift:[/yellow] {escape(line.key)} has new source column(s) "
                f"{escape(new_columns)}, landed as-is; declare them in the source's yml"
            )
        return line

    def _on_check(self, event: dg.DagsterEvent) -> None:
        evaluation: Any = event.event_specific_data
        line = self._line(evaluation.asset_key.to_user_string())
        name = evaluation.check_name
        if evaluation.passed:
            line.checks_passed += 1
        elif evaluation.severity.value == "WARN":
            line.checks_warned.append(name)
        elif getattr(evaluation, "blocking", None) is False:
            # severity error on a check that never blocks (freshness): reported, not blocking
            line.checks_warned.append(f"{name} (error, does not block)")
        else:
            line.checks_failed.append(name)

    def summary(self) -> Table:
        table = Table(title="Run summary", show_lines=False)
        table.add_column("asset")
        table.add_column("status")
        table.add_column("rows", justify="right")
        table.add_column("time (s)", justify="right")
        table.add_column("checks passed", justify="right")
        table.add_column("checks failed", justify="right")
        table.add_column("quarantined", justify="right")
        for line in sorted(self.lines.values(), key=lambda item: _layer_order(item.key)):
            failed = len(line.checks_failed)
            warned = f" (+{len(line.checks_warned)} warn)" if line.checks_warned else ""
            table.add_row(
                line.key,
                "not run" if line.status == "pending" else line.status,
                f"{line.rows:,}" if line.rows is not None else "-",
                f"{line.seconds:.2f}" if line.seconds is not None else "-",
                str(line.checks_passed),
                f"{failed}{warned}",
                _quarantined(line) if line.quarantined is not None else "-",
            )
        return table


def _held(line: AssetLine) -> str:
    """How many of a load's quarantined rows the quarantine already held (read again, by a
    cursor's lookback say: held once, not added again), or nothing when none."""
    return f" ({line.already_quarantined:,} already held)" if line.already_quarantined else ""


def _quarantined(line: AssetLine) -> str:
    """A load's quarantined rows for the summary table, with those already held."""
    return f"{line.quarantined:,}{_held(line)}"


def _full_message(error: Any) -> str:
    """The whole message of the project's own error in ``error``'s chain (all its lines)."""
    while error is not None:
        if error.cls_name in _PROJECT_ERRORS:
            message = str(error.message).strip()
            prefix = message.split(": ", 1)[0]
            return message[len(prefix) + 2 :] if prefix.endswith(error.cls_name) else message
        error = error.cause or getattr(error, "context", None)
    return _root_cause(error)


def _root_cause(error: Any) -> str:
    """The message a user can act on: the project's own error if there is one, else the deepest."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause or getattr(error, "context", None)
    if not chain:
        return "unknown error"
    ours = [e for e in chain if e.cls_name in _PROJECT_ERRORS]
    picked = ours[0] if ours else chain[-1]
    message = picked.message.strip()
    prefix = message.split(": ", 1)[0]
    if prefix.endswith(picked.cls_name):
        message = message[len(prefix) + 2 :]
    return f"{picked.cls_name}: {message.splitlines()[0] if message else ''}"


def _error_names(root: type[BaseException]) -> set[str]:
    names = {root.__name__}
    for sub in root.__subclasses__():
        names |= _error_names(sub)
    return names


#: Errors whose message is written for the user; Dagster's wrappers around them are not.
_PROJECT_ERRORS = _error_names(SsotError) | {"DagsterAssetCheckFailedError"}


def _layer_order(key: str) -> tuple[int, str]:
    order = {"raw": 0, "staging": 1, "conformed": 2, "marts": 3}
    return order.get(key.split("/", 1)[0], 9), key


#: `ssot run`'s threshold of Python's youngest generation (the default is 700 new objects)
RUN_GC_THRESHOLD = (5000, 10, 10)


@contextlib.contextmanager
def _collecting_after_setup() -> Iterator[Callable[[], None]]:
    """Python's garbage collector off until the function yielded is called: then what exists
    (the modules, the project and its graph, which live as long as the run) is frozen out of
    every later collection, and the youngest generation is collected every 5,000 new objects
    instead of 700. A day's run spent 0.61 s in 2,071 collections, most of them scanning those
    objects again and again. The collector's state is as it was afterwards (a command run
    in-process, or one that failed before its setup was done); objects the caller had frozen
    stay frozen. What the setup left unreachable is frozen too (a few MB for the demo), not
    collected first: a full collection there would cost the run's start that much again."""
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    # a freeze is undone below, and a caller's frozen objects would be undone with it
    ours = gc.get_freeze_count() == 0
    gc.disable()

    def set_up() -> None:
        if ours:
            gc.freeze()
        gc.set_threshold(*RUN_GC_THRESHOLD)
        gc.enable()

    try:
        yield set_up
    finally:
        if ours:  # nothing frozen if the setup was not done
            gc.unfreeze()
        gc.set_threshold(*threshold)
        (gc.enable if enabled else gc.disable)()


def cmd_run(args: argparse.Namespace) -> int:
    with _collecting_after_setup() as set_up:
        return _run(args, set_up)


def _run(args: argparse.Namespace, set_up: Callable[[], None]) -> int:
    from pipelines.project import load_project
    from pipelines.warehouse import read_ahead

    project = load_project()
    with contextlib.suppress(SsotError):  # a bad target is reported by the checks below
        read_ahead(project)  # the disk works while Dagster is imported and the project checked

    from pipelines.assets.keys import model_key, seed_key, source_key
    from pipelines.runner import import_dagster_storage, project_instance, run_job

    graph = validate_project(project)
    _check_demo_data(project)
    import_dagster_storage()
    set_up()  # what lives as long as the run is made
    keys = [source_key(s.name, t.name).to_user_string() for s, t in project.source_tables()]
    keys += [seed_key(name).to_user_string() for name in project.seeds]
    keys += [model_key(m.layer, m.name).to_user_string() for m in project.models.values()]
    console.print(
        f"[bold]ssot run[/bold]: {len(keys)} assets, target [bold]{project.target_name}[/bold] "
        f"({project.target.type})"
    )
    from pipelines.assets.models import MODELS_STEP

    # the seeds loaded, the source tables landed and the models built in one step
    reporter = RunReporter(keys, {MODELS_STEP: keys} if keys else {})
    started = time.perf_counter()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            reporter.heartbeat()

    ticker = threading.Thread(target=beat, name="ssot-heartbeat", daemon=True)
    ticker.start()
    try:
        with project_instance(project) as instance:
            outcome = run_job(
                project,
                instance,
                on_event=reporter,
                full_refresh=_full_refresh_keys(project, args.full_refresh),
                rebuild=[model_key(m.layer, m.name) for m in project.models.values()]
                if args.all
                else [],
            )
    finally:
        stop.set()
    from pipelines.assets.resources import PUBLISH_FAILURES

    # the warehouse resource publishes for readers when the run ends; if that failed, what the
    # run built is not what readers see
    unpublished = PUBLISH_FAILURES.pop(outcome.run_id, "")
    if unpublished and "the next run publishes again" not in unpublished:
        unpublished += "; the next run publishes again"
    elapsed = time.perf_counter() - started
    console.print()
    console.print(reporter.summary())
    failed_checks = [
        f"{line.key}: {name}" for line in reporter.lines.values() for name in line.checks_failed
    ]
    failed_steps = [
        f"{line.key}: {line.error}" for line in reporter.lines.values() if line.status == "failed"
    ]
    console.print(
        f"run {outcome.run_id} finished in {elapsed:.1f}s (Dagster run history: `make ui`)"
    )
    if not outcome.success:
        console.print("[red bold]run failed[/red bold]")
        for item in failed_checks:
            console.print(f"  blocking check failed: {item}")
        for item in failed_steps:
            console.print(f"  asset failed: {escape(item)}")
        for message in reporter.step_errors:
            for text in message.splitlines():
                console.print(f"  {escape(text)}")
        not_run = [
            line.key for line in reporter.lines.values() if line.status in ("pending", "skipped")
        ]
        if not_run:
            console.print(
                f"  not run (an upstream asset failed or was refused): {', '.join(sorted(not_run))}"
            )
        if unpublished:
            console.print(f"  not published for readers either: {escape(unpublished)}")
        return 1
    if unpublished:
        console.print(
            f"[red bold]built, but not published for readers[/red bold]: {escape(unpublished)}"
        )
        return 1
    target = project.target
    where = (
        project.resolve_path(target.path)
        if target.type == "duckdb"
        else f"BigQuery project {target.project}"
    )
    console.print(f"[green bold]warehouse built[/green bold]: {where}")
    if graph.order:
        console.print(f'query it: [bold]{_self_command()} query "{_example_query(graph)}"[/bold]')
    return 0


def _example_query(graph: ModelGraph) -> str:
    """A query worth trying after a run: the demo's revenue ranking, else the last model."""
    if "customer_lifetime_value" in graph.nodes:
        relation = graph.nodes["customer_lifetime_value"].relation
        return f"select * from {relation} order by revenue desc limit 5"
    return f"select * from {graph.nodes[graph.order[-1]].relation} limit 5"


def _source_tables(project: Project, names: list[str] | None, option: str) -> list[tuple[str, str]]:
    """`SOURCE[.TABLE]` arguments -> (source, table) pairs; an empty list = every source table."""
    from pipelines.errors import ConfigError

    if names is None:
        return []
    everything = [(s.name, t.name) for s, t in project.source_tables()]
    if not names:
        return everything
    chosen: list[tuple[str, str]] = []
    for name in names:
        source, _, table = name.partition(".")
        matches = [(s, t) for s, t in everything if s == source and (not table or t == table)]
        if not matches:
            known = ", ".join(f"{s}.{t}" for s, t in everything)
            raise ConfigError(f"{option} {name}: no such source or table (known: {known})")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def _full_refresh_keys(project: Project, names: list[str] | None) -> list[Any]:
    """`--full-refresh [NAME ...]` -> the asset keys to refresh: source tables (`SOURCE[.TABLE]`)
    and incremental models (by name); none named = all of them."""
    from pipelines.assets.keys import model_key, source_key
    from pipelines.errors import ConfigError
    from pipelines.modelling import ModelGraph

    if names is None:
        return []
    graph = ModelGraph(project)
    incremental = {n: node for n, node in graph.nodes.items() if node.materialized == "incremental"}
    if not names:
        tables = _source_tables(project, [], "--full-refresh")
        models = list(incremental.values())
    else:
        table_names = [n for n in names if n not in graph.nodes]
        # an empty list means every table: ask only when some were named
        tables = _source_tables(project, table_names, "--full-refresh") if table_names else []
        models = []
        for name in (n for n in names if n in graph.nodes):
            if graph.nodes[name].materialized == "snapshot":
                raise ConfigError(
                    f"--full-refresh {name}: snapshot {name!r} keeps history that a rebuild "
                    f"would lose; to start it over, drop {graph.nodes[name].relation} by hand"
                )
            if name not in incremental:
                raise ConfigError(
                    f"--full-refresh {name}: model {name!r} is materialized as "
                    f"{graph.nodes[name].materialized}, which is rebuilt on every run anyway"
                )
            models.append(incremental[name])
    return [source_key(s, t) for s, t in tables] + [model_key(m.layer, m.name) for m in models]


def _self_command() -> str:
    """How the user can call this CLI again: `ssot`, or its path when not on PATH."""
    import shutil

    argv0 = Path(sys.argv[0])
    if argv0.name == "ssot" and shutil.which("ssot") != str(argv0.resolve()):
        try:
            return str(argv0.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(argv0)
    return "ssot"


def _check_demo_data(project: Project) -> None:
    from pipelines.errors import ConfigError

    if project.demo_dir.exists():
        return
    defaults = [s.connection.default for s in project.sources.values()]
    if any(str(project.settings.demo_dir) in url for url in defaults):
        import os

        overridden = all(os.environ.get(s.connection.url_env) for s in project.sources.values())
        if not overridden:
            raise ConfigError(
                f"{project.demo_dir} does not exist: the sources' default URLs point at the demo "
                "systems. Run `ssot demo init` first (or set each source's URL env var)."
            )


# ---------------------------------------------------------------------------------------------
# ssot demo


def cmd_demo_init(args: argparse.Namespace) -> int:
    from pipelines.demo import init_demo
    from pipelines.project import load_project

    project = load_project()
    out = Path(args.out) if args.out else project.demo_dir
    started = time.perf_counter()
    state = init_demo(
        out,
        scale=args.scale,
        seed=args.seed,
        crm_url=args.crm_url,
        shop_url=args.shop_url,
        progress=lambda line: console.print(f"  {line}"),
    )
    console.print(
        f"demo systems written to {out} (seed {state.seed}, scale {state.scale}) in "
        f"{time.perf_counter() - started:.1f}s; ground truth in {out / 'truth'}"
    )
    return 0


def cmd_demo_advance(args: argparse.Namespace) -> int:
    from pipelines.demo import advance_demo
    from pipelines.project import load_project

    project = load_project()
    out = Path(args.out) if args.out else project.demo_dir
    state = advance_demo(out, days=args.days, progress=lambda line: console.print(f"  {line}"))
    console.print(f"demo world advanced to day {state.day}")
    return 0


# ---------------------------------------------------------------------------------------------
# ssot compile / validate / query


def cmd_plan(args: argparse.Namespace) -> int:
    from rich.table import Table

    from pipelines.errors import WarehouseError
    from pipelines.modelling.state import make_plan
    from pipelines.project import load_project
    from pipelines.warehouse import open_warehouse

    project = load_project()
    graph = validate_project(project)
    target = project.target
    location = project.resolve_path(target.path) if target.type == "duckdb" else None
    if location is not None and not location.exists():
        console.print(
            f"nothing built yet ({location}): `ssot run` builds all {len(graph.nodes)} models"
        )
        return 0
    estimates: dict[str, int | None] = {}
    with open_warehouse(project, read_only=True) as warehouse:
        plan = make_plan(graph, warehouse)
        for name in plan.rebuilds:
            # what rebuilding it would scan, where the warehouse can say without running it
            # (not when it reads a table that is not built yet)
            try:
                estimates[name] = warehouse.estimate_bytes(graph.query(name))
            except WarehouseError:
                estimates[name] = None
    costed = any(v is not None for v in estimates.values())
    table = Table(title=f"plan for {project.target_name} ({project.target.type})")
    for column in (
        "model",
        "change",
        "kind",
        "rebuild",
        "why",
        *(["bytes (dry run)"] if costed else []),
    ):
        table.add_column(column, justify="right" if column.startswith("bytes") else "left")
    for name, item in plan.models.items():
        if item.change == "unchanged" and not item.rebuild:
            continue
        estimate = estimates.get(name)
        table.add_row(
            name,
            item.change,
            item.kind or "-",
            "yes" if item.rebuild else "no",
            escape("; ".join(item.reasons)),
            *([f"{estimate:,}" if estimate is not None else "-"] if costed else []),
        )
    for name in plan.removed:
        table.add_row(
            name,
            "removed",
            "-",
            "no",
            "its model file is gone; the table is kept",
            *(["-"] if costed else []),
        )
    unchanged = sum(not p.rebuild for p in plan.models.values())
    if table.row_count:
        console.print(table)
    console.print(
        f"{len(plan.rebuilds)} of {len(plan.models)} models would be rebuilt, {unchanged} kept "
        "as they are (before any new source data lands; `ssot run --all` rebuilds everything)"
    )
    if costed:
        total = sum(v or 0 for v in estimates.values())
        guard = getattr(project.target, "maximum_bytes_billed", None)
        console.print(
            f"estimated scan of the rebuilds: {total:,} bytes (BigQuery dry run); "
            + (
                f"each query is capped at {guard:,} bytes billed"
                if guard
                else "no cap: set maximum_bytes_billed on the target"
            )
        )
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from sqlglot.dialects.dialect import Dialect, Dialects

    from pipelines.errors import ConfigError
    from pipelines.modelling import ModelGraph
    from pipelines.project import load_project

    project = load_project()
    graph = ModelGraph(project)
    if args.dialect and args.target:
        raise ConfigError("give --dialect or --target, not both")
    if args.dialect:
        dialect = args.dialect
    else:
        name = args.target or project.target_name
        if name not in project.settings.targets:
            known = ", ".join(sorted(project.settings.targets))
            raise ConfigError(f"--target {name!r} is not in [tool.ssot.targets] (known: {known})")
        dialect = project.settings.targets[name].type  # each engine's name is its dialect
    try:
        Dialect.get_or_raise(dialect)
    except ValueError:
        known = ", ".join(sorted(d.value for d in Dialects if d.value))
        raise ConfigError(
            f"--dialect {dialect!r} is not a sqlglot dialect; use one of: {known}"
        ) from None
    out = project.resolve_path(args.out) / dialect
    for name in graph.order:
        node = graph.nodes[name]
        path = out / node.layer / f"{name}.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(graph.compile(name, dialect) + "\n", encoding="utf-8")
    console.print(f"compiled {len(graph.order)} models for {dialect} into {out}")
    return 0


def validate_project(project: Project) -> ModelGraph:
    """Everything that can be checked without touching a source or the warehouse.

    Models render and parse, refs and sources resolve, every source contract builds (types,
    zones, patterns), so `ssot run` fails here with the file named instead of mid-run.
    """
    from pipelines.modelling import ModelGraph
    from pipelines.quality.contracts import Contract

    graph = ModelGraph.of(project)
    for name in graph.order:
        graph.query(name)
    for test in graph.data_tests.values():
        graph.data_test_query(test)
    for source, table in project.source_tables():
        Contract(source.name, table)
    return graph


def cmd_validate(args: argparse.Namespace) -> int:
    from pipelines.assets import build_definitions
    from pipelines.project import load_project

    project = load_project()
    graph = validate_project(project)
    defs = build_definitions(project)
    type(defs).validate_loadable(defs)
    tests = sum(len(node.tests) for node in graph.nodes.values()) + len(graph.data_tests)
    console.print(
        f"project ok: {len(project.sources)} sources ({len(project.source_tables())} tables), "
        f"{len(project.seeds)} seeds, {len(graph.nodes)} models, {tests} tests"
    )
    return 0


def _open_published(project: Project) -> Warehouse:
    """A read-only session on what readers see (works while a run writes)."""
    from pipelines.errors import WarehouseError
    from pipelines.warehouse import open_warehouse

    try:
        return open_warehouse(project, read_only=True)
    except WarehouseError as exc:
        raise WarehouseError(f"{exc}\nhint: build the warehouse first with `ssot run`") from None


def cmd_query(args: argparse.Namespace) -> int:
    from pipelines.project import load_project

    project = load_project()
    warehouse = _open_published(project)
    with warehouse:
        result = warehouse.query(_limited(args.sql, args.limit + 1, warehouse.dialect))
    table = Table(show_lines=False)
    for name in result.column_names:
        table.add_column(name)
    for row in result.slice(0, args.limit).to_pylist():
        table.add_row(*(Text("NULL" if v is None else str(v)) for v in row.values()))
    console.print(table)
    if result.num_rows > args.limit:
        console.print(
            f"(more than {args.limit} rows; first {args.limit} shown, --limit N for more)"
        )
    return 0


def _limited(sql: str, rows: int, dialect: str) -> str:
    """A SELECT wrapped so the warehouse returns at most ``rows`` rows; other statements as given."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    try:
        statements = sqlglot.parse(sql, read=dialect)
    except ParseError:
        return sql  # the warehouse reports the syntax error in its own words
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        return sql
    return exp.select("*").from_(statements[0].subquery("q")).limit(rows).sql(dialect=dialect)


# ---------------------------------------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    from pipelines import meta
    from pipelines.project import load_project

    project = load_project()
    warehouse = _open_published(project)
    with warehouse:
        if not warehouse.exists(meta.AUDIT):
            console.print("the audit log is empty: no run has finished yet (`ssot run`)")
            return 0
        if args.run:
            rows = meta.run_entries(warehouse, args.run).to_pylist()
        else:
            rows = meta.recent_runs(warehouse, args.limit).to_pylist()
    if args.run:
        if not rows:
            console.print(f"no run id starts with {args.run!r}; `ssot audit` lists recent runs")
            return 1
        runs = sorted({r["run_id"] for r in rows})
        table = Table(title=f"Audit of run {', '.join(runs)}")
        for name in ("time", "asset", "step", "outcome", "rows", "quarantined", "s", "detail"):
            table.add_column(
                name, justify="right" if name in ("rows", "quarantined", "s") else "left"
            )
        for row in rows:
            colour = {"failed": "red", "blocked": "red"}.get(row["outcome"], "green")
            table.add_row(
                row["recorded_at"].strftime("%H:%M:%S"),
                Text(row["asset"]),
                row["kind"],
                f"[{colour}]{row['outcome']}[/{colour}]",
                f"{row['rows_out']:,}",
                f"{row['rows_quarantined']:,}" if row["rows_quarantined"] else "",
                f"{row['duration_s']:.2f}",
                Text(row["detail"] or ""),
            )
        console.print(table)
        return 0
    table = Table(title="Recent runs (ssot_meta.audit; `ssot audit RUN_ID` for one run's steps)")
    for name in (
        "run",
        "started (UTC)",
        "took s",
        "assets",
        "landed",
        "quarantined",
        "built",
        "published",
        "blocked",
        "checks failed",
        "errors",
    ):
        table.add_column(name, justify="left" if name in ("run", "started (UTC)") else "right")
    for row in rows:
        bad = row["blocked"] or row["errors"] or row["checks_failed"]
        table.add_row(
            ("[red]" if bad else "") + row["run_id"][:8] + ("[/red]" if bad else ""),
            row["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
            f"{(row['finished_at'] - row['started_at']).total_seconds():.1f}",
            str(row["assets"]),
            f"{row['rows_landed']:,}",
            f"{row['rows_quarantined']:,}",
            str(row["built"]),
            str(row["published"]),
            str(row["blocked"]),
            str(row["checks_failed"]),
            str(row["errors"]),
        )
    console.print(table)
    return 0


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    from pipelines import quarantine
    from pipelines.project import load_project

    project = load_project()
    warehouse = _open_published(project)
    with warehouse:
        result = quarantine.summary(warehouse, args.source, args.table)
    if not result.num_rows:
        console.print("the quarantine is empty")
        return 0
    table = Table(title="Quarantine (rows held back by the source contracts)")
    for name in ("source", "table", "failed checks", "pending", "replayed"):
        table.add_column(name, justify="right" if name in ("pending", "replayed") else "left")
    for row in result.to_pylist():
        table.add_row(
            Text(row["source"]),
            Text(row["table"]),
            Text(row["check"]),
            f"{row['pending']:,}",
            f"{row['replayed']:,}",
        )
    console.print(table)
    console.print(
        "rows: select * from ssot_meta.quarantine; replay after a fix: ssot quarantine replay"
    )
    return 0


def cmd_quarantine_replay(args: argparse.Namespace) -> int:
    from pipelines import quarantine
    from pipelines.project import load_project
    from pipelines.warehouse import open_warehouse

    project = load_project()
    validate_project(project)
    chosen = _source_tables(project, args.tables, "replay")
    warehouse = open_warehouse(project)
    try:
        for source_name, table_name in chosen:
            source = project.sources[source_name]
            result = quarantine.replay(project, warehouse, source, source.table(table_name))
            if result.pending:
                console.print(
                    f"{source_name}.{table_name}: {result.pending:,} pending, {result.landed:,} now pass "
                    f"and landed, {result.still_failing:,} still fail, {result.unparseable:,} unparseable "
                    "(fix the file; it is read again when it changes)"
                )
    except BaseException:
        warehouse.close()
        raise
    warehouse.publish()
    console.print("replay done; `ssot run` builds the models on top of what landed")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Start `dagster dev` on the project's workspace and its persistent instance."""
    import os

    from pipelines.project import load_project
    from pipelines.runner import dagster_home

    project = load_project()
    home = dagster_home(project)
    dagster = Path(sys.executable).with_name("dagster")
    command = [
        str(dagster),
        "dev",
        "-w",
        str(project.root / "workspace.yaml"),
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    console.print(
        f"Dagster UI on http://{args.host}:{args.port} (instance: {home}); Ctrl-C stops it"
    )
    os.chdir(project.root)
    os.execve(command[0], command, {**os.environ, "DAGSTER_HOME": str(home)})
    return 0  # not reached: execve replaces this process


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssot", description="Single-source-of-truth warehouse pipeline."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="materialize every asset through Dagster and check it")
    run.add_argument(
        "--full-refresh",
        nargs="*",
        metavar="SOURCE[.TABLE]|MODEL",
        help="pull these sources/tables again from scratch, ignoring stored cursors, and rebuild "
        "these incremental models from their whole query (all of both when none named)",
    )
    run.add_argument(
        "--all",
        action="store_true",
        help="build every model, also those whose SQL and inputs are unchanged since their last "
        "build (by default they are kept as they are; `ssot plan` shows which)",
    )
    run.set_defaults(func=cmd_run)

    plan = commands.add_parser(
        "plan", help="what changed since the last run and which models `ssot run` would rebuild"
    )
    plan.set_defaults(func=cmd_plan)

    demo = commands.add_parser("demo", help="the built-in demo operational systems")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True)
    init = demo_commands.add_parser(
        "init", help="generate the demo systems (deterministic per seed)"
    )
    init.add_argument("--scale", type=float, default=1.0, help="1 = about 10k people (default 1)")
    init.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    init.add_argument("--out", help="output folder (default: [tool.ssot] demo_dir)")
    init.add_argument(
        "--crm-url", help="seed the CRM into this PostgreSQL database instead of SQLite"
    )
    init.add_argument(
        "--shop-url", help="seed the shop into this MySQL/MariaDB database instead of SQLite"
    )
    init.set_defaults(func=cmd_demo_init)
    advance = demo_commands.add_parser("advance", help="move the demo world forward by whole days")
    advance.add_argument("--days", type=int, default=1)
    advance.add_argument("--out", help="demo folder (default: [tool.ssot] demo_dir)")
    advance.set_defaults(func=cmd_demo_advance)

    compile_ = commands.add_parser("compile", help="write every model's compiled SQL for a dialect")
    compile_.add_argument("--dialect", default=None, help="sqlglot dialect (duckdb, bigquery, ...)")
    compile_.add_argument(
        "--target",
        default=None,
        help="compile for this target of [tool.ssot.targets] (its engine's dialect); default: "
        "the selected target ($SSOT_TARGET or default_target)",
    )
    compile_.add_argument(
        "--out", default="target/compiled", help="output folder (default target/compiled)"
    )
    compile_.set_defaults(func=cmd_compile)

    validate = commands.add_parser("validate", help="load sources, models and Dagster definitions")
    validate.set_defaults(func=cmd_validate)

    quarantine = commands.add_parser("quarantine", help="rows held back by the source contracts")
    quarantine_commands = quarantine.add_subparsers(dest="quarantine_command", required=True)
    q_list = quarantine_commands.add_parser(
        "list", help="pending and replayed rows per table and check"
    )
    q_list.add_argument("--source")
    q_list.add_argument("--table")
    q_list.set_defaults(func=cmd_quarantine_list)
    q_replay = quarantine_commands.add_parser(
        "replay", help="re-validate pending rows against the current contracts; land what passes"
    )
    q_replay.add_argument(
        "tables", nargs="*", metavar="SOURCE[.TABLE]", help="default: every table"
    )
    q_replay.set_defaults(func=cmd_quarantine_replay)

    audit = commands.add_parser(
        "audit", help="recent runs from the audit log (loads, builds, checks, publishes)"
    )
    audit.add_argument(
        "run", nargs="?", help="a run id (or its first characters): every step of it"
    )
    audit.add_argument("--limit", type=int, default=10, help="how many recent runs (default 10)")
    audit.set_defaults(func=cmd_audit)

    ui = commands.add_parser("ui", help="open the Dagster UI (dagster dev) on this project")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    query = commands.add_parser("query", help="run a read-only SQL query on the warehouse")
    query.add_argument("sql")
    query.add_argument("--limit", type=int, default=20, help="rows to print (default 20)")
    query.set_defaults(func=cmd_query)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SsotError as exc:
        err_console.print(f"[red bold]error:[/red bold] {escape(str(exc))}")
        return 2


def entry() -> NoReturn:
    """The `ssot` command: :func:`main`, then leave without tearing the interpreter down.

    A run imports Dagster, sqlglot, pyarrow and the rest and builds thousands of objects;
    finalizing them all at exit took 0.5 s after every `ssot run` had finished its work. What
    the interpreter does before that finalization still happens: threads still running are
    waited for (thread pools shut down), exit handlers run (log handlers flush, temporary
    folders go), and the output is flushed after them. An exception leaves the usual way,
    with its traceback, and so does a run under a profiler or a coverage tool.
    """
    code = main()
    # the first step of the interpreter's own exit: wait for non-daemon threads and run the
    # thread pools' shutdown hooks
    join_threads = getattr(threading, "_shutdown", None)
    if join_threads is None or sys.getprofile() is not None or sys.gettrace() is not None:
        # not CPython, or a profiler or coverage tool that writes its results at exit
        sys.exit(code)
    join_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):  # what the handlers printed too
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to flush to
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
