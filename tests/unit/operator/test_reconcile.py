"""The reconcile core on its own: stage order, idempotence, retries, failures, suspend, growth."""

from __future__ import annotations

from typing import Any

from mmzero_operator.manifests import GPU, stage_job, stage_objects, with_stage_env
from mmzero_operator.names import QUEUE_LABEL, job_name, rendezvous_name
from mmzero_operator.observe import JobState, PodFact, job_state, pod_fact
from mmzero_operator.policies.retries import backoff_seconds
from mmzero_operator.reconcile import Decision, reconcile, run_changed, store_unavailable
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.launch import EXIT_USAGE
from mmzero_runtime.stages.graph.plan import all_stages

NOW = 1_800_000_000.0


def _body(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    document = RunSpec.model_validate({"iterations": 1, **spec}).model_dump(mode="json")
    return {
        "apiVersion": "mmzero.dev/v1alpha1",
        "kind": "MMZeroRun",
        "metadata": {"name": "demo", "namespace": "ml", "uid": "u-1", "generation": 2},
        "spec": document,
        "status": status or {},
    }


def _names(decision: Decision) -> list[str]:
    """Names of the Jobs to create (frozen-role servers: `_servers`)."""
    return [o["metadata"]["name"] for o in decision.create if o["kind"] == "Job"]


def _servers(decision: Decision) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in decision.create if o["kind"] != "Job"]


STAGES = [s.name for s in all_stages(RunSpec(iterations=1))]


def test_new_run_starts_its_first_stage_and_writes_its_run_file() -> None:
    decision = reconcile(_body(), [], [], NOW)
    assert _names(decision)[0] == "demo-i1-proposer-grpo"
    assert decision.config_map is not None
    assert "iterations: 1" in decision.config_map["data"]["run.yaml"]
    status = decision.status
    assert (status["phase"], status["stage"], status["stagesDone"], status["stagesTotal"]) == (
        "Running", "i1-proposer-grpo", 0, 7,
    )  # fmt: skip
    assert status["observedGeneration"] == 2


def test_each_stage_starts_only_after_the_manifests_of_its_inputs() -> None:
    for count in range(len(STAGES)):
        decision = reconcile(_body(), [], STAGES[:count], NOW)
        assert _names(decision) == [f"demo-{STAGES[count]}"]


def test_a_running_stage_is_left_alone_on_every_call() -> None:
    running = JobState("demo-i1-proposer-grpo", "i1-proposer-grpo", 1, "running")
    servers = ["demo-i1pg-coder", "demo-i1pg-solver"]
    for _ in range(2):
        decision = reconcile(_body(), [running], [], NOW, servers)
        assert decision.create == [] and decision.status["message"] == "i1-proposer-grpo"


def _failed(attempt: int, reason: str = "BackoffLimitExceeded", at: float = NOW) -> JobState:
    name = "demo-i1-propose" + ("" if attempt == 1 else f"-a{attempt}")
    return JobState(name, "i1-propose", attempt, "failed", reason, "pod failed", at)


def test_failed_attempt_is_retried_after_its_backoff_under_the_next_name() -> None:
    done = STAGES[:1]
    waiting = reconcile(_body(), [_failed(1)], done, NOW + 10)
    assert waiting.create == [] and waiting.requeue_after == 20  # backoff 30 s
    retried = reconcile(_body(), [_failed(1)], done, NOW + 30)
    assert _names(retried) == ["demo-i1-propose-a2"]
    assert retried.status["attempts"] == {"i1-propose": 1}
    assert backoff_seconds(RunSpec(), 2) == 60 and backoff_seconds(RunSpec(), 20) == 1800


def test_run_fails_with_the_reason_when_attempts_run_out() -> None:
    decision = reconcile(_body(), [_failed(1), _failed(2), _failed(3)], STAGES[:1], NOW + 999)
    assert decision.create == []
    assert decision.status["phase"] == "Failed"
    assert (
        "i1-propose failed after 3 attempt(s): BackoffLimitExceeded" in decision.status["message"]
    )
    failed = next(c for c in decision.status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "StageFailed")
    assert "demo-i1-propose-a3" in failed["message"]


