# cython: language_level=3
# _punch.pyx — Cython wrapper of csrc/punch (authenticated punch packets, sendmmsg/recvmmsg loop).
#
# Sockets cross this boundary as file descriptors (ints), so no module outside aura_core/asyncio
# imports socket.  Addresses are (host text, port); conversion uses inet_pton/inet_ntop in C.
# The public API is aura_core/punch.py; this module is its one compiled layer.

from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from aura_core._sodium_api cimport import_sodium
from aura_core.errors import InvalidValue, TransportError, UsageError

import_sodium()

cdef extern from "<sys/socket.h>":
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr_storage:
        sa_family_t ss_family
    int AF_INET
    int AF_INET6

cdef extern from "<netinet/in.h>":
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        in6_addr sin6_addr
    unsigned short htons(unsigned short)
    unsigned short ntohs(unsigned short)

cdef extern from "<arpa/inet.h>":
    int inet_pton(int af, const char *src, void *dst)
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)

cdef extern from "aura_punch.h":
    enum:
        AURA_PUNCH_LEN
        AURA_PUNCH_ID_LEN
        AURA_PUNCH_KEY_LEN
        AURA_PUNCH_NVERDICTS
        AURA_PUNCH_OK
    ctypedef struct aura_punch_kstate:
        uint64_t h[8]
    ctypedef struct aura_punch_fields:
        uint64_t seq
        uint8_t flags
        uint8_t sender[16]
        uint8_t receiver[16]
    ctypedef struct aura_punch_peer:
        uint8_t id[16]
        uint8_t tx_key[32]
        uint64_t tx_seq
        uint64_t rx_top
        uint64_t rx_window
        uint8_t rx_seen
    ctypedef union aura_punch_addr:
        pass
    ctypedef struct aura_punch_target:
        aura_punch_addr addr
        socklen_t addrlen
        uint32_t peer
    ctypedef struct aura_punch_event:
        uint32_t peer
        uint8_t flags
        uint64_t seq
        sockaddr_storage from_ "from"
        socklen_t fromlen
        int64_t elapsed_ns
    ctypedef struct aura_punch_engine:
        uint8_t local_id[16]
        uint8_t rx_key[32]
        aura_punch_peer *peers
        size_t npeers
        aura_punch_target *targets
        size_t ntargets
        uint64_t counts[7]
        aura_punch_kstate rx_state
        uint64_t sent, send_errors, acks_sent, datagrams
        uint64_t bursts, bursts_missed
        int64_t max_late_ns
        int64_t run_start_ns
        int auto_ack
    void aura_punch_engine_keys(aura_punch_engine *e) nogil
    int aura_punch_set_simd(int level) nogil
    int aura_punch_simd_active() nogil
    void aura_punch_build(uint8_t *out, const uint8_t *key, const uint8_t *sender,
                          const uint8_t *receiver, uint64_t seq, uint8_t flags) nogil
    int aura_punch_parse(const uint8_t *pkt, size_t len, aura_punch_fields *f) nogil
    int aura_punch_check(const uint8_t *pkt, size_t len, const uint8_t *key,
                         const uint8_t *local_id, aura_punch_fields *f) nogil
    int aura_punch_accept(aura_punch_engine *e, const uint8_t *pkt, size_t len,
                          aura_punch_fields *f, long *peer) nogil
    int aura_punch_make_ack(aura_punch_engine *e, long peer, uint8_t *out) nogil
    long aura_punch_send_burst(aura_punch_engine *e, int fd, uint8_t flags) nogil
    long aura_punch_run(aura_punch_engine *e, int fd, int send, int64_t interval_ns,
                        int64_t timeout_ns, size_t stop_after, aura_punch_event *events,
                        size_t max_events) nogil
    long aura_punch_bench_sendmmsg(int fd, const sockaddr_storage *to, socklen_t tolen,
                                   size_t pkt_len, size_t count) nogil
    long aura_punch_bench_recvmmsg(int fd, size_t pkt_len, size_t count, int64_t timeout_ns) nogil
    long aura_punch_bench_send_many(int fd, const sockaddr_storage *to, socklen_t tolen,
                                    const uint8_t *buf, size_t pkt_len, size_t count) nogil
    long aura_punch_bench_accept(aura_punch_engine *e, const uint8_t *pkt, size_t len,
                                 size_t n) nogil
    long aura_punch_bench_blake2b(const uint8_t *pkt, const uint8_t *key, size_t n) nogil
    long aura_punch_bench_tag(const uint8_t *pkt, const uint8_t *key, size_t n) nogil

