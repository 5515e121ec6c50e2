"""The harness's wire format: what the program sends decodes to plain data only."""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, namedtuple

import pytest

from verifiers.code.harness import decode, encode, read_frames

Point = namedtuple("Point", "x y")


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**200,
        -(2**70),
        1.5,
        -0.0,
        float("inf"),
        3 - 2j,
        "",
        "naïve \ud800",
        b"\x00\xff",
        [1, [2, [3]]],
        (1, (2,)),
        {1, 2},
        frozenset({"a"}),
        {(1, 2): [3.5], "k": {"n": None}},
    ],
)
def test_plain_values_round_trip_exactly(value):
    back = decode(bytes(encode(value)), None)
    assert back == value and type(back) is type(value)


def test_nan_round_trips():
    assert math.isnan(decode(bytes(encode(float("nan"))), None))


def test_subclasses_travel_as_their_base_type():
    # an object's own __eq__ cannot come along: Counter/OrderedDict -> dict, namedtuple -> tuple
    for value, base in [(Counter("aab"), dict), (OrderedDict(a=1), dict), (Point(1, 2), tuple), (True, bool)]:
        assert type(decode(bytes(encode(value)), None)) is base


def test_other_objects_become_references_only_through_the_callbacks():
    obj = object()
    data = bytes(encode([obj], ref=lambda o: 42))
    assert decode(data, lambda i: ("ref", i)) == [("ref", 42)]
    with pytest.raises(TypeError, match="cannot send a object"):
        encode(obj)


@pytest.mark.parametrize(
    "data,match",
    [
        (b"X\x00\x00\x00\x00", "unknown tag"),
        (b"s\x00\x00\x00\x05ab", "truncated data"),
        (b"l\x00\x00\x00\x02N", "truncated value|unknown tag"),
        (b"NN", "trailing bytes"),
        (b"f\x00\x00", "truncated float"),
    ],
)
def test_malformed_data_is_rejected(data, match):
    with pytest.raises(ValueError, match=match):
        decode(data, None)


def test_read_frames_stops_at_the_first_bad_frame():
    good = bytes(encode({"unit": 0, "ok": True}))
    frame = len(good).to_bytes(4, "big") + good
    garbage = (1).to_bytes(4, "big") + b"X"
    assert read_frames(frame + frame + garbage + frame) == [{"unit": 0, "ok": True}] * 2
    assert read_frames(frame + frame[:-1]) == [{"unit": 0, "ok": True}]  # torn last frame
