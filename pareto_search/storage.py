"""Where a search's files live: a local folder, or a URI on shared storage (``s3://``, ``gs://``,
``hdfs://``, ``file://``) reached through pyarrow's filesystems — the same ones Ray Tune uses for
the trials' checkpoints, so every node and every later command sees one copy.

:class:`Location` is the small path-like value the rest of the service passes around: ``/`` joins,
``parent``, ``is_file``, ``read_text``/``read_bytes``, an atomic ``write_text``/``write_bytes`` and
``delete``. Local paths keep the temp-file-and-rename write; object stores publish an object only
once its upload completes, so a reader never sees half a file there either. Endpoints and credentials
come from the standard environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), as for Tune and MLflow.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pareto_search.timeouts import WaitTimeout, bounded_call

if TYPE_CHECKING:  # pyarrow is imported where a remote location is used: the CLI's parsing path stays light
    import pyarrow.fs as pafs

STORAGE_ENV = "PARETO_SEARCH_STORAGE"


def default_storage() -> str:
    """A config's `storage` when it gives none: $PARETO_SEARCH_STORAGE (on a cluster), else ./searches."""
    return os.environ.get(STORAGE_ENV) or "searches"


# The schemes pyarrow's FileSystem.from_uri resolves and Tune accepts as storage_path.
REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs")
ALLOWED = "a local path, file:///…, s3://…, gs://… or hdfs://…"
# A storage request that takes longer is a storage that is not there (pyarrow's S3 client
# retries a refused connection for minutes); the command says so instead of hanging.
CHECK_TIMEOUT_S = 20.0


class StorageError(ValueError):
    """Storage that cannot be used; the message is one line naming the location."""


def storage_scheme_error(text: str) -> str | None:
    """Why ``text`` cannot be a storage location (one line), or None when it can."""
    if "://" not in text:
        return None
    scheme = urlsplit(text).scheme.lower()
    if scheme == "file":
        return None if urlsplit(text).path.startswith("/") else f"{text!r} is not an absolute file:// URI"
    if scheme not in REMOTE_SCHEMES:
        return f"scheme {scheme + '://'!r} of {text!r} is not supported; allowed: {ALLOWED}"
    if not urlsplit(text).netloc:
        return f"{text!r} names no bucket (or host)"
    return None


@functools.cache
def _filesystem(scheme: str, netloc: str) -> pafs.FileSystem:
    """One filesystem per bucket and process: creating an S3 client resolves its region (a request)."""
    import pyarrow.fs as pafs

    filesystem, _ = pafs.FileSystem.from_uri(f"{scheme}://{netloc}/")
    return filesystem


class Location:
    """A file or folder in a search's storage. Picklable (it holds only its text)."""

    __slots__ = ("uri",)

    def __init__(self, text: str | Path | Location) -> None:
        text = str(text)
        problem = storage_scheme_error(text)
        if problem:
            raise StorageError(problem)
        if text.startswith("file://"):  # a mounted shared folder is a local folder on every node
            text = urlsplit(text).path
        if "://" in text:
            self.uri = text.rstrip("/")
        else:
            self.uri = str(Path(text).expanduser().resolve())

    # -- path-like ---------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise StorageError(f"{self.uri} is not a local path")
        return Path(self.uri)

    def __truediv__(self, part: str) -> Location:
        return Location(f"{self.uri}/{part}")

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        return Location(self.uri.rsplit("/", 1)[0] or "/")

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __getstate__(self) -> str:
        return self.uri

    def __setstate__(self, uri: str) -> None:
        self.uri = uri

    # -- files -------------------------------------------------------------------------------

    def _remote(self) -> tuple[pafs.FileSystem, str]:
        parts = urlsplit(self.uri)
        return _filesystem(parts.scheme, parts.netloc), f"{parts.netloc}{parts.path}"

    def is_file(self) -> bool:
        if self.is_local:
            return self.local_path.is_file()
        import pyarrow.fs as pafs

        filesystem, path = self._remote()
        return filesystem.get_file_info(path).type == pafs.FileType.File

    def read_text(self) -> str:
        if self.is_local:
            return self.local_path.read_text(encoding="utf-8")
        filesystem, path = self._remote()
        with filesystem.open_input_stream(path) as stream:
            return stream.read().decode("utf-8")

    def write_text(self, text: str) -> None:
        """Atomically: readers see the old content or the new one, never half of it."""
        if self.is_local:
            _write_local_atomic(self.local_path, text)
            return
        self.write_bytes(text.encode("utf-8"))

    def read_bytes(self) -> bytes:
        if self.is_local:
            return self.local_path.read_bytes()
        filesystem, path = self._remote()
        with filesystem.open_input_stream(path) as stream:
            return stream.read()

    def write_bytes(self, data: bytes) -> None:
        """Atomically, as :meth:`write_text`."""
        if self.is_local:
            _write_local_atomic(self.local_path, data)
            return
        filesystem, path = self._remote()
        with filesystem.open_output_stream(path) as stream:
            stream.write(data)

    def delete(self) -> None:
        """Remove the file; one that is not there is no error."""
        if self.is_local:
            self.local_path.unlink(missing_ok=True)
            return
        filesystem, path = self._remote()
        with contextlib.suppress(FileNotFoundError):
            filesystem.delete_file(path)


def _write_local_atomic(path: Path, data: str | bytes) -> None:
    """Via a temp file + rename in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_reachable(location: Location) -> None:
    """Prove, within CHECK_TIMEOUT_S, that storage answers (one line naming it when it does not).

    A local folder is created when the search starts; here only its nearest existing folder is looked at: a
    mounted share whose server is away (NFS) hangs that look, which is then one line instead of a silent wait."""
    if location.is_local:

        def look() -> None:
            path = location.local_path
            for folder in (path, *path.parents):
                if folder.exists():
                    return

        try:
            bounded_call(look, CHECK_TIMEOUT_S, f"storage {location}")
        except WaitTimeout as exc:
            raise StorageError(f"{exc} (a mounted folder whose server is away?)") from None
        return

    def probe() -> None:
        import pyarrow.fs as pafs

        filesystem, path = location._remote()
        bucket = path.split("/", 1)[0]
        if urlsplit(location.uri).scheme != "hdfs" and filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise StorageError(f"storage {location}: bucket '{bucket}' does not exist (create it first)")
        filesystem.get_file_info(path)

    try:
        bounded_call(probe, CHECK_TIMEOUT_S, f"storage {location}")
    except WaitTimeout as exc:
        raise StorageError(f"{exc} (is the endpoint in AWS_ENDPOINT_URL / the network right?)") from None
    except StorageError:
        raise
    except OSError as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise StorageError(f"storage {location} cannot be read: {first}") from None