cdef extern from "aura_common.h":
    void aura_wipe(void *p, size_t n) nogil

PACKET_LEN = AURA_PUNCH_LEN
VERDICTS = ("ok", "not_punch", "malformed", "wrong_receiver", "bad_tag", "unknown_sender",
            "replayed")


cdef bytes _exact(object value, size_t n, str what):
    cdef bytes b = bytes(value)
    if <size_t> len(b) != n:
        raise InvalidValue(f"{what} must be {n} bytes")
    return b


cdef socklen_t _to_sockaddr(str host, int port, sockaddr_storage *out) except 0:
    cdef sockaddr_in *v4 = <sockaddr_in *> out
    cdef sockaddr_in6 *v6 = <sockaddr_in6 *> out
    cdef bytes h = host.encode("ascii")
    if not 0 <= port <= 65535:
        raise InvalidValue("port must be 0..65535")
    memset(out, 0, sizeof(sockaddr_storage))
    if inet_pton(AF_INET, h, &v4.sin_addr) == 1:
        v4.sin_family = AF_INET
        v4.sin_port = htons(port)
        return sizeof(sockaddr_in)
    if inet_pton(AF_INET6, h, &v6.sin6_addr) == 1:
        v6.sin6_family = AF_INET6
        v6.sin6_port = htons(port)
        return sizeof(sockaddr_in6)
    raise InvalidValue(f"not an IP address: {host!r}")


cdef tuple _from_sockaddr(const sockaddr_storage *sa):
    cdef char buf[64]
    cdef const sockaddr_in *v4 = <const sockaddr_in *> sa
    cdef const sockaddr_in6 *v6 = <const sockaddr_in6 *> sa
    if sa.ss_family == AF_INET:
        inet_ntop(AF_INET, &v4.sin_addr, buf, sizeof(buf))
        return (buf.decode("ascii"), ntohs(v4.sin_port))
    if sa.ss_family == AF_INET6:
        inet_ntop(AF_INET6, &v6.sin6_addr, buf, sizeof(buf))
        return (buf.decode("ascii"), ntohs(v6.sin6_port))
    return ("", 0)


def build(key, sender, receiver, uint64_t seq, uint8_t flags=0):
    """One punch packet tagged under ``key`` (the receiver's punch key)."""
    cdef bytes k = _exact(key, AURA_PUNCH_KEY_LEN, "punch key")
    cdef bytes s = _exact(sender, AURA_PUNCH_ID_LEN, "sender id")
    cdef bytes r = _exact(receiver, AURA_PUNCH_ID_LEN, "receiver id")
    cdef uint8_t out[AURA_PUNCH_LEN]
    if flags & ~1:
        raise InvalidValue("unknown punch flags")
    aura_punch_build(out, k, s, r, seq, flags)
    return out[:AURA_PUNCH_LEN]


def parse(const uint8_t[::1] pkt):
    """Structural parse: ``(verdict, (sender, receiver, seq, flags) | None)``; no tag check."""
    cdef aura_punch_fields f
    cdef int v = aura_punch_parse(&pkt[0] if pkt.shape[0] else NULL, pkt.shape[0], &f)
    if v != AURA_PUNCH_OK:
        return VERDICTS[v], None
    return "ok", (f.sender[:16], f.receiver[:16], f.seq, f.flags)


