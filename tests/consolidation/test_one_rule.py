"""Consolidated invoice numbers and their period keys are built in Python (consolidation.periods)
and by the set-based issue in SQL (its builders there): both agree on generated periods."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from consolidation.lifecycle import PeriodType
from consolidation.periods import Period, consolidated_number, consolidated_number_sql, period_key_sql
from tests.one_rule import PROPERTY, select

PREFIXES = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz0123456789-"), min_size=1, max_size=16)



@pytest.mark.django_db
@PROPERTY
@given(
    period_type=st.sampled_from(PeriodType.values),
    start=st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
)
@example(period_type=PeriodType.WEEKLY, start=date(2026, 1, 1))  # ISO week 1 of 2026
@example(period_type=PeriodType.WEEKLY, start=date(2027, 1, 1))  # ISO week 53 of 2026
@example(period_type=PeriodType.MONTHLY, start=date(999, 12, 1))
def test_sql_period_key_agrees_with_python(period_type, start):
    period = Period(period_type, start, start)
    key = select(period_key_sql("%(type)s", "%(start)s::date"), {"type": period_type, "start": start})
    assert key == period.key


@pytest.mark.django_db
@PROPERTY
@given(
    prefix=PREFIXES,
    period_type=st.sampled_from(PeriodType.values),
    start=st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
    sequence=st.integers(min_value=1, max_value=2**31 - 1),
)
@example(prefix="CONS", period_type=PeriodType.WEEKLY, start=date(2026, 1, 19), sequence=1)
@example(prefix="CONS", period_type=PeriodType.MONTHLY, start=date(2026, 1, 1), sequence=1000)
def test_sql_consolidated_number_agrees_with_python(prefix, period_type, start, sequence):
    period = Period(period_type, start, start)
    sql = select(
        consolidated_number_sql("%(prefix)s", period_key_sql("%(type)s", "%(start)s::date"), "%(n)s::integer"),
        {"prefix": prefix, "type": period_type, "start": start, "n": sequence},
    )
    assert sql == consolidated_number(prefix, period, sequence)
