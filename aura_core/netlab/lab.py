"""A small internet in network namespaces, for proving hole punching through real NATs.

Topology (every namespace and link is prefixed with a per-lab tag and recorded; nothing is
created in the host namespace; IPv6 off everywhere)::

      hA 10.1.0.2 ── 10.1.0.1 rA 100.64.1.2 ── 100.64.1.1 ┐
                                                         pub  100.64.0.1, 100.64.0.2 (coturn STUN)
      hB 10.2.0.2 ── 10.2.0.1 rB 100.64.2.2 ── 100.64.2.1 ┘    100.64.0.3:4000 (relay stand-in)

``pub`` routes between the routers and has no default route.  Each router NATs its LAN with
nftables in one of these modes (RFC 4787 terms):

- ``cone``: ``masquerade`` — endpoint-independent mapping, address-and-port-dependent filtering
  (port-restricted cone);
- ``fullcone``: masquerade plus a dynamic map ``wan port -> lan ip . port`` filled by outbound UDP
  and used to DNAT inbound UDP (endpoint-independent filtering);
- ``symmetric``: ``masquerade random,fully-random`` (endpoint-dependent mapping).

and a stateful firewall: WAN→LAN only established/related (or DNAT'ed by the full-cone map), and,
unless ``clash=True``, unsolicited packets to the router's own WAN address are dropped.  Without
that drop, an early punch from the far side is confirmed by conntrack as a flow to the router
itself and the router then remaps our own punch to another port (the conntrack-clash pitfall).

Cleanup: :meth:`NatLab.close` kills what it started and deletes every namespace it created; it
runs from ``with``, from ``atexit`` and on SIGTERM, and is idempotent.

Processes inside the lab are this package's modules (``ip netns exec <ns> python -m
aura_core.netlab.<agent>``), so an installed wheel runs the lab: ``punch_agent`` (raw punching),
``udp_relay`` (the stand-in relay), ``pub`` and ``peer`` (``aura-core demo --netlab``).  They
talk JSON lines on stdio with the orchestrator (:func:`read_json` / :func:`write_json`).
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PUB_STUN = ("100.64.0.1", "100.64.0.2")
RELAY = ("100.64.0.3", 4000)
STUN_PORT = 3478
MODES = ("cone", "fullcone", "symmetric")
TOOLS = ("ip", "nft", "turnserver")

# router-mode pairs the lab is run in: name -> (router A, router B, clash variant, expected path)
PAIRS = {
    "cone-cone": ("cone", "cone", False, "direct"),
    "fullcone-symmetric": ("fullcone", "symmetric", False, "direct"),
    "cone-symmetric": ("cone", "symmetric", False, "relay"),
    "symmetric-symmetric": ("symmetric", "symmetric", False, "relay"),
    "cone-cone-clash": ("cone", "cone", True, "direct"),
}


def missing_requirements() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "netlab needs root (network namespaces, nftables)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return (f"netlab needs {', '.join(f'`{t}`' for t in missing)} on PATH "
                f"(apt-get install -y iproute2 nftables coturn)")
    return None


def leftovers(tag: str) -> list[str]:
    """Namespaces named with ``tag`` that still exist (a closed lab leaves none)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in names.splitlines() if line.startswith(tag)]


def read_json(p: subprocess.Popen[str], timeout: float) -> dict:
    """The next JSON line from an agent's stdout, or TimeoutError / RuntimeError (it exited)."""
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
    try:
        if not sel.select(timeout):
            raise TimeoutError("agent did not answer in time")
    finally:
        sel.close()
    line = p.stdout.readline()  # type: ignore[union-attr]
    if not line:
        err = p.stderr.read() if p.stderr else ""  # type: ignore[union-attr]
        raise RuntimeError(f"agent exited: {err[-3000:]}")
    return json.loads(line)


