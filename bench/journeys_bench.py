"""Benchmark: the journey kernel next to a bare Celery hop, and next to DBOS Transact.

    .venv/bin/pip install -e '.[dev,bench]'
    .venv/bin/python bench/journeys_bench.py [--rounds 7] [--hops 200] [--ten-step-runs 6] [--runs 1000]

Starts its own worker (`celery -A bench.bench_app worker`, prefork, concurrency 2, connections
kept with CELERY_DB_REUSE_MAX) against PostgreSQL database ledgerflow_bench_journeys (created and
migrated here) and Redis database 8, then measures:

  (a) a bare Celery hop: a chain of tasks each enqueueing the next, ms per hop;
  (b) a 10-step journey of trivial transactional Task steps, ms per step (run created → SUCCEEDED);
      (a) and (b) alternate for --rounds rounds and each reports its median round;
  (c) 1,000 three-step journeys started one after another, runs/s from the first start until all
      SUCCEEDED (DBOS's figure (d) is timed the same way);
  (d) the same three-step workflow on DBOS Transact (system database ledgerflow_bench_dbos,
      32 executor threads), in a child process, runs/s;
  (e) 1,000 bare three-hop Celery chains (no database): the most (c) could reach on this worker.

Targets (issue): a step within 2× a bare hop; at least 2× DBOS's throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
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
def dbos_main(runs: int) -> None:
    """The three-step workflow on DBOS: each step's completion checkpointed in its system database."""
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
    started = time.perf_counter()
    handles = [DBOS.start_workflow(three_steps) for _ in range(runs)]
    for handle in handles:
        handle.get_result()
    elapsed = time.perf_counter() - started
    print(json.dumps({"runs": runs, "seconds": elapsed, "runs_per_s": runs / elapsed}))
    DBOS.destroy()


def run_dbos(runs: int) -> dict:
    output = subprocess.run(  # noqa: S603 - this script, with an int
        [sys.executable, __file__, "--dbos-child", "--runs", str(runs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    for line in reversed(output.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"DBOS child failed:\n{output.stdout[-2000:]}\n{output.stderr[-4000:]}")


# --- The kernel (this process drives, a worker subprocess executes) ---------------------------------
def setup_django() -> None:
    os.environ.update(BENCH_ENV)
    import django

    django.setup()
    from django.core.management import call_command

    from core.setup_services import database_ensure

    database_ensure()
    call_command("migrate", verbosity=0)


def start_worker(*, pool: str = "prefork", concurrency: int = 2) -> subprocess.Popen:
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
    )


def _tenant():
    from billing.models import Tenant

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


def bench_ten_steps(runs: int) -> float:
    """ms per step of a 10-step journey, created → SUCCEEDED, runs one after another (median)."""
    from audit.actors import Actor
    from journeys import engine
    from journeys.models import JourneyRun

    tenant, actor, results = _tenant(), Actor.system("bench"), []
    for _ in range(runs):
        run, _ = engine.run_start(journey_name="bench-ten-steps", tenant=tenant, actor=actor, context={})
        done = _wait(
            lambda pk=run.pk: JourneyRun.objects.filter(pk=pk, phase="SUCCEEDED").first(),
            timeout=60,
            interval=0.05,  # the figure comes from the run's timestamps: polling less steals less CPU
        )
        results.append((done.updated_at - done.created_at).total_seconds() * 1000 / 10)
    return statistics.median(results)


def bench_latency(rounds: int, hops: int, ten_step_runs: int) -> tuple[float, float]:
    """(ms per hop, ms per step), each the median over `rounds` rounds of a hop chain then 10-step
    runs. Interleaving them means a noisy spell on a shared machine hits both sides alike."""
    hop_ms, step_ms = [], []
    for _ in range(rounds):
        hop_ms.append(bench_hop(hops, repeats=1))
        step_ms.append(bench_ten_steps(ten_step_runs))
    return statistics.median(hop_ms), statistics.median(step_ms)


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

    from audit.actors import Actor
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hops", type=int, default=200)
    parser.add_argument("--ten-step-runs", type=int, default=6, help="per round")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--skip-dbos", action="store_true")
    parser.add_argument("--pool", default="prefork", help="worker pool (the Procfile's: prefork)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (the Procfile's: 2)")
    parser.add_argument("--dbos-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dbos_child:
        dbos_main(args.runs)
        return

    setup_django()
    from bench import bench_journeys  # noqa: F401 - the bench journeys, for run_start here
    from config.celery_app import app

    app.control.purge()
    worker = start_worker(pool=args.pool, concurrency=args.concurrency)
    try:
        bench_hop(20, repeats=1)  # worker up and warm
        bench_ten_steps(3)
        hop_ms, step_ms = bench_latency(args.rounds, args.hops, args.ten_step_runs)
        bare = bench_bare_chains(args.runs)
        kernel = bench_three_steps(args.runs)
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)
    dbos = None if args.skip_dbos else run_dbos(args.runs)

    print()
    print(f"{'measure':<52} {'result':>14}")
    print(f"{'(a) bare Celery hop (task enqueues the next)':<52} {hop_ms:>11.2f} ms")
    print(
        f"{'(b) 10-step journey, per step':<52} {step_ms:>11.2f} ms   ({step_ms / hop_ms:.2f}× a hop; target ≤ 2×)"
    )
    print(
        f"{f'(c) {args.runs} three-step journeys at once (kernel)':<52} {kernel['runs_per_s']:>9.0f} runs/s ({kernel['seconds']:.1f} s)"
    )
    print(
        f"{f'(e) {args.runs} bare three-hop Celery chains at once':<52} {bare['runs_per_s']:>9.0f} runs/s ({bare['seconds']:.1f} s)"
        f"   (Celery's ceiling for (c): no database at all)"
    )
    if dbos is not None:
        ratio = kernel["runs_per_s"] / dbos["runs_per_s"]
        print(
            f"{f'(d) same on DBOS Transact ({DBOS_THREADS} threads)':<52} {dbos['runs_per_s']:>9.0f} runs/s ({dbos['seconds']:.1f} s)"
        )
        print(f"{'    kernel / DBOS':<52} {ratio:>12.2f}×   (target ≥ 2×)")
        print(f"{'    bare Celery chains / DBOS':<52} {bare['runs_per_s'] / dbos['runs_per_s']:>12.2f}×")
    print(
        f"worker: {args.pool}, concurrency {args.concurrency}; one PostgreSQL and one Redis, all on this machine's 2 cores"
    )


if __name__ == "__main__":
    main()
