"""Generate the protobuf/gRPC modules (and their type stubs) next to the .proto files.

Run by the install (setup.py's build_py), so generated code is never edited or committed;
`python -m ticketgate.proto.codegen` regenerates by hand. Needs grpcio-tools and
mypy-protobuf, which the build system pins.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent.parent  # the directory that holds `ticketgate/`


def proto_files() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.proto"))


def generate() -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    files = [str(path.relative_to(SOURCE_ROOT)) for path in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"--proto_path={SOURCE_ROOT}",
        f"--proto_path={include}",
        f"--python_out={SOURCE_ROOT}",
        f"--grpc_python_out={SOURCE_ROOT}",
        f"--mypy_out={SOURCE_ROOT}",
        f"--mypy_grpc_out={SOURCE_ROOT}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(files))
    for folder in {path.parent for path in proto_files()}:
        for parent in (folder, folder.parent):
            init = parent / "__init__.py"
            if not init.exists():
                init.write_text("")


if __name__ == "__main__":
    generate()
    sys.exit(0)
