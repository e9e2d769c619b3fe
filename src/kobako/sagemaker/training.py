"""Runs training jobs: stage input, run the algorithm or script, upload what it left.

Each job is one asyncio task that walks AWS's secondary statuses (Starting,
Downloading, Training, Uploading, then Completed / Failed / Stopped /
MaxRuntimeExceeded), persisting the describe document at every step, so a crash
never loses a job: on the next start, jobs the database still calls InProgress are
reaped and marked Failed (a training process cannot be resumed safely).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kobako.batch.engine import gpu_environment
from kobako.logs.store import Scope
from kobako.runtime.base import (
    Attempt,
    AttemptSpec,
    Networks,
    OutputLine,
    StartError,
)
from kobako.sagemaker import artifacts, contract
from kobako.sagemaker import training_support as support
from kobako.sagemaker.capacity import Grant
from kobako.sagemaker.common import now, split_s3
from kobako.sagemaker.jobs import MARKER, JobFailed, Run, Runner
from kobako.sagemaker.logpump import pump
from kobako.sagemaker.store import TRAINING

log = logging.getLogger("kobako.sagemaker")

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
SERVER_DIED = ("InternalServerError: the kobako server stopped while the training job was "
               "running; the job cannot be resumed. Please retry the training job.")
MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Training job stopped because it exceeded MaxRuntimeInSeconds",
}


@dataclass
class TrainingRun(Run):
    # The multi-host container job's network (removed with the job).
    network: str | None = None
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=20))


def transition(detail: dict[str, Any], status: str, message: str | None = None) -> None:
    """Enter secondary status `status` (or update its message), as AWS records it."""
    stamp = now()
    transitions: list[dict[str, Any]] = detail.setdefault("SecondaryStatusTransitions", [])
    if transitions and transitions[-1]["Status"] == status:
        transitions[-1]["StatusMessage"] = message or MESSAGES.get(status, "")
    else:
        if transitions:
            transitions[-1]["EndTime"] = stamp
        transitions.append({"Status": status, "StartTime": stamp,
                            "StatusMessage": message or MESSAGES.get(status, "")})
    if status in ("Completed", "Failed", "Stopped", "MaxRuntimeExceeded"):
        transitions[-1]["EndTime"] = stamp
    detail["SecondaryStatus"] = status
    detail["LastModifiedTime"] = stamp


class TrainingRunner(Runner[TrainingRun]):
    noun = "Training"
    kind = TRAINING
    run_type = TrainingRun
    server_died = SERVER_DIED
    # A training job that fails while stopping still ends Failed.
    stop_hides_failure = False

    def _finish(self, detail: dict[str, Any], status: str, secondary: str | None = None
                ) -> None:
        """End with `status`, and secondary status `secondary` (the same if not given)."""
        detail["TrainingJobStatus"] = status
        transition(detail, secondary or status)
        end = now()
        detail["TrainingEndTime"] = end
        started = detail.get("TrainingStartTime")
        if started is not None:
            seconds = max(1, round(end - float(started)))
            detail["TrainingTimeInSeconds"] = seconds
            detail["BillableTimeInSeconds"] = seconds

    def created(self, detail: dict[str, Any]) -> None:
        transition(detail, "Starting", "Launching requested ML instances")

    def _stopping_now(self, detail: dict[str, Any]) -> None:
        transition(detail, "Stopping")

    def _queued(self, run: TrainingRun) -> None:
        transition(run.detail, "Starting", "Preparing the instances for training: waiting "
                   "for free capacity on this kobako host")
        self.save(run)

    def resources(self, detail: dict[str, Any]) -> tuple[str, int]:
        config = detail["ResourceConfig"]
        return str(config["InstanceType"]), int(config.get("InstanceCount") or 1)

    async def work(self, run: TrainingRun, root: Path, grant: Grant) -> None:
        layout = contract.Layout(root)
        await self._stage(run, layout)
        code = await self._train(run, layout, grant)
        await self._save_checkpoints(run, layout)
        await self._conclude(run, layout, code)

    async def _cleanup(self, run: TrainingRun) -> None:
        if run.network is not None:
            await self._remove_network(run)

    async def _stage(self, run: TrainingRun, layout: contract.Layout) -> None:
        """Downloading: the config files, every channel's S3 data, the script's source."""
        detail = run.detail
        transition(detail, "Downloading")
        self.save(run)
        shutil.rmtree(layout.root, ignore_errors=True)
        layout.create()
        contract.write_config(layout.config, detail, contract.HOST, contract.host_names(
            int(detail["ResourceConfig"].get("InstanceCount") or 1)))
        for channel in detail.get("InputDataConfig") or []:
            name = channel["ChannelName"]
            source = (channel.get("DataSource") or {}).get("S3DataSource")
            if not source:
                raise JobFailed(f"ClientError: Channel {name}: kobako supports only "
                                "S3DataSource channels.")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise JobFailed(f"ClientError: Channel {name}: kobako supports only the "
                                "S3Prefix data type.")
            bucket, prefix = split_s3(str(source["S3Uri"]))
            try:
                await asyncio.to_thread(artifacts.download_prefix, self.s3, bucket, prefix,
                                        layout.data / name)
            except artifacts.S3Missing as missing:
                raise JobFailed(f"ClientError: Data download failed: {missing}") from None
        submit = contract.decode(detail.get("HyperParameters") or {}).get(
            "sagemaker_submit_directory")
        if submit:
            try:
                await asyncio.to_thread(artifacts.fetch_tarball, self.s3, str(submit),
                                        layout.code, layout.root / "sourcedir.tar.gz")
            except (artifacts.S3Missing, OSError, ValueError) as error:
                raise JobFailed(f"ClientError: Could not download the source code "
                                f"({submit}): {error}") from None
        checkpoints = detail.get("CheckpointConfig") or {}
        if checkpoints.get("S3Uri"):
            bucket, prefix = split_s3(str(checkpoints["S3Uri"]))
            try:
                local = support.checkpoint_local(layout.root, checkpoints.get("LocalPath"))
                local.mkdir(parents=True, exist_ok=True)
                if self.s3.get_bucket(bucket) is not None:
                    await asyncio.to_thread(artifacts.download_prefix, self.s3, bucket, prefix,
                                            local)
            except (artifacts.S3Missing, OSError, ValueError) as error:
                raise JobFailed(f"ClientError: Checkpoint download failed: {error}") from None

    async def _save_checkpoints(self, run: TrainingRun, layout: contract.Layout) -> None:
        """Copy LocalPath back to CheckpointConfig.S3Uri, whatever the job's outcome."""
        checkpoints = run.detail.get("CheckpointConfig") or {}
        if not checkpoints.get("S3Uri"):
            return
        bucket, prefix = split_s3(str(checkpoints["S3Uri"]))
        try:
            local = support.checkpoint_local(layout.root, checkpoints.get("LocalPath"))
            if local.is_dir():
                await asyncio.to_thread(artifacts.upload_dir, self.s3, bucket, prefix, local)
        except (artifacts.S3Missing, OSError, ValueError) as error:
            log.warning("training job %s: checkpoint upload failed: %s", run.key.name, error)

    def _argv(self, detail: dict[str, Any], layout: contract.Layout,
              decoded: dict[str, Any]) -> tuple[list[str], Path]:
        """Script mode runs the entry point in code/; otherwise the image's `train`."""
        program = decoded.get("sagemaker_program")
        if program:
            hps = contract.user_hyperparameters(decoded)
            return contract.program_argv(layout, str(program), hps), layout.code
        algorithm = detail.get("AlgorithmSpecification") or {}
        entry = list(algorithm.get("ContainerEntrypoint") or [])
        if entry:
            return entry + list(algorithm.get("ContainerArguments") or []), layout.root
        image = Path(str(algorithm.get("TrainingImage") or ""))
        if image.is_dir():
            return [str(image / "train")], layout.root
        return ["train"], layout.root

    async def _train(self, run: TrainingRun, layout: contract.Layout, grant: Grant) -> int:
        """Run one process (or container) per host (algo-1..algo-N); the first failure
        ends them all."""
        detail = run.detail
        decoded = contract.decode(detail.get("HyperParameters") or {})
        algorithm = detail.get("AlgorithmSpecification") or {}
        choice = self.placer.choose(algorithm.get("TrainingImage"))
        checkpoints = detail.get("CheckpointConfig") or {}
        if choice.runtime == "container":
            argv, cwd = support.container_argv(algorithm), layout.root
        else:
            argv, cwd = self._argv(detail, layout, decoded)
            argv = support.rewrite(argv, {
                support.OPT_ML: layout.root,
                str(checkpoints.get("LocalPath") or support.DEFAULT_CHECKPOINTS):
                    support.checkpoint_local(layout.root, checkpoints.get("LocalPath"))})
        count = int(detail["ResourceConfig"].get("InstanceCount") or 1)
        hosts = contract.host_names(count)
        cpus, memory, gpus = (max(1, grant.cpus // count), grant.memory_mib // count,
                              grant.gpus // count)
        port, master = support.master_port(), "127.0.0.1"
        if choice.runtime == "container" and count > 1:
            await self._create_network(run)
            port, master = support.CONTAINER_MASTER_PORT, hosts[0]
        scope = Scope(run.key.account, run.key.region)
        streams = [support.stream(run.key.name, host) for host in hosts]
        deps = None if choice.runtime == "container" else await support.install_requirements(
            layout.code, layout.root / "dependencies",
            lambda text: self.logs.append(scope, LOG_GROUP, streams[0],
                                          [(int(time.time() * 1000), text)]))
        detail["TrainingStartTime"] = now()
        transition(detail, "Training", "Downloading the training image.")
        self.save(run)
        specs = []
        for rank, host in enumerate(hosts):
            config_dir = layout.config if rank == 0 else layout.root / "hosts" / host / "config"
            if rank:
                contract.write_config(config_dir, detail, host, hosts)
            inside = layout
            if choice.runtime == "container":
                inside = contract.Layout(Path(support.OPT_ML))
                config_dir = inside.config
            env = contract.environment(inside, detail, decoded, cpus, gpus, host, hosts,
                                       config_dir)
            env.update(support.distributed_env(rank, hosts, port, master))
            env.update(gpu_environment(self.capacity.host,
                                       grant.gpu_ids[rank * gpus:(rank + 1) * gpus]))
            if deps is not None:
                env["PYTHONPATH"] = os.pathsep.join(
                    p for p in (str(deps), env.get("PYTHONPATH", "")) if p)
            env[MARKER] = detail["TrainingJobArn"]
            gpu_ids = grant.gpu_ids[rank * gpus:(rank + 1) * gpus]
            if choice.runtime == "container":
                specs.append(AttemptSpec(
                    argv=argv, env=env, workdir=cwd, vcpus=float(cpus), memory_mib=memory,
                    gpus=gpus, gpu_ids=gpu_ids, image=choice.image, runtime="container",
                    options=support.cluster_options(detail["TrainingJobArn"], host,
                                                    run.network),
                    properties=support.container_properties(layout.root, rank, host,
                                                            algorithm, checkpoints)))
                continue
            env["PATH"] = support.python_first(env.get("PATH") or os.environ.get("PATH", ""))
            specs.append(AttemptSpec(
                argv=argv, env=env, workdir=cwd, vcpus=float(cpus),
                memory_mib=memory if gpus == 0 else None, gpus=gpus,
                gpu_ids=gpu_ids, runtime="process", image=choice.image,
                binds=support.process_binds(layout.root, rank, config_dir)))
        for spec in specs:
            try:
                run.attempts.append(await self.runtime.start(spec))
            except StartError as error:
                for started in run.attempts:  # the hosts already up wait for this one
                    await started.kill()
                raise JobFailed(f"AlgorithmError: {error.reason}") from None
        self.store.set_refs(run.key, self._refs(run))
        transition(detail, "Training")
        self.save(run)
        if run.stop_requested:
            for attempt in run.attempts:
                await attempt.kill()
        patterns = [(str(m["Name"]), re.compile(str(m["Regex"]))) for m in
                    (detail.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []]

        def on_line(line: OutputLine) -> None:
            if line.stream == "stderr":
                run.stderr.append(line.text)
            for name, pattern in patterns:
                found = pattern.search(line.text)
                if found:
                    with contextlib.suppress(ValueError, IndexError):
                        run.metrics[name] = (float(found.group(1)), line.timestamp_ms / 1000)

        pumping = [asyncio.create_task(pump(attempt, self.logs, scope, LOG_GROUP, stream,
                                            on_line))
                   for attempt, stream in zip(run.attempts, streams, strict=True)]
        limit = (detail.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        try:
            code = await asyncio.wait_for(self._wait_all(run.attempts),
                                          None if limit is None else float(limit))
        except TimeoutError:
            run.timed_out = True
            for attempt in run.attempts:
                await attempt.kill()
            code = await self._wait_all(run.attempts)
        await asyncio.gather(*pumping)
        return code

    @staticmethod
    def _refs(run: TrainingRun) -> list[str]:
        """What a restarted server reaps: the containers, then the network they were on."""
        return [a.ref for a in run.attempts] + (
            [f"network:{run.network}"] if run.network is not None else [])

    async def _create_network(self, run: TrainingRun) -> None:
        """The hosts' own network, on which each container is algo-N; recorded before
        any container starts, so that a crash leaves nothing unreaped."""
        if not isinstance(self.runtime, Networks):
            raise JobFailed("InternalServerError: this kobako runtime cannot connect the "
                            "hosts of a multi-instance container job")
        try:
            run.network = await self.runtime.create_network(run.detail["TrainingJobArn"])
        except StartError as error:
            raise JobFailed(f"InternalServerError: {error.reason}") from None
        self.store.set_refs(run.key, self._refs(run))

    async def _remove_network(self, run: TrainingRun) -> None:
        assert run.network is not None and isinstance(self.runtime, Networks)
        try:
            await self.runtime.remove_network(run.network, run.detail["TrainingJobArn"])
        except Exception:
            log.exception("training job %s: could not remove its network", run.key.name)
        run.network = None

    @staticmethod
    async def _wait_all(attempts: list[Attempt]) -> int:
        """0 if every host exits 0; else the first failing exit code (the others killed)."""
        waiting = {asyncio.ensure_future(a.wait()): a for a in attempts}
        failed = 0
        while waiting:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                del waiting[future]
                if future.result() != 0 and not failed:
                    failed = future.result()
                    for other in waiting.values():
                        await other.kill()
        return failed

    async def _conclude(self, run: TrainingRun, layout: contract.Layout, code: int) -> None:
        detail = run.detail
        detail["FinalMetricDataList"] = [
            {"MetricName": name, "Value": value, "Timestamp": stamp}
            for name, (value, stamp) in run.metrics.items()]
        if code != 0 and not (run.stop_requested or run.timed_out):
            raise JobFailed(self._failure(run, layout, code))
        transition(detail, "Uploading")
        self.save(run)
        await self._upload(run, layout)
        if run.timed_out:
            self._finish(detail, "Stopped", "MaxRuntimeExceeded")
        elif run.stop_requested:
            self._finish(detail, "Stopped", "Stopped")
        else:
            self._finish(detail, "Completed", "Completed")
        self.save(run)

    def _failure(self, run: TrainingRun, layout: contract.Layout, code: int) -> str:
        """output/failure if the algorithm wrote one; else what the toolkit would write."""
        if layout.failure.is_file():
            text = layout.failure.read_text(errors="replace").strip()
            if text:
                return f"AlgorithmError: {text}"
        if contract.decode(run.detail.get("HyperParameters") or {}).get("sagemaker_program"):
            message = "\n".join(run.stderr)
            return (f"AlgorithmError: ExecuteUserScriptError:\nExitCode {code}\n"
                    f"ErrorMessage \"{message}\"")
        return f"AlgorithmError: , exit code: {code}"

    async def _upload(self, run: TrainingRun, layout: contract.Layout) -> None:
        """model/ -> model.tar.gz, output/data/ -> output.tar.gz, in S3OutputPath/<job>/output/."""
        bucket, prefix = split_s3(str(run.detail["OutputDataConfig"]["S3OutputPath"]))
        base = f"{prefix.rstrip('/')}/" if prefix.strip("/") else ""
        base += f"{run.key.name}/output/"
        try:
            archive = layout.root / "model.tar.gz"
            await asyncio.to_thread(artifacts.pack, layout.model, archive)
            await asyncio.to_thread(artifacts.upload_file, self.s3, bucket,
                                    base + "model.tar.gz", archive)
            if any(layout.output_data.iterdir()):
                archive = layout.root / "output.tar.gz"
                await asyncio.to_thread(artifacts.pack, layout.output_data, archive)
                await asyncio.to_thread(artifacts.upload_file, self.s3, bucket,
                                        base + "output.tar.gz", archive)
        except artifacts.S3Missing as missing:
            raise JobFailed(f"ClientError: Output upload failed: {missing}") from None
        run.detail["ModelArtifacts"] = {"S3ModelArtifacts": f"s3://{bucket}/{base}model.tar.gz"}