def alive(pid: int) -> bool:
    """Is ``pid`` still a process (the lab's are our children, reaped by :meth:`NatLab.close`)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def write_json(p: subprocess.Popen[str], obj: dict) -> None:
    p.stdin.write(json.dumps(obj) + "\n")  # type: ignore[union-attr]
    p.stdin.flush()  # type: ignore[union-attr]


def _sh(*args: str, input: str | None = None) -> str:
    r = subprocess.run(list(args), input=input, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def nat_ruleset(mode: str, clash: bool) -> str:
    if mode not in MODES:
        raise ValueError(f"mode is one of {MODES}")
    masq = "masquerade random,fully-random" if mode == "symmetric" else "masquerade"
    full = mode == "fullcone"
    lines = ["table ip lab {"]
    if full:
        lines += [
            "  map fc { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout 120s; }",
            "  chain lab_pre { type nat hook prerouting priority dstnat; policy accept;",
            "    iifname \"wan\" ip protocol udp dnat ip to udp dport map @fc",
            "  }",
        ]
    lines += [
        "  chain lab_post { type nat hook postrouting priority srcnat; policy accept;",
        f"    oifname \"wan\" {masq}",
        "  }",
    ]
    if full:
        # after SNAT: remember wan port -> inside endpoint for every outbound UDP flow
        lines += [
            "  chain lab_fill { type filter hook postrouting priority srcnat + 10; policy accept;",
            "    oifname \"wan\" ip protocol udp update @fc { ct reply proto-dst : ct original ip saddr . ct original proto-src }",
            "  }",
        ]
    lines += [
        "  chain lab_forward { type filter hook forward priority filter; policy drop;",
        "    iifname \"lan\" accept",
        "    ct state established,related accept",
    ]
    if full:
        lines.append("    ct status dnat accept")
    lines.append("  }")
    if not clash:
        lines += [
            "  chain lab_input { type filter hook input priority filter; policy accept;",
            "    iifname \"wan\" ct state established,related accept",
            "    iifname \"wan\" drop",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


class NatLab:
    """Build the topology with router modes ``mode_a``/``mode_b``; see the module docstring."""

    def __init__(self, mode_a: str, mode_b: str, *, clash: bool = False) -> None:
        self.tag = f"al{os.getpid() % 10000}{int(time.time() * 1000) % 10000}"
        self.mode_a, self.mode_b, self.clash = mode_a, mode_b, clash
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.state = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self._closed = False
        self._old_term: Any = None  # the SIGTERM handler we replaced

    def ns(self, role: str) -> str:
        return f"{self.tag}-{role}"

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> NatLab:
        atexit.register(self.close)
        try:
            self._old_term = signal.signal(signal.SIGTERM, self._on_term)
        except ValueError:  # not the main thread
            self._old_term = None
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_term(self, signum: int, frame: object) -> None:
        self.close()
        sys.exit(128 + signum)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for name in reversed(self.namespaces):
            # anything still running inside (a stray agent) dies with its namespace's pids
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.namespaces.clear()
        shutil.rmtree(self.state, ignore_errors=True)
        if self._old_term is not None:
            try:
                signal.signal(signal.SIGTERM, self._old_term)
            except ValueError:
                pass
        try:
            atexit.unregister(self.close)
        except Exception:
            pass

    # -- building -------------------------------------------------------------------------------
    def _add_ns(self, role: str) -> str:
        name = self.ns(role)
        _sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        for cmd in ("sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
                    "sysctl -qw net.ipv6.conf.default.disable_ipv6=1",
                    "ip link set lo up"):
            _sh("ip", "netns", "exec", name, *cmd.split())
        return name

    def _link(self, a: str, a_if: str, a_ip: str, b: str, b_if: str, b_ip: str) -> None:
        # veth created directly inside the two lab namespaces (never in the host namespace)
        _sh("ip", "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b)
        _sh("ip", "-n", a, "addr", "add", a_ip, "dev", a_if)
        _sh("ip", "-n", b, "addr", "add", b_ip, "dev", b_if)
        _sh("ip", "-n", a, "link", "set", a_if, "up")
        _sh("ip", "-n", b, "link", "set", b_if, "up")

    def _build(self) -> None:
        pub, ra, rb, ha, hb = (self._add_ns(r) for r in ("pub", "rA", "rB", "hA", "hB"))
        self._link(pub, "pa", "100.64.1.1/24", ra, "wan", "100.64.1.2/24")
        self._link(pub, "pb", "100.64.2.1/24", rb, "wan", "100.64.2.2/24")
        self._link(ra, "lan", "10.1.0.1/24", ha, "eth0", "10.1.0.2/24")
        self._link(rb, "lan", "10.2.0.1/24", hb, "eth0", "10.2.0.2/24")
        for ip in (*PUB_STUN, RELAY[0]):
            _sh("ip", "-n", pub, "addr", "add", f"{ip}/32", "dev", "lo")
        for name in (pub, ra, rb):
            _sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        _sh("ip", "-n", ra, "route", "add", "default", "via", "100.64.1.1")
        _sh("ip", "-n", rb, "route", "add", "default", "via", "100.64.2.1")
        _sh("ip", "-n", ha, "route", "add", "default", "via", "10.1.0.1")
        _sh("ip", "-n", hb, "route", "add", "default", "via", "10.2.0.1")
        _sh("ip", "netns", "exec", ra, "nft", "-f", "-", input=nat_ruleset(self.mode_a, self.clash))
        _sh("ip", "netns", "exec", rb, "nft", "-f", "-", input=nat_ruleset(self.mode_b, self.clash))
        self._start_coturn()
        self._start_relay()

    def set_udp_timeouts(self, unreplied: int, stream: int) -> None:
        """Shorten the routers' UDP conntrack timeouts (per namespace) to test keepalives."""
        for router in ("rA", "rB"):
            _sh("ip", "netns", "exec", self.ns(router), "sysctl", "-qw",
                f"net.netfilter.nf_conntrack_udp_timeout={unreplied}",
                f"net.netfilter.nf_conntrack_udp_timeout_stream={stream}")

    def _spawn(self, ns: str, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.state / log, "wb")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(ns), *args], stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        self.procs.append(p)
        return p

    def _start_coturn(self) -> None:
        s = self.state
        self._spawn("pub", ["turnserver", "-n", "--stun-only",
                            *(f"--listening-ip={ip}" for ip in PUB_STUN),
                            f"--listening-port={STUN_PORT}", "--no-tcp", "--no-tls", "--no-dtls",
                            "--no-cli", f"--pidfile={s / 'turn.pid'}", f"--userdb={s / 'turn.db'}",
                            f"--log-file={s / 'turn.log'}", "--simple-log"], "turn.out")

    def _start_relay(self) -> None:
        self._spawn("pub", [sys.executable, "-m", "aura_core.netlab.udp_relay", RELAY[0],
                            str(RELAY[1])], "relay.out")

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until coturn answers on both addresses and the relay is up (probed from hA)."""
        probe = (
            "import socket,sys,time\n"
            "from aura_core.stun import build_binding_request, parse_message\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0.2)\n"
            f"targets={[(ip, STUN_PORT) for ip in PUB_STUN]!r}\n"
            "end=time.time()+float(sys.argv[1])\n"
            "while targets and time.time()<end:\n"
            "    t=targets[0]; s.sendto(build_binding_request(bytes(12)), t)\n"
            "    try:\n"
            "        d,a=s.recvfrom(2048); parse_message(d); targets.pop(0)\n"
            "    except OSError: pass\n"
            "sys.exit(1 if targets else 0)\n")
        r = subprocess.run(["ip", "netns", "exec", self.ns("hA"), sys.executable, "-c", probe,
                            str(timeout)], capture_output=True, text=True)
        if r.returncode != 0:
            log = (self.state / "turn.log").read_text(errors="replace")[-2000:] if (
                self.state / "turn.log").exists() else ""
            raise RuntimeError(f"coturn did not answer: {r.stderr[-500:]} {log}")

    def agent(self, ns: str, args: list[str], module: str = "punch_agent", *,
              stderr_log: str | None = None) -> subprocess.Popen[str]:
        """Start ``aura_core.netlab.<module>`` inside namespace ``ns`` (JSON lines on stdio).
        ``stderr_log`` sends its stderr to that file of the lab's state directory instead of a
        pipe (long-running agents: a full pipe would block them)."""
        err = open(self.state / stderr_log, "wb") if stderr_log else subprocess.PIPE
        try:
            p = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(ns), sys.executable, "-u", "-m",
                 f"aura_core.netlab.{module}", *args], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, text=True)
        finally:
            if stderr_log:
                err.close()  # type: ignore[union-attr]
        self.procs.append(p)  # type: ignore[arg-type]
        return p

    def pids(self) -> list[int]:
        """Every process now running inside the lab's namespaces (our agents, coturn, ...)."""
        return [int(pid) for name in self.namespaces for pid in subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()]

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.state / name
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""