def check(const uint8_t[::1] pkt, key, local_id):
    """Parse + receiver + tag check: ``(verdict, (sender, receiver, seq, flags) | None)``."""
    cdef bytes k = _exact(key, AURA_PUNCH_KEY_LEN, "punch key")
    cdef bytes me = _exact(local_id, AURA_PUNCH_ID_LEN, "local id")
    cdef aura_punch_fields f
    cdef int v = aura_punch_check(&pkt[0] if pkt.shape[0] else NULL, pkt.shape[0], k, me, &f)
    if v != AURA_PUNCH_OK:
        return VERDICTS[v], None
    return "ok", (f.sender[:16], f.receiver[:16], f.seq, f.flags)


cdef class Engine:
    """C punch engine: our id and punch key, the peers we punch with, and candidate targets.

    Not shared between threads: while :meth:`run` blocks (GIL released) any other call raises
    UsageError instead of racing on the C state."""

    cdef aura_punch_engine e
    cdef dict _index
    cdef list _ids
    cdef int _busy  # run() in progress (GIL released): no other call may touch the state

    cdef int _enter(self) except -1:
        if self._busy:
            raise UsageError("the punch engine is running in another thread")
        self._busy = 1
        return 0

    def __cinit__(self):
        memset(&self.e, 0, sizeof(self.e))

    def __init__(self, local_id, rx_key, peers, bint auto_ack=True):
        cdef bytes me = _exact(local_id, AURA_PUNCH_ID_LEN, "local id")
        cdef bytes rk = _exact(rx_key, AURA_PUNCH_KEY_LEN, "punch key")
        cdef list items = sorted((_exact(i, AURA_PUNCH_ID_LEN, "peer id"),
                                  _exact(k, AURA_PUNCH_KEY_LEN, "peer punch key"))
                                 for i, k in peers)
        cdef size_t n = len(items), j
        cdef bytes pid, pkey
        for j in range(1, n):
            if items[j][0] == items[j - 1][0]:
                raise InvalidValue("duplicate peer id")
        if self.e.peers != NULL:
            raise UsageError("Engine already initialised")
        self.e.peers = <aura_punch_peer *> calloc(n if n else 1, sizeof(aura_punch_peer))
        if self.e.peers == NULL:
            raise MemoryError()
        memcpy(self.e.local_id, <const char *> me, AURA_PUNCH_ID_LEN)
        memcpy(self.e.rx_key, <const char *> rk, AURA_PUNCH_KEY_LEN)
        self._index = {}
        self._ids = []
        for j in range(n):
            pid, pkey = items[j]
            memcpy(self.e.peers[j].id, <const char *> pid, AURA_PUNCH_ID_LEN)
            memcpy(self.e.peers[j].tx_key, <const char *> pkey, AURA_PUNCH_KEY_LEN)
            self._index[pid] = j
            self._ids.append(pid)
        self.e.npeers = n
        aura_punch_engine_keys(&self.e)  # per-key BLAKE2b states: one compression per tag
        self.e.auto_ack = 1 if auto_ack else 0

    def __dealloc__(self):
        if self.e.peers != NULL:
            aura_wipe(self.e.peers, self.e.npeers * sizeof(aura_punch_peer))
            free(self.e.peers)
        if self.e.targets != NULL:
            free(self.e.targets)
        aura_wipe(self.e.rx_key, AURA_PUNCH_KEY_LEN)
        aura_wipe(&self.e.rx_state, sizeof(self.e.rx_state))

    @property
    def peer_ids(self):
        return list(self._ids)

    def set_targets(self, targets):
        """Replace the candidate list: an iterable of ``(peer_id, host, port)``."""
        cdef list items = list(targets)
        cdef size_t n = len(items), j
        if self._busy:
            raise UsageError("the punch engine is running in another thread")
        cdef sockaddr_storage ss
        cdef socklen_t sl
        cdef aura_punch_target *arr = <aura_punch_target *> calloc(n if n else 1,
                                                                   sizeof(aura_punch_target))
        if arr == NULL:
            raise MemoryError()
        try:
            for j in range(n):
                pid, host, port = items[j]
                idx = self._index.get(bytes(pid))
                if idx is None:
                    raise InvalidValue("target names a peer the engine does not know")
                arr[j].peer = idx
                sl = _to_sockaddr(str(host), int(port), &ss)
                if sl > sizeof(aura_punch_addr):
                    raise InvalidValue("address family not supported")
                memcpy(&arr[j].addr, &ss, sl)
                arr[j].addrlen = sl
        except BaseException:
            free(arr)
            raise
        if self.e.targets != NULL:
            free(self.e.targets)
        self.e.targets = arr
        self.e.ntargets = n

    @property
    def target_count(self):
        return self.e.ntargets

    def send_burst(self, int fd, bint ack=False):
        """One packet to every target (sendmmsg, GIL released); returns packets sent."""
        cdef long r
        cdef uint8_t flags = 1 if ack else 0
        self._enter()
        try:
            with nogil:
                r = aura_punch_send_burst(&self.e, fd, flags)
        finally:
            self._busy = 0
        if r < 0:
            raise TransportError("punch send failed")
        return r

    def run(self, int fd, *, bint send=True, double interval=0.05, double timeout=1.0,
            size_t stop_after=1, size_t max_events=64):
        """The punch loop (GIL released): bursts every ``interval`` s (if ``send``), receive and
        validate until ``timeout`` s or ``stop_after`` accepted punches (0: run to the timeout).
        Returns the first ``max_events`` accepted as ``(peer_id, flags, seq, (host, port),
        elapsed_s)``; ``stats()["ok"]`` counts them all."""
        if not (0 < interval <= 1e9 and 0 <= timeout <= 1e9):  # ns counts stay far from 2**63
            raise InvalidValue("interval must be in (0, 1e9] s and timeout in [0, 1e9] s")
        cdef aura_punch_event *evs = <aura_punch_event *> calloc(max_events if max_events else 1,
                                                                 sizeof(aura_punch_event))
        if evs == NULL:
            raise MemoryError()
        cdef long r
        cdef int64_t iv = <int64_t> (interval * 1e9), to = <int64_t> (timeout * 1e9)
        cdef size_t j
        try:
            self._enter()
            try:
                with nogil:
                    r = aura_punch_run(&self.e, fd, 1 if send else 0, iv, to, stop_after, evs,
                                       max_events)
            finally:
                self._busy = 0
            if r < 0:
                raise TransportError("punch loop failed (bad socket?)")
            out = []
            for j in range(min(<size_t> r, max_events)):
                out.append((self._ids[evs[j].peer], evs[j].flags, evs[j].seq,
                            _from_sockaddr(&evs[j].from_), evs[j].elapsed_ns / 1e9))
            return out
        finally:
            free(evs)

    def accept(self, const uint8_t[::1] pkt):
        """Validate one datagram (counts it): ``(verdict, (peer_id, seq, flags) | None)``."""
        cdef aura_punch_fields f
        cdef long peer
        if self._busy:
            raise UsageError("the punch engine is running in another thread")
        cdef int v = aura_punch_accept(&self.e, &pkt[0] if pkt.shape[0] else NULL, pkt.shape[0],
                                       &f, &peer)
        if v != AURA_PUNCH_OK:
            return VERDICTS[v], None
        return "ok", (self._ids[peer], f.seq, f.flags)

    def accept_and_ack(self, const uint8_t[::1] pkt):
        """Like :meth:`accept`; for an accepted non-ack punch also returns the ack to send back
        to its source: ``(verdict, (peer_id, seq, flags) | None, ack_bytes | None)``."""
        cdef aura_punch_fields f
        cdef long peer
        cdef uint8_t out[AURA_PUNCH_LEN]
        if self._busy:
            raise UsageError("the punch engine is running in another thread")
        cdef int v = aura_punch_accept(&self.e, &pkt[0] if pkt.shape[0] else NULL, pkt.shape[0],
                                       &f, &peer)
        if v != AURA_PUNCH_OK:
            return VERDICTS[v], None, None
        ack = None
        if not (f.flags & 1):
            aura_punch_make_ack(&self.e, peer, out)
            self.e.acks_sent += 1
            ack = out[:AURA_PUNCH_LEN]
        return "ok", (self._ids[peer], f.seq, f.flags), ack

    def _bench_accept(self, const uint8_t[::1] pkt, size_t n):
        """n validations of one packet (full tag check each time); for the benchmarks."""
        cdef long r
        if pkt.shape[0] == 0:
            raise InvalidValue("empty packet")
        self._enter()
        try:
            with nogil:
                r = aura_punch_bench_accept(&self.e, &pkt[0], pkt.shape[0], n)
        finally:
            self._busy = 0
        return r

    def stats(self):
        cdef int j
        out = {VERDICTS[j]: self.e.counts[j] for j in range(AURA_PUNCH_NVERDICTS)}
        out.update(sent=self.e.sent, send_errors=self.e.send_errors, acks_sent=self.e.acks_sent,
                   datagrams=self.e.datagrams, bursts=self.e.bursts,
                   bursts_missed=self.e.bursts_missed, max_late_ns=self.e.max_late_ns,
                   run_start_ns=self.e.run_start_ns)
        return out


