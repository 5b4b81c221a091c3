"""The `tactful` command as a user runs it: exit codes, one-line errors, files written."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
STORY = ROOT / "tests" / "scenarios" / "sms_3am" / "events.jsonl"


def tactful(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tactful.cli", *args], check=False,
                          capture_output=True,
                          cwd=cwd, timeout=120)


def test_help_lists_every_subcommand() -> None:
    result = tactful("--help")
    assert result.returncode == 0
    for name in ("worker", "produce", "generate", "replay", "diff", "explain"):
        assert name.encode() in result.stdout


def test_replay_is_byte_identical_across_runs(tmp_path: Path) -> None:
    outputs = []
    for run in range(2):
        out, dec = tmp_path / f"i{run}.jsonl", tmp_path / f"d{run}.jsonl"
        result = tactful("replay", str(STORY), "--out", str(out), "--decisions", str(dec))
        assert result.returncode == 0, result.stderr
        outputs.append((out.read_bytes(), dec.read_bytes()))
    assert outputs[0] == outputs[1]
    assert outputs[0][0].count(b"\n") == 3  # two deferred sms, one cancelled


def test_bad_lines_are_reported_dead_lettered_and_skipped(tmp_path: Path) -> None:
    lines = STORY.read_bytes().splitlines()
    bad = b'{"event_id":"x","type":"teleport","ts":"2026-05-20T00:00:00Z"}'
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\n".join([lines[0], b"{not json", *lines[1:3], bad, *lines[3:]]) + b"\n")
    dead = tmp_path / "dead.jsonl"
    good_out, mixed_out = tmp_path / "good.jsonl", tmp_path / "mixed-out.jsonl"
    tactful("replay", str(STORY), "--out", str(good_out), "--decisions", str(tmp_path / "g"))
    result = tactful("replay", str(mixed), "--out", str(mixed_out), "--decisions",
                     str(tmp_path / "m"), "--deadletter", str(dead))
    assert result.returncode == 0
    errors = result.stderr.decode().strip().splitlines()
    assert len(errors) == 2
    assert ":2:" in errors[0] and ":5:" in errors[1] and "unknown type" in errors[1]
    records = [orjson.loads(x) for x in dead.read_bytes().splitlines()]
    assert [r["offset"] for r in records] == [2, 5]
    assert base64.b64decode(records[1]["original"]) == bad
    assert all(r["reason"] and r["topic"] for r in records)
    assert mixed_out.read_bytes() == good_out.read_bytes()  # bad lines change nothing


def test_user_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('version = "x"\nbogus = 1\n')
    cases = [
        ("replay", str(STORY), "--until", "yesterday"),
        ("replay", str(tmp_path / "missing.jsonl")),
        ("replay", str(STORY), "--policy", str(policy)),
        ("generate", "--customers", "-1", "--events", "3"),
        ("explain", "cust-1"),  # neither --url nor --events
    ]
    for args in cases:
        result = tactful(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.decode().strip().splitlines()) == 1, (args, result.stderr)
    assert b"bogus" in tactful("replay", str(STORY), "--policy", str(policy)).stderr


def test_generate_is_deterministic(tmp_path: Path) -> None:
    a = tactful("generate", "--customers", "20", "--events", "500", "--seed", "3").stdout
    b = tactful("generate", "--customers", "20", "--events", "500", "--seed", "3").stdout
    assert a == b and a.count(b"\n") == 500


@pytest.mark.parametrize(("customers", "seed"), [(1000, 1), (1000, 7), (20000, 9)])
def test_replay_of_large_generated_workloads_runs_through(tmp_path: Path, customers: int,
                                                          seed: int) -> None:
    # Long runs reach state the hand-written stories and property examples do not
    # (logins days after anonymous browsing, housekeeping between): replay must not
    # fail on any, and every intent has the decision that emitted or deferred it.
    events, out, dec = tmp_path / "w.jsonl", tmp_path / "i.jsonl", tmp_path / "d.jsonl"
    made = tactful("generate", "--customers", str(customers), "--events", "60000",
                   "--seed", str(seed), "--out", str(events))
    assert made.returncode == 0, made.stderr
    result = tactful("replay", str(events), "--out", str(out), "--decisions", str(dec))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    intents = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    emitted = {d.get("intent_id") for d in map(orjson.loads, dec.read_bytes().splitlines())
               if d["outcome"] in ("emitted", "deferred")}
    ids = {i["intent_id"] for i in intents if "kind" in i}
    assert ids and ids <= emitted


def test_replay_refuses_to_write_over_its_input(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(STORY.read_bytes())
    for flag in ("--out", "--decisions", "--deadletter"):
        result = tactful("replay", str(events), flag, str(events))
        assert result.returncode == 2
        assert result.stderr.count(b"\n") == 1 and b"is the input file" in result.stderr
        assert events.read_bytes() == STORY.read_bytes()


def test_replay_survives_hostile_lines_and_dead_letters_each(tmp_path: Path) -> None:
    good = STORY.read_bytes()
    hostile = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"event_id": "x", "type": "stock_level", "ts": "0001-01-01T00:00:00Z", '
        b'"sku": "k", "available": 1}',
        b'{"event_id": "y", "type": "stock_level", "ts": "2026-05-01T00:00:00Z", '
        b'"sku": "k", "available": 1' + b"0" * 400 + b"}",
        b'{"event_id": "z", "type": "stock_level", "ts": "2030-01-01T00:00:00Z", '
        b'"sku": "k", "available": 1}',
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(hostile) + b"\n" + good)
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    result = tactful("replay", str(events), "--out", str(out), "--decisions", "/dev/null",
                     "--deadletter", str(dead), "--now", "2026-12-02T00:00:00Z")
    assert result.returncode == 0, result.stderr
    letters = [orjson.loads(x) for x in dead.read_bytes().splitlines()]
    assert [d["offset"] for d in letters] == [1, 2, 3, 4]
    assert letters[3]["reason"].startswith("future_timestamp")
    alone = tmp_path / "alone.jsonl"
    assert tactful("replay", str(STORY), "--out", str(alone), "--decisions", "/dev/null"
                   ).returncode == 0
    assert out.read_bytes() == alone.read_bytes()


def test_a_worker_of_a_real_cluster_needs_an_erasure_key() -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TACTFUL_")}
    env["TACTFUL_BOOTSTRAP"] = "kafka-1.example:9092"
    result = subprocess.run([sys.executable, "-m", "tactful.cli", "worker"], env=env,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.count(b"\n") == 1 and b"TACTFUL_ERASURE_KEY" in result.stderr


def _run(args: list[str], cwd: Path | None = None,
         **env_vars: str) -> subprocess.CompletedProcess[bytes]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TACTFUL_")}
    env.update(env_vars)
    return subprocess.run([sys.executable, "-m", "tactful.cli", *args], env=env, cwd=cwd,
                          capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize("command", [["worker"], ["produce", str(STORY)]])
@pytest.mark.parametrize(("variable", "value"), [
    ("TACTFUL_BOOTSTRAP", "not a host"),
    ("TACTFUL_BOOTSTRAP", "127.0.0.1:99999"),
    ("TACTFUL_BOOTSTRAP", "127.0.0.1:9092,"),
    ("TACTFUL_SSL_CAFILE", "/nonexistent/ca.pem"),
    ("TACTFUL_SSL_CERTFILE", "/nonexistent/cert.pem"),
])
def test_bad_connection_settings_are_one_line_naming_the_variable(
        command: list[str], variable: str, value: str) -> None:
    result = _run(command, **{variable: value})
    assert result.returncode == 2, result.stderr
    assert result.stderr.count(b"\n") == 1 and variable.encode() in result.stderr


@pytest.mark.parametrize("command", [["worker"], ["produce", str(STORY)]])
def test_an_unreachable_broker_is_retried_then_reported_in_one_line(command: list[str]) -> None:
    result = _run(command, TACTFUL_BOOTSTRAP="127.0.0.1:1", TACTFUL_CONNECT_TIMEOUT="2")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.decode().splitlines()
    assert "Traceback" not in result.stderr.decode()
    assert "TACTFUL_BOOTSTRAP" in lines[-1] and "did not answer within 2 s" in lines[-1]
    assert 1 < len(lines) < 15 and all("retrying" in line for line in lines[:-1]), lines


def test_produce_refuses_hostile_lines_before_connecting(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n"
                       + b"[" + b"{}," * 10 + b"[" * 5000 + b"]" * 5000 + b"]\n")
    result = _run(["produce", str(events)], TACTFUL_BOOTSTRAP="127.0.0.1:1")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().splitlines()
    assert lines == [f"tactful: {events}:1: nested deeper than 8 levels",
                     f"tactful: {events}:2: nested deeper than 8 levels",
                     f"tactful: {events}: 2 bad lines, nothing was sent"]


def test_produce_refuses_an_until_in_the_future() -> None:
    result = _run(["produce", str(STORY), "--until", "2099-01-01T00:00:00Z"],
                  TACTFUL_BOOTSTRAP="127.0.0.1:1")
    assert result.returncode == 2
    assert result.stderr.count(b"\n") == 1 and b"--until lies in the future" in result.stderr


LADDER = ROOT / "tests" / "scenarios" / "call_after_email_ladder" / "events.jsonl"


def test_explain_from_a_file_prints_the_customer_timeline() -> None:
    # The ladder story (story.md): Ben's cart got its email 4 h after he left it, then the
    # call 48 h after the cart; both consents and his time zone are known.
    result = tactful("explain", "cust-ben", "--events", str(LADDER),
                     "--until", "2026-06-01T00:00:00Z")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "customer cust-ben, as of 2026-06-01T00:00:00Z"
    assert "  email  granted 2026-05-01T12:00:00Z (account_signup)" in lines
    assert "  phone  granted 2026-05-01T12:05:00Z (sales_callback_optin)" in lines
    assert "preferences: time zone America/Chicago" in lines
    decided = [line for line in lines if "  decision  " in line]
    assert [d.split("  decision  ")[1].split(" -> ")[0] for d in decided] == [
        "abandoned_cart on email: emitted", "assist_offer on phone: emitted"]
    assert decided[0].startswith("  2026-05-11T22:00:00Z")
    assert decided[1].startswith("  2026-05-13T18:00:00Z")
    doc = orjson.loads(tactful("explain", "cust-ben", "--events", str(LADDER), "--json",
                               "--until", "2026-06-01T00:00:00Z").stdout)
    assert doc["known"] is True and doc["pending"] == []
    assert [c["used"] for c in doc["caps"]] == [0, 0, 0]  # both intents are weeks old
    unknown = tactful("explain", "cust-nobody", "--events", str(LADDER))
    assert unknown.returncode == 0 and b"holds nothing" in unknown.stdout


@pytest.mark.parametrize(("args", "says"), [
    (["--url", "ftp://x"], b"--url must be http://host:port"),
    (["--url", "http://127.0.0.1:1"], b"TACTFUL_ADMIN_TOKEN must be set"),
    (["--url", "http://127.0.0.1:1", "--until", "2026-01-01T00:00:00Z"], b"go with --events"),
    (["--events", "/nonexistent/events.jsonl"], b"cannot read"),
])
def test_explain_errors_are_one_line(args: list[str], says: bytes) -> None:
    result = _run(["explain", "cust-1", *args])
    assert result.returncode == 2, result.stderr
    assert result.stderr.count(b"\n") == 1 and says in result.stderr, result.stderr


def test_explain_reports_an_unreachable_worker_in_one_line() -> None:
    result = _run(["explain", "cust-1", "--url", "http://127.0.0.1:1"],
                  TACTFUL_ADMIN_TOKEN="x" * 20)
    assert result.returncode == 2
    assert result.stderr.count(b"\n") == 1 and b"cannot reach http://127.0.0.1:1" in result.stderr


# tactful diff (SPEC §6). Ana has email consent only, Bo push consent only; both log in
# and leave a cart in the afternoon (New York). Policy B is the default with email taken
# out of abandoned_cart's channels (and no assist_offer calls, which follow an email).
# Worked out by hand from SPEC §3-§4:
# - Ana's cart (last activity 14:10Z) is due 18:10Z. A: email passes (email is not held to
#   quiet hours) -> emitted. B: push and sms have no consent -> suppressed, no channel,
#   `no_consent` (the last channel's reason).
# - Bo's cart (15:00Z) is due 19:00Z, 15:00 in New York. A: email has no consent, push
#   passes inside 08:00-21:00 -> emitted on push. B: the same push intent.
# - Line 3 is not JSON: reported once, left out of both.
DIFF_EVENTS = b"""\
{"event_id":"df-01","type":"consent_granted","ts":"2026-05-01T12:00:00Z","customer_id":"cust-ana","channel":"email","source":"account_signup"}
{"event_id":"df-02","type":"consent_granted","ts":"2026-05-01T12:00:00Z","customer_id":"cust-bo","channel":"push","source":"app_install"}
{not json
{"event_id":"df-03","type":"preferences_set","ts":"2026-05-01T12:01:00Z","customer_id":"cust-bo","timezone":"America/New_York"}
{"event_id":"df-04","type":"login","ts":"2026-05-05T14:00:00Z","session_id":"sess-ana","customer_id":"cust-ana","identity":{"method":"login"}}
{"event_id":"df-05","type":"cart_add","ts":"2026-05-05T14:05:00Z","session_id":"sess-ana","customer_id":"cust-ana","identity":{"method":"login"},"sku":"sku-lamp","product_id":"prod-lamp","category":["home"],"price":120.0,"currency":"USD","qty":1}
{"event_id":"df-06","type":"cart_add","ts":"2026-05-05T14:10:00Z","session_id":"sess-ana","customer_id":"cust-ana","identity":{"method":"login"},"sku":"sku-bulb","product_id":"prod-bulb","category":["home"],"price":8.5,"currency":"USD","qty":2}
{"event_id":"df-07","type":"login","ts":"2026-05-05T15:00:00Z","session_id":"sess-bo","customer_id":"cust-bo","identity":{"method":"login"}}
{"event_id":"df-08","type":"cart_add","ts":"2026-05-05T15:00:00Z","session_id":"sess-bo","customer_id":"cust-bo","identity":{"method":"login"},"sku":"sku-kettle","product_id":"prod-kettle","category":["kitchen"],"price":40.0,"currency":"USD","qty":1}
"""
DEFAULT_POLICY = ROOT / "src" / "tactful" / "policy" / "default.toml"


def _diff_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    import re

    events, a, b = tmp_path / "events.jsonl", tmp_path / "a.toml", tmp_path / "b.toml"
    events.write_bytes(DIFF_EVENTS)
    text = DEFAULT_POLICY.read_text()
    a.write_text(re.sub(r'(?m)^version = ".*"$', 'version = "shop-a"', text))
    b_text = re.sub(r'(?m)^version = ".*"$', 'version = "shop-b"', text)
    cart = b_text.index("[triggers.abandoned_cart]")
    b_text = b_text[:cart] + b_text[cart:].replace(
        'channels = ["email", "push", "sms"]', 'channels = ["push", "sms"]', 1)
    # Without cart emails there is no email reminder for a call to follow: B makes no calls
    # either (no cart here is worth 500, so assist_offer would not fire under A).
    assist = b_text.index("[triggers.assist_offer]")
    b_text = b_text[:assist] + b_text[assist:].replace('channels = ["phone"]', "channels = []", 1)
    b.write_text(b_text)
    return events, a, b


def _version(path: Path, name: str) -> str:
    import hashlib

    return f"{name}+{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def test_diff_shows_what_a_policy_change_does_to_every_decision(tmp_path: Path) -> None:
    events, a, b = _diff_files(tmp_path)
    only = tmp_path / "only.jsonl"
    result = tactful("diff", str(events), "--policy", str(a), "--against", str(b),
                     "--out", str(only), "--until", "2026-05-06T00:00:00Z")
    assert result.returncode == 0, result.stderr
    errors = result.stderr.decode().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"tactful: {events}:3: "), errors
    lines = result.stdout.decode().splitlines()
    assert lines[0].split() == ["A", _version(a, "shop-a"), f"({a})"]
    assert lines[1].split() == ["B", _version(b, "shop-b"), f"({b})"]
    table = [line.split() for line in lines[3:lines.index("", 3)]]
    assert table == [
        ["kind", "channel", "outcome", "reason", "A", "B", "B-A"],
        ["abandoned_cart", "-", "suppressed", "no_consent", "0", "1", "+1"],
        ["abandoned_cart", "email", "emitted", "-", "1", "0", "-1"],
        ["abandoned_cart", "push", "emitted", "-", "1", "1", "0"],
        ["total", "2", "2", "0"],
    ]
    assert lines[-2:] == ["intents: A 2, B 1, only A 1, only B 0",
                          "cancellations: A 0, B 0, only A 0, only B 0"]
    [line] = only.read_bytes().splitlines()
    record = orjson.loads(line)
    assert record.pop("intent_id").startswith("int-")
    assert record.pop("reasons")[:3] == ["abandoned_cart", "verified_identity", "consent"]
    assert record == {
        "customer_id": "cust-ana", "channel": "email", "kind": "abandoned_cart",
        "items": [{"sku": "sku-lamp", "qty": 1, "price": 120.0},
                  {"sku": "sku-bulb", "qty": 2, "price": 8.5}],
        "created_at": "2026-05-05T18:10:00Z", "send_after": "2026-05-05T18:10:00Z",
        "send_before": "2026-05-06T18:10:00Z", "topic": "cart_reminders",
        "consent": {"channel": "email", "granted_at": "2026-05-01T12:00:00Z",
                    "source": "account_signup"},
        "policy_version": _version(a, "shop-a"), "only": "A",
    }
    # The same engine as replay: the A-only line is replay's line for Ana under A.
    replayed = tactful("replay", str(events), "--policy", str(a), "--decisions", "/dev/null",
                       "--until", "2026-05-06T00:00:00Z")
    ana = [x for x in replayed.stdout.splitlines() if b'"cust-ana"' in x]
    assert replayed.returncode == 0, replayed.stderr
    assert ana == [line.replace(b',"only":"A"}', b"}")]


def test_the_readme_diff_example_is_what_its_files_give() -> None:
    # README's `tactful diff` example, run as quoted from the repository root: the
    # printed block is the README's, line for line (written from the story: the
    # email-only shopper loses her reminder, the push-only one keeps his).
    readme = (ROOT / "README.md").read_text()
    start = readme.index("$ tactful diff examples/diff/events.jsonl")
    block = readme[start:readme.index("```", start)].splitlines()
    command = (block[0] + block[1]).replace("\\", " ").split()[2:]
    result = _run(command, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == block[2:]


def test_the_diff_example_policy_is_the_default_with_its_change_only() -> None:
    # examples/diff/no-cart-email.toml is default.toml with three lines changed: a
    # change of the default must be carried over to it.
    default = (ROOT / "src" / "tactful" / "policy" / "default.toml").read_text().splitlines()
    example = (ROOT / "examples" / "diff" / "no-cart-email.toml").read_text().splitlines()
    assert len(example) == len(default)
    changed = [(a, b) for a, b in zip(default, example, strict=True) if a != b]
    assert changed == [
        ('version = "2026.11-default"', 'version = "2026.12-no-cart-email"'),
        ('channels = ["email", "push", "sms"]',
         'channels = ["push", "sms"]  # changed: no cart reminder by email'),
        ('channels = ["phone"]',
         'channels = []  # changed: no call, which follows an email reminder'),
    ]


def test_diff_of_a_policy_with_itself_changes_nothing(tmp_path: Path) -> None:
    events, a, _ = _diff_files(tmp_path)
    only = tmp_path / "only.jsonl"
    result = tactful("diff", str(events), "--policy", str(a), "--against", str(a),
                     "--out", str(only))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    table = [line.split() for line in lines[3:lines.index("", 3)]]
    assert table == [
        ["kind", "channel", "outcome", "reason", "A", "B", "B-A"],
        ["abandoned_cart", "email", "emitted", "-", "1", "1", "0"],
        ["abandoned_cart", "push", "emitted", "-", "1", "1", "0"],
        ["total", "2", "2", "0"],
    ]
    assert lines[-2] == "intents: A 2, B 2, only A 0, only B 0"
    assert only.read_bytes() == b""


def test_diff_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    events, a, b = _diff_files(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "x"\nbogus = 1\n')
    cases = [
        (["diff", str(tmp_path / "missing.jsonl"), "--policy", str(a), "--against", str(b)],
         b"cannot read"),
        (["diff", str(events), "--policy", str(a), "--against", str(bad)], b"policy error"),
        (["diff", str(events), "--policy", str(tmp_path / "nope.toml"), "--against", str(b)],
         b"policy error"),
        (["diff", str(events), "--policy", str(a), "--against", str(b), "--until", "soon"],
         b"not an RFC 3339 timestamp"),
        (["diff", str(events), "--policy", str(a)], b"--against"),
        (["diff", str(events), "--against", str(b)], b"--policy"),
        (["diff", str(events), "--policy", str(a), "--against", str(b), "--out", str(events)],
         b"is the input file"),
        (["diff", str(events), "--policy", str(a), "--against", str(b), "--out", str(b)],
         b"is a policy file"),
    ]
    for args, says in cases:
        result = tactful(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count(b"\n") == 1 and says in result.stderr, (args, result.stderr)
    assert events.read_bytes() == DIFF_EVENTS
    assert b"shop-b" in b.read_bytes()


LINK_STORY = ROOT / "tests" / "scenarios" / "verified_abandoned_cart" / "events.jsonl"


def test_replay_signs_links_from_its_flags_or_the_variables(tmp_path: Path) -> None:
    secret = "replay-link-secret-0123"
    flags = _run(["replay", str(LINK_STORY), "--decisions", str(tmp_path / "d.jsonl"),
                  "--public-url", "https://shop.example/c", "--link-secret", secret])
    variables = _run(["replay", str(LINK_STORY), "--decisions", str(tmp_path / "d.jsonl")],
                     TACTFUL_PUBLIC_URL="https://shop.example/c", TACTFUL_LINK_SECRET=secret)
    plain = _run(["replay", str(LINK_STORY), "--decisions", str(tmp_path / "d.jsonl")])
    assert flags.returncode == variables.returncode == plain.returncode == 0
    assert flags.stdout == variables.stdout
    (intent,) = [orjson.loads(line) for line in flags.stdout.splitlines()]
    assert intent["links"]["unsubscribe"].startswith("https://shop.example/c/u/")
    assert intent["links"]["preferences"].startswith("https://shop.example/c/p/")
    assert "links" not in orjson.loads(plain.stdout)
    assert intent["customer_id"] not in intent["links"]["unsubscribe"]


@pytest.mark.parametrize(("args", "says"), [
    (["--public-url", "https://shop.example"], b"--public-url needs --link-secret"),
    (["--public-url", "shop.example", "--link-secret", "x" * 16], b"TACTFUL_PUBLIC_URL must be"),
    (["--public-url", "https://shop.example", "--link-secret", "short"],
     b"TACTFUL_LINK_SECRET must be at least 16 characters"),
])
def test_bad_link_flags_are_one_line_and_exit_2(args: list[str], says: bytes) -> None:
    result = _run(["replay", str(LINK_STORY), *args])
    assert result.returncode == 2
    assert result.stdout == b""
    (line,) = result.stderr.splitlines()
    assert line.startswith(b"tactful: ") and says in line, line
