/*
 * The io_uring floor for a large response, four ways of sending it (issue #19: "large bodies
 * zero-copy where io_uring allows — IORING_OP_SPLICE through a pipe, or SEND_ZC — measure"):
 *
 *   floor_uring_big PORT RESPONSE_FILE send|sendzc|splice|sendfile
 *
 * RESPONSE_FILE holds one complete response (head and body), exactly as atomserve sends it; it
 * is kept in a sealed memfd and mapped. As in floor_uring.c: one ring (SINGLE_ISSUER |
 * DEFER_TASKRUN), multishot accept, per connection a multishot receive into a provided-buffer
 * ring, nothing parsed (each "\r\n\r\n" is a request), one io_uring_submit_and_wait(1) a turn.
 * Each request is answered with the whole response, one response in flight per connection:
 *
 *   send      IORING_OP_SEND of the mapping: the kernel copies it into the socket
 *   sendzc    IORING_OP_SEND_ZC of the mapping: pages pinned and referenced, a notification
 *             CQE when the kernel lets go of them
 *   splice    IORING_OP_SPLICE memfd -> the connection's pipe, then pipe -> socket: page
 *             references, two operations a response
 *   sendfile  sendfile(2) called from the loop on a non-blocking socket (what atomserve's ring
 *             worker does for large bodies), IORING_OP_POLL_ADD for POLLOUT when it is full
 *
 * Partial sends are resumed in every mode. Built by hand (gcc -O2 … -luring); a yardstick, not a
 * server. docs/benchmarks.md ("io_uring: large bodies") has the figures and the command.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FDS 65536
#define BUFS 256
#define BUF_SIZE 4096
#define GROUP 0

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_TO_PIPE, OP_FROM_PIPE, OP_POLL };
enum { SEND, SENDZC, SPLICE, SENDFILE };
#define TAG(op, fd) (((uint64_t)(op) << 32) | (uint32_t)(fd))

struct conn {
    uint64_t owed;     /* requests received and not yet answered */
    size_t sent;       /* bytes of the response in flight that left (or entered the pipe) */
    size_t in_pipe;    /* splice: bytes in the pipe, not yet in the socket */
    int busy;          /* an operation of the response in flight */
    int recv_armed, closing, match;
    int pipe_r, pipe_w;
};

static struct conn conns[MAX_FDS];
static int mode, memfd;
static char *resp;
static size_t resp_len;
static char *buf_mem;
static struct io_uring_buf_ring *br;
static struct io_uring ring;

static void die(const char *what) { perror(what); exit(1); }

static struct io_uring_sqe *sqe_of(void) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void arm_recv(int fd) {
    struct io_uring_sqe *sqe = sqe_of();
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = GROUP;
    io_uring_sqe_set_data64(sqe, TAG(OP_RECV, fd));
    conns[fd].recv_armed = 1;
}

/* Moves the response in flight on; starts the next one when it is done. */
static void pump(int fd) {
    struct conn *c = &conns[fd];
    if (c->busy || c->closing)
        return;
    if (c->sent == resp_len && c->in_pipe == 0) { /* done: the next response, if one is owed */
        if (c->owed == 0)
            return;
        c->owed--;
        c->sent = 0;
    }
    struct io_uring_sqe *sqe;
    size_t rest = resp_len - c->sent;
    switch (mode) {
    case SEND:
    case SENDZC:
        sqe = sqe_of();
        if (mode == SEND)
            io_uring_prep_send(sqe, fd, resp + c->sent, rest, MSG_NOSIGNAL);
        else
            io_uring_prep_send_zc(sqe, fd, resp + c->sent, rest, MSG_NOSIGNAL, 0);
        io_uring_sqe_set_data64(sqe, TAG(OP_SEND, fd));
        c->busy = 1;
        break;
    case SPLICE:
        sqe = sqe_of();
        if (c->in_pipe > 0) /* pipe -> socket */
            io_uring_prep_splice(sqe, c->pipe_r, -1, fd, -1, c->in_pipe, 0);
        else /* memfd -> pipe, from where the response is */
            io_uring_prep_splice(sqe, memfd, c->sent, c->pipe_w, -1, rest, 0);
        io_uring_sqe_set_data64(sqe, TAG(c->in_pipe > 0 ? OP_FROM_PIPE : OP_TO_PIPE, fd));
        c->busy = 1;
        break;
    case SENDFILE:
        for (;;) {
            off_t off = c->sent;
            ssize_t n = sendfile(fd, memfd, &off, resp_len - c->sent);
            if (n > 0) {
                c->sent += n;
                if (c->sent < resp_len)
                    continue;
                if (c->owed == 0)
                    return;
                c->owed--;
                c->sent = 0;
                continue;
            }
            if (n < 0 && errno == EAGAIN) { /* full: wait for room */
                sqe = sqe_of();
                io_uring_prep_poll_add(sqe, fd, POLLOUT);
                io_uring_sqe_set_data64(sqe, TAG(OP_POLL, fd));
                c->busy = 1;
            } else {
                c->closing = 1;
            }
            return;
        }
    }
}

static void maybe_close(int fd) {
    struct conn *c = &conns[fd];
    if (c->closing && !c->busy && !c->recv_armed) {
        if (c->pipe_r > 0) {
            close(c->pipe_r);
            close(c->pipe_w);
        }
        close(fd);
        memset(c, 0, sizeof *c);
    }
}

