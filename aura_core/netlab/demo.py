"""``aura-core demo --netlab``: the loopback demo's story across real NATs (root only).

For each mode (a pair of router NAT modes from :data:`~aura_core.netlab.lab.PAIRS`) a fresh
:class:`NatLab` is built; ``pub`` runs coturn (STUN), the relay node and the rendezvous journal
(:mod:`.pub`); ``hA`` / ``hB`` run one authority each (:mod:`.peer`: alice initiates).  This
process (in the host namespace) makes the context, the capability root and the identities,
hands each process its part on stdin, prints their trace lines as they come, and ends with a
summary table.  Behind cones the connection promotes to direct QUIC; behind symmetric NATs the
punch cannot work and it stays on the relay (relay fallback) — either way every message arrives
exactly once, in order.  The lab is removed after each mode, also on failure, Ctrl-C or SIGTERM.
``run_mode(..., restart_relay=True)`` (tests only; the CLI's story is unchanged) also SIGKILLs
pub mid-stream and starts it again on the same addresses.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from typing import TextIO

from .._sodium import random_bytes
from ..capabilities import ALL_CAPABILITIES, CapabilityIssuer
from ..ids import ContextId
from ..keys import IdentityKey
from .lab import (PAIRS, PUB_STUN, RELAY, STUN_PORT, NatLab, alive, leftovers, missing_requirements,
                  write_json)

__all__ = ["DEFAULT_MODES", "run", "run_mode"]

DEFAULT_MODES = ("cone-cone", "symmetric-symmetric")
RELAY_PORT, SYNC_PORT = RELAY[1] + 1, RELAY[1] + 2  # beside the punch lab's UDP relay stand-in
MODE_TIMEOUT = 90.0  # seconds for one mode's story, end to end
NAMES = ("alice", "bob")


def _pump(src: str, p: subprocess.Popen[str], q: queue.Queue[tuple[str, dict | None]]) -> None:
    """Reader thread: every JSON line of ``p`` onto ``q``; ``None`` at end of output."""
    assert p.stdout is not None
    for line in p.stdout:
        try:
            q.put((src, json.loads(line)))
        except ValueError:
            q.put((src, {"say": [src, line.rstrip()]}))
    q.put((src, None))


class _Printer:
    def __init__(self, out: TextIO, mode: str) -> None:
        self.out, self.mode, self.t0 = out, mode, time.monotonic()

    def say(self, who: str, text: str) -> None:
        self.out.write(f"{time.monotonic() - self.t0:7.3f}s  {who:<6} {text}\n")
        self.out.flush()


def _start_pub(lab: NatLab, src: str, config: dict, q: queue.Queue[tuple[str, dict | None]]
               ) -> subprocess.Popen[str]:
    """pub's relay node and journal, its lines onto ``q`` as ``src``."""
    pub = lab.agent("pub", [], "pub", stderr_log=f"{src}.err")
    write_json(pub, config)
    threading.Thread(target=_pump, args=(src, pub, q), daemon=True).start()
    return pub


def _restart_pub(lab: NatLab, pub: subprocess.Popen[str], pr: _Printer, src: str, config: dict,
                 q: queue.Queue[tuple[str, dict | None]]) -> subprocess.Popen[str]:
    """SIGKILL pub mid-stream (no drain: its queued frames and open receipt windows die with
    it), then a fresh pub on the same addresses with the same relay key."""
    pub.kill()
    pub.wait(timeout=5)
    pr.say("lab", f"SIGKILL relay node (pid {pub.pid}) mid-stream; starting it again on "
                  f"{RELAY[0]}:{RELAY_PORT}")
    return _start_pub(lab, src, config, q)


