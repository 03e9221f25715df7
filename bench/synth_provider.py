"""Benchmark: synthesis under a real provider limit, side by side with the peers a user would
write instead (a plain `openai` SDK `asyncio.gather`, and the seed notebook's sequential loop).

1. provider: a loopback server enforcing 1,000 RPM / 250K TPM as token buckets holding 3 s,
   charging each request its prompt plus the `max_tokens` it asks for (as OpenAI documents),
   2 s latency, 60 seeds (240 stages). `studio synth` at defaults (it learns the limits from the
   `x-ratelimit-*` headers). Goals: all 240 stages, <= 2 % of requests answered 429, wall time
   <= 1.25x the floor the limit sets (tokens actually needed / TPM).
2. advertised: a server that announces `x-ratelimit-limit-tokens` but enforces nothing, 200
   seeds: the studio paces at the announced rate with no stall; the naive gather beside it.
3. cpu: CPU seconds per call of `studio synth` (in this process, the server in another) against
   a plain `openai` SDK gather of the same requests (`chat.completions.create`). Goal: <= 1.2x.
   Also against the same gather through the SDK path the studio takes (`client.post`, the JSON
   read with orjson): that ratio is the studio's own overhead (engine, limiter, store).

Time is scaled so the whole script takes a few minutes on a busy 2-core box: with `--scale K`
latencies and bucket sizes are divided by K and per-minute limits multiplied by K (the same
ratio of burst to rate; the studio's own burst, `burst_s`, is divided by K too, through a config
file). Every ratio is unchanged by the scaling; absolute times are K times shorter.

    python bench/synth_provider.py [--scale 4] [--part provider|advertised|cpu|all]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402
from synth import make_db, sequential_loop, studio_synth  # noqa: E402  (bench/ is on sys.path)

from studio.model import BackendName  # noqa: E402
from studio.store import Store  # noqa: E402
from tests.chat_server import ChatServer, Reply, cbt_reply, detect_stage  # noqa: E402

STAGES = ("intake_form", "cbt_technique", "cbt_plan", "dialogue_script")


def config_file(folder: Path, scale: float) -> Path:
    path = folder / "studio.toml"
    path.write_text(f"[synth]\nburst_s = {1.0 / scale}\n")
    return path


def chains(bodies: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The studio's requests regrouped into one 4-call chain per record (the peers replay them)."""
    by_stage: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[str] = set()
    for body in bodies:
        key = repr(body["messages"])
        if key not in seen:
            seen.add(key)
            by_stage[detect_stage(body)].append(body)
    count = min(len(by_stage[s]) for s in STAGES)
    return [[by_stage[s][i] for s in STAGES] for i in range(count)]


async def naive_gather(server: ChatServer, record_chains: list[list[dict[str, Any]]]) -> str:
    """What a user writes instead: every record at once, the SDK's default retries, a hand-picked
    `max_tokens`. Returns the peer's figures."""
    client = openai.AsyncOpenAI(api_key="x", base_url=server.openai_base_url)
    before = server.stats.requests, server.stats.rate_limited

    async def one(chain: list[dict[str, Any]]) -> bool:
        for body in chain:
            try:
                await client.chat.completions.create(
                    model="bench-model", messages=body["messages"], max_tokens=1024
                )
            except openai.APIError:
                return False
        return True

    started = time.perf_counter()
    done = await asyncio.gather(*(one(chain) for chain in record_chains))
    elapsed = time.perf_counter() - started
    await client.close()
    requests = server.stats.requests - before[0]
    limited = server.stats.rate_limited - before[1]
    return (
        f"naive gather {elapsed:.1f} s, {sum(done)}/{len(done)} records complete, "
        f"{limited}/{requests} answered 429 ({limited / max(requests, 1):.1%})"
    )


