"""Benchmark: `studio train` against a plain TRL script — start-up, per-step cost, total wall.

    python bench/train_startup.py                 # 3 interleaved rounds of 30 steps
    python bench/train_startup.py --rounds 5 --steps 30 --json

Issue 16's goal: from launch to the first optimizer step, `studio train` takes ≤ 1.2x the plain
script (`bench/train_plain_sft.py`); the per-step cost is the same.

Nothing is downloaded. Set-up builds a tiny random Llama (by default hidden 64, 2 layers, a
512-token context; the test helper's byte-level BPE tokenizer) and a database holding the shipped
demo dialogues, all accepted. The examples the plain script trains on are the studio's own (the runner's `prepare`: the same split,
the same `max_length`, the same fitted rows) written as TRL prompt/completion rows; its settings
are the `seed` recipe as it runs on a CPU (plain LoRA, fp32, AdamW), written out by hand.

Each round runs, in fresh processes and in turn (so a busy machine slows both alike):

- **studio**: `python -m studio train --db … --base-model … --max-steps N --output …`, the
  command a person types (it checks, launches `python -m studio.train` and follows its log);
- **plain**: `python bench/train_plain_sft.py …` (model, LoRA, `SFTTrainer`, `save_model`).

Times are wall-clock: the launch (`time.time()` just before the process starts), the first and
last optimizer steps (the studio's step events in `events.jsonl`; the plain script's callback
prints them), and the process's exit. Per step is (last − first) / (N − 1); for the studio the
evaluations that fall between those steps are taken out (each one's time is from the step event
before it to its eval event) and reported on their own. Medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.demo import demo_rows  # noqa: E402
from studio.ingest.load import add_rows  # noqa: E402
from studio.model import CactusRow  # noqa: E402
from studio.store import Store  # noqa: E402
from studio.train.events import (  # noqa: E402
    EvalEvent,
    StartEvent,
    StepEvent,
    TrainEvent,
    parse_event,
)

CLOCK = "step-clock"  # the plain script's step lines (bench/train_plain_sft.py)


@dataclass
class Timing:
    tool: str
    startup_s: float
    """Launch → end of the first optimizer step."""
    per_step_s: float
    """Mean optimizer step from the first to the last (evaluations taken out)."""
    eval_s: float
    """Evaluations between the first and last steps."""
    total_s: float
    """Launch → the process exited."""
    startup_cpu_s: float
    """CPU time (user + system) its processes had used when the first step was done."""
    cpu_s: float
    """CPU time (user + system) of the process and everything it started: less disturbed than
    wall time by the other work on a shared machine."""


def build_fixture(work: Path, *, hidden: int, layers: int, context: int) -> tuple[Path, Path]:
    """The tiny model and a database of the demo dialogues, all accepted.

    The model's context (`max_position_embeddings`) caps the studio's `max_length`, so a short
    one keeps a step short on a busy CPU: start-up is what this bench is about.
    """
    from tests.tiny_model import build_tiny_llama

    model_dir = work / f"tiny-llama-{hidden}x{layers}-{context}"
    if not (model_dir / "config.json").is_file():
        build_tiny_llama(model_dir, hidden_size=hidden, num_hidden_layers=layers)
        config_path = model_dir / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["max_position_embeddings"] = context
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    db = work / "studio.db"
    if not db.exists():
        rows = [row for row in demo_rows() if isinstance(row, CactusRow)]
        with Store(db) as store:
            add_rows(store, rows, accepted_by="bench")
    return model_dir, db


def export_examples(db: Path, model_dir: Path, work: Path) -> tuple[Path, int]:
    """The runner's own training rows (after fitting) as JSON lines; returns them and max_length."""
    from studio.train.launch import RunnerOptions
    from studio.train.runner import prepare

    prepared = prepare(RunnerOptions(db=db, base_model=str(model_dir), output=work / "unused"))
    path = work / "train.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for example in prepared.dataset.train:
            out.write(json.dumps(example.row()) + "\n")
    assert prepared.config.max_length is not None
    return path, prepared.config.max_length


