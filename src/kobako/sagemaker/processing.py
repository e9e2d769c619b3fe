"""Runs processing jobs: S3 inputs in, the app's command, local outputs back to S3.

Every LocalPath (and /opt/ml itself) lives under the job's directory, at
`<job>/fs/<path>`. With the process runtime, arguments naming such paths are
rewritten to point there (so `python3 /opt/ml/processing/input/code/x.py --in
/opt/ml/processing/input/data` works),
and `python`/`python3` as the command is this server's interpreter; a script that
spells /opt/ml/... inside its own code needs the container runtime, where `<job>/fs/
opt/ml` is mounted at /opt/ml and nothing is rewritten. Outputs are uploaded when
the app exits 0 (Continuous uploads are made at the end too); /opt/ml/output/message
becomes ExitMessage. Only host algo-1 runs, whatever the InstanceCount.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

from kobako.batch.engine import gpu_environment
from kobako.runtime.base import AttemptSpec
from kobako.sagemaker import artifacts, placement
from kobako.sagemaker.capacity import Grant
from kobako.sagemaker.common import split_s3
from kobako.sagemaker.jobs import MARKER, JobFailed, JobRunner, Run, stream_name
from kobako.sagemaker.store import PROCESSING

HOST = "algo-1"
_PYTHONS = ("python", "python3", f"python3.{sys.version_info.minor}")


def local(root: Path, path: str) -> Path:
    """Where container path `path` lives in the job directory."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise JobFailed(f"ClientError: LocalPath {path} must not contain '..'")
    return root.joinpath("fs", *parts)


def rewriter(root: Path, prefixes: list[str]) -> re.Pattern[str]:
    """Matches container paths to rewrite: at an argument's start, or after = : , a quote
    or a space (so `sh -c "... > /opt/ml/output/message"` works too)."""
    names = sorted({p.rstrip("/") for p in prefixes if p.startswith("/")}, key=len,
                   reverse=True)
    alternatives = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(?:^|(?<=[=:,\s'\"]))({alternatives})(?=/|$|[=:,;\s'\"])")


class ProcessingRunner(JobRunner):
    noun = "Processing"
    kind = PROCESSING
    log_group = "/aws/sagemaker/ProcessingJobs"

    def resources(self, detail: dict[str, Any]) -> tuple[str, int]:
        cluster = detail["ProcessingResources"]["ClusterConfig"]
        return str(cluster["InstanceType"]), int(cluster.get("InstanceCount") or 1)

    async def execute(self, run: Run, root: Path, grant: Grant) -> None:
        detail = run.detail
        app = detail.get("AppSpecification") or {}
        choice = self.placer.choose(app.get("ImageUri"))
        await self._stage(detail, root)
        entry = [str(a) for a in app.get("ContainerEntrypoint") or []]
        args = [str(a) for a in app.get("ContainerArguments") or []]
        env = {str(k): str(v) for k, v in (detail.get("Environment") or {}).items()}
        env[MARKER] = detail["ProcessingJobArn"]
        env.update(gpu_environment(self.capacity.host, grant.gpu_ids))
        if choice.runtime == "container":
            mounts = {local(root, placement.OPT_ML): placement.OPT_ML}
            for path in self._paths(detail):
                if not (path + "/").startswith(placement.OPT_ML + "/"):
                    mounts[local(root, path)] = path
            spec = AttemptSpec(argv=args, env=env, workdir=root, vcpus=float(grant.cpus),
                               memory_mib=grant.memory_mib, gpus=grant.gpus,
                               gpu_ids=grant.gpu_ids, image=choice.image, runtime="container",
                               options={"job_id": detail["ProcessingJobArn"]},
                               properties=placement.container_properties(
                                   root, mounts, entrypoint=entry or None))
        else:
            if not entry:
                raise JobFailed("ClientError: kobako runs processing jobs as local processes "
                                "and needs AppSpecification.ContainerEntrypoint (an image's "
                                "own entrypoint runs only under the container runtime).")
            pattern = rewriter(root, [placement.OPT_ML, *self._paths(detail)])
            fs = str(root / "fs")
            argv = [pattern.sub(lambda m: fs + m.group(1), a) for a in entry + args]
            if argv[0] in _PYTHONS:
                argv[0] = sys.executable
            env["PYTHONUNBUFFERED"] = "1"
            spec = AttemptSpec(argv=argv, env=env, workdir=root / "fs", vcpus=float(grant.cpus),
                               memory_mib=grant.memory_mib if not grant.gpus else None,
                               gpus=grant.gpus, gpu_ids=grant.gpu_ids, image=choice.image,
                               runtime="process",
                               binds=((local(root, placement.OPT_ML), placement.OPT_ML),))
        limit = (detail.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        code = await self.run_attempt(run, spec, stream_name(HOST),
                                      float(limit) if limit else None)
        message = local(root, "/opt/ml/output/message")
        if message.is_file():
            detail["ExitMessage"] = message.read_bytes()[:1024].decode(errors="replace")
        if run.stop_requested or run.timed_out:
            return
        if code != 0:
            raise JobFailed(f"AlgorithmError: See job logs for more information (exit code "
                            f"{code})")
        await self._upload(detail, root)

    @staticmethod
    def _paths(detail: dict[str, Any]) -> list[str]:
        paths = [str((i.get("S3Input") or {}).get("LocalPath") or "")
                 for i in detail.get("ProcessingInputs") or []]
        paths += [str((o.get("S3Output") or {}).get("LocalPath") or "")
                  for o in (detail.get("ProcessingOutputConfig") or {}).get("Outputs") or []]
        return [p for p in paths if p]

    async def _stage(self, detail: dict[str, Any], root: Path) -> None:
        """Config files, every S3 input at its LocalPath, and empty output directories."""
        config = local(root, "/opt/ml/config")
        config.mkdir(parents=True)
        hosts = [HOST]
        cluster = detail["ProcessingResources"]["ClusterConfig"]
        (config / "resourceconfig.json").write_text(json.dumps(
            {"current_host": HOST, "hosts": hosts, "current_instance_type":
                cluster["InstanceType"]}))
        (config / "processingjobconfig.json").write_text(json.dumps(
            {k: v for k, v in detail.items() if not k.startswith("_")}, default=str))
        local(root, "/opt/ml/output").mkdir(parents=True, exist_ok=True)
        for item in detail.get("ProcessingInputs") or []:
            source = item["S3Input"]
            bucket, prefix = split_s3(str(source["S3Uri"]))
            try:
                await asyncio.to_thread(artifacts.download_prefix, self.s3, bucket, prefix,
                                        local(root, str(source["LocalPath"])))
            except artifacts.S3Missing as missing:
                raise JobFailed(f"ClientError: Input {item['InputName']}: {missing}") from None
        for path in self._paths(detail):
            local(root, path).mkdir(parents=True, exist_ok=True)

    async def _upload(self, detail: dict[str, Any], root: Path) -> None:
        for output in (detail.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            target = output["S3Output"]
            bucket, prefix = split_s3(str(target["S3Uri"]))
            try:
                await asyncio.to_thread(artifacts.upload_dir, self.s3, bucket, prefix,
                                        local(root, str(target["LocalPath"])))
            except artifacts.S3Missing as missing:
                raise JobFailed(f"ClientError: Output {output['OutputName']}: {missing}"
                                ) from None
