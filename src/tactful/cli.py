"""The ``tactful`` command: worker, produce, generate, replay, diff, explain, send (SPEC §6).

Bad input gives a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO, NoReturn

from tactful import __version__
from tactful.core.errors import PolicyError

if TYPE_CHECKING:
    from tactful.core.links import LinkSigner

EXIT_USAGE = 2


class CliError(Exception):
    """A user error: one line on stderr, exit 2."""


def _timestamp(value: str) -> float:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp: {value!r}") from None
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError(f"timestamp needs an offset (e.g. Z): {value!r}")
    return dt.timestamp()


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value!r}")
    return n


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``tactful replay: ...``), exit 2; --help stays full."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tactful",
        description="Decides when a storefront may contact a shopper, on which channel, "
        "and when it must not.",
    )
    parser.add_argument("--version", action="version", version=f"tactful {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    worker = sub.add_parser("worker", help="run the Faust stream worker")
    worker.add_argument("--clock", choices=("wall", "stream"), default=None,
                        help="what moves timers: the wall clock (default) or event time")

    produce = sub.add_parser("produce", help="send a JSON-lines file to the input topics")
    produce.add_argument("events", metavar="EVENTS.jsonl")
    produce.add_argument("--until", type=_timestamp, metavar="TS",
                         help="then move stream time to TS on every partition")

    generate = sub.add_parser("generate", help="write a synthetic storefront workload")
    generate.add_argument("--customers", type=_positive, required=True, metavar="N")
    generate.add_argument("--events", type=_positive, required=True, metavar="M")
    generate.add_argument("--seed", type=int, default=0, metavar="S")
    generate.add_argument("--out", metavar="FILE", help="default: stdout")

    replay = sub.add_parser("replay", help="run the engine over a JSON-lines file, no Kafka")
    replay.add_argument("events", metavar="EVENTS.jsonl", help="input file, '-' for stdin")
    replay.add_argument("--policy", metavar="FILE", help="policy TOML (default: packaged)")
    replay.add_argument("--out", metavar="FILE", help="intents and cancellations (default: stdout)")
    replay.add_argument("--decisions", metavar="FILE", help="decisions (default: stdout)")
    replay.add_argument("--deadletter", metavar="FILE", help="dead-letter records of bad lines")
    replay.add_argument("--until", type=_timestamp, metavar="TS",
                        help="advance the clock to TS at the end (default: last event + 7 days)")
    replay.add_argument("--now", type=_timestamp, metavar="TS",
                        help="processing time that bounds future timestamps (default: now)")
    replay.add_argument("--erasure-key", metavar="SECRET",
                        help="secret of the erasure marks (default: TACTFUL_ERASURE_KEY, "
                        "else the local key)")
    replay.add_argument("--public-url", metavar="URL",
                        help="sign unsubscribe and preference links under URL, as the worker "
                        "does (default: TACTFUL_PUBLIC_URL)")
    replay.add_argument("--link-secret", metavar="SECRET",
                        help="secret of the links (default: TACTFUL_LINK_SECRET; "
                        "TACTFUL_LINK_SECRET_PREVIOUS is read too)")

    diff = sub.add_parser(
        "diff", help="the same events through two policies: what changes",
        description="Run both policies over one read of the events, as replay would, and "
        "print the decisions of each by kind, channel, outcome and reason, with the change "
        "(B - A), then how many intents and cancellations each emits and how many only one "
        "does. Intents are compared by content: every field but policy_version (intent_id "
        "does not depend on the policy, so an intent whose content changes, e.g. a later "
        "send_after, is listed on both sides under one intent_id).")
    diff.add_argument("events", metavar="EVENTS.jsonl", help="input file, '-' for stdin")
    diff.add_argument("--policy", metavar="A.toml", required=True, help="policy A: the baseline")
    diff.add_argument("--against", metavar="B.toml", required=True,
                      help="policy B: the change")
    diff.add_argument("--out", metavar="FILE", help="the intents and cancellations only one "
                      'policy emits, as JSON lines with "only": "A" or "B"')
    diff.add_argument("--until", type=_timestamp, metavar="TS",
                      help="advance the clock to TS at the end (default: last event + 7 days)")

    explain = sub.add_parser(
        "explain", help="a customer's timeline: inputs, decisions and why, what is pending",
        description="Ask a running worker (--url; the bearer token from TACTFUL_ADMIN_TOKEN) "
        "or replay a file of events (--events).")
    explain.add_argument("customer_id", metavar="CUSTOMER_ID")
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", metavar="URL", help="a worker's web server, e.g. "
                        "http://127.0.0.1:6066 (any worker of the group answers)")
    source.add_argument("--events", metavar="FILE", help="replay these events (JSON lines)")
    explain.add_argument("--policy", metavar="FILE", help="with --events: policy TOML")
    explain.add_argument("--until", type=_timestamp, metavar="TS",
                         help="with --events: the clock at the end (default: the last event)")
    explain.add_argument("--json", action="store_true", help="print the JSON document")

    sub.add_parser(
        "send", help="the reference sender: intents to email over SMTP, once, on time",
        description="Read tactful.intents and deliver each intent inside its window, at "
        "most once, unless cancelled first; write delivered or bounced feedback. Settings: "
        "TACTFUL_SMTP_* and TACTFUL_SENDER_* (README, Reference sender).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "replay":
            return _replay(args)
        if args.command == "generate":
            return _generate(args)
        if args.command == "worker":
            return _worker(args)
        if args.command == "produce":
            return _produce(args)
        if args.command == "explain":
            return _explain(args)
        if args.command == "diff":
            return _diff(args)
        if args.command == "send":
            from tactful.service.sender import main as send

            return send()
        raise CliError(f"'tactful {args.command}' is not implemented yet")
    except PolicyError as exc:
        print(f"tactful: policy error: {exc}", file=sys.stderr)
    except CliError as exc:
        print(f"tactful: {exc}", file=sys.stderr)
    except BrokenPipeError:
        return 0
    return EXIT_USAGE


def _open_out(stack: ExitStack, path: str | None) -> BinaryIO:
    if path is None:
        return sys.stdout.buffer
    try:
        return stack.enter_context(open(path, "wb"))
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None


def _replay(args: argparse.Namespace) -> int:
    from tactful.core.engine import Engine
    from tactful.core.messages import LOCAL_ERASURE_SECRET, ErasureKeys
    from tactful.core.policy import load_policy
    from tactful.service.gc_tuning import relax_gc
    from tactful.service.replay import progress_for, replay_lines

    policy = load_policy(args.policy)
    secret = args.erasure_key or os.environ.get("TACTFUL_ERASURE_KEY") or ""
    engine = Engine(policy, _replay_links(args),
                    erasure=ErasureKeys(secret.encode() or LOCAL_ERASURE_SECRET))
    inputs = {args.events} if args.events != "-" else set()
    for path in (args.out, args.decisions, args.deadletter):
        if path is not None and inputs and _same_file(path, args.events):
            raise CliError(f"{path} is the input file: writing it would truncate the events")
    relax_gc()
    with ExitStack() as stack:
        if args.events == "-":
            source: BinaryIO = sys.stdin.buffer
            lines = iter(source)
            name = "stdin"
        else:
            try:
                source = stack.enter_context(open(args.events, "rb"))
            except OSError as exc:
                raise CliError(f"cannot read {args.events}: {exc.strerror}") from None
            lines = iter(progress_for(args.events).lines(source))
            name = args.events
        intents_out = _open_out(stack, args.out)
        decisions_out = _open_out(stack, args.decisions)
        deadletter_out = _open_out(stack, args.deadletter) if args.deadletter else None

        def report(number: int, reason: str) -> None:
            print(f"tactful: {name}:{number}: {reason}", file=sys.stderr)

        replay_lines(
            lines, engine, intents_out, decisions_out, until=args.until,
            deadletter_out=deadletter_out, source=f"file:{name}", on_reject=report,
            now=time.time() if args.now is None else args.now,
        )
        intents_out.flush()
        decisions_out.flush()
    return 0


def _replay_links(args: argparse.Namespace) -> LinkSigner | None:
    """Links signed as the worker signs them, from the flags or the same variables."""
    from tactful.core.links import link_signer  # not service.bootstrap: no Faust to import
    from tactful.service.settings import SettingsError, check_links

    public_url = args.public_url or os.environ.get("TACTFUL_PUBLIC_URL") or None
    secret = args.link_secret or os.environ.get("TACTFUL_LINK_SECRET") or None
    previous = os.environ.get("TACTFUL_LINK_SECRET_PREVIOUS") or None
    if public_url and not secret:
        raise CliError("--public-url needs --link-secret (or TACTFUL_LINK_SECRET)")
    try:
        check_links(public_url, secret, previous)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    return link_signer(public_url, secret, previous)


def _diff(args: argparse.Namespace) -> int:
    from tactful.core.engine import Engine
    from tactful.core.messages import LOCAL_ERASURE_SECRET, ErasureKeys
    from tactful.core.policy import load_policy
    from tactful.service.diff import (
        diff_lines,
        one_sided,
        only_line,
        render_summary,
        render_table,
        table_rows,
    )
    from tactful.service.gc_tuning import relax_gc
    from tactful.service.replay import progress_for

    policy_a, policy_b = load_policy(args.policy), load_policy(args.against)
    secret = os.environ.get("TACTFUL_ERASURE_KEY") or ""
    erasure = ErasureKeys(secret.encode() or LOCAL_ERASURE_SECRET)
    if args.out is not None:
        if args.events != "-" and _same_file(args.out, args.events):
            raise CliError(f"{args.out} is the input file: writing it would truncate the events")
        for path in (args.policy, args.against):
            if _same_file(args.out, path):
                raise CliError(f"{args.out} is a policy file: writing it would truncate it")
    relax_gc()
    with ExitStack() as stack:
        if args.events == "-":
            lines = iter(sys.stdin.buffer)
            name = "stdin"
        else:
            try:
                source = stack.enter_context(open(args.events, "rb"))
            except OSError as exc:
                raise CliError(f"cannot read {args.events}: {exc.strerror}") from None
            lines = iter(progress_for(args.events, label="diff").lines(source))
            name = args.events
        out = _open_out(stack, args.out) if args.out is not None else None

        def report(number: int, reason: str) -> None:
            print(f"tactful: {name}:{number}: {reason}", file=sys.stderr)

        result = diff_lines(lines, Engine(policy_a, erasure=erasure),
                            Engine(policy_b, erasure=erasure), until=args.until,
                            on_reject=report, now=time.time())
        alone = one_sided(result.a.records, result.b.records)
        rows = table_rows(result.a.decisions, result.b.decisions)
        sys.stdout.write(render_table(rows, (result.a.policy_version, args.policy),
                                      (result.b.policy_version, args.against)))
        sys.stdout.write("\n" + render_summary(result.a, result.b, alone))
        sys.stdout.flush()
        if out is not None:
            out.write(b"".join(only_line(r, "A") for r in alone.a))
            out.write(b"".join(only_line(r, "B") for r in alone.b))
            out.flush()
    return 0


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare the paths
        return os.path.abspath(a) == os.path.abspath(b)


def _produce(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from tactful.adapters.producer import ProduceError, produce_file
    from tactful.core.errors import KafkaRefused, TopicMismatch, TransientError
    from tactful.service.bootstrap import configure
    from tactful.service.settings import SettingsError

    try:
        parts = configure()
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    if args.until is not None and args.until > time.time() + parts.policy.max_future_skew:
        raise CliError("--until lies in the future: workers dead-letter clock markers "
                       "further ahead of their wall clock than max_future_skew")
    # aiokafka logs every failed connection attempt; the outcome is reported in one line.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        asyncio.run(produce_file(args.events, parts.kafka, parts.topics, args.until))
    except (ProduceError, TopicMismatch, KafkaRefused) as exc:
        raise CliError(str(exc)) from None
    except TransientError as exc:
        print(f"tactful: {exc}", file=sys.stderr)
        return 1
    return 0


def _worker(args: argparse.Namespace) -> int:
    from tactful.core.errors import KafkaRefused, TopicMismatch, TransientError
    from tactful.service.bootstrap import configure, run_worker
    from tactful.service.gc_tuning import relax_gc
    from tactful.service.settings import SettingsError

    try:
        # Refused here, in one line, rather than inside Faust.
        parts = configure(worker=True, clock=args.clock)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    relax_gc()
    _quiet_kafka_client()
    try:
        return run_worker(parts)
    except (TopicMismatch, KafkaRefused) as exc:
        raise CliError(str(exc)) from None
    except TransientError as exc:
        print(f"tactful: {exc}", file=sys.stderr)
        return 1


def _quiet_kafka_client() -> None:
    """aiokafka logs every failed connection attempt in raw lines; tactful logs one line
    per retry, then the outcome."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="tactful: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _explain(args: argparse.Namespace) -> int:
    import msgspec

    from tactful.core.explain import Timeline, render

    if args.url is not None:
        if args.policy or args.until is not None:
            raise CliError("--policy and --until go with --events; a worker uses its own")
        from tactful.service.explain_client import ExplainError, fetch_timeline

        try:
            raw = fetch_timeline(args.url, args.customer_id,
                                 os.environ.get("TACTFUL_ADMIN_TOKEN") or None)
        except ExplainError as exc:
            raise CliError(str(exc)) from None
    else:
        raw = _explain_replay(args)
    if args.json:
        sys.stdout.buffer.write(raw + b"\n")
        return 0
    try:
        found = msgspec.json.decode(raw, type=Timeline)
    except msgspec.DecodeError:
        raise CliError("the worker's answer is not a timeline") from None
    sys.stdout.write(render(found))
    return 0


