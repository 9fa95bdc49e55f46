"""Two slixmpp clients against a running Lethe: SCRAM-SHA-256 over STARTTLS, mutual subscription,
presence seen both ways, one message each way. Prints one JSON line with what happened; exits 0
only when everything was observed. Bounded by --timeout."""
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
    def __init__(self, jid: str, peer: str):
        super().__init__(f"{jid}/slix", args.password, sasl_mech="SCRAM-SHA-256")
        self.peer = peer
        self.ready = asyncio.get_event_loop().create_future()
        self.saw_peer_online = asyncio.get_event_loop().create_future()
        self.got_message = asyncio.get_event_loop().create_future()
        self.mechanism = None
        # The test server's certificate is self-signed: verification is off, as the issue says.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("presence_available", self.on_available)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("auth_success", self.on_auth)
        self.add_event_handler("failed_auth", lambda *_: self.fail("authentication failed"))

    def fail(self, why: str):
        for f in (self.ready, self.saw_peer_online, self.got_message):
            if not f.done():
                f.set_exception(RuntimeError(f"{self.boundjid.bare}: {why}"))

    def on_auth(self, _):
        self.mechanism = self.plugin["feature_mechanisms"].mech.name if self.plugin["feature_mechanisms"].mech else None

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)

    def on_available(self, presence):
        if presence["from"].bare == self.peer and not self.saw_peer_online.done():
            self.saw_peer_online.set_result(str(presence["from"]))

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["from"].bare == self.peer and not self.got_message.done():
            self.got_message.set_result(msg["body"])


async def main() -> dict:
    alice, bob = Client(ALICE, BOB), Client(BOB, ALICE)
    for c in (alice, bob):
        c.connect(("127.0.0.1", args.port), force_starttls=True, disable_starttls=False, use_ssl=False)
    await asyncio.gather(alice.ready, bob.ready)
    # slixmpp's roster plugin accepts and returns subscriptions by default (auto_authorize/auto_subscribe).
    alice.send_presence_subscription(pto=BOB)
    seen = await asyncio.gather(alice.saw_peer_online, bob.saw_peer_online)
    alice.send_message(mto=BOB, mbody="hello bob, from slixmpp alice", mtype="chat")
    bob.send_message(mto=ALICE, mbody="hello alice, from slixmpp bob", mtype="chat")
    bodies = await asyncio.gather(bob.got_message, alice.got_message)
    result = {
        "mechanisms": [alice.mechanism, bob.mechanism],
        "alice_saw": seen[0],
        "bob_saw": seen[1],
        "bob_got": bodies[0],
        "alice_got": bodies[1],
        "alice_roster": {k: alice.client_roster[k]["subscription"] for k in alice.client_roster},
        "bob_roster": {k: bob.client_roster[k]["subscription"] for k in bob.client_roster},
    }
    for c in (alice, bob):
        c.disconnect()
    return result


try:
    out = asyncio.get_event_loop().run_until_complete(asyncio.wait_for(main(), args.timeout))
except Exception as e:  # reported as JSON so the test shows what went wrong
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    sys.exit(1)
print(json.dumps(out))
