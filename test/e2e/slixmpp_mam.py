"""The message archive (XEP-0313) with slixmpp's own plugins against a running Lethe: alice checks that
archiving is off (opt-in, XEP-0441 default `never`), exchanges a message with bob that must therefore not
be archived, turns archiving on with slixmpp's preferences call (default `always`), exchanges 25 more
messages with bob (both directions, one at a time so their order is known) with one from carol in the
middle, and reads her history back with slixmpp's XEP-0059 paging: page by page forwards and backwards,
message by message with `iterate` forwards, backwards and filtered on bob (which leaves carol's out).
Prints one JSON line with what it saw; exits 0 only when every step completed (the test asserts on the
contents). Bounded by --timeout."""
import argparse
import asyncio
import json
import ssl
import sys

import slixmpp

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--domain", required=True)
parser.add_argument("--password", required=True)
parser.add_argument("--timeout", type=float, default=60)
parser.add_argument("--messages", type=int, default=25)
parser.add_argument("--page", type=int, default=10)
args = parser.parse_args()

ALICE = f"alice@{args.domain}"
BOB = f"bob@{args.domain}"
CAROL = f"carol@{args.domain}"
# Each single step (a login, a delivery, an iq) gets at most this long, so a stall is reported where it happens.
STEP = max(5.0, args.timeout / 4)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid: str):
        # As in slixmpp_pair.py: slixmpp 1.8 can only bind tls-unique, which TLS 1.3 lacks, so no -PLUS.
        super().__init__(f"{jid}/slix", args.password, sasl_mech="SCRAM-SHA-256")
        self.ready = asyncio.get_event_loop().create_future()
        self.messages = asyncio.Queue()
        # The test server's certificate is self-signed: verification is off, as in the other e2e scripts.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for plugin in ("xep_0030", "xep_0059", "xep_0203", "xep_0297", "xep_0313", "xep_0441"):
            self.register_plugin(plugin)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_auth", lambda *_: self.fail("authentication failed"))

    def fail(self, why: str):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"{self.boundjid}: {why}"))

    def on_message(self, m):
        # Archive results arrive as messages too (with a <result/>); only live chat goes to the queue.
        if m.xml.find("{urn:xmpp:mam:2}result") is None:
            self.messages.put_nowait(m)

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)

    def go(self):
        self.connect(("127.0.0.1", args.port), force_starttls=True, disable_starttls=False, use_ssl=False)
        return self.ready


async def step(what: str, awaitable):
    try:
        return await asyncio.wait_for(awaitable, STEP)
    except asyncio.TimeoutError:
        raise RuntimeError(f"timed out after {STEP}s: {what}") from None


async def receive(client: Client, body: str):
    while True:
        m = await client.messages.get()
        if m["body"] == body:
            return m


async def say(sender: Client, receiver: Client, to: str, body: str):
    """Sends one chat message and waits until the other side has it, so the archive order is the send order."""
    sender.send_message(mto=to, mbody=body, mtype="chat")
    await step(f"delivery of {body!r}", receive(receiver, body))


def describe(m) -> dict:
    """One archived message as slixmpp parsed it."""
    result = m["mam_result"]
    forwarded = result["forwarded"]
    inner = forwarded["stanza"]
    stamp = forwarded["delay"]["stamp"]
    return {
        "id": result["id"],
        "queryid": result["queryid"],
        "from": str(inner["from"]),
        "to": str(inner["to"]),
        "body": inner["body"],
        "stamp": stamp.isoformat() if stamp else None,
    }


async def collect(what: str, agen) -> list:
    """Drains an async generator, each item bounded by STEP."""
    out = []
    it = agen.__aiter__()
    while True:
        try:
            item = await step(f"{what}, item {len(out) + 1}", it.__anext__())
        except StopAsyncIteration:
            return out
        out.append(item)
        if len(out) > 10 * args.messages:
            raise RuntimeError(f"{what}: runaway paging ({len(out)} items)")


async def pages(alice: Client, reverse: bool) -> list:
    """The pages themselves, as slixmpp's XEP-0059 iterator fetches them (retrieve(iterator=True))."""
    iterator = alice["xep_0313"].retrieve(iterator=True, reverse=reverse, rsm={"max": args.page})
    out = []
    for page in await collect(f"pages (reverse={reverse})", iterator):
        rsm = page["mam_fin"]["rsm"]
        out.append(
            {
                "bodies": [describe(m)["body"] for m in page["mam"]["results"]],
                "first": rsm["first"],
                "last": rsm["last"],
                "count": rsm["count"],
                "complete": page["mam_fin"].xml.get("complete"),
            }
        )
    return out


async def main() -> dict:
    alice, bob, carol = Client(ALICE), Client(BOB), Client(CAROL)
    await step("login", asyncio.gather(alice.go(), bob.go(), carol.go()))
    prefs = alice["xep_0441"]
    result = {}

    default, always, never = await step("get prefs", prefs.get_preferences())
    result["prefs_initial"] = {"default": default, "always": sorted(map(str, always)), "never": sorted(map(str, never))}

    # Before opting in: one message each way, delivered, and never archived.
    await say(bob, alice, ALICE, "before opting in, from bob")
    await say(alice, bob, BOB, "before opting in, from alice")

    reply = await step("set prefs", prefs.set_preferences(default="always", always=[], never=[]))
    result["prefs_set_reply"] = reply["mam_prefs"]["default"]
    default, _, _ = await step("get prefs again", prefs.get_preferences())
    result["prefs_after"] = default

    sent = []
    for i in range(1, args.messages + 1):
        body = f"archived message {i:02d}"
        if i % 2:
            await say(bob, alice, ALICE, body)
        else:
            await say(alice, bob, BOB, body)
        sent.append(body)
        if i == args.messages // 2:
            # Someone else, halfway: in the archive, but not in the history with bob.
            await say(carol, alice, ALICE, "from carol, not bob")
            sent.append("from carol, not bob")
    result["sent"] = sent

    mam = alice["xep_0313"]
    result["pages_forward"] = await pages(alice, reverse=False)
    result["pages_backward"] = await pages(alice, reverse=True)
    rsm = {"max": args.page}
    result["forward"] = [describe(m) for m in await collect("iterate", mam.iterate(rsm=rsm))]
    result["backward"] = [describe(m) for m in await collect("iterate reverse", mam.iterate(rsm=rsm, reverse=True))]
    result["with_bob"] = [
        describe(m) for m in await collect("iterate with bob", mam.iterate(with_jid=slixmpp.JID(BOB), rsm=rsm))
    ]
    result["with_nobody"] = [
        describe(m)
        for m in await collect(
            "iterate with a stranger", mam.iterate(with_jid=slixmpp.JID(f"nobody@{args.domain}"), rsm=rsm)
        )
    ]
    for c in (alice, bob, carol):
        c.disconnect()
    return result


try:
    out = asyncio.get_event_loop().run_until_complete(asyncio.wait_for(main(), args.timeout))
except Exception as e:  # reported as JSON so the test shows what went wrong
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    sys.exit(1)
print(json.dumps(out))
