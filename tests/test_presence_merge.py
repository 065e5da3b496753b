"""Merging presence diffs (pure): the merged diff leaves a Phoenix client where every diff would have."""

from __future__ import annotations

from sio_push.presence import diff, merge

from .conftest import apply_diff as apply


def meta(ref: str, **extra) -> dict:
    return {"online_at": "1", "phx_ref": ref, **extra}


def test_merged_diff_ends_where_each_diff_would():
    diffs = [
        diff("a", joined=meta("a1")),
        diff("b", joined=meta("b1")),
        diff("a", joined=meta("a2", typing=True), left=meta("a1")),
        diff("b", left=meta("b1")),
        diff("a", joined=meta("a3", typing=False), left=meta("a2", typing=True)),
    ]
    for start in ({}, {"a": [meta("a1")]}, {"z": [meta("z1")]}):
        expected = start
        for d in diffs:
            expected = apply(expected, d)
        merged: dict = {"joins": {}, "leaves": {}}
        for d in diffs:
            merge(merged, d)
        assert apply(start, merged) == expected
    assert merged["joins"] == {"a": {"metas": [meta("a3", typing=False)]}}
