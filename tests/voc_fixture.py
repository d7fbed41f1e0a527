"""The tiny generated VOC 2012 + SBD tree of the data tests: :mod:`tests.fixtures.tiny_voc`, under the
names the tests use (chapter 8 generates the same tree for its smoke run)."""

from fixtures.tiny_voc import TinyVOC as FakeVOC
from fixtures.tiny_voc import make_tiny_voc as make_fake_voc

__all__ = ["FakeVOC", "make_fake_voc"]