def _stamp(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def run_studio(
    db: Path, model_dir: Path, out: Path, steps: int, *, root: Path = ROOT, tool: str = "studio"
) -> Timing:
    argv = [
        sys.executable, "-m", "studio", "train", "--db", str(db), "--base-model", str(model_dir),
        "--output", str(out), "--max-steps", str(steps), "--events",
    ]  # fmt: skip
    log = out / "events.jsonl"

    def first_step_pids(parent: int, _stdout: str) -> list[int] | None:
        if not log.is_file():
            return None
        lines = log.read_text(encoding="utf-8").splitlines()
        events = [e for e in map(parse_event, lines[:-1]) if e is not None]  # whole lines only
        if not any(isinstance(e, StepEvent) for e in events):
            return None
        return [parent, *(e.pid for e in events if isinstance(e, StartEvent))]

    run = _watch(argv, root=root, first_step_pids=first_step_pids)
    lines = log.read_text(encoding="utf-8").splitlines()
    events: list[TrainEvent] = [e for e in map(parse_event, lines) if e is not None]
    step_times = [_stamp(e.ts) for e in events if isinstance(e, StepEvent)]
    eval_s = 0.0
    previous: float | None = None
    for event in events:
        if isinstance(event, StepEvent):
            previous = _stamp(event.ts)
        elif (
            isinstance(event, EvalEvent)
            and previous is not None
            # Only the evaluations between the first and last steps slow the steps down.
            and step_times[0] <= previous < step_times[-1]
        ):
            eval_s += _stamp(event.ts) - previous
    first, last = step_times[0], step_times[-1]
    return Timing(
        tool,
        startup_s=first - run.launched,
        per_step_s=(last - first - eval_s) / max(len(step_times) - 1, 1),
        eval_s=eval_s,
        total_s=run.ended - run.launched,
        startup_cpu_s=run.startup_cpu,
        cpu_s=run.cpu,
    )


def run_plain(examples: Path, model_dir: Path, out: Path, steps: int, max_length: int) -> Timing:
    argv = [
        sys.executable, str(ROOT / "bench" / "train_plain_sft.py"), str(model_dir),
        str(examples), str(out), "--max-steps", str(steps), "--max-length", str(max_length),
    ]  # fmt: skip

    def first_step_pids(pid: int, stdout: str) -> list[int] | None:
        return [pid] if CLOCK in stdout else None

    run = _watch(argv, root=ROOT, first_step_pids=first_step_pids)
    stamps = [
        json.loads(line.removeprefix(CLOCK))["t"]
        for line in run.stdout.splitlines()
        if line.startswith(CLOCK)
    ]
    first, last = stamps[0], stamps[-1]
    return Timing(
        "plain",
        startup_s=first - run.launched,
        per_step_s=(last - first) / max(steps - 1, 1),
        eval_s=0.0,
        total_s=run.ended - run.launched,
        startup_cpu_s=run.startup_cpu,
        cpu_s=run.cpu,
    )


@dataclass
class Watched:
    launched: float
    ended: float
    startup_cpu: float
    cpu: float
    stdout: str


def _watch(
    argv: list[str], *, root: Path, first_step_pids: Callable[[int, str], list[int] | None]
) -> Watched:
    """Run `argv`; at its first optimizer step, read the CPU time its processes have used.

    `first_step_pids(pid, stdout so far)` says, once the first step is done, which processes to
    count (for the studio: the command and the runner it started); polled every 20 ms.
    """
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        launched, cpu = time.time(), _children_cpu()
        proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, cwd=root, env=_env(root))
        startup_cpu = float("nan")
        while proc.poll() is None:
            stdout.seek(0)
            pids = first_step_pids(proc.pid, stdout.read().decode(errors="replace"))
            if pids is not None:
                startup_cpu = sum(_process_cpu(pid) for pid in pids)
                break
            time.sleep(0.02)
        proc.wait()
        ended, cpu = time.time(), _children_cpu() - cpu
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(argv)} failed (exit {proc.returncode}):\n{err[-3000:]}")
    return Watched(launched, ended, startup_cpu, cpu, out)


