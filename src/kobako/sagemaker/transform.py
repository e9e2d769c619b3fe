"""Runs batch transform jobs: the model's server (as an endpoint runs it) over an S3 prefix.

Each input object is read (gunzipped for CompressionType Gzip), split per SplitType
(None: the whole object is one record; Line: one record a line), sent to POST
/invocations per BatchStrategy (SingleRecord: one record a request; MultiRecord:
as many as fit in MaxPayloadInMB), and the answers are joined per AssembleWith
(Line: newline-terminated) into `<S3OutputPath>/<key relative to the input
prefix>.out`, as AWS writes them. A request is retried InvocationsMaxRetries times
(default 3); a model error fails the job. Requests are made one at a time.
"""

from __future__ import annotations

import asyncio
import gzip
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kobako.batch.engine import gpu_environment
from kobako.logs.store import Scope
from kobako.sagemaker import artifacts, serving
from kobako.sagemaker.capacity import Grant
from kobako.sagemaker.common import split_s3
from kobako.sagemaker.jobs import MARKER, JobFailed, JobRunner, Run
from kobako.sagemaker.store import TRANSFORM

_MIB = 1024 * 1024


def records(data: bytes, split: str) -> list[bytes]:
    if split == "Line":
        return [line for line in data.splitlines(keepends=True) if line.strip()]
    return [data]


def batches(items: list[bytes], strategy: str, limit: int) -> Iterator[bytes]:
    """Request bodies: one record each, or as many records as fit in `limit` bytes."""
    if strategy == "SingleRecord":
        for item in items:
            body = item.rstrip(b"\r\n") if item.endswith(b"\n") else item
            if limit and len(body) > limit:
                raise JobFailed(f"ClientError: A record of {len(body)} bytes exceeds "
                                f"MaxPayloadInMB ({limit // _MIB} MB).")
            yield body
        return
    pending: list[bytes] = []
    size = 0
    for item in items:
        if limit and len(item) > limit:
            raise JobFailed(f"ClientError: A record of {len(item)} bytes exceeds "
                            f"MaxPayloadInMB ({limit // _MIB} MB).")
        if pending and limit and size + len(item) > limit:
            yield b"".join(pending)
            pending, size = [], 0
        pending.append(item)
        size += len(item)
    if pending:
        yield b"".join(pending)


def output_key(out_prefix: str, in_prefix: str, key: str) -> str:
    relative = key[len(in_prefix):].lstrip("/") or key.rsplit("/", 1)[-1]
    base = f"{out_prefix.rstrip('/')}/" if out_prefix.strip("/") else ""
    return f"{base}{relative}.out"