def test_usage_error_fails_the_run_without_retrying() -> None:
    decision = reconcile(_body(), [_failed(1, "PodFailurePolicy")], STAGES[:1], NOW + 999)
    assert decision.create == [] and decision.status["phase"] == "Failed"
    again = reconcile(_body(status=decision.status), [], STAGES[:1], NOW + 9999)
    assert again.create == [] and again.status["phase"] == "Failed"  # terminal


def test_job_that_succeeded_without_a_manifest_fails_its_attempt_after_the_grace() -> None:
    succeeded = JobState("demo-i1-propose", "i1-propose", 1, "succeeded", "", "", NOW)
    within = reconcile(_body(), [succeeded], STAGES[:1], NOW + 10)
    assert within.create == [] and within.requeue_after == 50
    after = reconcile(_body(), [succeeded], STAGES[:1], NOW + 60 + 30)
    assert _names(after) == ["demo-i1-propose-a2"]


def test_finished_run_succeeds_and_grows_when_iterations_are_raised() -> None:
    done = reconcile(_body(), [], STAGES, NOW)
    assert done.create == [] and done.status["phase"] == "Succeeded"
    assert done.status["checkpoints"] == {
        "proposer": "i1/proposer-grpo/model",
        "coder": "i1/coder-grpo/model",
        "solver": "i1/solver-grpo/model",
    }
    grown = reconcile(_body(status=done.status, iterations=2), [], STAGES, NOW + 5)
    assert _names(grown) == ["demo-i2-proposer-grpo"] and grown.status["phase"] == "Running"
    assert "completionTime" not in grown.status


def test_suspend_stops_running_jobs_and_resume_restarts_them() -> None:
    running = JobState("demo-i1-proposer-grpo", "i1-proposer-grpo", 1, "running")
    paused = reconcile(_body(suspend=True), [running], [], NOW)
    assert paused.suspend == ["demo-i1-proposer-grpo"] and paused.create == []
    assert paused.status["phase"] == "Suspended"
    held = JobState("demo-i1-proposer-grpo", "i1-proposer-grpo", 1, "waiting", suspended=True)
    resumed = reconcile(_body(status=paused.status), [held], [], NOW + 60)
    assert resumed.resume == ["demo-i1-proposer-grpo"] and resumed.status["phase"] == "Running"
    suspended = next(c for c in resumed.status["conditions"] if c["type"] == "Suspended")
    assert suspended["status"] == "False"


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    first = reconcile(_body(), [], [], NOW)
    later = reconcile(_body(status=first.status), [], STAGES[:1], NOW + 100)
    stamp = {c["type"]: c["lastTransitionTime"] for c in first.status["conditions"]}
    again = {c["type"]: c["lastTransitionTime"] for c in later.status["conditions"]}
    assert stamp == again
    assert later.status["eta"] > later.status["startTime"]


def test_stage_job_asks_for_the_stage_gpus_and_fails_fast_on_usage_errors() -> None:
    body = _body(cluster={"queue": "gpus", "node_selector": {"gpu": "h100"}})
    spec = RunSpec.model_validate(body["spec"])
    stage = all_stages(spec)[0]
    job = stage_job(body, spec, stage, 2)
    pod = job["spec"]["template"]["spec"]
    assert job["metadata"]["name"] == "demo-i1-proposer-grpo-a2"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert job["metadata"]["labels"][QUEUE_LABEL] == "gpus" and job["spec"]["suspend"] is True
    assert pod["containers"][0]["resources"]["limits"][GPU] == "3"  # the trainer's; servers apart
    # three GPUs: one process each, started by torchrun on the one node
    assert pod["containers"][0]["command"][:7] == [
        "torchrun", "--standalone", "--nproc-per-node=3", "--no-python",
        "mmzero", "stage", "proposer-grpo",
    ]  # fmt: skip
    assert pod["nodeSelector"] == {"gpu": "h100"} and pod["automountServiceAccountToken"] is False
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [EXIT_USAGE]


