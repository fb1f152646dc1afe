/*
 * The syscall floor: the least work a Linux HTTP/1.1 server can do per keep-alive request.
 *
 *   floor PORT RESPONSE_FILE copy|sendfile|split|iovec|gather
 *
 * RESPONSE_FILE holds one complete response, head and body, exactly as atomserve sends it (the
 * harness fetches it once from atomserve). The responder parses nothing: every "\r\n\r\n" it
 * receives counts as one request and is answered with those bytes. One edge-triggered epoll
 * instance; per readable event one recv(2) (a second only if the first filled the buffer) and one
 * send of everything owed — a single send(2) from heap memory (`copy`, pipelined responses laid
 * back to back so a whole batch goes in one call), or sendfile(2) from a sealed memfd (`sendfile`,
 * the zero-copy path), or `split`: the head with send(2) and MSG_MORE, then the body with sendfile(2)
 * from the memfd — the least a server can do whose head changes per response (`Date`) while its
 * body stays in memory. Two more shapes of a pipelined batch, to compare how it reaches the
 * kernel: `iovec`, one sendmsg(2) with an iovec per response (each pointing at the one copy in
 * memory), and `gather`, the responses copied into one buffer first and sent with one send(2).
 * A send that would block resumes on the next EPOLLOUT edge.
 *
 * Built by benches/load/peers.sh with `gcc -O2`; it is a yardstick, not a server.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FDS 65536
#define RECV_BUF (64 * 1024)
#define BATCH_BYTES (4 * 1024 * 1024) /* most bytes of back-to-back copies kept for `copy` */

struct conn {
    uint64_t owed;   /* response bytes still to send, over all pending responses */
    uint32_t off;    /* position inside the current response */
    uint8_t matched; /* how much of "\r\n\r\n" the previous read ended with */
};

static struct conn conns[MAX_FDS];
static const char *resp;  /* `copy`: `copies` responses back to back */
static size_t resp_len;
static uint64_t copies;
static int memfd = -1;    /* `sendfile`, `split`: one response in a sealed memfd */
static const char *one;   /* one response, in heap memory */
static size_t head_len;   /* `split`: bytes sent with send(2) before the body's sendfile(2) */
static enum { PLAIN, IOVEC, GATHER } shape; /* `iovec`, `gather`: how a batch of responses goes out */

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* Counts complete request heads in `buf`, carrying a partial terminator across reads. */
static uint64_t count_heads(struct conn *c, const char *buf, size_t n) {
    static const char end[4] = {'\r', '\n', '\r', '\n'};
    uint64_t heads = 0;
    uint8_t m = c->matched;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == end[m]) {
            if (++m == 4) {
                heads++;
                m = 0;
            }
        } else {
            m = buf[i] == '\r';
        }
    }
    c->matched = m;
    return heads;
}

