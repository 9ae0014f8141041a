"""Install the DuckDB extensions the BigQuery emulator loads from their wheels' files (DuckDB
cannot download them here). Run by the emulator's own Python (`make emulator`)."""

from __future__ import annotations

import glob
import sysconfig

import duckdb


def main() -> None:
    site = sysconfig.get_paths()["purelib"]
    files = sorted(
        glob.glob(f"{site}/duckdb_extension_*/extensions/v{duckdb.__version__}/*.duckdb_extension")
    )
    if not files:
        raise SystemExit(f"no DuckDB extension files for DuckDB {duckdb.__version__} under {site}")
    con = duckdb.connect()
    for path in files:
        con.execute(f"INSTALL '{path}'")
    for name in ("icu", "ducklake", "spatial"):
        con.execute(f"LOAD {name}")
    print(f"installed {len(files)} DuckDB extensions for the emulator")


if __name__ == "__main__":
    main()