def test_a_trainer_on_several_nodes_is_an_indexed_gang_job_behind_a_headless_service() -> None:
    body = _body(resources={"coder_trainer": {"gpus": 8, "replicas": 4}}, cluster={"queue": "q"})
    spec = RunSpec.model_validate(body["spec"])
    coder = next(s for s in all_stages(spec) if s.kind == "coder-grpo")
    service, job = stage_objects(body, spec, coder, 2)
    name = "demo-i1-coder-grpo-a2"
    assert job["metadata"]["name"] == service["metadata"]["name"] == name
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}
    assert service["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert QUEUE_LABEL not in service["metadata"]["labels"]  # Kueue admits the Job only
    spec_ = job["spec"]
    assert (spec_["completionMode"], spec_["completions"], spec_["parallelism"]) == (
        "Indexed",
        4,
        4,
    )
    assert spec_["backoffLimit"] == 0 and spec_["suspend"] is True  # one workload: a gang
    rules = spec_["podFailurePolicy"]["rules"]
    assert [r["action"] for r in rules] == ["FailJob"]  # a preempted pod fails the gang too
    pod = spec_["template"]["spec"]
    assert pod["subdomain"] == name
    container = pod["containers"][0]
    assert container["resources"]["limits"][GPU] == "8"
    assert container["command"][:7] == [
        "torchrun", "--nnodes=4", "--nproc-per-node=8", "--node-rank=$(MMZERO_NODE_RANK)",
        f"--master-addr={name}-0.{name}", "--master-port=29400", "--no-python",
    ]  # fmt: skip
    rank = next(e for e in container["env"] if e["name"] == "MMZERO_NODE_RANK")
    path = rank["valueFrom"]["fieldRef"]["fieldPath"]
    assert path == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    # one node of one GPU stays a plain Job of one process, as do batch stages
    plain = RunSpec.model_validate(_body()["spec"])
    evaluate = next(s for s in all_stages(plain) if s.kind == "evaluate")
    (only,) = stage_objects(_body(), plain, evaluate, 1)
    assert only["spec"]["template"]["spec"]["containers"][0]["command"][0] == "mmzero"
    assert "completionMode" not in only["spec"]


def test_a_batch_stage_of_independent_items_is_an_indexed_job_of_one_pod_per_shard() -> None:
    body = _body(resources={"generation": {"gpus": 1, "replicas": 4}}, cluster={"pod_retries": 2})
    spec = RunSpec.model_validate(body["spec"])
    by_kind = {s.kind: s for s in all_stages(spec)}
    (job,) = stage_objects(body, spec, by_kind["solver-data"], 1)
    spec_ = job["spec"]
    assert (spec_["completionMode"], spec_["completions"], spec_["parallelism"]) == (
        "Indexed",
        4,
        4,
    )
    assert spec_["backoffLimitPerIndex"] == 2 and "backoffLimit" not in spec_  # shards retry alone
    container = spec_["template"]["spec"]["containers"][0]
    assert container["command"][-4:] == ["--shards", "4", "--shard", "$(MMZERO_SHARD)"]
    shard = next(e for e in container["env"] if e["name"] == "MMZERO_SHARD")
    assert "job-completion-index" in shard["valueFrom"]["fieldRef"]["fieldPath"]
    assert container["resources"]["limits"][GPU] == "1"
    (evaluate,) = stage_objects(body, spec, by_kind["evaluate"], 1)  # graded as one pod
    assert "completionMode" not in evaluate["spec"]
    assert "--shards" not in evaluate["spec"]["template"]["spec"]["containers"][0]["command"]


def test_a_run_name_that_begins_with_a_digit_gets_a_valid_service_name() -> None:
    assert rendezvous_name("7run-i1-coder-grpo") == "r7run-i1-coder-grpo"
    assert rendezvous_name("demo-i1-coder-grpo") == "demo-i1-coder-grpo"


def test_job_names_fit_a_label_for_the_longest_run_name_and_iteration() -> None:
    spec = RunSpec(iterations=100)
    longest = max(all_stages(spec), key=lambda s: len(s.name))
    assert len(job_name("r" * 40, longest, 20)) <= 63


def test_job_state_reads_conditions_and_ignores_foreign_jobs() -> None:
    body = _body()
    spec = RunSpec.model_validate(body["spec"])
    job = stage_job(body, spec, all_stages(spec)[1], 1)
    failed = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
              "message": "too long", "lastTransitionTime": "2027-01-15T08:00:00Z"}  # fmt: skip
    job["status"] = {"conditions": [failed]}
    state = job_state(job)
    assert state is not None
    assert (state.stage, state.attempt, state.outcome, state.reason) == (
        "i1-propose", 1, "failed", "DeadlineExceeded",
    )  # fmt: skip
    assert job_state({"metadata": {"name": "other", "labels": {}}}) is None