static void give_back(int bid) {
    io_uring_buf_ring_add(br, buf_mem + (size_t)bid * BUF_SIZE, BUF_SIZE, bid, io_uring_buf_ring_mask(BUFS), 0);
    io_uring_buf_ring_advance(br, 1);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: floor_uring_big PORT RESPONSE_FILE send|sendzc|splice|sendfile\n");
        return 2;
    }
    /* sendfile(2) and splice(2) have no MSG_NOSIGNAL: a client that closes mid-response must
     * not kill the floor. */
    signal(SIGPIPE, SIG_IGN);
    const char *modes[] = {"send", "sendzc", "splice", "sendfile"};
    mode = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(argv[3], modes[i]) == 0) mode = i;
    if (mode < 0) die("mode");

    int rf = open(argv[2], O_RDONLY);
    struct stat st;
    if (rf < 0 || fstat(rf, &st) < 0) die(argv[2]);
    resp_len = st.st_size;
    memfd = memfd_create("floor-response", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (memfd < 0 || ftruncate(memfd, resp_len) < 0) die("memfd");
    char *tmp = malloc(resp_len);
    if (!tmp || read(rf, tmp, resp_len) != (ssize_t)resp_len || pwrite(memfd, tmp, resp_len, 0) != (ssize_t)resp_len)
        die("copy response");
    free(tmp);
    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    resp = mmap(NULL, resp_len, PROT_READ, MAP_SHARED | MAP_POPULATE, memfd, 0);
    if (resp == MAP_FAILED) die("mmap response");

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) die("listen");

    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_CQSIZE, .cq_entries = 16384};
    int err = io_uring_queue_init_params(4096, &ring, &p);
    if (err < 0) { errno = -err; die("io_uring_queue_init_params"); }
    br = mmap(NULL, BUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    buf_mem = mmap(NULL, (size_t)BUFS * BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (br == MAP_FAILED || buf_mem == MAP_FAILED) die("mmap");
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = BUFS, .bgid = GROUP};
    err = io_uring_register_buf_ring(&ring, &reg, 0);
    if (err < 0) { errno = -err; die("io_uring_register_buf_ring"); }
    io_uring_buf_ring_init(br);
    for (int i = 0; i < BUFS; i++) give_back(i);

    /* sendfile needs a non-blocking socket: a full one must not block the loop. */
    int accept_flags = SOCK_CLOEXEC | (mode == SENDFILE ? SOCK_NONBLOCK : 0);
    struct io_uring_sqe *sqe = sqe_of();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, accept_flags);
    io_uring_sqe_set_data64(sqe, TAG(OP_ACCEPT, lfd));

    for (;;) {
        err = io_uring_submit_and_wait(&ring, 1);
        if (err < 0 && err != -EINTR && err != -ETIME && err != -EBUSY) { errno = -err; die("io_uring_submit_and_wait"); }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            uint64_t tag = io_uring_cqe_get_data64(cqe);
            int op = tag >> 32, fd = (int)(uint32_t)tag, res = cqe->res;
            int more = cqe->flags & IORING_CQE_F_MORE;
            if (op == OP_ACCEPT) {
                if (res >= 0 && res < MAX_FDS) {
                    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = &conns[res];
                    c->sent = resp_len; /* nothing in flight */
                    if (mode == SPLICE) {
                        int pp[2];
                        if (pipe2(pp, O_CLOEXEC) < 0) die("pipe2");
                        fcntl(pp[1], F_SETPIPE_SZ, 1 << 20); /* room for a whole response */
                        c->pipe_r = pp[0];
                        c->pipe_w = pp[1];
                    }
                    arm_recv(res);
                } else if (res >= 0) {
                    close(res);
                }
                if (!more) {
                    sqe = sqe_of();
                    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, accept_flags);
                    io_uring_sqe_set_data64(sqe, TAG(OP_ACCEPT, lfd));
                }
                continue;
            }
            struct conn *c = &conns[fd];
            if (op == OP_RECV) {
                if (!more) c->recv_armed = 0;
                if (res > 0) {
                    int bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                    const char *b = buf_mem + (size_t)bid * BUF_SIZE;
                    for (int i = 0; i < res; i++) { /* count "\r\n\r\n", across reads too */
                        char want = (c->match & 1) ? '\n' : '\r';
                        if (b[i] == want) {
                            if (++c->match == 4) { c->owed++; c->match = 0; }
                        } else {
                            c->match = b[i] == '\r';
                        }
                    }
                    give_back(bid);
                    if (!more && !c->closing) arm_recv(fd);
                } else if (res == -ENOBUFS) {
                    arm_recv(fd);
                } else {
                    c->closing = 1;
                }
            } else if (cqe->flags & IORING_CQE_F_NOTIF) {
                continue; /* SEND_ZC: the kernel let go of the pages (they never change here) */
            } else if (op == OP_SEND) {
                c->busy = 0;
                if (res <= 0) c->closing = 1; else c->sent += res;
            } else if (op == OP_TO_PIPE) {
                c->busy = 0;
                if (res <= 0) c->closing = 1; else { c->sent += res; c->in_pipe += res; }
            } else if (op == OP_FROM_PIPE) {
                c->busy = 0;
                if (res <= 0) c->closing = 1; else c->in_pipe -= res;
            } else if (op == OP_POLL) {
                c->busy = 0;
                if (res < 0) c->closing = 1;
            }
            pump(fd);
            if (c->closing && c->recv_armed) shutdown(fd, SHUT_RDWR);
            maybe_close(fd);
        }
        io_uring_cq_advance(&ring, seen);
    }
}
