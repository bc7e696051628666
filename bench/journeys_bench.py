"""Benchmark: the journey kernel next to a bare Celery hop, and next to DBOS Transact, in one run.

    .venv/bin/pip install -e '.[dev,bench]'
    .venv/bin/python bench/journeys_bench.py [--rounds 5] [--hops 200] [--ten-step-runs 4] [--runs 1000]
        [--approval-customers 20] [--cpus 0,1] [--skip-dbos]

Starts its own worker (`celery -A bench.bench_app worker`, prefork, concurrency 2, connections
kept with CELERY_DB_REUSE_MAX) against PostgreSQL database ledgerflow_bench_journeys (created and
migrated here) and Redis database 8, and a DBOS Transact child process (system database
ledgerflow_bench_dbos, 32 executor threads) that stays up for the whole run. Both are pinned to the
same CPUs (--cpus; default every CPU this process may use): the same CPU budget. Then, in rounds
that alternate between the contenders so a noisy spell on a shared machine hits all of them alike:

  (a) a bare Celery hop: a chain of tasks each enqueueing the next, ms per hop;
  (b) a 10-step journey, ms per step (run created → SUCCEEDED), with steps whose work sends no
      query and with steps whose work sends one query (a primary-key read);
  (c) 1,000 three-step journeys started one after another, runs/s from the first start until all
      SUCCEEDED;
  (d) the same three-step workflow on DBOS Transact, timed the same way;
  (e) 1,000 bare three-hop Celery chains (no database): Celery's ceiling for (c);
  (f) approval POST → first invoice sent: a monthly batch of --approval-customers drafts waiting
      for approval, the decision POSTed through the API (in this process), until the worker has
      emailed (dummy backend) the first invoice.

Every figure is the median of --rounds rounds; the load average is printed before and after.

Targets (issue 15): (c) ≥ 2× (d); a one-query step within 2× a bare hop; (f) ≤ 300 ms on a quiet
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_ENV = {
    "DATABASE_URL": os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledgerflow_bench_journeys"
    ),
    "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8"),
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "SECRET_KEY": "bench-only-secret-key-ledgerflow-0123456789abcdefghijklmnop",
    "CELERY_DB_REUSE_MAX": "100000",
    "LOG_LEVEL": "WARNING",
    "EMAIL_URL": "dummymail://",
}
DBOS_DATABASE_URL = os.environ.get(
    "BENCH_DBOS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ledgerflow_bench_dbos"
)
DBOS_THREADS = 32


# --- DBOS Transact (child process) ------------------------------------------------------------------
def dbos_main() -> None:
    """The three-step workflow on DBOS: each step's completion checkpointed in its system database.

    Stays up: each line on stdin is a number of workflows to run; it answers one JSON line."""
    import logging

    from dbos import DBOS

    DBOS(
        config={
            "name": "ledgerflow-bench",
            "system_database_url": DBOS_DATABASE_URL,
            "max_executor_threads": DBOS_THREADS,
            "sys_db_pool_size": DBOS_THREADS + 8,
            "log_level": "WARNING",
        }
    )

    @DBOS.step()
    def step1() -> None:
        pass

    @DBOS.step()
    def step2() -> None:
        pass

    @DBOS.step()
    def step3() -> None:
        pass

    @DBOS.workflow()
    def three_steps() -> None:
        step1()
        step2()
        step3()

    DBOS.launch()
    logging.getLogger("dbos").setLevel(logging.WARNING)
    for _ in range(20):  # warm up connections and code paths
        DBOS.start_workflow(three_steps).get_result()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        runs = int(line)
        started = time.perf_counter()
        handles = [DBOS.start_workflow(three_steps) for _ in range(runs)]
        for handle in handles:
            handle.get_result()
        elapsed = time.perf_counter() - started
        print(json.dumps({"runs": runs, "seconds": elapsed, "runs_per_s": runs / elapsed}), flush=True)
    DBOS.destroy()


class DbosChild:
    """The DBOS child process, pinned to `cpus`, asked for one round at a time."""

    def __init__(self, cpus: set[int]):
        self.process = subprocess.Popen(  # noqa: S603 - this script
            [sys.executable, __file__, "--dbos-child"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),  # noqa: PLW1509 - affinity only
        )
        self._answer()

    def _answer(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError("the DBOS child ended without an answer")

    def round(self, runs: int) -> dict:
        self.process.stdin.write(f"{runs}\n")
        self.process.stdin.flush()
        return self._answer()

    def stop(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


# --- The kernel (this process drives, a worker subprocess executes) ---------------------------------
def setup_django() -> None:
    os.environ.update(BENCH_ENV)
    import django

    django.setup()
    from django.core.management import call_command

    from operations.setup_services import database_ensure

    database_ensure()
    call_command("migrate", verbosity=0)


def start_worker(
    *, pool: str = "prefork", concurrency: int = 2, cpus: set[int] | None = None
) -> subprocess.Popen:
    env = {**os.environ, **BENCH_ENV, "PYTHONPATH": str(ROOT)}
    env.pop("LEDGERFLOW_SERVICES", None)
    return subprocess.Popen(  # noqa: S603 - this interpreter running celery, options from argparse
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.bench_app",
            "worker",
            "-Q",
            "default,io",
            "-c",
            str(concurrency),
            "--pool",
            pool,
            "-l",
            "warning",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        # the worker and its pool processes share the DBOS child's CPUs
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
    )


def _tenant():
    from tenancy.models import Tenant

    tenant, _ = Tenant.objects.get_or_create(slug="bench-journeys", defaults={"name": "Bench journeys"})
    return tenant


def _wait(predicate, timeout: float, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("the worker did not finish in time")


def bench_hop(hops: int, repeats: int = 5) -> float:
    """ms per hop of a chain of `hops` tasks, each enqueueing the next (median of `repeats`)."""
    import redis
    from django.conf import settings

    from bench.bench_journeys import HOP_DONE_KEY, hop

    client = redis.Redis.from_url(settings.REDIS_URL)
    results = []
    for _ in range(repeats):
        client.delete(HOP_DONE_KEY)
        started = time.time()
        hop.delay(hops)
        done = float(_wait(lambda: client.get(HOP_DONE_KEY), timeout=120))
        results.append((done - started) * 1000 / hops)
    return statistics.median(results)


def bench_ten_steps(runs: int, journey: str = "bench-ten-steps") -> float:
    """ms per step of a 10-step journey, created → SUCCEEDED, runs one after another (median)."""
    from core.actors import Actor
    from journeys import engine
    from journeys.models import JourneyRun

    tenant, actor, results = _tenant(), Actor.system("bench"), []
    for _ in range(runs):
        run, _ = engine.run_start(journey_name=journey, tenant=tenant, actor=actor, context={})
        done = _wait(
            lambda pk=run.pk: JourneyRun.objects.filter(pk=pk, phase="SUCCEEDED").first(),
            timeout=60,
            interval=0.05,  # the figure comes from the run's timestamps: polling less steals less CPU
        )
        results.append((done.updated_at - done.created_at).total_seconds() * 1000 / 10)
    return statistics.median(results)


def bench_bare_chains(runs: int) -> dict:
    """chains/s for `runs` bare three-hop Celery chains sent at once: Celery's own ceiling for (c)."""
    import redis
    from django.conf import settings

    from bench.bench_journeys import HOPS_FINISHED_KEY, chain_hop
    from config.celery_app import app

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(HOPS_FINISHED_KEY)
    started = time.time()
    with app.producer_or_acquire() as producer:
        for _ in range(runs):
            chain_hop.apply_async(args=[3], producer=producer)
    _wait(lambda: int(client.get(HOPS_FINISHED_KEY) or 0) >= runs, timeout=600, interval=0.05)
    seconds = time.time() - started
    return {"runs": runs, "seconds": seconds, "runs_per_s": runs / seconds}