def _pod(**status: Any) -> dict[str, Any]:
    metadata = {"name": "demo-i1-propose-x1", "creationTimestamp": "2027-01-15T08:00:00Z"}
    return {"metadata": metadata, "status": status}


def test_pod_facts_classify_why_a_pod_is_stuck_or_how_it_ended() -> None:
    pull = _pod(containerStatuses=[{"image": "mmzero/runtime:9", "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": "not found"}}}])  # fmt: skip
    unschedulable = _pod(conditions=[{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/3 nodes: Insufficient nvidia.com/gpu",
        "lastTransitionTime": "2027-01-15T08:00:05Z"}])  # fmt: skip
    oom = _pod(containerStatuses=[{"state": {"terminated": {"exitCode": 137,
        "reason": "OOMKilled", "message": "loading shard 3\nKilled"}}}])  # fmt: skip
    assert pod_fact(pull).blocked == "ImagePull" and "mmzero/runtime:9" in pod_fact(pull).detail
    assert pod_fact(unschedulable).blocked == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in pod_fact(unschedulable).detail
    ended = pod_fact(oom)
    assert ended.failed and ended.detail == (
        "pod demo-i1-propose-x1 exited 137 (OOMKilled): loading shard 3 | Killed"
    )


def test_blocked_pod_is_reported_then_fails_the_run_at_its_deadline() -> None:
    stuck = PodFact("demo-i1-propose-x1", "Unschedulable", "Insufficient nvidia.com/gpu", NOW)
    job = JobState("demo-i1-propose", "i1-propose", 1, "waiting", pods=(stuck,))
    early = reconcile(_body(), [job], STAGES[:1], NOW + 60)
    blocked = next(c for c in early.status["conditions"] if c["type"] == "PodsBlocked")
    assert early.status["phase"] == "Running" and blocked["reason"] == "Unschedulable"
    assert early.requeue_after == 1800 - 60
    late = reconcile(_body(), [job], STAGES[:1], NOW + 1800)
    assert late.status["phase"] == "Failed"
    assert "cannot start: Unschedulable" in late.status["message"]


def test_invalid_image_fails_the_run_at_once() -> None:
    bad = PodFact("demo-i1-propose-x1", "InvalidImage", "InvalidImageName: bad ref", NOW)
    job = JobState("demo-i1-propose", "i1-propose", 1, "waiting", pods=(bad,))
    assert reconcile(_body(), [job], STAGES[:1], NOW + 1).status["phase"] == "Failed"


def test_failure_message_carries_the_pod_exit_and_its_last_lines() -> None:
    ended = PodFact("demo-i1-propose-x1", detail="pod demo-i1-propose-x1 exited 1 (Error): boom",
                    failed=True)  # fmt: skip
    job = JobState("demo-i1-propose", "i1-propose", 3, "failed", "BackoffLimitExceeded",
                   "Job has reached the specified backoff limit", NOW, pods=(ended,))  # fmt: skip
    message = reconcile(_body(), [job], STAGES[:1], NOW + 1).status["message"]
    assert message.endswith("; pod demo-i1-propose-x1 exited 1 (Error): boom (Job demo-i1-propose)")