def _bench_sendmmsg(int fd, str host, int port, size_t pkt_len, size_t count):
    """The limit: a plain C sendmmsg loop of fixed packets (no building, no tags)."""
    cdef sockaddr_storage to
    cdef socklen_t tl = _to_sockaddr(host, port, &to)
    cdef long r
    with nogil:
        r = aura_punch_bench_sendmmsg(fd, &to, tl, pkt_len, count)
    if r < 0:
        raise TransportError("sendmmsg failed")
    return r


def _bench_recvmmsg(int fd, size_t pkt_len, size_t count, double timeout):
    """The limit: a plain C recvmmsg loop (no validation); returns datagrams received."""
    cdef long r
    cdef int64_t to = <int64_t> (timeout * 1e9)
    with nogil:
        r = aura_punch_bench_recvmmsg(fd, pkt_len, count, to)
    if r < 0:
        raise TransportError("recvmmsg failed")
    return r


def _bench_send_many(int fd, str host, int port, const uint8_t[::1] packets, size_t pkt_len):
    """Send a buffer of back-to-back packets of pkt_len bytes with sendmmsg (a feeder)."""
    cdef sockaddr_storage to
    cdef socklen_t tl = _to_sockaddr(host, port, &to)
    cdef size_t count = packets.shape[0] // pkt_len if pkt_len else 0
    cdef long r
    if count == 0:
        return 0
    with nogil:
        r = aura_punch_bench_send_many(fd, &to, tl, &packets[0], pkt_len, count)
    if r < 0:
        raise TransportError("sendmmsg failed")
    return r