def bench_three_steps(runs: int) -> dict:
    """runs/s for `runs` three-step journeys started one after another, as DBOS's are below: from
    the first start to the last run SUCCEEDED (the worker runs steps while the starts go on)."""
    from django.db import connection
    from django.db.models import Max

    from core.actors import Actor
    from journeys import engine
    from journeys.models import JourneyRun

    tenant, actor = _tenant(), Actor.system("bench")
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        first_start = cursor.fetchone()[0]
    started = [
        engine.run_start(journey_name="bench-three-steps", tenant=tenant, actor=actor, context={"i": i})[0].pk
        for i in range(runs)
    ]
    runs_qs = JourneyRun.objects.filter(pk__in=started)
    _wait(lambda: runs_qs.filter(phase="SUCCEEDED").count() == runs, timeout=600, interval=0.2)
    finished = runs_qs.aggregate(last=Max("updated_at"))["last"]
    seconds = (finished - first_start).total_seconds()
    return {"runs": runs, "seconds": seconds, "runs_per_s": runs / seconds}


def _approval_batch(customers: int):
    """A fresh tenant's monthly batch, drafted and validated by the worker, waiting for approval;
    (run, approver)."""
    from datetime import timedelta

    from django.utils import timezone

    from core.actors import Actor
    from invoicing.workflows import batch_configure
    from journeys import scheduling
    from journeys.models import JourneyRun
    from tenancy.roles import Role
    from tests.factories import (
        CustomerFactory,
        MembershipFactory,
        SubscriptionFactory,
        TenantFactory,
        UserFactory,
    )

    tag = uuid.uuid4().hex[:8]
    tenant = TenantFactory(slug=f"bench-approval-{tag}", name=f"Bench approval {tag}")
    for _ in range(customers):
        SubscriptionFactory(
            customer=CustomerFactory(tenant=tenant, email=f"ap-{uuid.uuid4().hex[:6]}@example.com"),
            unit_price=Decimal("100.00"),
            tax_rate=Decimal("0.19"),
        )
    # usernames of their own: factory sequences start again in every bench process
    preparer = MembershipFactory(tenant=tenant, user=UserFactory(username=f"bench-{tag}-preparer")).user
    approver = UserFactory(username=f"bench-{tag}-approver")
    MembershipFactory(tenant=tenant, user=approver, roles=[Role.FINANCE_APPROVER])
    actor = Actor.system("bench")
    schedule = batch_configure(
        tenant=tenant,
        batch_id="bench",
        first_run_at=timezone.now() - timedelta(minutes=1),
        interval="P1M",
        max_runs=1,
        user=preparer,
        actor=actor,
    )
    (run,) = scheduling.schedule_fire(schedule_id=schedule.pk, actor=actor)
    waiting = _wait(
        lambda: JourneyRun.objects.filter(pk=run.pk).exclude(phase="RUNNING", waiting_for="task").first(),
        timeout=120,
        interval=0.05,
    )
    if waiting.current_state != "waitForFinanceApproval":
        raise RuntimeError(
            f"the bench batch did not wait for approval: {waiting.phase} at {waiting.current_state}"
        )
    return run, approver