def bench_provider(scale: float, seeds: int) -> None:
    rpm, tpm = int(1000 * scale), int(250_000 * scale)
    with (
        tempfile.TemporaryDirectory() as tmp,
        ChatServer(
            latency=2.0 / scale, rpm=rpm, tpm=tpm, bucket_s=3.0 / scale, charge_max_tokens=True
        ) as server,
    ):
        db = Path(tmp) / "bench.db"
        make_db(db, seeds)
        config = config_file(Path(tmp), scale)
        started = time.perf_counter()
        subprocess.run(
            studio_synth(db, server, "--config", str(config)), check=True, capture_output=True
        )
        cli_s = time.perf_counter() - started
        span = server.stats.last_done_at - server.stats.first_at
        stats = server.stats
        needed = stats.tokens - stats.tokens_cut
        floor = needed / tpm * 60
        charged = sum(n for _, n in server.admitted)
        with Store(db) as store:
            generated = store.stats()["stages"].get("generated", 0)
        studio = (
            f"studio synth {span:.1f} s first request to last answer ({cli_s:.1f} s with CLI "
            f"start-up), {generated}/{seeds * 4} stages generated, {stats.rate_limited}/"
            f"{stats.requests} answered 429 ({stats.rate_limited / stats.requests:.1%}), "
            f"{stats.cut} cut and retried; floor {floor:.1f} s ({needed:,} tokens needed / TPM) "
            f"-> {span / floor:.2f}x the floor (goal <= 1.25x); charged {charged:,} tokens "
            f"({charged / needed:.2f}x needed)"
        )
        record_chains = chains(server.bodies)
        peer = asyncio.run(naive_gather(server, record_chains))
        calls = [body for chain in record_chains for body in chain]
        sequential = sequential_loop(server, calls)
    print(
        f"provider limit {rpm / scale:,.0f} RPM / {tpm / scale:,.0f} TPM (bucket 3 s), 2 s latency, "
        f"{seeds} seeds, time scaled 1/{scale:g}:\n  {studio}\n  {peer}\n"
        f"  sequential loop {sequential:.1f} s for {len(calls)} calls "
        f"-> studio {sequential / span:.1f}x faster"
    )


def bench_advertised(scale: float, seeds: int, latency: float) -> None:
    """The server announces a token limit but enforces nothing: no burst-then-stall."""
    tpm = int(1_000_000 * scale)

    def announce(body: dict[str, Any]) -> Reply:
        reply = cbt_reply(body)
        reply.headers["x-ratelimit-limit-tokens"] = str(tpm)
        return reply

    with (
        tempfile.TemporaryDirectory() as tmp,
        ChatServer(announce, latency=latency / scale, charge_max_tokens=True) as server,
    ):
        db = Path(tmp) / "bench.db"
        make_db(db, seeds)
        config = config_file(Path(tmp), scale)
        arrivals: list[float] = []
        original = server.respond

        def record(body: dict[str, Any]) -> Reply:
            arrivals.append(time.monotonic())
            return original(body)

        server.respond = record
        started = time.perf_counter()
        subprocess.run(
            studio_synth(db, server, "--config", str(config)), check=True, capture_output=True
        )
        cli_s = time.perf_counter() - started
        span = arrivals[-1] - arrivals[0]
        charged = sum(
            len(str(m.get("content", ""))) // 4 for b in server.bodies for m in b["messages"]
        ) + sum(int(b.get("max_tokens") or 0) for b in server.bodies)
        gap = max(b - a for a, b in itertools.pairwise(arrivals))
        share = charged / (tpm * span / 60)
        server.respond = original
        peer = asyncio.run(naive_gather(server, chains(server.bodies)))
    print(
        f"advertised {tpm / scale:,.0f} TPM, not enforced, {seeds} seeds, {latency} s latency, time "
        f"scaled 1/{scale:g}:\n  studio synth {cli_s:.1f} s with CLI start-up; requests over "
        f"{span:.1f} s at {share:.0%} of the announced TPM (charged {charged:,} tokens); longest "
        f"gap between requests {gap:.2f} s\n  {peer}"
    )


SERVE = """
import json, sys
sys.path.insert(0, {root!r})
from tests.chat_server import ChatServer
with ChatServer() as server:
    print(server.port, flush=True)
    for line in sys.stdin:  # a path: write the requests received so far there
        with open(line.strip(), "w") as fh:
            json.dump(server.bodies, fh)
        print("ok", flush=True)
"""


