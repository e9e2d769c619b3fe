"""The SageMaker Python SDK, unchanged, against kobako: train -> deploy -> predict.

The SDK pins its own versions of shared packages, so it gets a virtualenv of its own
(with this environment's packages visible underneath: `--system-site-packages`), built
once and kept under ~/.cache/kobako-tests (or $KOBAKO_TEST_CACHE). The driver script in
tests/sdk_drivers/ runs in that venv, its boto3 pointed at kobako by AWS_ENDPOINT_URL.
Where the SDK cannot be installed (no package index), set KOBAKO_TESTS_NO_SDK=1 to skip;
otherwise an installation failure fails the test, so CI cannot pass without running it.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path
from typing import Any

import pytest

import kobako
from conftest import Server, start_server
from sagemaker_helpers import members

DRIVERS = Path(__file__).parent / "sdk_drivers"
SDK2 = "sagemaker>=2.200,<3"
SDK3 = "sagemaker>=3,<4"
# The trust policy of a SageMaker execution role, as the AWS console writes it.
SAGEMAKER_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}

TRAIN_PY = textwrap.dedent('''
    """Script mode as the scikit-learn container runs it: train under __main__, serve
    through model_fn / predict_fn."""
    import argparse, json, os

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "model.json")) as f:
            return json.load(f)

    def predict_fn(data, model):
        return data * model["weight"]

    if __name__ == "__main__":
        parser = argparse.ArgumentParser()
        parser.add_argument("--scale", type=float)
        parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
        parser.add_argument("--train", default=os.environ["SM_CHANNEL_TRAIN"])
        args = parser.parse_args()
        with open(os.path.join(args.train, "train.csv")) as f:
            values = [float(x) for line in f for x in line.strip().split(",") if x]
        weight = args.scale * sum(values) / len(values)
        print(f"trained weight={weight}", flush=True)
        with open(os.path.join(args.model_dir, "model.json"), "w") as f:
            json.dump({"weight": weight}, f)
''')


def sdk_python(name: str, spec: str) -> Path:
    """The python of a cached virtualenv with `spec` installed (built on first use)."""
    if os.environ.get("KOBAKO_TESTS_NO_SDK"):
        pytest.skip("KOBAKO_TESTS_NO_SDK is set")
    cache = Path(os.environ.get("KOBAKO_TEST_CACHE") or Path.home() / ".cache" / "kobako-tests")
    root = cache / name
    cache.mkdir(parents=True, exist_ok=True)
    python = root / "bin" / "python"
    with open(cache / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs build it once
        marker = root / ".kobako-installed"
        if not (marker.is_file() and marker.read_text() == spec and python.exists()):
            venv.create(root, system_site_packages=True, with_pip=True, clear=True)
            # uv (the `test` extra) resolves and installs SDK 3.x's ~100 packages in under a
            # minute; pip takes about six here.
            installer = [sys.executable, "-m", "uv", "pip", "install", "-q", "--python",
                         str(python)] if importlib.util.find_spec("uv") else [
                             str(python), "-m", "pip", "install", "-q"]
            done = subprocess.run([*installer, spec], capture_output=True, text=True,
                                  timeout=1200)
            assert done.returncode == 0, f"installing {spec} failed:\n{done.stderr[-3000:]}"
            marker.write_text(spec)
    return python


def _work_and_server(tmp_path: Path, python: Path) -> tuple[Path, dict[str, str], Server]:
    """The training source and data, the SDK's environment (this checkout's kobako on
    PYTHONPATH, telemetry off, credentials and endpoint set once the server is up) and a
    kobako server run by the venv's python (the model's dependencies are the venv's)."""
    src = str(Path(kobako.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])]))
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "data").mkdir()
    (work / "src" / "train.py").write_text(TRAIN_PY)
    (work / "data" / "train.csv").write_text("1,2\n3,4\n")
    (tmp_path / "sdk.yaml").write_text(  # no telemetry calls to AWS from a test
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
        "      TelemetryOptOut: true\n")
    server = start_server(tmp_path / "data", python=str(python), env=env)
    env.update(AWS_ENDPOINT_URL=server.url, AWS_ACCESS_KEY_ID="test",
               AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1",
               SAGEMAKER_USER_CONFIG_OVERRIDE=str(tmp_path / "sdk.yaml"))
    return work, env, server


