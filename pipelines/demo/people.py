"""Real persons and how each operational system renders them.

A *person* is the ground-truth entity; a *record* is one row about a person in the CRM
(``contacts``) or the shop (``customers``). The matching guarantee of the demo is built here, by
construction rather than by chance:

* Every person has exactly one canonical e-mail, ``<letters><person_id>@<domain>``. Names contain
  no digits, so the trailing digits of the local part *are* the person id: two persons can never
  share an e-mail. Records differ from the canonical e-mail only by letter case and surrounding
  whitespace, so ``lower(trim(email))`` equals the canonical e-mail for every record that has one.
* Every person has exactly one phone number, ``country code + national number`` where the national
  number is an injective affine map of the person id (multiplier coprime to the modulus) inside a
  per-country number range. Records render it in several formats, all of which normalize (keep
  digits; 10 digits means North America, prefix '1') to the same string. National trunk prefixes
  ('0...', '00...') are never used because they would break that equality.
* A record never lacks both: persons flagged ``gap`` may have records without e-mail, but then all
  their records carry the phone; other persons always have the e-mail and may lack the phone.

Junk rows (which belong to no person) use identities from :data:`JUNK_IDENTITY_BASE` upwards,
rendered with their own e-mail domains and phone area codes, so they can never collide with a
real person's e-mail or phone either.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from pipelines.demo import vocab
from pipelines.demo.frame import ArrayRecord
from pipelines.demo.text import S, cat, num, strs, take, where

Arr = npt.NDArray[Any]

COUNTRIES = ("US", "GB", "DE", "CA")
COUNTRY_WEIGHTS = (0.55, 0.2, 0.15, 0.1)
CURRENCY_OF_COUNTRY = np.array([0, 2, 1, 0], dtype=np.int8)
"""Preferred order currency per country index (0 USD, 1 EUR, 2 GBP)."""

NANP, GB, DE = 0, 1, 2
PHONE_FAMILY_OF_COUNTRY = np.array([NANP, GB, DE, NANP], dtype=np.int8)

GAP_RATE = 0.10
"""Share of persons whose records may lack an e-mail (about half of their records do)."""
MISSING_PHONE_RATE = 0.10
"""Share of records of non-gap persons that lack a phone."""
JUNK_IDENTITY_BASE = 900_000_000
"""Identities of junk rows start here; person ids stay below it."""

# Membership: u < 0.4 CRM only, 0.4 <= u < 0.7 both, u >= 0.7 shop only.
CRM_SHARE = 0.7
SHOP_SHARE = 0.6


@dataclass
class Persons(ArrayRecord):
    """Ground-truth persons; vocabulary indexes instead of strings keep the store small."""

    person_id: Arr
    first: Arr
    last: Arr
    domain: Arr
    local_fmt: Arr
    country: Arr
    gap: Arr
    in_crm: Arr
    in_shop: Arr


def new_persons(rng: np.random.Generator, first_id: int, n: int) -> Persons:
    """``n`` new persons with ids ``first_id..``, their membership of the two systems drawn."""
    membership = rng.random(n)
    return Persons(
        person_id=np.arange(first_id, first_id + n, dtype=np.int64),
        first=rng.integers(0, len(vocab.FIRST_NAMES), n).astype(np.int16),
        last=rng.integers(0, len(vocab.LAST_NAMES), n).astype(np.int16),
        domain=rng.integers(0, len(vocab.EMAIL_DOMAINS), n).astype(np.int8),
        local_fmt=rng.choice(4, size=n, p=[0.5, 0.2, 0.15, 0.15]).astype(np.int8),
        country=rng.choice(len(COUNTRIES), size=n, p=COUNTRY_WEIGHTS).astype(np.int8),
        gap=rng.random(n) < GAP_RATE,
        in_crm=membership < CRM_SHARE,
        in_shop=membership >= 1.0 - SHOP_SHARE,
    )


@lru_cache(maxsize=1)
def _initials() -> Arr:
    return strs([name[0] for name in vocab.FIRST_NAMES])


def canonical_email(first: Arr, last: Arr, domain: Arr, local_fmt: Arr, identity: Arr) -> Arr:
    """Lower-case e-mail; unique per identity because the local part ends in its number.

    Person ids use :data:`vocab.EMAIL_DOMAINS`; junk identities (``>= JUNK_IDENTITY_BASE``) use
    their own small number and :data:`vocab.JUNK_EMAIL_DOMAINS`, a disjoint set of domains.
    """
    ident = np.asarray(identity, dtype=np.int64)
    junk = ident >= JUNK_IDENTITY_BASE
    f = take(vocab.FIRST_NAMES, first)
    surname = take(vocab.LAST_NAMES, last)
    number = num(np.where(junk, ident - JUNK_IDENTITY_BASE, ident))
    initial = take(_initials(), first)
    local = np.empty(len(number), dtype=S)
    formats = np.asarray(local_fmt)
    # 0: jane.doe123, 1: jane123, 2: jane_doe123, 3: jdoe123
    for code, (head, sep, tail) in enumerate(
        [(f, ".", surname), (f, "", None), (f, "_", surname), (initial, "", surname)]
    ):
        m = formats == code
        if m.any():
            parts = [head[m], sep] if tail is None else [head[m], sep, tail[m]]
            local[m] = cat(*parts, number[m])
    dom = np.asarray(domain, dtype=np.int64)
    domains = where(
        junk,
        take(vocab.JUNK_EMAIL_DOMAINS, dom % len(vocab.JUNK_EMAIL_DOMAINS)),
        take(vocab.EMAIL_DOMAINS, dom % len(vocab.EMAIL_DOMAINS)),
    )
    return cat(local, "@", domains)


def national_number(identity: Arr, family: Arr) -> Arr:
    """Injective map identity -> national phone number inside each family's number range.

    Persons: North America 200-899 area codes, GB mobiles 7xxx, DE mobiles 15x. Junk identities
    (always North American) get the 900-999 area codes, which no person uses.
    """
    ident = np.asarray(identity, dtype=np.int64)
    junk = ident >= JUNK_IDENTITY_BASE
    k = ident - JUNK_IDENTITY_BASE
    nanp = np.where(
        junk,
        9_000_000_000 + (k * 1_234_567_891 + 345_678_901) % 1_000_000_000,
        2_000_000_000 + (ident * 1_234_567_891 + 7) % 7_000_000_000,
    )
    gb = 7_000_000_000 + (ident * 987_654_323 + 11) % 1_000_000_000
    de = 15_000_000_000 + (ident * 555_555_557 + 3) % 1_000_000_000
    fam = np.where(junk, NANP, np.asarray(family))
    return np.asarray(np.where(fam == NANP, nanp, np.where(fam == GB, gb, de)), dtype=np.int64)


_COUNTRY_CODE = ("1", "44", "49")


def normalized_phone(identity: Arr, family: Arr) -> Arr:
    """The one normalized form every rendering of this phone reduces to."""
    return cat(take(_COUNTRY_CODE, family), num(national_number(identity, family)))


def normalize_phone(raw: str | None) -> str | None:
    """The documented rule: keep digits; 10 digits means North America and gets a leading '1'."""
    if raw is None:
        return None
    digits = "".join(ch for ch in raw if ch.isdigit())
    if not digits:
        return None
    return "1" + digits if len(digits) == 10 else digits


def normalize_email(raw: str | None) -> str | None:
    """The documented rule: trim surrounding whitespace and lower-case; empty means missing."""
    if raw is None:
        return None
    value = raw.strip().lower()
    return value or None


_NANP_WEIGHTS = [0.25, 0.15, 0.1, 0.2, 0.15, 0.1, 0.05]
_GB_WEIGHTS = [0.4, 0.2, 0.15, 0.15, 0.1]
_DE_WEIGHTS = [0.4, 0.2, 0.2, 0.2]


def render_phone(rng: np.random.Generator, identity: Arr, family: Arr) -> Arr:
    """One of several human formats per record; all normalize to :func:`normalized_phone`."""
    fam = np.asarray(family)
    n = len(fam)
    national = national_number(identity, fam)
    out = np.empty(n, dtype=S)
    pick = rng.random(n)

    m = fam == NANP
    if m.any():
        d = national[m]
        area, exch, line = num(d // 10**7), num(d // 10**4 % 1000, 3), num(d % 10**4, 4)
        digits = num(d)
        variants = [
            cat("+1 (", area, ") ", exch, "-", line),
            cat(area, ".", exch, ".", line),
            cat("1", digits),
            cat("(", area, ") ", exch, "-", line),
            cat(area, "-", exch, "-", line),
            cat("+1 ", area, " ", exch, " ", line),
            digits,
        ]
        out[m] = _choose(pick[m], _NANP_WEIGHTS, variants)
    m = fam == GB
    if m.any():
        d = national[m]
        head, tail = num(d // 10**6), num(d % 10**6, 6)
        mid, end = num(d // 1000 % 1000, 3), num(d % 1000, 3)
        variants = [
            cat("+44 ", head, " ", tail),
            cat("+44", num(d)),
            cat("44 ", head, " ", mid, " ", end),
            cat("+44-", head, "-", tail),
            cat("+44 (", head, ") ", tail),
        ]
        out[m] = _choose(pick[m], _GB_WEIGHTS, variants)
    m = fam == DE
    if m.any():
        d = national[m]
        head, tail = num(d // 10**8), num(d % 10**8, 8)
        variants = [
            cat("+49 ", head, " ", tail),
            cat("+49", num(d)),
            cat("49-", head, "-", tail),
            cat("+49 (", head, ") ", num(d // 10**4 % 10**4, 4), " ", num(d % 10**4, 4)),
        ]
        out[m] = _choose(pick[m], _DE_WEIGHTS, variants)
    return out


def _choose(u: Arr, weights: list[float], variants: list[Arr]) -> Arr:
    """Pick variant ``k`` where ``u`` falls in the k-th slice of the cumulative weights."""
    which = np.searchsorted(np.cumsum(weights), u, side="right").clip(0, len(variants) - 1)
    out = variants[0].copy()
    for k in range(1, len(variants)):
        mask = which == k
        out[mask] = variants[k][mask]
    return out


# Name rendering: each vocabulary name has a fixed set of variants, so typos are precomputed
# once for ~150 names instead of being produced row by row.
_NAME_WEIGHTS = {
    "crm": [0.84, 0.03, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02],
    "shop": [0.88, 0.02, 0.03, 0.01, 0.02, 0.015, 0.01, 0.015],
}
N_NAME_VARIANTS = 8


def _typos(name: str) -> tuple[str, str, str]:
    """Swap two adjacent letters, drop one, double one (each differs from ``name``)."""
    mid = len(name) // 2
    swapped = name
    for i in [mid - 1, *range(len(name) - 1)]:
        if name[i] != name[i + 1]:
            swapped = name[:i] + name[i + 1] + name[i] + name[i + 2 :]
            break
    dropped = name[:mid] + name[mid + 1 :]
    doubled = name[: mid + 1] + name[mid:]
    return swapped.capitalize(), dropped.capitalize(), doubled.capitalize()


@lru_cache(maxsize=2)
def _name_table(kind: str) -> Arr:
    names = vocab.FIRST_NAMES if kind == "first" else vocab.LAST_NAMES
    rows: list[str] = []
    for name in names:
        title = name.capitalize()
        rows.extend([title, name.upper(), name, " " + title, title + " ", *_typos(name)])
    return strs(rows)


def render_names(rng: np.random.Generator, first: Arr, last: Arr, system: str) -> tuple[Arr, Arr]:
    """First/last names as typed into ``system``: mostly clean, sometimes cased, padded or typoed."""
    weights = _NAME_WEIGHTS[system]
    n = len(first)
    fv = rng.choice(N_NAME_VARIANTS, size=n, p=weights)
    lv = rng.choice(N_NAME_VARIANTS, size=n, p=weights)
    first_names = _name_table("first")[np.asarray(first, np.int64) * N_NAME_VARIANTS + fv]
    last_names = _name_table("last")[np.asarray(last, np.int64) * N_NAME_VARIANTS + lv]
    return first_names, last_names


_EMAIL_CASE = {"crm": [0.6, 0.25, 0.05, 0.1], "shop": [0.85, 0.1, 0.03, 0.02]}
_EMAIL_SPACE = {"crm": [0.85, 0.06, 0.06, 0.03], "shop": [0.96, 0.02, 0.01, 0.01]}


def render_email(rng: np.random.Generator, canonical: Arr, system: str) -> Arr:
    """The canonical e-mail with per-record letter case and surrounding whitespace."""
    n = len(canonical)
    case = rng.choice(4, size=n, p=_EMAIL_CASE[system])
    space = rng.choice(4, size=n, p=_EMAIL_SPACE[system])
    out = np.asarray(canonical, dtype=S).copy()
    for code, fn in ((1, np.strings.title), (2, np.strings.upper), (3, np.strings.capitalize)):
        mask = case == code
        if mask.any():
            out[mask] = fn(out[mask])
    lead = where((space == 1) | (space == 3), " ", "")
    trail = where((space == 2) | (space == 3), " ", "")
    return cat(lead, out, trail)


def record_presence(rng: np.random.Generator, gap: Arr) -> tuple[Arr, Arr]:
    """Which records carry an e-mail / a phone (never neither; see the module docstring)."""
    n = len(gap)
    u = rng.random((2, n))
    has_email = ~gap | (u[0] < 0.5)
    has_phone = gap | (u[1] >= MISSING_PHONE_RATE)
    return has_email, has_phone


_COUNTRY_VARIANT_WEIGHTS = [0.8, 0.08, 0.05, 0.04, 0.03]


def render_country(rng: np.random.Generator, codes: Arr, countries: tuple[str, ...]) -> Arr:
    """ISO-2 codes as a legacy CRM holds them: 'DE', 'de', ' DE', 'De', 'DE '."""
    table: list[str] = []
    for c in countries:
        table.extend([c, c.lower(), " " + c, c.capitalize(), c + " "])
    v = rng.choice(5, size=len(codes), p=_COUNTRY_VARIANT_WEIGHTS)
    return take(table, np.asarray(codes, np.int64) * 5 + v)
