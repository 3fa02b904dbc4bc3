"""The local filesystem Tune writes a search's storage through: every file appears whole or not at all.

Tune stages its experiment state (trial table, search-algorithm and callback state) and each checkpoint in a
local folder and copies them into storage with pyarrow, file by file, in a background thread. On a local or
mounted folder pyarrow writes the destination in place, so a driver killed mid-copy leaves a truncated
state file that the next `resume` cannot read ("EOFError: Ran out of input"). Here every output stream
writes a hidden temporary file beside its destination and renames it over the destination on close — the
same publish-on-completion object stores (S3, GCS) already give. Everything else is the local filesystem.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs


class _PublishOnClose:
    """A binary file that becomes `final` only once closed after a complete write."""

    def __init__(self, final: str) -> None:
        head, tail = os.path.split(final)
        self.final = final
        self.temporary = os.path.join(head, f".{tail}.{uuid.uuid4().hex[:8]}.partial")
        self._file = open(self.temporary, "wb")  # noqa: SIM115 - closed (and published) by close()
        self.closed = False
        self.mode = "wb"

    def write(self, data: Any) -> int:
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def tell(self) -> int:
        return self._file.tell()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if self.closed:
            return
        self._file.close()
        os.replace(self.temporary, self.final)  # atomic on one filesystem: readers see old or new, never half
        self.closed = True


class AtomicLocalHandler(pafs.FileSystemHandler):
    """pyarrow's LocalFileSystem, with output streams published on close (see the module doc)."""

    def __init__(self) -> None:
        self._local = pafs.LocalFileSystem()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(type(self))

    # sent to trial workers with the storage context
    def __reduce__(self) -> tuple[type[AtomicLocalHandler], tuple[()]]:
        return (AtomicLocalHandler, ())

    def get_type_name(self) -> str:
        return "atomic-local"

    def normalize_path(self, path: str) -> str:
        return self._local.normalize_path(path)

    def get_file_info(self, paths: str | list[str]) -> pafs.FileInfo | list[pafs.FileInfo]:
        return self._local.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self._local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the root folder")

    def delete_file(self, path: str) -> None:
        self._local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self._local.open_input_stream(src) as source, self.open_output_stream(dest, {}) as sink:
            while block := source.read(1 << 24):
                sink.write(block)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self._local.open_input_stream(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self._local.open_input_file(path)

    def open_output_stream(self, path: str, metadata: dict[str, str]) -> pa.NativeFile:
        # pyarrow only calls the file's write/flush/tell/close (duck typing); its stubs ask for an io.IOBase, which
        # _PublishOnClose is not on purpose: IOBase closes (here: publishes) a half-written file when collected
        return pa.PythonFile(_PublishOnClose(path), mode="w")  # type: ignore[arg-type]

    def open_append_stream(self, path: str, metadata: dict[str, str]) -> pa.NativeFile:
        stream: pa.NativeFile = self._local.open_append_stream(path, metadata=metadata)  # unannotated in the stubs
        return stream


def atomic_local_filesystem() -> pafs.FileSystem:
    return pafs.PyFileSystem(AtomicLocalHandler())
