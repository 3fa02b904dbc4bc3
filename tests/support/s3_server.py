"""An S3-compatible object store on 127.0.0.1 for tests: moto's standalone server, one bucket.

Clients are configured the way a user configures theirs, through the standard AWS environment variables
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...): pyarrow (Ray Tune's storage and ours), boto3 (MLflow's
artifact store) and the AWS CLI all read them. The server keeps objects in memory and is stopped by its
process group on exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple

import boto3
import pyarrow.fs as pafs

from pareto_search.testing.processes import free_port, stop_process_group, tail

START_TIMEOUT_S = 60.0


class S3Server(NamedTuple):
    endpoint: str
    bucket: str
    env: dict[str, str]  # the AWS variables every client (and every Ray node) needs

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    def filesystem(self) -> pafs.FileSystem:
        """pyarrow's S3 filesystem on this server (paths are 'bucket/key')."""
        return pafs.S3FileSystem(
            endpoint_override=self.endpoint,
            access_key=self.env["AWS_ACCESS_KEY_ID"],
            secret_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region=self.env["AWS_DEFAULT_REGION"],
        )

    def keys(self, prefix: str = "") -> list[str]:
        client = boto3.client("s3", endpoint_url=self.endpoint, **_credentials(self.env))
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _credentials(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


@contextmanager
def s3_server(bucket: str = "shared") -> Iterator[S3Server]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # MLflow's S3 artifact repository reads its own variable for the endpoint
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
    }
    with tempfile.TemporaryDirectory(prefix="pareto_search_s3_") as tmp:
        log_path = Path(tmp) / "moto.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                cwd=tmp,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                _await(endpoint, process, log_path)
                boto3.client("s3", endpoint_url=endpoint, **_credentials(env)).create_bucket(Bucket=bucket)
                yield S3Server(endpoint, bucket, env)
            finally:
                stop_process_group(process)


def _await(endpoint: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}:\n{tail(log_path)}")
        with (
            suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2),
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"moto_server did not answer within {START_TIMEOUT_S:.0f} s:\n{tail(log_path)}")
        time.sleep(0.3)
