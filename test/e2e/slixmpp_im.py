"""Everyday IM with slixmpp against a running Lethe: message carbons (XEP-0280) between two resources of
alice, vCard set and get (XEP-0054), and a message kept offline for bob and delivered, with its delay
stamp (XEP-0203), when he logs in again. Prints one JSON line with what happened; exits 0 only when
everything was observed. Bounded by --timeout."""
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
parser.add_argument("--timeout", type=float, default=30)
args = parser.parse_args()

ALICE = f"alice@{args.domain}"
BOB = f"bob@{args.domain}"


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid: str, resource: str):
        # As in slixmpp_pair.py: slixmpp 1.8 can only bind tls-unique, which TLS 1.3 lacks, so no -PLUS.
        super().__init__(f"{jid}/{resource}", args.password, sasl_mech="SCRAM-SHA-256")
        loop = asyncio.get_event_loop()
        self.ready = loop.create_future()
        self.messages = asyncio.Queue()
        self.carbons = asyncio.Queue()
        self.unavailable = asyncio.Queue()
        self.available = asyncio.Queue()
        # The test server's certificate is self-signed: verification is off, as the issue says.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for plugin in ("xep_0030", "xep_0054", "xep_0203", "xep_0297", "xep_0280"):
            self.register_plugin(plugin)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))
        self.add_event_handler("carbon_received", lambda m: self.carbons.put_nowait(("received", m)))
        self.add_event_handler("carbon_sent", lambda m: self.carbons.put_nowait(("sent", m)))
        self.add_event_handler("presence_available", lambda p: self.available.put_nowait(p["from"]))
        self.add_event_handler("presence_unavailable", lambda p: self.unavailable.put_nowait(p["from"]))
        self.add_event_handler("failed_auth", lambda *_: self.fail("authentication failed"))

    def fail(self, why: str):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"{self.boundjid}: {why}"))

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)

    def go(self):
        self.connect(("127.0.0.1", args.port), force_starttls=True, disable_starttls=False, use_ssl=False)
        return self.ready


async def next_matching(queue: asyncio.Queue, match):
    while True:
        item = await queue.get()
        if match(item):
            return item


async def main() -> dict:
    one, two, bob = Client(ALICE, "one"), Client(ALICE, "two"), Client(BOB, "desk")
    await asyncio.gather(one.go(), two.go(), bob.go())
    # slixmpp's roster plugin accepts and returns subscriptions by default (auto_authorize/auto_subscribe).
    one.send_presence_subscription(pto=BOB)
    await next_matching(bob.available, lambda j: j.bare == ALICE)
    await next_matching(one.available, lambda j: j.bare == BOB)
    result = {}

    # Carbons: both of alice's resources enable them; each sees what happens at the other.
    await asyncio.gather(one["xep_0280"].enable(), two["xep_0280"].enable())
    bob.send_message(mto=one.boundjid.full, mbody="to alice's first resource", mtype="chat")
    got = await next_matching(one.messages, lambda m: m["body"] == "to alice's first resource")
    kind, carbon = await next_matching(two.carbons, lambda c: c[1][f"carbon_{c[0]}"]["body"].startswith("to alice"))
    inner = carbon["carbon_received"]
    result["received_carbon"] = {
        "kind": kind,
        "from": str(carbon["from"]),
        "inner_from": str(inner["from"]),
        "inner_to": str(inner["to"]),
        "body": inner["body"],
        "direct_from": str(got["from"]),
    }
    one.send_message(mto=BOB, mbody="from alice's first resource", mtype="chat")
    await next_matching(bob.messages, lambda m: m["body"] == "from alice's first resource")
    kind, carbon = await next_matching(two.carbons, lambda c: c[0] == "sent")
    inner = carbon["carbon_sent"]
    result["sent_carbon"] = {
        "kind": kind,
        "from": str(carbon["from"]),
        "inner_from": str(inner["from"]),
        "inner_to": str(inner["to"]),
        "body": inner["body"],
    }

    # vCard: alice publishes hers, bob reads it.
    card = one["xep_0054"].make_vcard()
    card["FN"] = "Alice Liddell"
    card["NICKNAME"] = "alice"
    await one["xep_0054"].publish_vcard(card)
    fetched = await bob["xep_0054"].get_vcard(jid=ALICE, local=False)
    result["vcard"] = {"FN": fetched["vcard_temp"]["FN"], "NICKNAME": fetched["vcard_temp"]["NICKNAME"]}

    # Offline: bob leaves; once alice has seen him go, she writes; bob logs in again and gets it.
    bob.disconnect()
    await next_matching(one.unavailable, lambda j: j.bare == BOB)
    one.send_message(mto=BOB, mbody="while you were away", mtype="chat")
    # Her stanzas are processed in order: once the roster comes back, the message has been stored.
    await one.get_roster()
    back = Client(BOB, "desk")
    await back.go()
    away = await next_matching(back.messages, lambda m: m["body"] == "while you were away")
    result["offline"] = {
        "from": str(away["from"]),
        "body": away["body"],
        "delay_from": str(away["delay"]["from"]),
        "delay_stamp": away["delay"]["stamp"].isoformat() if away["delay"]["stamp"] else None,
    }
    for c in (one, two, back):
        c.disconnect()
    return result


try:
    out = asyncio.get_event_loop().run_until_complete(asyncio.wait_for(main(), args.timeout))
except Exception as e:  # reported as JSON so the test shows what went wrong
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    sys.exit(1)
print(json.dumps(out))
