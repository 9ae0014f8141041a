"""ssot-warehouse: operational systems -> one validated, deduplicated warehouse, run by Dagster.

Importing the package is cheap: engine drivers, Dagster and pandas load only where used.
"""

from __future__ import annotations

__version__ = "0.1.0"