def test_unreadable_store_keeps_the_phase_and_says_what_to_fix() -> None:
    running = reconcile(_body(), [], STAGES[:2], NOW).status
    assert {c["type"]: c["status"] for c in running["conditions"]}["StoreReachable"] == "True"
    status = store_unavailable(_body(status=running), "Secret 'creds' is not in namespace ml", NOW)
    assert (status["phase"], status["stagesDone"]) == ("Running", 2)
    store = {c["type"]: c for c in status["conditions"]}["StoreReachable"]
    assert (store["status"], store["reason"]) == ("False", "StoreUnavailable")
    assert "Secret 'creds'" in store["message"] and "Secret 'creds'" in status["message"]
    assert len(status["conditions"]) == len(running["conditions"])  # replaced, not added


def test_s3_stage_pods_get_credentials_from_the_secret_and_a_scratch_mirror() -> None:
    storage = {"uri": "s3://bucket/runs", "credentials_secret": "store-creds"}
    body = _body(storage=storage)
    spec = RunSpec.model_validate(body["spec"])
    job = stage_job(body, spec, all_stages(spec)[0], 1)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "store-creds"}}]
    run_dir = container["command"][container["command"].index("--run-dir") + 1]
    assert run_dir == "/var/lib/mmzero/mirror/bucket/runs/demo"
    assert {"name": "store", "emptyDir": {}} in pod["volumes"]
    assert "store-creds" not in str(job["metadata"]) and "store-creds" not in str(container["env"])


def test_stage_pods_get_the_operators_service_addresses() -> None:
    body = _body()
    spec = RunSpec.model_validate(body["spec"])
    job = with_stage_env(stage_job(body, spec, all_stages(spec)[0], 1),
                         {"MMZERO_RENDER_URL": "http://render:8001"})  # fmt: skip
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[:2] == [{"name": "MMZERO_METRICS_ADDRESS", "value": "0.0.0.0"},
                       {"name": "MMZERO_METRICS_PORT", "value": "9090"}]  # fmt: skip
    assert env[-1] == {"name": "MMZERO_RENDER_URL", "value": "http://render:8001"}
    untouched = with_stage_env(stage_job(body, spec, all_stages(spec)[0], 1), {})
    assert untouched["spec"]["template"]["spec"]["containers"][0]["env"] == env[:-1]
    assert {"name": "MMZERO_METRICS_LINGER_SECONDS", "value": "30"} in env


def test_a_grpo_stage_gets_its_frozen_roles_served_while_it_runs() -> None:
    decision = reconcile(_body(), [], [], NOW)
    assert _servers(decision) == [
        (kind, name) for name in ("demo-i1pg-coder", "demo-i1pg-solver")
        for kind in ("Deployment", "NetworkPolicy", "Service")
    ]  # fmt: skip
    assert decision.create[0]["kind"] == "Job"  # first: its pod starts while the servers load
    policy = next(o for o in decision.create if o["kind"] == "NetworkPolicy")["spec"]
    assert policy["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"mmzero.dev/run": "demo"}}}
    ]
    job = next(o for o in decision.create if o["kind"] == "Job")
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MMZERO_SERVER_SOLVER", "value": "http://demo-i1pg-solver:8000"} in env
    deployment = next(o for o in decision.create if o["metadata"]["name"] == "demo-i1pg-solver")
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert server["command"][:5] == ["mmzero", "serve", "--spec", "/etc/mmzero/run.yaml", "--key"]
    assert server["command"][5] == "base/model"  # iteration 1 asks the base model's roles
    assert server["resources"]["limits"][GPU] == "1" and server["readinessProbe"]
    assert deployment["spec"]["replicas"] == 3  # the reference layout: 3 solver replicas
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "u-1"

    running = JobState("demo-i1-proposer-grpo", "i1-proposer-grpo", 1, "running")
    again = reconcile(_body(), [running], [], NOW, ["demo-i1pg-coder", "demo-i1pg-solver"])
    assert again.create == [] and again.delete_servers == []  # made once, kept while it runs
    after = reconcile(_body(), [], STAGES[:1], NOW, ["demo-i1pg-coder", "demo-i1pg-solver"])
    assert after.delete_servers == ["demo-i1pg-coder", "demo-i1pg-solver"]  # stage done
    paused = reconcile(_body(suspend=True), [running], [], NOW, ["demo-i1pg-coder"])
    assert paused.delete_servers == ["demo-i1pg-coder"]  # suspended: GPUs go back


