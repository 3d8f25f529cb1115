"""When flows run: fixed intervals (``every = "10m"``) and 5-field cron expressions (UTC).

Intervals
---------
``parse_duration("1h30m") == 5400.0``: one or more ``<number><unit>`` terms,
units ``d``, ``h``, ``m``, ``s`` in that order (``"90s"``, ``"10m"``,
``"1h30m"``, ``"1d12h"``, ``"1.5s"``). A bare number is refused: ``"10"``
could mean seconds or minutes.

Cron
----
``minute hour day-of-month month day-of-week``, evaluated in UTC, as in Vixie
cron / cronie:

* each field is ``*``, a value, a range ``a-b``, a step ``*/s`` / ``a-b/s`` /
  ``a/s`` (from ``a`` to the field's end), or a comma-separated list of those;
* months may be named ``jan``..``dec``, days of the week ``sun``..``sat``
  (case-insensitive, also inside ranges: ``mon-fri``); day of week 0 and 7
  are both Sunday;
* when both day fields are restricted (neither starts with ``*``), a day
  matching *either* runs (``0 0 1 * mon``: the 1st of every month and every
  Monday); otherwise both must match;
* ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``,
  ``@yearly`` (``@annually``) stand for their usual expressions.

An expression that can never fire (``0 0 30 feb *``) is refused when parsed.
:meth:`Cron.next_after` returns the first matching minute strictly after the
given instant.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from s3ferry.core.errors import UsageError

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
# (name, low, high, names or None, value names start at)
_FIELDS = (
    ("minute", 0, 59, None, 0),
    ("hour", 0, 23, None, 0),
    ("day-of-month", 1, 31, None, 1),
    ("month", 1, 12, MONTHS, 1),
    ("day-of-week", 0, 7, DAYS, 0),
)
#: the longest gap between two firings of a valid expression (29 February
#: skips a century year that is not a leap year: 2096 -> 2104)
_SEARCH_YEARS = 9


def parse_duration(text: str) -> float:
    """``"10m"``, ``"1h30m"``, ``"90s"``, ``"1d"`` -> seconds (> 0)."""
    cleaned = re.sub(r"\s+", "", str(text)).lower()
    match = _DURATION_RE.match(cleaned)
    if not cleaned or not match:
        hint = f" (add a unit: {cleaned}s or {cleaned}m)" if re.fullmatch(r"\d+(\.\d+)?", cleaned) else ""
        raise UsageError(f"cannot read {text!r} as a duration{hint}; examples: 90s, 10m, 1h30m, 1d")
    seconds = sum(float(v) * _UNITS[u] for v, u in zip(match.groups(), "dhms", strict=True) if v is not None)
    return seconds


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _value(token: str, field: tuple[str, int, int, tuple[str, ...] | None, int]) -> int:
    name, low, high, names, first = field
    if names is not None and token.lower() in names:
        return names.index(token.lower()) + first
    if not token.isdigit():
        known = f" or a name ({names[0]}..{names[-1]})" if names else ""
        raise UsageError(f"{name}: {token!r} is not a number{known}")
    value = int(token)
    if not low <= value <= high:
        raise UsageError(f"{name}: {value} is out of range {low}-{high}")
    return value


def _parse_field(text: str, field: tuple[str, int, int, tuple[str, ...] | None, int]) -> frozenset[int]:
    name, low, high, _, _ = field
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise UsageError(f"{name}: empty list item in {text!r}")
        body, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise UsageError(f"{name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            start, end = _value(a, field), _value(b, field)
            if start > end:
                raise UsageError(f"{name}: range {body!r} runs backwards")
        else:
            start = _value(body, field)
            end = high if slash else start  # "a/s": from a to the field's end
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field cron expression (UTC)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]  # day of month, 1-31
    months: frozenset[int]  # 1-12
    weekdays: frozenset[int]  # 0 = Sunday .. 6
    days_star: bool  # the day-of-month field starts with "*"
    weekdays_star: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        expr = MACROS.get(text.strip().lower(), text) if text.strip().startswith("@") else text
        if expr.strip().startswith("@"):
            raise UsageError(f"unknown macro {text.strip()!r} (known: {', '.join(MACROS)})")
        fields = expr.split()
        if len(fields) != 5:
            raise UsageError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
        parsed = (_parse_field(f, spec) for f, spec in zip(fields, _FIELDS, strict=True))
        minutes, hours, days, months, weekdays = parsed
        weekdays = frozenset(d % 7 for d in weekdays)
        cron = cls(text.strip(), minutes, hours, days, months, weekdays, fields[2].startswith("*"),
                   fields[4].startswith("*"))
        if cron.weekdays_star and not any(d <= _max_days(m) for m in months for d in days):
            raise UsageError("this day-of-month and month never occur together: the schedule would never fire")
        return cron

    def _day_ok(self, moment: datetime) -> bool:
        dom = moment.day in self.days
        dow = (moment.weekday() + 1) % 7 in self.weekdays
        if self.days_star and self.weekdays_star:
            return True
        if self.days_star:
            return dow
        if self.weekdays_star:
            return dom
        return dom or dow

    def next_after(self, moment: datetime) -> datetime:
        """The first minute matching the expression strictly after ``moment`` (UTC, aware)."""
        t = _utc(moment).replace(second=0, microsecond=0) + timedelta(minutes=1)
        last_year = t.year + _SEARCH_YEARS
        while t.year <= last_year:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_ok(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            hour = next((h for h in sorted(self.hours) if h >= t.hour), None)
            if hour is None:
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if hour != t.hour:
                t = t.replace(hour=hour, minute=0)
            minute = next((m for m in sorted(self.minutes) if m >= t.minute), None)
            if minute is None:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            return t.replace(minute=minute)
        raise UsageError(f"schedule {self.text!r} does not fire within {_SEARCH_YEARS} years")  # pragma: no cover

    def first_after(self, now: datetime) -> datetime:
        return self.next_after(now)

    def __str__(self) -> str:
        return f'cron "{self.text}" (UTC)'


def _max_days(month: int) -> int:
    return 29 if month == 2 else calendar.monthrange(2001, month)[1]


@dataclass(frozen=True)
class Every:
    """A fixed interval: the first run at start, then one every ``seconds`` (missed ticks are skipped)."""

    text: str
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Every:
        seconds = parse_duration(text)
        if seconds < 1:
            raise UsageError(f"interval {text!r} is shorter than one second")
        return cls(text.strip(), seconds)

    def first_after(self, now: datetime) -> datetime:
        return _utc(now)

    def next_after(self, moment: datetime) -> datetime:
        return _utc(moment) + timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        return f"every {self.text}"


Schedule = Cron | Every
