"""installer.untrusted: files from outside are read once, only when regular, within a bound;
JSON is refused past its depth and element bounds before it is built."""

from __future__ import annotations

import os
import threading
import time

import pytest

from installer.errors import IntegrityError, SpecError
from installer.untrusted import (
    parse_json,
    positive_int,
    read_bytes,
    read_json,
    read_text,
)
from tests.hostile import run_bounded


def test_regular_file_within_bound_is_read(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"a": [1, 2, {"b": "c"}]}')
    assert read_json(p, 100) == {"a": [1, 2, {"b": "c"}]}
    assert read_text(p, 100).startswith("{")


def test_oversized_file_is_refused_naming_file_and_bound(tmp_path):
    p = tmp_path / "big.json"
    p.write_bytes(b" " * 2049)
    with pytest.raises(IntegrityError, match=r"big\.json is larger than the 2 KiB .*2049 bytes"):
        read_bytes(p, 2048)


def test_fifo_is_refused_at_once_without_blocking(tmp_path):
    fifo = tmp_path / "bundle.json"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(IntegrityError, match="is a FIFO"):
        read_bytes(fifo, 1024)
    assert time.monotonic() - start < 1


def test_fifo_with_a_writer_is_refused_too(tmp_path):
    fifo = tmp_path / "SHA256SUMS"
    os.mkfifo(fifo)
    stop = threading.Event()

    def writer():  # an endless writer, bounded by the test's stop flag
        fd = os.open(fifo, os.O_WRONLY)
        try:
            while not stop.is_set():
                try:
                    os.write(fd, b"x" * 65536)
                except BlockingIOError:
                    time.sleep(0.01)
        except BrokenPipeError:
            pass
        finally:
            os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        with pytest.raises(IntegrityError, match="is a FIFO"):
            read_bytes(fifo, 1024)
    finally:
        stop.set()
        # unblock a writer still waiting for a reader
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(5)


def test_device_and_directory_and_symlink_are_refused(tmp_path):
    with pytest.raises(IntegrityError, match="is a device"):
        read_bytes("/dev/zero", 1024)
    with pytest.raises(IntegrityError, match="is a directory"):
        read_bytes(tmp_path, 1024)
    target = tmp_path / "real"
    target.write_text("{}")
    link = tmp_path / "index.json"
    link.symlink_to(target)
    with pytest.raises(IntegrityError, match="is a symbolic link"):
        read_bytes(link, 1024)


def test_error_class_is_the_callers(tmp_path):
    with pytest.raises(SpecError, match=r"cannot read .*missing"):
        read_bytes(tmp_path / "missing", 10, error=SpecError)


@pytest.mark.parametrize(("doc", "message"), [
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64 levels"),
    (b"[1," * 65 + b"1" + b"]" * 65, "nested deeper than 64 levels"),
    (b'{"a": 1, "a": 2}', "the key 'a' appears twice"),
    (b"[NaN]", "non-standard constant NaN"),
    (b"[-Infinity]", "non-standard constant -Infinity"),
    (b"[" + b"0," * 2_000_000 + b"0]", "more than 2000000 JSON values"),
    (b"{", "is not valid JSON"),
    (b"\xff", "is not valid JSON"),
])
def test_hostile_json_is_refused(doc, message):
    with pytest.raises(IntegrityError, match=message):
        parse_json(doc, "x.json")


def test_brackets_inside_strings_do_not_count_as_nesting():
    doc = b'{"a": "' + b"[" * 1000 + b'\\"{{{", "b": [[1]]}'
    assert parse_json(doc, "x.json")["b"] == [[1]]


@pytest.mark.parametrize("value", [True, False, 0, -1, 1.0, "1", None, 2**60])
def test_positive_int_refuses_non_integers_and_out_of_range(value):
    with pytest.raises(IntegrityError, match="must be an integer from 1"):
        positive_int(value, "bundle.json version")


def test_positive_int_accepts():
    assert positive_int(3, "v") == 3


def test_run_bounded_measures_the_childs_own_peak():
    r = run_bounded(["--version"], mem_mib=512, timeout=60)
    assert r.rc == 0, r.output
    assert "airlock" in r.stdout
    assert 5 < r.peak_mib < 512


def test_a_file_that_grows_while_read_is_refused(tmp_path, monkeypatch):
    p = tmp_path / "SHA256SUMS"
    p.write_bytes(b"a" * 100)
    real_fstat = os.fstat
    calls = []

    def fstat_then_grow(fd):  # the size is taken, then a writer appends
        st = real_fstat(fd)
        calls.append(st)
        if len(calls) == 2:  # the size check after the regular-file check
            with open(p, "ab") as f:
                f.write(b"b" * 10)
        return st

    monkeypatch.setattr("installer.untrusted.os.fstat", fstat_then_grow)
    with pytest.raises(IntegrityError,
                       match=r"changed size while being read \(100 bytes, then 101\+\)"):
        read_bytes(p, 1000)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("size", "123", "size must be an integer from 0"),
    ("size", True, "size must be an integer from 0"),
    ("size", -1, "size must be an integer from 0"),
    ("digest", "sha256:../../etc/passwd", "is not sha256: and 64"),
    ("mediaType", 7, "wrong type"),
    ("annotations", {"a": 1}, "wrong type"),
])
def test_a_descriptor_from_outside_is_checked_field_by_field(field, value, words):
    from installer.bundle.store import Descriptor
    from installer.errors import SourceError

    good = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 3,
            "digest": "sha256:" + "a" * 64}
    assert Descriptor.from_json(good).size == 3
    with pytest.raises(SourceError, match=words):
        Descriptor.from_json({**good, field: value}, "registry manifest: layer 1")
