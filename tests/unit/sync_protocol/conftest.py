"""Fixtures of the protocol unit tests."""

from tests.support.protocol import base_record

__all__ = ["base_record"]
