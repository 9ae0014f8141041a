"""The CRM: ``accounts`` and ``contacts`` of a legacy system.

Legacy on purpose: ``contacts`` has no primary key (junk rows have NULL or empty ids), every
timestamp is ISO-8601 text with a per-row UTC offset, deletes are soft (``deleted_at``), country
codes come in mixed case and whitespace, and a person may have two contact rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pipelines.demo import vocab
from pipelines.demo.clock import iso_offset, random_offsets
from pipelines.demo.frame import Frame
from pipelines.demo.people import (
    COUNTRIES,
    PHONE_FAMILY_OF_COUNTRY,
    canonical_email,
    render_country,
    render_email,
    render_names,
    render_phone,
)
from pipelines.demo.rates import JUNK_RATE
from pipelines.demo.text import cat, num, take, where
from pipelines.demo.truth import BadRows, bad_rows, contact_id
from pipelines.demo.writers import Column, TableSpec

Arr = npt.NDArray[Any]

ACCOUNTS = TableSpec(
    "accounts",
    (
        Column("account_id", "int"),
        Column("name", "text"),
        Column("industry", "text"),
        Column("country", "text"),
        Column("created_at", "text"),
        Column("updated_at", "text"),
    ),
    primary_key="account_id",
    cursor="updated_at",
)
CONTACTS = TableSpec(
    "contacts",
    (
        Column("contact_id", "text"),
        Column("account_id", "int"),
        Column("first_name", "text"),
        Column("last_name", "text"),
        Column("email", "text"),
        Column("phone", "text"),
        Column("country", "text"),
        Column("created_at", "text"),
        Column("updated_at", "text"),
        Column("deleted_at", "text"),
    ),
    indexes=("contact_id",),
    cursor="updated_at",
)
JOB_TITLE = Column("job_title", "text")
CONTACTS_WITH_JOB_TITLE = CONTACTS.with_column(JOB_TITLE)

ACCOUNT_COUNTRIES = ("US", "GB", "DE", "CA", "FR", "NL")

NULL_ID = -1
EMPTY_ID = -2


def later(rng: np.random.Generator, created: Arr, end: int, share: float) -> Arr:
    """Update times: ``share`` of rows changed once at a uniform time in [created, end)."""
    n = len(created)
    changed = rng.random(n) < share
    offset = np.floor(rng.random(n) * (end - np.asarray(created))).astype(np.int64)
    return np.asarray(created) + np.where(changed, offset, 0)


def make_accounts(
    rng: np.random.Generator, first_id: int, n: int, start: int, end: int
) -> tuple[Frame, Arr, BadRows]:
    """Accounts created uniformly in [start, end); ids ascend with creation time."""
    created = np.sort(rng.integers(start, end, n))
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    updated = later(rng, created, end, 0.4)
    suffix = take(vocab.COMPANY_SUFFIX, rng.integers(0, len(vocab.COMPANY_SUFFIX), n))
    name = cat(
        take(vocab.COMPANY_FIRST, rng.integers(0, len(vocab.COMPANY_FIRST), n)),
        " ",
        take(vocab.COMPANY_SECOND, rng.integers(0, len(vocab.COMPANY_SECOND), n)),
        where(suffix == "", "", cat(" ", suffix)),
    )
    country = render_country(rng, rng.integers(0, len(ACCOUNT_COUNTRIES), n), ACCOUNT_COUNTRIES)
    n_junk = max(1, int(rng.binomial(n, JUNK_RATE)))
    junk = np.sort(rng.choice(n, size=min(n_junk, n), replace=False))
    no_name = np.zeros(n, dtype=bool)
    no_name[junk] = True  # junk: an account saved without its (mandatory) name
    offsets = random_offsets(rng, n)
    frame = Frame(
        {
            "account_id": ids,
            "name": name,
            "industry": take(vocab.INDUSTRIES, rng.integers(0, len(vocab.INDUSTRIES), n)),
            "country": country,
            "created_at": iso_offset(created, offsets),
            "updated_at": iso_offset(updated, offsets),
        },
        {"name": no_name},
    )
    real = np.delete(ids, junk)
    return frame, real, bad_rows("crm", "accounts", num(ids[junk]), "null_name")


def contacts_frame(
    rng: np.random.Generator,
    *,
    contact_num: Arr,
    account_id: Arr,
    first: Arr,
    last: Arr,
    domain: Arr,
    local_fmt: Arr,
    country: Arr,
    identity: Arr,
    has_email: Arr,
    has_phone: Arr,
    created: Arr,
    updated: Arr,
    deleted: Arr,
    job_title: bool,
) -> Frame:
    """Render contact rows. ``contact_num`` -1/-2 give NULL/empty ids, ``deleted`` -1 no delete."""
    n = len(contact_num)
    first_name, last_name = render_names(rng, first, last, "crm")
    email = render_email(rng, canonical_email(first, last, domain, local_fmt, identity), "crm")
    phone = render_phone(rng, identity, PHONE_FAMILY_OF_COUNTRY[country])
    offsets = random_offsets(rng, n)
    email[~has_email] = ""
    phone[~has_phone] = ""
    ids = contact_id(np.maximum(contact_num, 0))
    ids[contact_num == EMPTY_ID] = ""
    deleted = np.asarray(deleted)
    columns: dict[str, Arr] = {
        "contact_id": ids,
        "account_id": np.maximum(account_id, 0),
        "first_name": first_name,
        "last_name": last_name,
        "email": email,
        "phone": phone,
        "country": render_country(rng, country, COUNTRIES),
        "created_at": iso_offset(created, offsets),
        "updated_at": iso_offset(updated, offsets),
        "deleted_at": iso_offset(np.maximum(deleted, created), offsets),
    }
    nulls = {
        "contact_id": contact_num == NULL_ID,
        "account_id": account_id < 0,
        "email": ~has_email,
        "phone": ~has_phone,
        "deleted_at": deleted < 0,
    }
    if job_title:
        columns["job_title"] = take(vocab.JOB_TITLES, rng.integers(0, len(vocab.JOB_TITLES), n))
    return Frame(columns, nulls)


def contact_update_frame(
    rng: np.random.Generator,
    *,
    contact_num: Arr,
    first: Arr,
    last: Arr,
    identity: Arr,
    country: Arr,
    has_phone: Arr,
    updated: Arr,
    job_title: bool,
) -> Frame:
    """An edit of existing contacts: names re-typed, phone re-formatted, ``updated_at`` moved."""
    first_name, last_name = render_names(rng, first, last, "crm")
    phone = render_phone(rng, identity, PHONE_FAMILY_OF_COUNTRY[country])
    phone[~has_phone] = ""
    columns: dict[str, Arr] = {
        "contact_id": contact_id(contact_num),
        "first_name": first_name,
        "last_name": last_name,
        "phone": phone,
        "updated_at": iso_offset(updated, random_offsets(rng, len(updated))),
    }
    if job_title:
        columns["job_title"] = take(
            vocab.JOB_TITLES, rng.integers(0, len(vocab.JOB_TITLES), len(updated))
        )
    return Frame(columns, {"phone": ~has_phone})


def soft_delete_frame(rng: np.random.Generator, contact_num: Arr, deleted: Arr) -> Frame:
    """Soft deletes: ``deleted_at`` and ``updated_at`` set to the deletion time."""
    text = iso_offset(deleted, random_offsets(rng, len(deleted)))
    return Frame(
        {"contact_id": contact_id(contact_num), "deleted_at": text, "updated_at": text.copy()}
    )


def junk_contact_nums(rng: np.random.Generator, n: int) -> Arr:
    """Id codes of junk contacts: NULL and empty ids (at least one of each when n >= 2)."""
    codes = np.where(rng.random(n) < 0.5, NULL_ID, EMPTY_ID)
    if n >= 2:
        codes[0], codes[1] = NULL_ID, EMPTY_ID
    return codes.astype(np.int64)
