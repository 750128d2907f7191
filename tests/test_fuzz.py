"""Fuzzing the readers of outside data, with hypothesis.

The corpus is a real signed bundle built from FULL_SPEC's small inputs (its bundle.json,
index.json, SHA256SUMS, a manifest, the SBOM, the TUF metadata, an SSH signature, the packed
parts' index), the spec, its lock and a VSIX. Each example takes one of those files, applies
a few mutations (flipped bytes, cuts, inserted tokens such as brackets, anchors, `true` or
huge numbers, a byte repeated thousands of times) and gives it to the reader through the
same entry point the CLI uses. The property: the reader returns, or refuses with an
``AirlockError`` (a message and an exit code), never any other exception, and in bounded
time. A crash it finds is kept as a file under tests/fuzz_regressions/TARGET/ and replayed
by ``test_regressions`` for ever after.

CI runs a short pass with a fixed seed (hypothesis' ``derandomize``); by hand, longer:
``AIRLOCK_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest -q tests/test_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FULL_SPEC, small_inputs, write_spec
from installer.bundle import keys
from installer.bundle.build import BuildOptions, build
from installer.bundle.inspect import load_meta
from installer.bundle.lock import Lock
from installer.bundle.pack import pack, unpack
from installer.bundle.sign import sign_bundle
from installer.bundle.sources.vsix import read_vsix
from installer.bundle.spec import Located
from installer.bundle.spec import load as load_spec
from installer.bundle.trust import verify_signed
from installer.errors import AirlockError
from installer.untrusted import parse_json

EXAMPLES = int(os.environ.get("AIRLOCK_FUZZ_EXAMPLES", "60"))
SECONDS = 10  # one reader on one small hostile file: far more than any needs here
PASS = "fuzz passphrase"
REGRESSIONS = Path(__file__).parent / "fuzz_regressions"

fuzz = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TOKENS = [b"[", b"{", b"]", b"}", b'"', b"\\", b"\x00", b"\xff", b"\xfe\xff", b"true", b"null",
          b"-1", b"0", b"1e999", b"18446744073709551616", b"NaN", b"&a ", b"*a", b"<<: *a",
          b"!!python/object/apply:os.system", b"\n", b"../", b"/", b"\t", b'"version": true',
          b"\x1b[31m", b"sha256:", b"\xf0\x9f\x92\xa5", b"PK\x03\x04", b"-----BEGIN SSH "]

op = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.floats(0, 1), st.integers(1, 64)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.sampled_from(TOKENS) | st.binary(
        max_size=16)),
    st.tuples(st.just("repeat"), st.floats(0, 1), st.integers(1, 8), st.integers(2, 3000)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
)


def mutate(data: bytes, ops: list[tuple]) -> bytes:
    for o in ops:
        at = int(o[1] * len(data))
        if o[0] == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ o[2]]) + data[at + 1:]
        elif o[0] == "cut":
            data = data[:at] + data[at + o[2]:]
        elif o[0] == "insert":
            data = data[:at] + o[2] + data[at:]
        elif o[0] == "repeat":
            data = data[:at] + data[at:at + o[2]] * o[3] + data[at + o[2]:]
        elif o[0] == "truncate":
            data = data[:at]
    return data


mutations = st.lists(op, min_size=1, max_size=6)


# --------------------------------------------------------------------------- the corpus

class Corpus:
    def __init__(self, root: Path):
        self.root = root
        (root / "inputs").mkdir()
        inputs = small_inputs(root / "inputs")
        self.spec = write_spec(inputs, FULL_SPEC)
        self.keys = root / "keys"
        keys.init(self.keys, 3, 2, None, PASS, keys.Policy())
        self.bundle = build(self.spec, root / "bundle", BuildOptions()).path
        for s in ("signer-1", "signer-2"):
            sign_bundle(self.bundle, self.keys / f"{s}.key", PASS)
        self.lock = self.spec.with_suffix(".lock.json")
        self.vsix = inputs / "ext.vsix"
        (root / "packed").mkdir()
        packed = pack(self.bundle, root / "packed" / "packed.tar", zstd=False, level=3,
                      split=64 * 1024, force=False)
        self.parts_index = Path(packed["index"])
        index = parse_json((self.bundle / "index.json").read_bytes(), "index.json")
        manifest = index["manifests"][0]["digest"].split(":")[1]
        self.bundle_files = ["bundle.json", "index.json", "SHA256SUMS", "sbom.cdx.json",
                             f"blobs/sha256/{manifest}", "tuf/timestamp.json",
                             "tuf/snapshot.json", "tuf/targets.json", "SHA256SUMS.signer-1.sig"]
        self.original = {f: (self.bundle / f).read_bytes() for f in self.bundle_files}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("fuzz"))


def survives(reader: Callable[[], object], what: str) -> None:
    """READER returns or raises an AirlockError, within SECONDS."""
    start = time.monotonic()
    with contextlib.suppress(AirlockError):
        reader()
    assert time.monotonic() - start < SECONDS, f"{what}: took {time.monotonic() - start:.1f} s"


# --------------------------------------------------------------------------- the targets

def target_bundle_file(corpus: Corpus, name: str, data: bytes) -> None:
    p = corpus.bundle / name
    p.unlink()
    p.write_bytes(data)
    try:
        with tempfile.TemporaryDirectory() as state:
            survives(lambda: verify_signed(corpus.bundle, corpus.keys / "root.json",
                                           Path(state)), f"verify --trust with {name} mutated")
            survives(lambda: load_meta(corpus.bundle), f"inspect with {name} mutated")
    finally:
        p.unlink()
        p.write_bytes(corpus.original[name])


def target_spec(corpus: Corpus, data: bytes) -> None:
    p = corpus.spec.with_name("fuzzed.yaml")
    p.write_bytes(data)
    survives(lambda: load_spec(p), "spec")


def target_lock(corpus: Corpus, data: bytes) -> None:
    p = corpus.root / "fuzzed.lock.json"
    p.write_bytes(data)
    survives(lambda: Lock.read(p), "lock")


def target_vsix(corpus: Corpus, data: bytes) -> None:
    p = corpus.root / "fuzzed.vsix"
    p.write_bytes(data)
    survives(lambda: read_vsix(p, Located("spec.yaml", 1, "vsix[0]"), str(p)), "vsix")


def target_parts_index(corpus: Corpus, data: bytes) -> None:
    work = Path(tempfile.mkdtemp(dir=corpus.root))
    try:
        parts = work / "parts"
        shutil.copytree(corpus.parts_index.parent, parts)
        (parts / corpus.parts_index.name).write_bytes(data)
        survives(lambda: unpack(parts / corpus.parts_index.name, work / "out", force=False),
                 "unpack with .parts.json mutated")
    finally:
        shutil.rmtree(work)


BUNDLE_FILES = ["bundle.json", "index.json", "SHA256SUMS", "sbom.cdx.json", "manifest",
                "tuf/timestamp.json", "tuf/snapshot.json", "tuf/targets.json",
                "SHA256SUMS.signer-1.sig"]


def _bundle_name(corpus: Corpus, short: str) -> str:
    return next(f for f in corpus.bundle_files if f.startswith("blobs/")) \
        if short == "manifest" else short


@pytest.mark.parametrize("short", BUNDLE_FILES)
@fuzz
@given(ops=mutations)
def test_bundle_files(corpus: Corpus, short: str, ops: list[tuple]) -> None:
    name = _bundle_name(corpus, short)
    target_bundle_file(corpus, name, mutate(corpus.original[name], ops))


@fuzz
@given(ops=mutations)
def test_spec(corpus: Corpus, ops: list[tuple]) -> None:
    target_spec(corpus, mutate(corpus.spec.read_bytes(), ops))


@fuzz
@given(ops=mutations)
def test_lock(corpus: Corpus, ops: list[tuple]) -> None:
    target_lock(corpus, mutate(corpus.lock.read_bytes(), ops))


@fuzz
@given(ops=mutations)
def test_vsix(corpus: Corpus, ops: list[tuple]) -> None:
    target_vsix(corpus, mutate(corpus.vsix.read_bytes(), ops))


@fuzz
@given(ops=mutations)
def test_parts_index(corpus: Corpus, ops: list[tuple]) -> None:
    target_parts_index(corpus, mutate(corpus.parts_index.read_bytes(), ops))


# --------------------------------------------------------------------------- regressions

TARGETS: dict[str, Callable[[Corpus, bytes], None]] = {
    "spec": target_spec, "lock": target_lock, "vsix": target_vsix,
    "parts-index": target_parts_index,
    **{f"bundle-{s.replace('/', '-')}": (lambda c, d, s=s: target_bundle_file(
        c, _bundle_name(c, s), d)) for s in BUNDLE_FILES},
}


def _regressions() -> list[Path]:
    return sorted(REGRESSIONS.glob("*/*.bin")) if REGRESSIONS.is_dir() else []


@pytest.mark.parametrize("case", _regressions(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_regressions(corpus: Corpus, case: Path) -> None:
    assert case.parent.name in TARGETS, f"{case}: no target {case.parent.name!r}"
    TARGETS[case.parent.name](corpus, case.read_bytes())