/* Sends what is owed until done or EAGAIN; returns -1 when the connection must close. */
static int flush(int fd, struct conn *c) {
    while (c->owed) {
        ssize_t n;
        if (head_len && c->off < head_len) {
            size_t len = head_len - c->off;
            n = send(fd, one + c->off, len, MSG_NOSIGNAL | MSG_MORE);
        } else if (memfd >= 0) {
            off_t o = c->off;
            size_t len = resp_len - c->off;
            n = sendfile(fd, memfd, &o, len < c->owed ? len : c->owed);
        } else if (shape == GATHER) {
            static char gathered[256 * 1024];
            size_t len = 0;
            uint64_t left = c->owed;
            for (uint32_t off = c->off; left && len + resp_len <= sizeof gathered; off = 0) {
                size_t part = resp_len - off < left ? resp_len - off : left;
                memcpy(gathered + len, one + off, part);
                len += part;
                left -= part;
            }
            n = send(fd, gathered, len, MSG_NOSIGNAL);
        } else if (shape == IOVEC) {
            struct iovec iov[64];
            int k = 0;
            uint64_t left = c->owed;
            for (uint32_t off = c->off; left && k < 64; off = 0, k++) {
                size_t part = resp_len - off < left ? resp_len - off : left;
                iov[k] = (struct iovec){.iov_base = (char *)one + off, .iov_len = part};
                left -= part;
            }
            struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)k};
            n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        } else {
            uint64_t room = copies * resp_len - c->off;
            n = send(fd, resp + c->off, room < c->owed ? room : c->owed, MSG_NOSIGNAL);
        }
        if (n < 0) return errno == EAGAIN ? 0 : -1; /* EAGAIN: resume on the EPOLLOUT edge */
        c->owed -= (uint64_t)n;
        c->off = (uint32_t)((c->off + (uint64_t)n) % resp_len);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT RESPONSE_FILE copy|sendfile|split|iovec|gather\n", argv[0]);
        return 2;
    }
    int split = strcmp(argv[3], "split") == 0;
    shape = strcmp(argv[3], "iovec") == 0 ? IOVEC : strcmp(argv[3], "gather") == 0 ? GATHER : PLAIN;
    int zero_copy = split || strcmp(argv[3], "sendfile") == 0;
    /* sendfile(2) has no MSG_NOSIGNAL: a client that closes mid-response must not kill us. */
    signal(SIGPIPE, SIG_IGN);

    int in = open(argv[2], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0 || st.st_size == 0) die(argv[2]);
    resp_len = (size_t)st.st_size;
    char *heap = malloc(resp_len);
    if (!heap || read(in, heap, resp_len) != (ssize_t)resp_len) die("read response");
    close(in);
    one = heap;
    if (split) {
        const char *end = memmem(one, resp_len, "\r\n\r\n", 4);
        if (!end) die("no head in response");
        head_len = (size_t)(end - one) + 4;
    }

    if (zero_copy) {
        /* The memory as atomserve lays out its bodies (src/sys/file.rs): the file padded to whole
         * 2 MiB pages and filled through a MADV_HUGEPAGE mapping, so that where the host grants
         * shmem huge pages (shmem_enabled=advise) the floor has them too. */
        size_t huge = 2u << 20, padded = (resp_len + huge - 1) / huge * huge;
        memfd = memfd_create("floor-response", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (memfd < 0 || ftruncate(memfd, (off_t)padded) < 0) die("memfd");
        char *map = mmap(NULL, padded, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
        if (map == MAP_FAILED) die("mmap");
        madvise(map, padded, MADV_HUGEPAGE); /* advice: fine if refused */
        memcpy(map, one, resp_len);
        if (munmap(map, padded) < 0) die("munmap");
        if (fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
            die("F_ADD_SEALS");
    } else {
        copies = resp_len * 64 <= BATCH_BYTES ? 64 : 1;
        char *all = malloc(copies * resp_len);
        if (!all) die("malloc");
        for (uint64_t i = 0; i < copies; i++) memcpy(all + i * resp_len, one, resp_len);
        resp = all;
    }

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
        bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0)
        die("listen");

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll");

    static char buf[RECV_BUF];
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (cfd >= MAX_FDS) {
                        close(cfd);
                        continue;
                    }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
                    conns[cfd] = (struct conn){0};
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
                                              .data.fd = cfd};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev) < 0) close(cfd);
                }
                continue;
            }
            struct conn *c = &conns[fd];
            int dead = 0;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                for (;;) {
                    ssize_t r = recv(fd, buf, sizeof buf, 0);
                    if (r > 0) c->owed += count_heads(c, buf, (size_t)r) * resp_len;
                    if (r == 0 || (r < 0 && errno != EAGAIN)) dead = 1;
                    if (r != (ssize_t)sizeof buf) break; /* drained: no EAGAIN recv needed */
                }
            }
            if (dead || flush(fd, c) < 0) close(fd); /* close also leaves the epoll set */
        }
    }
}