def test_the_coder_stage_is_judged_by_a_served_solver() -> None:
    decision = reconcile(_body(), [], STAGES[:3], NOW)
    assert _names(decision) == ["demo-i1-coder-grpo"]
    assert _servers(decision) == [
        ("Deployment", "demo-i1cg-solver"),
        ("NetworkPolicy", "demo-i1cg-solver"),
        ("Service", "demo-i1cg-solver"),
    ]
    job = next(o for o in decision.create if o["kind"] == "Job")
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MMZERO_SERVER_JUDGE", "value": "http://demo-i1cg-solver:8000"} in env


def test_vllm_servers_serve_an_exported_checkpoint_under_its_digest() -> None:
    decision = reconcile(_body(cluster={"server_backend": "vllm"}), [], STAGES[:3], NOW)
    deployment = next(o for o in decision.create if o["metadata"]["name"] == "demo-i1cg-solver")
    pod = deployment["spec"]["template"]["spec"]
    (export,) = pod["initContainers"]
    assert export["command"][:4] == ["mmzero", "export", "/models/model", "--spec"]
    assert export["command"][export["command"].index("--iteration") + 1] == "0"  # base model
    assert export["envFrom"] == pod["containers"][0]["envFrom"]  # the same store credentials
    (server,) = pod["containers"]
    assert server["command"][:2] == ["sh", "-c"]
    serve = server["command"][2]
    assert serve.startswith("exec vllm serve /models/model --served-model-name")
    assert '"$(cat /models/digest)"' in serve and "--port 8000" in serve
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    assert {"name": "model", "emptyDir": {}} in pod["volumes"]


def test_a_crashed_or_oom_killed_server_is_a_condition_while_the_stage_waits() -> None:
    restarted = _pod(containerStatuses=[{
        "state": {"running": {}}, "restartCount": 2,
        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
    }])  # fmt: skip
    fact = pod_fact(restarted)
    assert fact.restarted and not fact.failed
    assert fact.detail == "restarted 2 time(s); last: pod demo-i1-propose-x1 exited 137 (OOMKilled)"

    running = JobState("demo-i1-proposer-grpo", "i1-proposer-grpo", 1, "running")
    servers = ["demo-i1pg-coder", "demo-i1pg-solver"]
    healthy = reconcile(_body(), [running], [], NOW, servers,
                        {"demo-i1pg-solver": [PodFact("s-1")]})  # fmt: skip
    ready = next(c for c in healthy.status["conditions"] if c["type"] == "ServersReady")
    assert (ready["status"], ready["reason"]) == ("True", "Ready")

    sick = reconcile(_body(), [running], [], NOW, servers, {"demo-i1pg-solver": [fact]})
    condition = next(c for c in sick.status["conditions"] if c["type"] == "ServersReady")
    assert (condition["status"], condition["reason"]) == ("False", "ServerPodFailed")
    assert condition["message"].startswith("server demo-i1pg-solver: restarted 2 time(s)")
    assert "OOMKilled" in condition["message"] and "spec.resources" in condition["message"]
    assert sick.status["phase"] == "Running" and sick.create == []  # the stage keeps waiting
    gone = reconcile(_body(), [], STAGES[:1], NOW, [], {"demo-i1pg-solver": [fact]})
    assert (
        next(c for c in gone.status["conditions"] if c["type"] == "ServersReady")["status"]
        == "True"
    )  # the stage is done and its servers are gone: nothing to report


def _conditions(decision: Decision) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in decision.status["conditions"]}


COLLAPSED = {"i1-propose": {"diversity/caption_distinct_share": 0.05}}
"""The propose stage's health figures of a Proposer that repeats itself."""


