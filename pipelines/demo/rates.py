"""Tuning constants of the simulated company, in one place so the docs can quote them."""

from __future__ import annotations

JUNK_RATE = 0.005
"""Share of rows of every table (and of every export file) that are junk."""

CRM_DUPLICATE_RATE = 0.02
"""Share of CRM persons with a second contact row."""
SHOP_DUPLICATE_RATE = 0.01
"""Share of shop persons with a second customer row."""

ACCOUNTS_PER_SCALE = 1_000
PRODUCTS_PER_SCALE = 500
DUPLICATE_LISTING_RATE = 0.02
ORDERS_PER_PERSON = 5.0
"""Orders over the 365-day history per person (only shop customers order)."""
EXTRA_LINES_MEAN = 1.0
"""Order lines per order are 1 + Poisson(1): two on average."""

INIT_SOFT_DELETE_RATE = 0.02
"""Contacts already soft-deleted when the world starts."""
INIT_HARD_DELETE_RATE = 0.01
"""Customers already hard-deleted when the world starts (their ids are gaps)."""
CONTACT_WITHOUT_ACCOUNT_RATE = 0.03

CANCEL_RATE = 0.04
REFUND_RATE = 0.025
MESSY_TEXT_RATE = 0.05
"""Share of status and currency values written in a non-canonical case/spacing."""

CORRECTION_RATE = 0.01
"""Invoices re-exported in a later file with a correction."""
UNPAID_RATE = 0.05
PARTIAL_ONLY_RATE = 0.01
SPLIT_PAYMENT_RATE = 0.06
LATE_PAYMENT_RATE = 0.02
"""Payments that appear in a file of a later day than their paid_at."""

# advance_demo, per simulated day, relative to the people created by init_demo
DAILY_NEW_PEOPLE = 0.002
DAILY_CROSS_SIGNUPS = 0.0005
"""Existing persons who open a record in the system they were not in yet."""
DAILY_UPDATE_RATE = 0.01
DAILY_SOFT_DELETE_RATE = 0.001
DAILY_HARD_DELETE_RATE = 0.0005
JOB_TITLE_DAY = 3
"""The clock reaching this day adds ``contacts.job_title`` (once)."""