def _bench_blake2b(const uint8_t[::1] pkt, key, size_t n):
    """n raw keyed BLAKE2b-128 tags over the first 60 bytes of pkt (the validation floor)."""
    cdef bytes k = _exact(key, AURA_PUNCH_KEY_LEN, "punch key")
    cdef const uint8_t *kp = k
    cdef long r
    if pkt.shape[0] < 60:
        raise InvalidValue("packet shorter than 60 bytes")
    with nogil:
        r = aura_punch_bench_blake2b(&pkt[0], kp, n)
    return r


def _bench_tag(const uint8_t[::1] pkt, key, size_t n):
    """n tags of pkt from the cached key state, batched like the receive path (the floor)."""
    cdef bytes k = _exact(key, AURA_PUNCH_KEY_LEN, "punch key")
    cdef const uint8_t *kp = k
    cdef long r
    if pkt.shape[0] < 60:
        raise InvalidValue("packet shorter than 60 bytes")
    with nogil:
        r = aura_punch_bench_tag(&pkt[0], kp, n)
    return r


def _set_simd(int level):
    """Tag vector level: 0 portable, 1 AVX2, 2 AVX-512 (capped at what the CPU has); returns
    the previous level.  Tests run every level against the reference."""
    return aura_punch_set_simd(level)


def _simd_active():
    """The tag vector level in use (0 portable, 1 AVX2, 2 AVX-512)."""
    return aura_punch_simd_active()
