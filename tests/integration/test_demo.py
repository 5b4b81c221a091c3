"""``make demo`` on the real local Kafka: the story's outcome, then the mail that
``tactful send`` delivered to the demo's SMTP inbox."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.integration import harness


def test_the_demo_ends_with_the_mail_it_delivered(kafka_bootstrap: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TACTFUL_")}
    env.update({"TACTFUL_BOOTSTRAP": kafka_bootstrap,
                "TACTFUL_WEB_PORT": str(next(harness._ports))})
    done = subprocess.run([sys.executable, "-m", "tactful.service.demo"], env=env,
                          capture_output=True, timeout=240, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, (out, done.stderr.decode()[-3000:])
    # the story: the week-later follow-up of the Berlin purchase finds no email consent
    assert "post_purchase" in out and "no_consent" in out, out
    mail = out[out.index("Mail delivered by tactful send"):]
    assert ("  To: noor@example.org\n  Subject: You left something in your cart\n"
            "  | Your cart is still waiting for you:\n  |\n"
            "  | - 1 x sku-kettle at 45.00\n  | - 2 x sku-mug at 9.50\n") in mail, mail
    # the story's May reminders are long stale: nothing else reached the inbox
    assert mail.count("  To: ") == 1, mail
    assert "omar@example.invalid: refused by the server (5xx)" in mail, mail