def _explain_replay(args: argparse.Namespace) -> bytes:
    import io

    import msgspec

    from tactful.core.engine import Engine
    from tactful.core.explain import timeline
    from tactful.core.messages import LOCAL_ERASURE_SECRET, ErasureKeys
    from tactful.core.pipeline import Pipeline
    from tactful.core.policy import load_policy
    from tactful.service.replay import replay_lines

    policy = load_policy(args.policy)
    secret = os.environ.get("TACTFUL_ERASURE_KEY") or ""
    engine = Engine(policy, erasure=ErasureKeys(secret.encode() or LOCAL_ERASURE_SECRET))
    pipeline = Pipeline(engine)
    with ExitStack() as stack:
        try:
            source = stack.enter_context(open(args.events, "rb"))
        except OSError as exc:
            raise CliError(f"cannot read {args.events}: {exc.strerror}") from None
        sink = io.BytesIO()
        stats = replay_lines(source, engine, sink, sink, until=args.until, pipeline=pipeline,
                             now=time.time(), tail=0.0)
    if stats.rejected:
        print(f"tactful: {args.events}: {stats.rejected} line(s) rejected, left out",
              file=sys.stderr)
    now = pipeline.clock if pipeline.clock != float("-inf") else time.time()
    st = pipeline.customers.get(args.customer_id)
    return msgspec.json.encode(timeline(engine, args.customer_id, st, now))


def _generate(args: argparse.Namespace) -> int:
    from tactful.workload import dumps_line, generate

    with ExitStack() as stack:
        out = _open_out(stack, args.out)
        buffer: list[bytes] = []
        for event in generate(args.customers, args.events, args.seed):
            buffer.append(dumps_line(event))
            if len(buffer) >= 4096:
                out.write(b"".join(buffer))
                buffer.clear()
        out.write(b"".join(buffer))
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