def run_mode(name: str, out: TextIO = sys.stdout, *, messages: int = 20,
             restart_relay: bool = False, timeout: float = MODE_TIMEOUT) -> dict:
    """One mode end to end; returns its outcome (``ok`` says whether everything held).

    ``restart_relay``: once the upgrade settled, both authorities stream numbered messages to
    each other while pub's relay is SIGKILLed and started again (see ``peer.stream_across_restart``);
    ``result["killed"]`` holds the killed pids, ``result["running"]`` any lab process still alive
    after the lab closed.  ``timeout``: seconds for the story (TimeoutError after)."""
    mode_a, mode_b, clash, expect = PAIRS[name]
    out.write(f"\n== {name}: hA behind a {mode_a} NAT, hB behind a {mode_b} NAT"
              f"{' (conntrack-clash router)' if clash else ''}; expected path: {expect} ==\n")
    pr = _Printer(out, name)
    result: dict = {"mode": name, "expect": expect, "ok": False, "error": None, "peers": {}}
    with NatLab(mode_a, mode_b, clash=clash) as lab:
        result["tag"] = lab.tag
        lab.wait_ready()
        pr.say("lab", f"namespaces {lab.tag}-{{pub,rA,rB,hA,hB}}; coturn STUN on "
                      f"{' and '.join(PUB_STUN)}:{STUN_PORT} in pub")
        ctx = ContextId.random()
        issuer = CapabilityIssuer(random_bytes(32))
        root = issuer.public_key
        relay_key = IdentityKey.generate()
        url, sync = f"ws://{RELAY[0]}:{RELAY_PORT}", [RELAY[0], SYNC_PORT]
        q: queue.Queue[tuple[str, dict | None]] = queue.Queue()
        # pub and both authorities start at once: the authorities retry sync and the relay link
        pub_config = {"root": root.hex(), "ctx": bytes(ctx).hex(), "host": RELAY[0],
                      "seed": relay_key.seed_bytes().hex(), "relay_port": RELAY_PORT,
                      "sync_port": SYNC_PORT}
        pub_src, streaming, killed = "pub", set[str](), list[int]()
        pub = _start_pub(lab, pub_src, pub_config, q)
        keys = [IdentityKey.generate() for _ in NAMES]
        context_key = random_bytes(32)
        for i, (who, host) in enumerate(zip(NAMES, ("hA", "hB"))):
            token = issuer.issue(ctx, ALL_CAPABILITIES, expires_at=int(time.time() * 1000) + 3_600_000)
            p = lab.agent(host, [], "peer", stderr_log=f"{who}.err")
            write_json(p, {"name": who, "peer_name": NAMES[1 - i], "initiator": i == 0,
                           "seed": keys[i].seed_bytes().hex(), "peer_pub": keys[1 - i].public.ed25519.hex(),
                           "token": token.hex(), "root": root.hex(), "ctx": bytes(ctx).hex(),
                           "ck": context_key.hex(), "relay_url": url,
                           "relay_id": bytes(relay_key.authority_id).hex(), "sync": sync,
                           "stun": [[ip, STUN_PORT] for ip in PUB_STUN], "messages": messages,
                           "restart": restart_relay})
            threading.Thread(target=_pump, args=(who, p, q), daemon=True).start()
        pr.say("ctx", f"{ctx}: context key and capability root {root.hex()[:16]}… made here; "
                      f"alice → hA, bob → hB, relay {relay_key.authority_id} → pub")

        end = time.monotonic() + timeout
        pending = set(NAMES)
        while pending:
            try:
                src, msg = q.get(timeout=max(0.1, end - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{name}: no outcome from {sorted(pending)} in "
                                   f"{timeout:.0f} s") from None
            if msg is None:
                if src in pending or src == pub_src:
                    raise RuntimeError(f"{src} exited early: {lab.log_tail(f'{src}.err')}")
                continue
            if msg.get("stage") == "streaming":
                streaming.add(src)
                if streaming == set(NAMES) and not killed:
                    killed.append(pub.pid)
                    pub_src = "pub2"  # the killed pub's end of output is expected
                    pub = _restart_pub(lab, pub, pr, pub_src, pub_config, q)
            elif "say" in msg:
                pr.say(*msg["say"])
            elif msg.get("stage") == "up":
                pr.say("pub", f"relay node on {msg['url']} (Biscuit relay:forward holders only, "
                              f"signs receipts); rendezvous journal on {sync[0]}:{sync[1]}")
            elif msg.get("stage") in ("done", "error"):
                pending.discard(src)
                result["peers"][src] = msg
                if msg["stage"] == "error":
                    pr.say(src, f"FAILED: {msg['error']}")
        write_json(pub, {"cmd": "stop"})
        while True:
            src, msg = q.get(timeout=20)
            if src == pub_src and (msg is None or msg.get("stage") == "stopped"):
                break
        result["relay"] = msg or {}
        r = result["relay"]
        if r:
            pr.say("pub", f"{r['receipts']} receipts in {r['chains']} chains verified: they cover "
                          f"{r['covered']} forwards = {r['forwarded']} frames forwarded; "
                          f"{r['sync_sessions']} sync sessions, {r['facts']} sealed facts held")
        lab_pids = lab.pids() + [p.pid for p in lab.procs]
    result["leftovers"] = leftovers(result["tag"])
    if restart_relay:
        result["killed"] = killed
        result["running"] = sorted({pid for pid in lab_pids if alive(pid)})
    pr.say("lab", f"removed: {len(result['leftovers'])} namespace(s) left")
    _judge(result)
    return result


def _judge(result: dict) -> None:
    peers = result["peers"]
    failed = [f"{who}: {what}" for who, d in peers.items() for what, ok in d.get("checks", []) if not ok]
    failed += [f"{who}: {d['error']}" for who, d in peers.items() if d["stage"] == "error"]
    paths = {d.get("path") for d in peers.values()}
    if paths != {result["expect"]}:
        failed.append(f"path {sorted(map(str, paths))}, expected {result['expect']}")
    if not result.get("relay", {}).get("verified"):
        failed.append("relay receipts did not verify or cover the forwards")
    if result["leftovers"]:
        failed.append(f"namespaces left behind: {result['leftovers']}")
    if result.get("running"):
        failed.append(f"processes left behind: {result['running']}")
    if "killed" in result and (len(result["killed"]) != 1 or not all(
            "restart" in d for d in peers.values())):
        failed.append(f"the relay was not restarted mid-stream (killed {result['killed']})")
    result["failed"] = failed
    if failed:  # the connections' own notes say why (path changes, rotations, attempts)
        result["notes"] = {who: d.get("notes", []) for who, d in peers.items()}
    result["checks"] = sum(len(d.get("checks", [])) for d in peers.values()) + 2
    result["ok"] = not failed and set(peers) == set(NAMES)


def _row(r: dict) -> tuple[str, ...]:
    a = r["peers"].get("alice", {})
    done = [d for d in r["peers"].values() if d.get("stage") == "done"]
    path = a.get("path", "—")
    if r.get("error") or len(done) < 2:
        msgs = "—"
    else:
        msgs = f"{sum(d['messages'] for d in done)} ok" if all(
            ok for d in done for what, ok in d["checks"] if "delivery" in what) else "LOSS/DUP/REORDER"
    # the channel is up once the later side is connecting too: the smaller of the two times
    relay_t = f"{min(d['time_to_relay'] for d in done):.2f} s" if len(done) == 2 else "—"
    if a.get("time_to_direct") is not None:
        direct_t = f"{a['time_to_direct']:.2f} s"
    elif a.get("fallback_after") is not None:
        n = a["attempts"]
        direct_t = f"fallback ({n} attempt{'s' * (n != 1)}, {a['fallback_after']:.2f} s)"
    else:
        direct_t = "—"
    return (r["mode"], f"{path} (expected {r['expect']})", msgs, relay_t, direct_t,
            f"ok, {r['checks']} checks" if r["ok"] else "FAILED")


def run(out: TextIO = sys.stdout, *, modes: tuple[str, ...] = DEFAULT_MODES, messages: int = 20) -> int:
    """Every mode in turn, then the summary table; 0 only if every mode held."""
    why = missing_requirements()
    if why:
        sys.stderr.write(f"aura-core demo --netlab: {why}\n")
        return 2
    unknown = [m for m in modes if m not in PAIRS]
    if unknown:
        sys.stderr.write(f"aura-core demo --netlab: unknown mode(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(PAIRS)}\n")
        return 2
    results = []
    try:
        for name in modes:
            try:
                results.append(run_mode(name, out, messages=messages))
            except (OSError, RuntimeError, TimeoutError, queue.Empty) as exc:
                out.write(f"{name}: FAILED: {type(exc).__name__}: {exc}\n")
                results.append({"mode": name, "expect": PAIRS[name][3], "ok": False, "peers": {},
                                "error": str(exc), "failed": [str(exc)]})
    except KeyboardInterrupt:
        out.write("\ninterrupted: the lab's namespaces were removed\n")
        return 130
    head = ("mode", "path", "messages", "time to relay", "time to direct", "result")
    rows = [head, *(_row(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    out.write("\nsummary (messages: sent by both sides together, each answered; time to relay: "
              "from the later side's connect; time to direct: from the peer's candidates)\n")
    for row in rows:
        out.write("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
    bad = [r for r in results if not r["ok"]]
    for r in bad:
        for f in r.get("failed", []):
            out.write(f"  {r['mode']}: {f}\n")
        for who, notes in r.get("notes", {}).items():
            out.write(f"  {r['mode']}: {who}'s connection notes (s since connect):\n")
            out.writelines(f"    {n}\n" for n in notes)
    out.write(f"{len(results) - len(bad)} of {len(results)} modes as expected\n")
    out.flush()
    return 1 if bad else 0
