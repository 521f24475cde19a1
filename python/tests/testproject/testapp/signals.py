"""A signal this service defines at run time: the Rust catalog does not know it."""
from datetime import datetime
from typing import Dict, List

import attr
from opaque_keys.edx.keys import CourseKey
from openedx_events.tooling import OpenEdxPublicSignal


@attr.s(frozen=True)
class BadgeRule:
    name = attr.ib(type=str)
    weight = attr.ib(type=float)
    note = attr.ib(type=str, default=None)


@attr.s(frozen=True)
class BadgeAwardData:
    course_key = attr.ib(type=CourseKey)
    awarded_at = attr.ib(type=datetime)
    learner_ids = attr.ib(type=List[int])
    rules = attr.ib(type=List[BadgeRule])
    extra = attr.ib(type=Dict[str, str])
    secret = attr.ib(type=bytes)
    public = attr.ib(type=bool, default=None)


BADGE_AWARDED = OpenEdxPublicSignal(
    event_type="org.example.testapp.badge.awarded.v1",
    data={"badge": BadgeAwardData},
    minor_version=2,
)