def test_sdk2_sklearn_fit_deploy_predict(tmp_path: Path) -> None:
    """SDK 2.x, the seeds' form: an SKLearn estimator in script mode fits on CSV data in
    kobako S3 (logs streamed by fit), its model.tar.gz lands in S3, deploy makes an
    endpoint, and predict (NumPy in, NumPy out: the SDK's defaults) returns the trained
    model's answer."""
    python = sdk_python("sdk2", SDK2)
    work, env, server = _work_and_server(tmp_path, python)
    try:
        s3: Any = server.client("s3")
        s3.create_bucket(Bucket="sdk2")
        env["SAGEMAKER_SUPPRESS_V2_WARNING"] = "1"
        done = subprocess.run([str(python), str(DRIVERS / "sdk2_sklearn.py"), "sdk2",
                               str(work)], capture_output=True, text=True, env=env,
                              timeout=240)
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        result = json.loads(done.stdout.rsplit("RESULT ", 1)[-1])
        assert "trained weight=7.5" in done.stdout  # fit(logs="All") streamed the job's log
        assert result["status"] == "Completed"
        assert "sagemaker-scikit-learn" in result["image"]
        assert result["answer"] == [[7.5, 15.0], [22.5, 30.0]]
        key = result["model_data"].removeprefix("s3://sdk2/")
        assert key == f"{result['job']}/output/model.tar.gz"
        assert s3.head_object(Bucket="sdk2", Key=key)["ContentLength"] > 0
        assert s3.list_objects_v2(Bucket="sdk2", Prefix=f"{result['job']}/source/")["KeyCount"]
        assert server.client("sagemaker").list_endpoints()["Endpoints"] == []
    finally:
        server.stop()
    assert " -> 500 " not in server.log()


def test_sdk3_modeltrainer_train_build_deploy_invoke(tmp_path: Path) -> None:
    """SDK 3.x: ModelTrainer trains with SourceCode (its own sm_train.sh and drivers,
    which read and write /opt/ml), the model.tar.gz lands in S3, ModelBuilder builds it
    with an InferenceSpec for TorchServe (the SDK's inference.py loads serve.pkl from
    /opt/ml/model/code), deploys it, and invoke returns the trained model's answer.
    The SDK hard-codes /opt/ml, so this needs the process runtime's bind mounts: root."""
    if os.geteuid() != 0:
        pytest.skip("the SDK 3.x drivers hard-code /opt/ml: binding it needs root")
    python = sdk_python("sdk3", SDK3)
    work, env, server = _work_and_server(tmp_path, python)
    try:
        s3: Any = server.client("s3")
        s3.create_bucket(Bucket="sdk3")
        # The execution role, made through IAM as on AWS: the SDK checks it (GetRole for
        # its trust policy, SimulatePrincipalPolicy for its permissions) before training.
        iam: Any = server.client("iam")
        role = iam.create_role(RoleName="SageMakerRole", Path="/service-role/",
                               AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST))["Role"]
        iam.attach_role_policy(RoleName="SageMakerRole",
                               PolicyArn="arn:aws:iam::aws:policy/AmazonSageMakerFullAccess")
        env.pop("SAGEMAKER_VALIDATE_ROLE", None)  # the check runs, whatever the caller set
        done = subprocess.run([str(python), str(DRIVERS / "sdk3_modeltrainer.py"), "sdk3",
                               str(work), role["Arn"]], capture_output=True, text=True, env=env,
                              timeout=300, cwd=tmp_path)
        assert done.returncode == 0, f"{done.stdout[-5000:]}\n{done.stderr[-5000:]}"
        result = json.loads(done.stdout.rsplit("RESULT ", 1)[-1])
        # the SDK validated the role through kobako's IAM (not skipped)
        assert " iam -> 200 SimulatePrincipalPolicy" in server.log()
        assert " iam -> 200 GetRole" in server.log()
        # train(logs=True) streamed the job's log (through the SDK's logger)
        assert "trained weight=7.5" in done.stdout + done.stderr
        assert result["status"] == "Completed"
        assert result["entrypoint"] == ["/bin/bash"]  # the SDK's sm_train.sh ran
        assert result["answer"] == [[7.5, 15.0], [22.5, 30.0]]
        key = result["model_data"].removeprefix("s3://sdk3/")
        assert key.endswith(f"{result['job']}/output/model.tar.gz")
        assert json.loads(members(s3.get_object(Bucket="sdk3", Key=key)["Body"].read())
                          ["model.json"]) == {"weight": 7.5}
        container = result["container"]
        assert "pytorch-inference" in container["Image"]
        assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
        served = members(s3.get_object(
            Bucket="sdk3", Key=container["ModelDataUrl"].removeprefix("s3://sdk3/"))
            ["Body"].read())
        assert {"model.json", "code/inference.py", "code/serve.pkl"} <= set(served)
        assert server.client("sagemaker").list_endpoints()["Endpoints"] == []
    finally:
        server.stop()
    assert " -> 500 " not in server.log()
    assert "process runtime:" not in server.log()  # no fallback from /opt/ml binds