def _process_cpu(pid: int) -> float:
    """User + system seconds of a running process, all its threads (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    """User + system time of the waited-for descendants so far (the runner's included: `studio
    train` waits for it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: Threads per training process (`--threads`).
THREADS = 1


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "STUDIO_DB"}
    # One torch thread each by default: on a shared 2-core box, two threads that spin-wait for
    # each other make a step's time swing 10x with the neighbours' load (measured: 0.13-1.25 s).
    env["OMP_NUM_THREADS"] = str(THREADS)
    env["PYTHONPATH"] = str(root)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def median(timings: list[Timing], field: str) -> float:
    return float(statistics.median(getattr(t, field) for t in timings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=64, help="the tiny Llama's hidden size")
    parser.add_argument("--layers", type=int, default=2, help="the tiny Llama's layers")
    parser.add_argument("--context", type=int, default=512, help="the tiny Llama's context")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS)"
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        metavar="DIR",
        help="also run the studio of an older checkout (`git archive COMMIT | tar -x -C DIR`)",
    )
    parser.add_argument("--work", type=Path, default=None, help="keep the fixture here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    global THREADS
    THREADS = args.threads

    tools = ["studio", "plain", *(["before"] if args.before else [])]
    with tempfile.TemporaryDirectory(prefix="train-startup-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model_dir, db = build_fixture(
            work, hidden=args.hidden, layers=args.layers, context=args.context
        )
        examples, max_length = export_examples(db, model_dir, work)
        results: dict[str, list[Timing]] = {tool: [] for tool in tools}
        for round_no in range(args.rounds):
            runs = work / f"round-{round_no}-{time.time_ns()}"
            # Rotate which goes first, so none always runs on a cooler machine.
            shift = round_no % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                if tool == "plain":
                    timing = run_plain(examples, model_dir, runs / "plain", args.steps, max_length)
                else:
                    root = args.before if tool == "before" else ROOT
                    timing = run_studio(
                        db, model_dir, runs / tool, args.steps, root=root, tool=tool
                    )
                results[tool].append(timing)
                print(f"round {round_no + 1}: {timing}", file=sys.stderr)

    fields = ("startup_s", "startup_cpu_s", "per_step_s", "eval_s", "total_s", "cpu_s")
    summary = {
        "machine": f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "steps": args.steps,
        "threads": args.threads,
        "rounds": args.rounds,
        "max_length": max_length,
        "medians": {
            tool: {f: round(median(ts, f), 3) for f in fields} for tool, ts in results.items()
        },
        "ratios_to_plain": {
            tool: {
                f: round(median(results[tool], f) / median(results["plain"], f), 2)
                for f in fields
                if f != "eval_s"
            }
            for tool in tools
            if tool != "plain"
        },
        "runs": {tool: [asdict(t) for t in ts] for tool, ts in results.items()},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{summary['machine']}, load {summary['load_average']}: {args.steps} steps, "
        f"max_length {max_length}, {args.threads} thread(s), medians of {args.rounds} rounds"
    )
    print("| | start-up | start-up CPU | per step | evaluation | total | total CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for tool in tools:
        m = summary["medians"][tool]
        print(
            f"| {tool} | {m['startup_s']:.2f} s | {m['startup_cpu_s']:.2f} s | "
            f"{m['per_step_s']:.3f} s | {m['eval_s']:.2f} s | {m['total_s']:.2f} s | "
            f"{m['cpu_s']:.2f} s |"
        )
    for tool, r in summary["ratios_to_plain"].items():
        print(
            f"| {tool} / plain | {r['startup_s']:.2f}x | {r['startup_cpu_s']:.2f}x | "
            f"{r['per_step_s']:.2f}x | | {r['total_s']:.2f}x | {r['cpu_s']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