def test_a_warning_alarm_is_a_condition_and_the_run_goes_on() -> None:
    done = STAGES[:2]
    decision = reconcile(_body(), [], done, NOW, health=COLLAPSED)
    assert _names(decision) == ["demo-i1-coder-data"]
    alarm = _conditions(decision)["HealthAlarm"]
    assert (alarm["status"], alarm["reason"]) == ("True", "Collapse")
    assert "i1-propose" in alarm["message"] and "health.min_distinct_share" in alarm["message"]
    assert [a["name"] for a in decision.status["alarms"]] == ["collapse"]
    assert decision.status["phase"] == "Running"
    healthy = reconcile(_body(), [], done, NOW, health={"i1-propose": {}})
    assert _conditions(healthy)["HealthAlarm"]["status"] == "False"
    assert healthy.status["alarms"] == []


def test_a_stopping_alarm_starts_nothing_until_the_spec_clears_it() -> None:
    done = STAGES[:2]
    stop = {"on_alarm": "stop"}
    decision = reconcile(_body(health=stop), [], done, NOW, health=COLLAPSED)
    assert decision.create == [] and decision.status["phase"] == "Stopped"
    assert "spec.health.on_alarm: stop" in decision.status["message"]
    # a figure of a stage that is not done (deleted manifest) does not count
    elsewhere = reconcile(_body(health=stop), [], STAGES[:1], NOW, health=COLLAPSED)
    assert _names(elsewhere) == ["demo-i1-propose"]
    # the user lowers the floor (spec.health may change in a started run): the run goes on
    lowered = {**stop, "min_distinct_share": 0.01}
    resumed = reconcile(_body(health=lowered), [], done, NOW, health=COLLAPSED)
    assert _names(resumed) == ["demo-i1-coder-data"] and resumed.status["phase"] == "Running"


def test_a_stopping_alarm_lets_a_running_stage_finish_but_starts_no_retry() -> None:
    done = STAGES[:2]
    running = JobState("demo-i1-coder-data-a1", "i1-coder-data", 1, "running")
    decision = reconcile(_body(health={"on_alarm": "stop"}), [running], done, NOW,
                         health=COLLAPSED)  # fmt: skip
    assert decision.create == [] and decision.suspend == []
    failed = JobState("demo-i1-coder-data-a1", "i1-coder-data", 1, "failed", "BackoffLimitExceeded",
                      finished_at=NOW - 3600)  # fmt: skip
    decision = reconcile(_body(health={"on_alarm": "stop"}), [failed], done, NOW, health=COLLAPSED)
    assert decision.create == [] and decision.status["phase"] == "Stopped"


def test_an_oom_killed_render_pod_is_a_condition_on_every_run_while_stages_wait() -> None:
    oom = pod_fact(_pod(containerStatuses=[{
        "state": {"running": {}}, "restartCount": 1,
        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
    }]))  # fmt: skip
    running = JobState("demo-i1-coder-data", "i1-coder-data", 1, "running")
    sick = reconcile(_body(), [running], STAGES[:2], NOW, render_pods=[PodFact("r-1"), oom])
    condition = _conditions(sick)["RenderReady"]
    assert (condition["status"], condition["reason"]) == ("False", "RenderPodFailed")
    assert condition["message"].startswith("render service: restarted 1 time(s)")
    assert (
        "OOMKilled" in condition["message"]
        and "render.resources.limits.memory" in (condition["message"])
    )
    assert sick.status["phase"] == "Running" and sick.create == []  # the stage keeps waiting
    healthy = reconcile(_body(), [running], STAGES[:2], NOW, render_pods=[PodFact("r-1")])
    assert _conditions(healthy)["RenderReady"]["status"] == "True"
    unwatched = reconcile(_body(), [running], STAGES[:2], NOW)
    assert _conditions(unwatched)["RenderReady"]["reason"] == "NotWatched"


def test_a_run_is_reconciled_when_new_listed_or_respecified_not_when_its_status_changes() -> None:
    body = _body()
    assert run_changed("ADDED", body) and run_changed(None, body)  # created; operator restarted
    seen = {**body, "status": {"observedGeneration": 2}}
    assert not run_changed("MODIFIED", seen)  # our own status write
    assert run_changed("MODIFIED", {**seen, "metadata": {**body["metadata"], "generation": 3}})
    assert not run_changed("DELETED", body)