class TransformRunner(JobRunner):
    noun = "Transform"
    kind = TRANSFORM
    log_group = "/aws/sagemaker/TransformJobs"

    def resources(self, detail: dict[str, Any]) -> tuple[str, int]:
        resources = detail["TransformResources"]
        return str(resources["InstanceType"]), int(resources.get("InstanceCount") or 1)

    async def execute(self, run: Run, root: Path, grant: Grant) -> None:
        detail = run.detail
        source = detail["TransformInput"]["DataSource"]["S3DataSource"]
        bucket, prefix = split_s3(str(source["S3Uri"]))
        try:
            keys = await asyncio.to_thread(artifacts.list_keys, self.s3, bucket, prefix)
        except artifacts.S3Missing as missing:
            raise JobFailed(f"ClientError: {missing}") from None
        if not keys:
            raise JobFailed(f"ClientError: No S3 objects found under S3 URL "
                            f"\"{source['S3Uri']}\" given in input data source. Please ensure "
                            "that the bucket exists in the selected region, that objects "
                            "exist under that S3 prefix, and that the role has access.")
        container: dict[str, Any] = detail["_Container"]
        env = {str(k): str(v) for k, v in (detail.get("Environment") or {}).items()}
        env.update({MARKER: detail["TransformJobArn"], "SAGEMAKER_BATCH": "true",
                    "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(self._max_mb(detail)),
                    "SAGEMAKER_BATCH_STRATEGY": self._strategy(detail),
                    "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS":
                        str(detail.get("MaxConcurrentTransforms") or 1)})
        env.update(gpu_environment(self.capacity.host, grant.gpu_ids))
        model_dir = root / "model"
        try:
            await serving.stage_model(self.s3, container, model_dir, root)
            server = await serving.launch(
                self.runtime, self.logs, Scope(run.key.account, run.key.region), self.log_group,
                f"{run.key.name}/i-{secrets.token_hex(8)}", container=container, env=env,
                model_dir=model_dir, workdir=root,
                choice=self.placer.choose(container.get("Image")),
                job_id=detail["TransformJobArn"], gpu_ids=grant.gpu_ids)
        except serving.ServeFailed as failed:
            raise JobFailed(f"ClientError: {failed}") from None
        run.attempts.append(server.attempt)
        self.store.set_refs(run.key, [server.attempt.ref])
        try:
            for key in keys:
                if run.stop_requested:
                    return
                await self._object(run, root, server.port, bucket, prefix, key)
        finally:
            await server.close()

    @staticmethod
    def _max_mb(detail: dict[str, Any]) -> int:
        value = detail.get("MaxPayloadInMB")
        return 6 if value is None else int(value)

    @staticmethod
    def _strategy(detail: dict[str, Any]) -> str:
        return str(detail.get("BatchStrategy") or "MultiRecord")

    async def _object(self, run: Run, root: Path, port: int, bucket: str, prefix: str,
                      key: str) -> None:
        detail = run.detail
        source = detail["TransformInput"]
        output = detail["TransformOutput"]
        try:
            data = await asyncio.to_thread(artifacts.read_object, self.s3, bucket, key)
        except artifacts.S3Missing as missing:
            raise JobFailed(f"ClientError: {missing}") from None
        if source.get("CompressionType") == "Gzip":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as error:
                raise JobFailed(f"ClientError: s3://{bucket}/{key} is not gzip: {error}"
                                ) from None
        headers = {"Content-Type": str(source.get("ContentType") or "application/json"),
                   "Accept": str(output.get("Accept") or "*/*")}
        client = detail.get("ModelClientConfig") or {}
        timeout = float(client.get("InvocationsTimeoutInSeconds") or 600)
        retries = int(client.get("InvocationsMaxRetries", 3) or 0)
        line = output.get("AssembleWith") == "Line"
        parts: list[bytes] = []
        kind = ""
        for body in batches(records(data, str(source.get("SplitType") or "None")),
                            self._strategy(detail), self._max_mb(detail) * _MIB):
            answer, kind = await self._invoke(run, port, body, headers, timeout, retries,
                                              f"s3://{bucket}/{key}")
            if line and not answer.endswith(b"\n"):
                answer += b"\n"
            parts.append(answer)
        out_bucket, out_prefix = split_s3(str(output["S3OutputPath"]))
        target = root / "out" / secrets.token_hex(8)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"".join(parts))
        try:
            await asyncio.to_thread(artifacts.upload_file, self.s3, out_bucket,
                                    output_key(out_prefix, prefix, key), target,
                                    str(output.get("Accept") or kind or "binary/octet-stream"))
        except artifacts.S3Missing as missing:
            raise JobFailed(f"ClientError: Output upload failed: {missing}") from None
        finally:
            target.unlink(missing_ok=True)

    async def _invoke(self, run: Run, port: int, body: bytes, headers: dict[str, str],
                      timeout: float, retries: int, where: str) -> tuple[bytes, str]:
        problem = ""
        for _ in range(retries + 1):
            if run.stop_requested:
                raise JobFailed("stopped")
            try:
                status, answer, kind = await asyncio.to_thread(serving.post, port, body,
                                                               headers, timeout)
            except OSError as error:
                problem = f"the model server could not be reached: {error}"
                continue
            if status == 200:
                return answer, kind
            problem = f"the model server answered {status}: " \
                      f"{answer.decode(errors='replace')[-500:]}"
            if 400 <= status < 500:
                break
        raise JobFailed(f"ClientError: See job logs for more information. Transforming "
                        f"{where} failed: {problem}")