def bench_cpu(seeds: int, *, profile: bool = False, rounds: int = 1) -> None:
    """CPU per call in this process; the server runs in another so its work is not counted.
    Each side first runs once on a few records (warm-up): the one-time costs (lazy imports of the
    SDK's resources and of the studio's modules, pydantic schemas, the TLS context) are not per
    call, and the side that ran second would otherwise get them free. `rounds`: repeat the pair
    (studio, then peer) and print each. `profile`: also print where the studio's CPU goes
    (cProfile, top functions by own time)."""
    import cProfile
    import json
    import pstats

    from studio.synth import Synthesizer, SynthSettings, make_backend

    server = subprocess.Popen(
        [sys.executable, "-c", SERVE.format(root=str(ROOT))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    base_url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
    # Known limits far above the load: the limiter's checks run on every call, never wait.
    settings = SynthSettings(
        backend=BackendName.OPENAI,
        model="bench-model",
        base_url=base_url,
        rpm=10**7,
        tpm=10**10,
    ).validate()

    async def studio(db: Path) -> int:
        backend = make_backend(settings)
        with Store(db) as store:
            synthesizer = Synthesizer(store, backend, settings)
            await synthesizer.run()
            await backend.aclose()
            return synthesizer.summary.calls

    async def gather(bodies: list[dict[str, Any]]) -> None:
        client = openai.AsyncOpenAI(api_key="x", base_url=base_url, max_retries=0)
        gate = asyncio.Semaphore(settings.concurrency)

        async def one(body: dict[str, Any]) -> None:
            async with gate:
                await client.chat.completions.create(**body)

        await asyncio.gather(*(one(b) for b in bodies))
        await client.close()

    async def post_gather(bodies: list[dict[str, Any]]) -> None:
        """The same gather through the SDK path the studio takes (`client.post`, JSON read with
        orjson): the studio's own overhead, engine and store, is the difference to this."""
        import orjson

        from studio.synth.backends import sdk_response_type

        client = openai.AsyncOpenAI(api_key="x", base_url=base_url, max_retries=0)
        gate = asyncio.Semaphore(settings.concurrency)
        cast_to = sdk_response_type(openai)

        async def one(body: dict[str, Any]) -> None:
            async with gate:
                response: Any = await client.post("/chat/completions", cast_to=cast_to, body=body)
                assert isinstance(
                    orjson.loads(response.content)["choices"][0]["message"]["content"], str
                )

        await asyncio.gather(*(one(b) for b in bodies))
        await client.close()

    def received(tmp: str) -> list[dict[str, Any]]:
        dump = Path(tmp) / "bodies.json"
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(f"{dump}\n")
        server.stdin.flush()
        server.stdout.readline()
        return list(json.loads(dump.read_text()))

    try:
        with tempfile.TemporaryDirectory() as tmp:
            warm = Path(tmp) / "warm.db"
            make_db(warm, 4)
            asyncio.run(studio(warm))
            asyncio.run(gather(received(tmp)[:16]))
            asyncio.run(post_gather(received(tmp)[:16]))
            for round_ in range(rounds):
                db = Path(tmp) / f"bench{round_}.db"
                make_db(db, seeds)
                profiler = cProfile.Profile() if profile else None
                cpu = time.process_time()
                if profiler is not None:
                    profiler.enable()
                calls = asyncio.run(studio(db))
                if profiler is not None:
                    profiler.disable()
                ours = (time.process_time() - cpu) / calls
                bodies = received(tmp)[-calls:]  # the peer replays the studio's own requests
                cpu = time.process_time()
                asyncio.run(gather(bodies))
                theirs = (time.process_time() - cpu) / len(bodies)
                cpu = time.process_time()
                asyncio.run(post_gather(bodies))
                posted = (time.process_time() - cpu) / len(bodies)
                print(
                    f"cpu per call, {seeds} seeds ({calls} calls), no latency, server in another "
                    f"process, after a warm-up of each: studio synth {ours * 1000:.2f} ms vs plain "
                    f"openai SDK gather of the same requests {theirs * 1000:.2f} ms -> "
                    f"{ours / theirs:.2f}x (goal <= 1.2x); vs the same gather through the SDK's "
                    f"post, as the studio sends {posted * 1000:.2f} ms -> {ours / posted:.2f}x"
                    + (" (profiled: slower than without)" if profiler is not None else ""),
                    flush=True,
                )
                if profiler is not None:
                    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
                    pstats.Stats(profiler).sort_stats("cumtime").print_stats("studio", 40)
    finally:
        server.stdin.close()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--part", choices=["provider", "advertised", "cpu", "all"], default="all")
    parser.add_argument(
        "--profile", action="store_true", help="cpu part: print where the studio's CPU goes"
    )
    parser.add_argument("--rounds", type=int, default=1, help="cpu part: repeat the pair")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(f"{time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores")
    if args.part in ("provider", "all"):
        bench_provider(args.scale, 60)
    if args.part in ("advertised", "all"):
        bench_advertised(args.scale, 200, 0.3)
    if args.part in ("cpu", "all"):
        bench_cpu(150, profile=args.profile, rounds=args.rounds)


if __name__ == "__main__":
    main()
