"""A minimal Faust app built by tactful's app factory, run as a worker by test_faust_smoke.

It stores every message in a changelogged table and answers a probe (value
``?``) with what the table holds for the key, so a test can tell whether the
table survived a restart.
"""

from __future__ import annotations

import asyncio
import os

from tactful.adapters.topics import TopicSpec, ensure_topics
from tactful.service.faust.app import bytes_table, create_app
from tactful.service.settings import from_env

settings = from_env()
app = create_app(settings, app_id=os.environ["SMOKE_APP_ID"])
inbox = app.topic(os.environ["SMOKE_IN"], partitions=2)
outbox = app.topic(os.environ["SMOKE_OUT"], partitions=1)
table = bytes_table(app, "smoke", partitions=2)


@app.agent(inbox)
async def remember(stream):  # type: ignore[no-untyped-def]
    async for key, value in stream.items():
        if value == b"?":
            stored = table.get(key)
            await outbox.send(key=key, value=b"held:" + (stored or b"<missing>"))
        else:
            table[key] = value
            await outbox.send(key=key, value=b"stored:" + value)


if __name__ == "__main__":
    asyncio.run(ensure_topics(settings.bootstrap, [
        TopicSpec(os.environ["SMOKE_IN"], 2), TopicSpec(os.environ["SMOKE_OUT"], 1),
    ]))
    app.main()
