"""Five-field cron expressions (``"0 3 * * 1"``): parse and find the next time, no dependency.

Fields: minute hour day-of-month month day-of-week (0 or 7 = Sunday); each a ``*``, a number, a
range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of these. As in cron, when both
day-of-month and day-of-week are restricted a day matching either runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["parse", "next_after", "Cron"]

_BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_NAMES = ["minute", "hour", "day of month", "month", "day of week"]

Cron = tuple[frozenset, frozenset, frozenset, frozenset, frozenset, bool, bool]


def _field(text: str, lo: int, hi: int, what: str) -> frozenset:
    out: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"{what}: step {step_text!r} is not a positive number")
            step = int(step_text)
        if base == "*":
            a, b = lo, hi
        elif "-" in base:
            x, _, y = base.partition("-")
            if not (x.isdigit() and y.isdigit()):
                raise ValueError(f"{what}: {base!r} is not a range a-b")
            a, b = int(x), int(y)
        elif base.isdigit():
            a = b = int(base)
            if step_text:
                b = hi
        else:
            raise ValueError(f"{what}: {part!r} is not a number, range, step or *")
        if a < lo or b > hi or a > b:
            raise ValueError(f"{what}: {part!r} is outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


def parse(text: str) -> Cron:
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    sets = [_field(f, lo, hi, n) for f, (lo, hi), n in zip(fields, _BOUNDS, _NAMES, strict=True)]
    dow = frozenset(d % 7 for d in sets[4])
    return (sets[0], sets[1], sets[2], sets[3], dow, fields[2] != "*", fields[4] != "*")


def _day_ok(c: Cron, t: datetime) -> bool:
    dom, dow = t.day in c[2], (t.isoweekday() % 7) in c[4]
    if c[5] and c[6]:
        return dom or dow
    return dom and dow


def next_after(c: Cron, t: datetime) -> datetime:
    """The first minute strictly after ``t`` that ``c`` matches (searched up to 5 years ahead)."""
    t = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = t + timedelta(days=366 * 5)
    while t < end:
        if t.month not in c[3] or not _day_ok(c, t):
            t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            continue
        if t.hour not in c[1]:
            t = (t + timedelta(hours=1)).replace(minute=0)
            continue
        if t.minute not in c[0]:
            t += timedelta(minutes=1)
            continue
        return t
    raise ValueError("the schedule never matches a real date")