def bench_approval(customers: int) -> float:
    """ms from the approval POST (its first byte) to the first invoice of the batch sent."""
    from django.db import connection
    from django.db.models import Min
    from django.urls import reverse
    from rest_framework.test import APIClient

    from invoicing.models import Invoice

    run, approver = _approval_batch(customers)
    client = APIClient(HTTP_HOST="127.0.0.1")
    client.force_authenticate(approver)
    url = reverse("journey-step", kwargs={"journey_id": run.journey_id, "step_id": "approveInvoiceBatch"})
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        posted = cursor.fetchone()[0]
    answer = client.post(url, {"decision": "APPROVED"}, format="json", HTTP_X_TENANT=run.tenant.slug)
    if answer.status_code != 200:
        raise RuntimeError(f"approval refused: {answer.status_code} {answer.content[:500]!r}")
    invoices = Invoice.objects.filter(batch_run_id=run.pk)
    first = _wait(
        lambda: invoices.filter(sent_at__isnull=False).aggregate(first=Min("sent_at"))["first"],
        timeout=120,
        interval=0.005,
    )
    return (first - posted).total_seconds() * 1000


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return "[" + ", ".join(fmt.format(v) for v in values) + "]"


def _loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds (median reported; at least 5)"
    )
    parser.add_argument("--hops", type=int, default=200)
    parser.add_argument("--ten-step-runs", type=int, default=4, help="per round and kind of step")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--approval-customers", type=int, default=20)
    parser.add_argument(
        "--cpus", help="CPUs for the worker and the DBOS child, e.g. 0,1 (default: all this process may use)"
    )
    parser.add_argument("--skip-dbos", action="store_true")
    parser.add_argument("--pool", default="prefork", help="worker pool (the Procfile's: prefork)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (the Procfile's: 2)")
    parser.add_argument("--dbos-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dbos_child:
        dbos_main()
        return
    cpus = {int(c) for c in args.cpus.split(",")} if args.cpus else os.sched_getaffinity(0)
    load_before = _loadavg()

    setup_django()
    from bench import bench_journeys  # noqa: F401 - the bench journeys, for run_start here
    from config.celery_app import app

    app.control.purge()
    worker = start_worker(pool=args.pool, concurrency=args.concurrency, cpus=cpus)
    dbos = None if args.skip_dbos else DbosChild(cpus)
    hop_ms, step_ms, query_ms, kernel, bare, other, approval_ms = [], [], [], [], [], [], []
    try:
        bench_hop(20, repeats=1)  # worker up and warm
        bench_ten_steps(3)
        bench_ten_steps(3, "bench-ten-query-steps")
        for round_no in range(1, args.rounds + 1):
            hop_ms.append(bench_hop(args.hops, repeats=1))
            step_ms.append(bench_ten_steps(args.ten_step_runs))
            query_ms.append(bench_ten_steps(args.ten_step_runs, "bench-ten-query-steps"))
            kernel.append(bench_three_steps(args.runs)["runs_per_s"])
            if dbos is not None:
                other.append(dbos.round(args.runs)["runs_per_s"])
            bare.append(bench_bare_chains(args.runs)["runs_per_s"])
            approval_ms.append(bench_approval(args.approval_customers))
            print(
                f"round {round_no}: hop {hop_ms[-1]:.2f} ms, step {step_ms[-1]:.2f} / {query_ms[-1]:.2f} ms, "
                f"kernel {kernel[-1]:.0f} runs/s"
                + (f", DBOS {other[-1]:.0f} runs/s" if other else "")
                + f", chains {bare[-1]:.0f}/s, approval→sent {approval_ms[-1]:.0f} ms, load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)
        if dbos is not None:
            dbos.stop()
    load_after = _loadavg()

    hop, step, query = _median(hop_ms), _median(step_ms), _median(query_ms)
    k, c, a = _median(kernel), _median(bare), _median(approval_ms)
    print()
    print(
        f"median of {args.rounds} alternating rounds; worker {args.pool} ×{args.concurrency} and DBOS ({DBOS_THREADS} threads) on CPUs {sorted(cpus)}"
    )
    print(f"{'measure':<56} {'median':>12}   rounds")
    print(f"{'(a) bare Celery hop (task enqueues the next)':<56} {hop:>9.2f} ms   {_spread(hop_ms)}")
    print(
        f"{'(b) 10-step journey, per step, work sends no query':<56} {step:>9.2f} ms   {_spread(step_ms)}   ({step / hop:.2f}× a hop)"
    )
    print(
        f"{'(b) 10-step journey, per step, work sends one query':<56} {query:>9.2f} ms   {_spread(query_ms)}   "
        f"({query / hop:.2f}× a hop; target ≤ 2×: {'met' if query <= 2 * hop else 'NOT met'})"
    )
    print(
        f"{f'(c) {args.runs} three-step journeys (kernel)':<56} {k:>7.0f} runs/s {_spread(kernel, '{:.0f}')}"
    )
    if other:
        d = _median(other)
        ratio = _median([x / y for x, y in zip(kernel, other, strict=True)])
        print(
            f"{f'(d) {args.runs} three-step workflows (DBOS Transact)':<56} {d:>7.0f} runs/s {_spread(other, '{:.0f}')}"
        )
        print(
            f"{'    kernel / DBOS (median of the rounds ratios)':<56} {ratio:>10.2f}×   (target ≥ 2×: {'met' if ratio >= 2 else 'NOT met'})"
        )
    print(
        f"{f'(e) {args.runs} bare three-hop Celery chains':<56} {c:>7.0f} runs/s {_spread(bare, '{:.0f}')}   (Celery's ceiling for (c))"
    )
    print(
        f"{f'(f) approval POST → first invoice sent ({args.approval_customers} drafts)':<56} {a:>9.0f} ms   "
        f"{_spread(approval_ms, '{:.0f}')}   (target ≤ 300 ms: {'met' if a <= 300 else 'NOT met'})"
    )
    print(f"load average before: {load_before}")
    print(f"load average after:  {load_after}")
    print(
        "A shared or loaded machine makes every figure noisy; compare the ratios, or re-run on a quiet machine."
    )


if __name__ == "__main__":
    main()
